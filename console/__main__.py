"""Run the operator console: `python -m console` (what `cinesync up` starts), on CINESYNC_HOST:CINESYNC_CONSOLE_PORT."""

from __future__ import annotations

import uvicorn

from cinesync.settings import get_settings
from console.app import create_app


def main() -> None:
    settings = get_settings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.console_port, log_level="info",
                access_log=False)


if __name__ == "__main__":
    main()
