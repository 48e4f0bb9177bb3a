"""Start and stop a real local TorchServe, isolated in its own run folder.

Everything a TorchServe run writes goes under ``run_dir``: the derived ``config.properties``
(``serving/config.properties`` with this run's addresses, model store and models), ``TEMP`` /
``TMPDIR`` (unpacked ``.mar`` files and TorchServe's own pid file), ``LOG_LOCATION`` and
``METRICS_LOCATION`` (logs), and ``torchserve.json`` (our pid file, with the ports). Two runs with
different folders and ports never collide, which is what parallel tests need.

The frontend is started as ``torchserve --start --foreground`` from this interpreter's
environment: TorchServe 0.12 passes the Python that ran the ``torchserve`` script
(``sys.executable``) to the Java frontend as the workers' Python, so the workers use this venv.
It runs in a new session, so stopping it signals the whole process group: launcher, Java frontend
and Python workers.

Example:
    >>> with TorchServeProcess(Path(".run/ts"), *free_ports(3),
    ...                        models_to_load={"yolo": "yolo_v1.mar"}) as ts:  # doctest: +SKIP
    ...     httpx.put(f"{ts.inference_url}/predictions/yolo", content=image_bytes)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import psutil

from yoloserve.paths import SERVING_DIR, STORE_DIR

BASE_CONFIG = SERVING_DIR / "config.properties"
STATE_FILE = "torchserve.json"
LOG_FILE = "torchserve.out"


class TorchServeError(RuntimeError):
    """TorchServe did not start, died, or did not become ready in time."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct free ports (held open together so the OS cannot hand out one twice)."""
    socks = []
    try:
        for _ in range(n):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            socks.append(sock)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


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
    """One local TorchServe: context manager, or ``start()``/``wait_ready()``/``stop()``.

    Args:
        run_dir: folder for this run's config, temp files, logs and pid file.
        inference_port: port of the inference API.
        management_port: port of the management API.
        metrics_port: port of the metrics API.
        model_store: folder with the ``.mar`` files.
        models_to_load: model name -> ``.mar`` file name in the store, loaded at start.
        host: address all three APIs bind to (keep it loopback: auth is off).
        base_config: properties file the derived one starts from.
        extra_properties: keys to add or override in the derived config.
        startup_timeout: seconds ``wait_ready`` waits by default.
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
        base_config: Path = BASE_CONFIG,
        extra_properties: Mapping[str, str] | None = None,
        startup_timeout: float = 180.0,
    ) -> None:
        self.run_dir = Path(run_dir).resolve()
        self.inference_port = inference_port
        self.management_port = management_port
        self.metrics_port = metrics_port
        self.model_store = Path(model_store).resolve()
        self.models_to_load = dict(models_to_load or {})
        self.host = host
        self.base_config = Path(base_config)
        self.extra_properties = dict(extra_properties or {})
        self.startup_timeout = startup_timeout
        self.pid: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None

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

    # ------------------------------------------------------------------------------ lifecycle

    def write_config(self) -> Path:
        """Write this run's ``config.properties`` and return its path."""
        props = read_properties(self.base_config) if self.base_config.is_file() else {}
        props.update(
            inference_address=self.inference_url,
            management_address=self.management_url,
            metrics_address=self.metrics_url,
            model_store=str(self.model_store),
        )
        if self.models_to_load:
            props["load_models"] = ",".join(f"{n}={m}" for n, m in self.models_to_load.items())
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

    def environment(self) -> dict[str, str]:
        """The environment TorchServe (and so its workers) runs with."""
        tmp = self.run_dir / "tmp"
        env = dict(os.environ)
        env.update(
            TEMP=str(tmp),
            TMPDIR=str(tmp),
            LOG_LOCATION=str(self.log_dir),
            METRICS_LOCATION=str(self.log_dir),
            PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
            YOLO_OFFLINE="1",
            YOLO_CONFIG_DIR=str(self.run_dir / "ultralytics"),
        )
        # Idle OpenMP threads sleep instead of spinning: on a small CPU shared with the gateway
        # or a training job, spinning threads made a 2-thread forward 10-30x slower (measured).
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        return env

    def start(self) -> None:
        """Launch TorchServe in the background (returns at once; see ``wait_ready``).

        Raises:
            TorchServeError: it is already running from this run folder.
        """
        if self.is_running():
            raise TorchServeError(f"TorchServe already runs from {self.run_dir} (pid {self.pid})")
        for sub in ("tmp", "logs", "ultralytics"):
            (self.run_dir / sub).mkdir(parents=True, exist_ok=True)
        self.write_config()
        cmd = [
            _bin("torchserve"),
            "--start",
            "--foreground",  # the launcher lives as long as the frontend: one pid to watch
            "--ts-config", str(self.config_path),
            "--model-store", str(self.model_store),
            "--ncs",  # no config snapshots: a run never resurrects models of an earlier one
            "--disable-token-auth",
            "--enable-model-api",
        ]
        with open(self.run_dir / LOG_FILE, "ab") as out:
            self._proc = subprocess.Popen(
                cmd,
                cwd=self.run_dir,  # TorchServe drops files in its working folder
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() reaches the workers too
            )
        self.pid = self._proc.pid
        self._write_state()

    def _write_state(self) -> None:
        state = {
            "pid": self.pid,
            "inference_port": self.inference_port,
            "management_port": self.management_port,
            "metrics_port": self.metrics_port,
            "host": self.host,
            "model_store": str(self.model_store),
            "models_to_load": self.models_to_load,
        }
        (self.run_dir / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")

    @classmethod
    def attach(cls, run_dir: Path) -> TorchServeProcess | None:
        """The TorchServe a previous ``start()`` left running from ``run_dir``, if any."""
        try:
            state = json.loads((Path(run_dir) / STATE_FILE).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        ts = cls(
            run_dir,
            state["inference_port"],
            state["management_port"],
            state["metrics_port"],
            Path(state["model_store"]),
            state.get("models_to_load"),
            host=state.get("host", "127.0.0.1"),
        )
        ts.pid = int(state["pid"])
        return ts

    def is_running(self) -> bool:
        """Whether our launcher process is alive (and is really ours, not a recycled pid)."""
        if self._proc is not None:
            return self._proc.poll() is None
        if self.pid is None:
            return False
        try:
            proc = psutil.Process(self.pid)
            return proc.status() != psutil.STATUS_ZOMBIE and any(
                "torchserve" in part for part in proc.cmdline()
            )
        except psutil.Error:
            return False

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the API answers and every model to load has a READY worker.

        Raises:
            TorchServeError: the process died, or ``timeout`` passed; with the log's tail.
        """
        timeout = self.startup_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if not self.is_running():
                    raise TorchServeError(f"TorchServe exited during start\n{self.log_tail()}")
                if self._ready(client):
                    return
                time.sleep(0.25)
        raise TorchServeError(f"TorchServe not ready after {timeout} s\n{self.log_tail()}")

    def _ready(self, client: httpx.Client) -> bool:
        try:
            if client.get(f"{self.inference_url}/ping").status_code != 200:
                return False
            for name in self.models_to_load:
                resp = client.get(f"{self.management_url}/models/{name}")
                if resp.status_code != 200:
                    return False
                workers = [w for desc in resp.json() for w in desc.get("workers", [])]
                if not any(w.get("status") == "READY" for w in workers):
                    return False
        except httpx.HTTPError:
            return False
        return True

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the whole process group: SIGTERM, then SIGKILL after ``timeout`` seconds."""
        if self.pid is None:
            return
        if self.is_running():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            if not self._wait_group_gone(timeout):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self._wait_group_gone(5.0)
        if self._proc is not None:
            self._proc.wait(timeout=5.0)  # reap it: no zombie left behind
        (self.run_dir / STATE_FILE).unlink(missing_ok=True)
        self.pid, self._proc = None, None

    def _wait_group_gone(self, timeout: float) -> bool:
        assert self.pid is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None:
                self._proc.poll()  # reap the launcher so the group can empty
            try:
                os.killpg(self.pid, 0)
            except ProcessLookupError:
                return True
            if self._proc is None and not self._group_has_live_members():
                return True
            time.sleep(0.1)
        return False

    def _group_has_live_members(self) -> bool:
        # A group whose members are all zombies (reaped by nobody we own) counts as gone.
        assert self.pid is not None
        for proc in psutil.process_iter(["status"]):
            with contextlib.suppress(psutil.Error):
                if os.getpgid(proc.pid) == self.pid and proc.info["status"] != "zombie":
                    return True
        return False

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the launcher output and of TorchServe's own log."""
        parts = []
        for path in (self.run_dir / LOG_FILE, self.log_dir / "ts_log.log"):
            with contextlib.suppress(FileNotFoundError):
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path}\n" + "\n".join(text))
        return "\n".join(parts)

    def __enter__(self) -> TorchServeProcess:
        self.start()
        try:
            self.wait_ready()
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

    def describe(self) -> dict[str, Any]:
        """A summary for status output: pid, URLs, whether the API answers."""
        try:
            healthy = httpx.get(f"{self.inference_url}/ping", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            healthy = False
        return {
            "pid": self.pid,
            "running": self.is_running(),
            "healthy": healthy,
            "inference": self.inference_url,
            "management": self.management_url,
            "metrics": self.metrics_url,
            "run_dir": str(self.run_dir),
        }
