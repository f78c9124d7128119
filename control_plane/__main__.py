"""`python -m control_plane`: serve with the settings in the environment."""

from __future__ import annotations

import asyncio
import logging

from cinesync.settings import get_settings
from control_plane.server import serve


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(get_settings()))


if __name__ == "__main__":
    main()
