"""A real local TorchServe, isolated in its own run folder, run as a supervised program.

:class:`TorchServeProcess` describes one TorchServe (ports, model store, registry, run folder) and
gives supervisord its :class:`~devstack.supervisor.Program`: ``python -m devstack.torchserve
--run-dir DIR``. That entry point is what makes a restart come back right. On every start it

1. kills what an earlier start of the same run folder left behind (when the launcher itself was
   SIGKILLed, its Java frontend and Python workers live on in the old process group and would
   keep the ports);
2. derives ``config.properties`` from ``serving/config.properties`` with this run's addresses and
   model store, and ``load_models`` = **the registry's default version** (falling back to the
   archive the run was created with when the registry has none), so a TorchServe restarted after
   a crash serves what the platform last promoted, not what it first started with;
3. replaces itself with ``torchserve --start --foreground`` (same pid: supervisord watches the
   launcher, which lives exactly as long as the frontend).

Everything a run writes goes under ``run_dir``: the derived config, ``TEMP``/``TMPDIR`` (unpacked
``.mar`` files and TorchServe's own pid file), ``LOG_LOCATION``/``METRICS_LOCATION`` (logs). Two
runs with different folders and ports never collide. TorchServe 0.12 passes the Python that ran
the ``torchserve`` script to the Java frontend as the workers' Python, so the workers use this
venv.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from devstack.ports import free_ports
from devstack.supervisor import Program, group_members, kill_groups
from yoloserve import paths
from yoloserve.errors import YoloServeError
from yoloserve.modelserver.packaging import MODEL_NAME
from yoloserve.modelserver.registry import Registry
from yoloserve.paths import SERVING_DIR, STORE_DIR
from yoloserve.store.engine import open_store

BASE_CONFIG = SERVING_DIR / "config.properties"
SPEC_FILE = "torchserve.json"
PGID_FILE = "torchserve.pgid"



def read_properties(path: Path) -> dict[str, str]:
    """``key=value`` lines of a Java properties file (comments and blanks skipped)."""
    props: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")) and "=" in line:
            key, value = line.split("=", 1)
            props[key.strip()] = value.strip()
    return props


def _bin(name: str) -> str:
    # Scripts of this interpreter's environment: their shebang is this venv's python.
    return str(Path(sys.executable).parent / name)


class TorchServeProcess:
    """One local TorchServe: where it lives, how supervisord starts it, whether it is ready.

    Args:
        run_dir: folder for this run's spec, config, temp files and logs.
        inference_port: port of the inference API.
        management_port: port of the management API.
        metrics_port: port of the metrics API.
        model_store: folder with the ``.mar`` files.
        models_to_load: model name -> ``.mar`` in the store, used when the registry has no
            default version.
        host: address all three APIs bind to (keep it loopback: auth is off).
        database_url: the store whose default version each start loads (empty:
            ``STORE_DATABASE_URL`` or the SQLite default).
        base_config: properties file the derived one starts from.
        extra_properties: keys to add or override in the derived config.
    """

    def __init__(
        self,
        run_dir: Path,
        inference_port: int = 8085,
        management_port: int = 8086,
        metrics_port: int = 8087,
        model_store: Path = STORE_DIR,
        models_to_load: Mapping[str, str] | None = None,
        *,
        host: str = "127.0.0.1",
        database_url: str = "",
        base_config: Path = BASE_CONFIG,
        extra_properties: Mapping[str, str] | None = None,
    ) -> None:
        self.run_dir = Path(run_dir).resolve()
        self.inference_port = inference_port
        self.management_port = management_port
        self.metrics_port = metrics_port
        self.model_store = Path(model_store).resolve()
        self.models_to_load = dict(models_to_load or {})
        self.host = host
        self.database_url = database_url
        self.base_config = Path(base_config)
        self.extra_properties = dict(extra_properties or {})

    # ------------------------------------------------------------------------------ addresses

    @property
    def inference_url(self) -> str:
        """Base URL of the inference API."""
        return f"http://{self.host}:{self.inference_port}"

    @property
    def management_url(self) -> str:
        """Base URL of the management API."""
        return f"http://{self.host}:{self.management_port}"

    @property
    def metrics_url(self) -> str:
        """Base URL of the metrics API."""
        return f"http://{self.host}:{self.metrics_port}"

    @property
    def log_dir(self) -> Path:
        """Where TorchServe writes ts_log.log, model_log.log, access_log.log, ..."""
        return self.run_dir / "logs"

    @property
    def config_path(self) -> Path:
        """The derived config.properties of this run."""
        return self.run_dir / "config.properties"

    # ------------------------------------------------------------------- spec and supervision

    def spec(self) -> dict[str, Any]:
        """Everything a start needs, as JSON-able values (written to ``torchserve.json``)."""
        return {
            "inference_port": self.inference_port,
            "management_port": self.management_port,
            "metrics_port": self.metrics_port,
            "host": self.host,
            "model_store": str(self.model_store),
            "models_to_load": self.models_to_load,
            "database_url": self.database_url,
            "base_config": str(self.base_config),
            "extra_properties": self.extra_properties,
        }

    @classmethod
    def from_run_dir(cls, run_dir: Path) -> TorchServeProcess:
        """The TorchServe whose spec was written to ``run_dir``.

        Raises:
            FileNotFoundError: no spec there.
        """
        spec = json.loads((Path(run_dir) / SPEC_FILE).read_text())
        return cls(
            run_dir, spec["inference_port"], spec["management_port"], spec["metrics_port"],
            Path(spec["model_store"]), spec.get("models_to_load"), host=spec["host"],
            database_url=spec["database_url"], base_config=Path(spec["base_config"]),
            extra_properties=spec.get("extra_properties"),
        )

    def program(self, name: str = "torchserve") -> Program:
        """The supervised program; writes the spec its starts read."""
        for sub in ("tmp", "logs", "ultralytics"):
            (self.run_dir / sub).mkdir(parents=True, exist_ok=True)
        (self.run_dir / SPEC_FILE).write_text(json.dumps(self.spec(), indent=2) + "\n")
        return Program(
            name,
            [sys.executable, "-m", "devstack.torchserve", "--run-dir", str(self.run_dir)],
            env=self.environment(),
            cwd=paths.ROOT,  # where `-m devstack.torchserve` is found; it then moves to run_dir
            ready=self.is_ready,
            stop_wait_s=30,
            start_secs=3,
        )

    def environment(self) -> dict[str, str]:
        """Variables TorchServe (and so its workers) runs with, on top of the caller's."""
        tmp = self.run_dir / "tmp"
        return {
            "TEMP": str(tmp),
            "TMPDIR": str(tmp),
            "LOG_LOCATION": str(self.log_dir),
            "METRICS_LOCATION": str(self.log_dir),
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
            "YOLO_OFFLINE": "1",
            "YOLO_CONFIG_DIR": str(self.run_dir / "ultralytics"),
            # Idle OpenMP threads sleep instead of spinning: on a small CPU shared with the
            # gateway or a training job, spinning made a 2-thread forward 10-30x slower.
            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
        }

    # --------------------------------------------------------------------------- one start

    def models_for_start(self) -> dict[str, str]:
        """Model name -> ``.mar`` to load now: the registry's default version if it has one."""
        # An unreadable registry, or a default it does not know: the fallback.
        with contextlib.suppress(YoloServeError, ValidationError, OSError, SQLAlchemyError):
            data = Registry(open_store(self.database_url or None)).load()
            if data.default_version is not None:
                mar = data.get(data.default_version).mar
                if (self.model_store / mar).is_file():
                    return {MODEL_NAME: mar}
        return dict(self.models_to_load)

    def write_config(self) -> Path:
        """Write this start's ``config.properties`` and return its path."""
        props = read_properties(self.base_config) if self.base_config.is_file() else {}
        props.update(
            inference_address=self.inference_url,
            management_address=self.management_url,
            metrics_address=self.metrics_url,
            model_store=str(self.model_store),
        )
        models = self.models_for_start()
        if models:
            props["load_models"] = ",".join(f"{n}={m}" for n, m in models.items())
        else:
            props.pop("load_models", None)
        props.update(self.extra_properties)
        # TorchServe always opens two gRPC APIs (7070/7071 by default; no key turns them off)
        # and exits at start when another TorchServe holds them, e.g. `make demo` beside the
        # tests or the benchmark. Nothing here speaks gRPC, so any free ports will do.
        grpc_keys = ("grpc_inference_port", "grpc_management_port")
        for key, port in zip(grpc_keys, free_ports(2, self.host), strict=True):
            props.setdefault(key, str(port))
        lines = [f"# derived from {self.base_config} by devstack.torchserve; do not edit"]
        lines += [f"{key}={value}" for key, value in props.items()]
        self.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return self.config_path

    def kill_leftovers(self, timeout: float = 10.0) -> list[int]:
        """SIGKILL what is left of the previous start's process group; returns the pids killed."""
        try:
            old = int((self.run_dir / PGID_FILE).read_text().strip())
        except (FileNotFoundError, ValueError):
            return []
        if old == os.getpgid(0):
            return []
        return kill_groups(group_members({old}), timeout)

    def command(self) -> list[str]:
        """The TorchServe launcher's argv for this run."""
        return [
            _bin("torchserve"),
            "--start",
            "--foreground",  # the launcher lives as long as the frontend: one pid to watch
            "--ts-config", str(self.config_path),
            "--model-store", str(self.model_store),
            "--ncs",  # no config snapshots: the registry, not TorchServe, remembers versions
            "--disable-token-auth",
            "--enable-model-api",
        ]

    def exec_foreground(self) -> None:
        """One supervised start: clean up, write the config, become the TorchServe launcher."""
        killed = self.kill_leftovers()
        if killed:
            print(f"killed leftovers of the previous start: {killed}", flush=True)
        (self.run_dir / PGID_FILE).write_text(f"{os.getpgid(0)}\n")
        self.write_config()
        print(f"starting TorchServe with {self.models_for_start()}", flush=True)
        os.chdir(self.run_dir)  # TorchServe drops files in its working folder
        os.execve(self.command()[0], self.command(), {**os.environ, **self.environment()})

    # ---------------------------------------------------------------------------- readiness

    def is_ready(self, model_names: Sequence[str] = (MODEL_NAME,)) -> bool:
        """Whether the API answers and each model has a READY worker."""
        try:
            with httpx.Client(timeout=2.0) as client:
                if client.get(f"{self.inference_url}/ping").status_code != 200:
                    return False
                for name in model_names:
                    resp = client.get(f"{self.management_url}/models/{name}")
                    if resp.status_code != 200:
                        return False
                    workers = [w for desc in resp.json() for w in desc.get("workers", [])]
                    if not any(w.get("status") == "READY" for w in workers):
                        return False
        except (httpx.HTTPError, ValueError):
            return False
        return True

    def served_versions(self, model_name: str = MODEL_NAME) -> list[dict[str, Any]]:
        """Every registered version of ``model_name`` with its worker states (empty if down)."""
        try:
            resp = httpx.get(f"{self.management_url}/models/{model_name}/all", timeout=5.0)
            if resp.status_code != 200:
                return []
            return [
                {"version": m.get("modelVersion"),
                 "workers": [w.get("status") for w in m.get("workers", [])]}
                for m in resp.json()
            ]
        except (httpx.HTTPError, ValueError):
            return []

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of TorchServe's own log."""
        path = self.log_dir / "ts_log.log"
        try:
            text = path.read_text(errors="replace").splitlines()[-lines:]
        except FileNotFoundError:
            return ""
        return f"--- {path}\n" + "\n".join(text)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m devstack.torchserve --run-dir DIR``: one supervised TorchServe start."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="folder with torchserve.json")
    args = parser.parse_args(argv)
    TorchServeProcess.from_run_dir(args.run_dir).exec_foreground()


if __name__ == "__main__":
    main()
