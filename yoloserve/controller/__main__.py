"""``python -m yoloserve.controller run``: the control plane's process (compose, Kubernetes,
``make demo``'s ``trainer`` program)."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from types import FrameType
from typing import Annotated

import typer

from yoloserve.controller.lease.factory import lease_from_settings
from yoloserve.controller.loop import Controller
from yoloserve.controller.rollouts import RolloutWorker
from yoloserve.controller.settings import ControllerSettings
from yoloserve.modelserver.registry import open_registry
from yoloserve.retrain.settings import RetrainSettings
from yoloserve.retrain.steps import deployer_for
from yoloserve.retrain.trainer import Trainer
from yoloserve.store.engine import open_store

app = typer.Typer(add_completion=False, help=__doc__, no_args_is_help=True)


@app.callback()
def main() -> None:
    """The controller: one acts (it holds the lease), the others stand by."""


@app.command()
def run(
    controller_id: Annotated[
        str | None, typer.Option(help="This controller's identity; none: CONTROLLER_ID or "
                                 "host + random")
    ] = None,
) -> None:
    """Compete for the lease; while holding it, run queued jobs one at a time, until SIGTERM."""
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = ControllerSettings()
    if controller_id:
        settings = settings.model_copy(update={"id": controller_id})
    retrain = RetrainSettings()
    store = open_store(retrain.store.url)
    registry = open_registry(store)
    trainer = Trainer(retrain, registry, trainer_id=settings.id)
    rollouts = RolloutWorker(registry, deployer_for(retrain, registry))
    controller = Controller(lease_from_settings(settings, store), trainer, rollouts,
                            poll_s=retrain.trainer_poll_s)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        # As the trainer did: SystemExit in the main thread, so a job being run is recorded
        # failed at once (not left to the next controller's reaping), then the lease is
        # released on the way out and a standby acts without waiting for its expiry.
        stop.set()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        controller.run_forever(stop)
    except SystemExit as exc:
        logging.getLogger("yoloserve.controller").info(
            "controller %s stopped by signal (%s)", settings.id, exc.code)


if __name__ == "__main__":
    app()
