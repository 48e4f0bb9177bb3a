"""A throw-away platform on free ports: a real TorchServe serving the weights' ``.mar`` and the
real gateway (``python -m gateway``) in front, over an isolated copy of ``models/`` and ``data/``.

The integration tests (``tests/integration/conftest.py``) and the benchmark (``python -m
benchmarks``) both need exactly this, and neither may touch the developer's registry, CSVs or a
running ``make demo``: everything lives under ``root`` and the processes are pointed at it with
``YOLOSERVE_*`` and ``GATEWAY_*`` variables. The processes run under the stack's own supervisord
(:mod:`devstack.supervisor`), the same launch code as ``make demo``: a service that crashes is
restarted, as in the demo. The controller (``python -m yoloserve.controller run``, which
carries out the retrain and activation intents the gateway records) is the program ``trainer``:
:meth:`start_trainer` (again, with other ``RETRAIN_*``) / :meth:`stop_trainer`.

Example:
    >>> with LocalStack.create(Path("/tmp/stack")) as stack:  # doctest: +SKIP
    ...     httpx.post(f"{stack.gateway_url}/predict", files={"file": open("a.jpg", "rb")})
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import TracebackType

from devstack.ports import free_ports
from devstack.supervisor import Program, Supervisor
from devstack.torchserve import TorchServeProcess
from devstack.waiting import NotReady, url_ready
from yoloserve import paths
from yoloserve.modelserver.export import DEFAULT_RUNTIME
from yoloserve.modelserver.packaging import MODEL_CONFIG, MODEL_NAME, AccuracySet, package
from yoloserve.modelserver.registry import ModelVersion, Registry
from yoloserve.retrain.heartbeat import is_fresh, read_heartbeats
from yoloserve.retrain.settings import RetrainSettings
from yoloserve.store.engine import open_store
from yoloserve.store.settings import DEFAULT_FILE_NAME, sqlite_url

TRAINER = "trainer"


def _copy_models(dst: Path, weights: Path, embedder_dir: Path) -> None:
    (dst / "default").mkdir(parents=True)
    shutil.copy(weights, dst / "default" / "best.pt")
    metrics = weights.with_name("metrics.json")  # the registry records it with the version
    if metrics.is_file():
        shutil.copy(metrics, dst / "default" / "metrics.json")
    shutil.copytree(embedder_dir, dst / "embedder")
    (dst / "store").mkdir()


@dataclass
class LocalStack:
    """Where everything of one isolated platform lives, and its two processes.

    Build it with :meth:`create`, then :meth:`start_torchserve` and :meth:`start_gateway` (or use
    it as a context manager, which does both and :meth:`stop` at the end).
    """

    root: Path
    models_dir: Path
    data_dir: Path
    run_dir: Path
    torchserve: TorchServeProcess
    first_version: ModelVersion
    user_key: str = "local-user-key"
    admin_key: str = "local-admin-key"
    gateway_url: str = ""
    gateway_env: dict[str, str] = field(default_factory=dict)
    # Set last in environment(): e.g. RETRAIN_* for the gateway and the jobs it starts (the
    # benchmark keeps feedback from triggering retrains). Takes effect at the next gateway start.
    extra_env: dict[str, str] = field(default_factory=dict)
    programs: dict[str, Program] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        root: Path,
        *,
        weights: Path = paths.DEFAULT_WEIGHTS,
        embedder_dir: Path = paths.EMBEDDER_DIR,
        samples_dir: Path = paths.SAMPLES_DIR,
        user_key: str = "local-user-key",
        admin_key: str = "local-admin-key",
        model_config: Path | None = None,
        ts_properties: Mapping[str, str] | None = None,
        extra_env: Mapping[str, str] | None = None,
        runtime: str = DEFAULT_RUNTIME,
        calibration: Sequence[Path] | None = None,
        accuracy_set: AccuracySet | None = None,
    ) -> LocalStack:
        """Copy the models and samples under ``root``, package ``weights``; start nothing yet.

        Args:
            root: an empty (or missing) folder that will hold models/, data/ and run/.
            weights: Ultralytics weights, packaged as version 1 of the isolated registry.
            embedder_dir: the embedder artifact folder the gateway loads.
            samples_dir: sample images copied to ``data/samples``.
            user_key: the gateway's user API key.
            admin_key: the gateway's admin API key.
            model_config: a per-model YAML to pack instead of ``serving/model-config.yaml``
                (the benchmark tries other batch sizes, workers and threads with it).
            ts_properties: ``config.properties`` keys to override for this TorchServe.
            extra_env: environment variables of the gateway (and of the jobs and CLIs run with
                :meth:`environment`), set over everything else.
            runtime: what version 1 runs (``yoloserve.modelserver.export.RUNTIMES``, or auto).
            calibration, accuracy_set: an INT8 runtime's (or auto's) calibration images and
                gate set (``yoloserve.modelserver.packaging.package``).
        """
        root = Path(root)
        models_dir, data_dir, run_dir = root / "models", root / "data", root / "run"
        _copy_models(models_dir, Path(weights), Path(embedder_dir))
        data_dir.mkdir(parents=True)
        if Path(samples_dir).is_dir():
            shutil.copytree(samples_dir, data_dir / "samples")
        run_dir.mkdir(parents=True)
        record = package(
            models_dir / "default" / "best.pt",
            Registry(open_store(sqlite_url(data_dir / DEFAULT_FILE_NAME))),
            store_dir=models_dir / "store",
            runtime=runtime,
            config_file=model_config or MODEL_CONFIG,
            calibration=calibration,
            accuracy_set=accuracy_set,
        )
        inference, management, metrics = free_ports(3)
        ts = TorchServeProcess(
            run_dir / "torchserve",
            inference,
            management,
            metrics,
            model_store=models_dir / "store",
            models_to_load={MODEL_NAME: record.mar},
            database_url=sqlite_url(data_dir / DEFAULT_FILE_NAME),
            extra_properties=dict(ts_properties or {}),
        )
        return cls(root, models_dir, data_dir, run_dir, ts, record, user_key, admin_key,
                   extra_env=dict(extra_env or {}))

    @property
    def registry(self) -> Registry:
        """The isolated registry."""
        return Registry(open_store(self.database_url))

    @property
    def database_url(self) -> str:
        """The stack's own store: an SQLite file in its data folder."""
        return sqlite_url(self.data_dir / DEFAULT_FILE_NAME)

    @property
    def store_dir(self) -> Path:
        """The isolated TorchServe model store."""
        return self.models_dir / "store"

    @property
    def weights(self) -> Path:
        """The copy of the weights version 1 was packaged from."""
        return self.models_dir / "default" / "best.pt"

    # ------------------------------------------------------------------------------ processes

    @cached_property
    def supervisor(self) -> Supervisor:
        """The stack's supervisord (config, socket and service logs under ``run/supervisor``)."""
        return Supervisor(self.run_dir / "supervisor")

    def _apply(self) -> None:
        self.supervisor.apply(list(self.programs.values()))

    def start_program(self, program: Program, timeout: float) -> float:
        """Run ``program`` under the stack's supervisord too and wait until it is ready.

        Returns:
            Seconds it took to become ready.

        Raises:
            NotReady: it exited or was not ready in time (the message has its log's tail).
        """
        self.programs[program.name] = program
        self._apply()
        return self.supervisor.wait_ready(program.name, timeout)

    def remove_programs(self, names: list[str]) -> None:
        """Stop these programs (started with :meth:`start_program`) and take them off the
        stack, so no later start brings them back."""
        removed = [self.programs.pop(name, None) for name in names]
        if any(p is not None for p in removed) and self.supervisor.is_running():
            self._apply()

    def start_torchserve(self, timeout: float = 300.0) -> None:
        """Start TorchServe and wait until the model has a READY worker.

        Raises:
            NotReady: it died or was not ready in time (the message has its log's tail).
        """
        try:
            self.start_program(self.torchserve.program(), timeout)
        except NotReady as exc:
            raise NotReady(f"{exc}\n{self.torchserve.log_tail()}") from exc

    def environment(self, gateway_port: int) -> dict[str, str]:
        """Environment of a gateway (or retrain job, or CLI) that belongs to this stack."""
        return {**os.environ, **self.gateway_variables(gateway_port)}

    def gateway_variables(self, gateway_port: int) -> dict[str, str]:
        """The variables that point a gateway (or job, or CLI) at this stack."""
        env = dict(
            YOLOSERVE_MODELS_DIR=str(self.models_dir),
            YOLOSERVE_DATA_DIR=str(self.data_dir),
            YOLOSERVE_RUN_DIR=str(self.run_dir),
            YOLO_OFFLINE="1",
            GATEWAY_HOST="127.0.0.1",
            GATEWAY_PORT=str(gateway_port),
            TORCHSERVE_INFERENCE_URL=self.torchserve.inference_url,
            TORCHSERVE_MANAGEMENT_URL=self.torchserve.management_url,
            STORE_DATABASE_URL=self.database_url,
            GATEWAY_EMBEDDER_PATH=str(self.models_dir / "embedder" / "embedder.npz"),
            GATEWAY_API_KEYS=self.user_key,
            GATEWAY_ADMIN_API_KEYS=self.admin_key,
            GATEWAY_LOG_LEVEL="warning",
        )
        env.update(self.extra_env)
        return env

    def start_gateway(self, timeout: float = 90.0) -> None:
        """Start ``python -m gateway`` on a free port and wait for its ``/ready``.

        Raises:
            NotReady: the gateway exited during start or ``/ready`` did not answer 200 in time.
        """
        (port,) = free_ports(1)
        self.gateway_env = self.environment(port)
        self.gateway_url = f"http://127.0.0.1:{port}"
        program = Program(
            "gateway",
            [sys.executable, "-m", "gateway"],
            env=self.gateway_variables(port),
            cwd=paths.ROOT,
            ready=url_ready(f"{self.gateway_url}/ready"),
        )
        self.start_program(program, timeout)

    def stop_gateway(self) -> None:
        """Stop the gateway process (SIGTERM, then SIGKILL)."""
        if "gateway" in self.programs and self.supervisor.is_running():
            self.supervisor.stop("gateway")

    def trainer_variables(self, retrain_env: Mapping[str, str] | None = None) -> dict[str, str]:
        """The trainer's variables: this stack's paths and TorchServe, then ``extra_env``, then
        ``retrain_env`` (the ``RETRAIN_*`` of the jobs it runs)."""
        env = dict(
            YOLOSERVE_MODELS_DIR=str(self.models_dir),
            YOLOSERVE_DATA_DIR=str(self.data_dir),
            YOLOSERVE_RUN_DIR=str(self.run_dir),
            YOLO_OFFLINE="1",
            OMP_WAIT_POLICY="PASSIVE",
            RETRAIN_LAUNCHER="queue",
            TORCHSERVE_INFERENCE_URL=self.torchserve.inference_url,
            TORCHSERVE_MANAGEMENT_URL=self.torchserve.management_url,
            STORE_DATABASE_URL=self.database_url,
            CONTROLLER_LEASE_BACKEND="store",
        )
        env.update(self.extra_env)
        env.update(retrain_env or {})
        return env

    def start_trainer(
        self, retrain_env: Mapping[str, str] | None = None, timeout: float = 60.0
    ) -> None:
        """Start the controller under the stack's supervisord; ready once it acts (beats).

        Args:
            retrain_env: ``RETRAIN_*`` of the jobs it runs (a queued job runs with the trainer's
                settings, not its starter's); a running trainer with other ones is restarted.
            timeout: seconds to wait for its first heartbeat.

        Raises:
            NotReady: it exited or did not beat in time (the message has its log's tail).
        """
        env = self.trainer_variables(retrain_env)
        settings = RetrainSettings(run_dir=self.run_dir)

        def beating() -> bool:
            pid = self.supervisor.pid(TRAINER)
            return any(b.pid == pid and is_fresh(b, settings) for b in read_heartbeats(settings))

        program = Program(TRAINER, [sys.executable, "-m", "yoloserve.controller", "run"],
                          env=env, cwd=paths.ROOT, ready=beating)
        self.start_program(program, timeout)

    def stop_trainer(self) -> None:
        """Stop the trainer and take it off the stack (a job it runs is recorded failed)."""
        if self.programs.pop(TRAINER, None) is not None and self.supervisor.is_running():
            self._apply()  # gone from the config: stopped, and not started again by apply()

    def trainer_pid(self) -> int | None:
        """The running trainer's pid."""
        return self.supervisor.pid(TRAINER) if TRAINER in self.programs else None

    def trainer_log(self) -> str:
        """The tail of the trainer's output."""
        return self.supervisor.log_tail(TRAINER, 60)

    def stop(self) -> None:
        """Stop every program (gateway and TorchServe, each with its process group), then
        supervisord."""
        self.supervisor.shutdown()

    def gateway_log(self) -> str:
        """The tail of the gateway's output."""
        return self.supervisor.log_tail("gateway", 60)

    def __enter__(self) -> LocalStack:
        try:
            self.start_torchserve()
            self.start_gateway()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
