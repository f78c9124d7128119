"""The ServerApp: runs one federated run (federated.rounds) from the configuration the control plane
put in the run config, over a Grid that rides out the SuperLink's transient errors, and records a
failure in the run's status before Flower sees it."""

from __future__ import annotations

import logging
import time

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from cinesync.federation import RUN_CONFIG_KEY, FederatedRunConfig, State, read_status, write_status
from cinesync.settings import get_settings
from federated.resilient_grid import ResilientGrid

app = ServerApp()
log = logging.getLogger(__name__)


@app.main()
def main(grid: Grid, context: Context) -> None:
    config = FederatedRunConfig.from_json(str(context.run_config[RUN_CONFIG_KEY]))
    settings = get_settings()
    grid = ResilientGrid(grid)
    try:
        from federated.rounds import FederatedRun

        if config.mode == "secagg":
            from federated.secagg import SecAggRun

            SecAggRun(context=context, config=config, settings=settings, grid=grid, flower_run_id=context.run_id).run()
        else:
            FederatedRun(config=config, settings=settings, grid=grid, flower_run_id=context.run_id).run()
    except Exception as error:
        log.exception("federated run %s failed", config.run_id)
        try:
            status = read_status(settings.home, config.run_id)
        except FileNotFoundError:
            status = {"run_id": config.run_id, "flower_run_id": context.run_id, "rounds": []}
        write_status(settings.home, config.run_id, {**status, "state": State.FAILED,
                                                    "detail": f"{type(error).__name__}: {error}",
                                                    "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        raise
