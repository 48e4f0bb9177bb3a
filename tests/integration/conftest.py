"""A real platform for integration tests: a real TorchServe on free ports, serving the real
``.mar`` of the shipped weights, and the real gateway (``python -m gateway``, uvicorn) in front.

Everything lives in an isolated copy of ``models/`` and ``data/`` under a temporary folder, so a
test run never touches the developer's registry, CSVs or a running ``make demo``. The stack is
started once per session (TorchServe takes ~10-30 s to load a worker on 2 cores).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from yoloserve import paths
from yoloserve.packaging import MODEL_NAME, package
from yoloserve.registry import ModelVersion, Registry
from yoloserve.ts_process import TorchServeProcess, free_ports

ADMIN_KEY = "test-admin-key"
USER_KEY = "test-user-key"


@dataclass
class Stack:
    """Where everything of one integration platform lives."""

    root: Path
    models_dir: Path
    data_dir: Path
    run_dir: Path
    torchserve: TorchServeProcess
    first_version: ModelVersion
    gateway_url: str = ""
    gateway_env: dict[str, str] = field(default_factory=dict)
    gateway_proc: subprocess.Popen[bytes] | None = None

    @property
    def registry(self) -> Registry:
        return Registry(self.models_dir / "registry.json")

    @property
    def store_dir(self) -> Path:
        return self.models_dir / "store"

    @property
    def weights(self) -> Path:
        return self.models_dir / "default" / "best.pt"

    def gateway_log(self) -> str:
        log = self.run_dir / "gateway.log"
        return log.read_text(errors="replace")[-4000:] if log.is_file() else ""


def _copy_models(dst: Path) -> None:
    (dst / "default").mkdir(parents=True)
    for name in ("best.pt", "metrics.json"):
        if (paths.MODELS_DIR / "default" / name).is_file():
            shutil.copy(paths.MODELS_DIR / "default" / name, dst / "default" / name)
    shutil.copytree(paths.EMBEDDER_DIR, dst / "embedder")
    (dst / "store").mkdir()


def _copy_data(dst: Path) -> None:
    dst.mkdir(parents=True)
    shutil.copytree(paths.SAMPLES_DIR, dst / "samples")


def stack_environment(stack: Stack, gateway_port: int) -> dict[str, str]:
    """Environment of a gateway (or retrain job, or CLI) that belongs to ``stack``."""
    env = dict(os.environ)
    env.update(
        YOLOSERVE_MODELS_DIR=str(stack.models_dir),
        YOLOSERVE_DATA_DIR=str(stack.data_dir),
        YOLOSERVE_RUN_DIR=str(stack.run_dir),
        YOLO_OFFLINE="1",
        GATEWAY_HOST="127.0.0.1",
        GATEWAY_PORT=str(gateway_port),
        GATEWAY_TORCHSERVE_INFERENCE_URL=stack.torchserve.inference_url,
        GATEWAY_TORCHSERVE_MANAGEMENT_URL=stack.torchserve.management_url,
        GATEWAY_REGISTRY_PATH=str(stack.models_dir / "registry.json"),
        GATEWAY_EMBEDDER_PATH=str(stack.models_dir / "embedder" / "embedder.npz"),
        GATEWAY_API_KEYS=USER_KEY,
        GATEWAY_ADMIN_API_KEYS=ADMIN_KEY,
        GATEWAY_LOG_LEVEL="warning",
    )
    return env


def wait_ready(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``url`` until it answers 200 (fails fast if ``proc`` died)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} was ready")
        try:
            response = httpx.get(url, timeout=5)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:200]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready after {timeout} s: {last}")


def start_gateway(stack: Stack) -> None:
    """Start ``python -m gateway`` for ``stack`` on a free port and wait for ``/ready``."""
    (port,) = free_ports(1)
    stack.gateway_env = stack_environment(stack, port)
    stack.gateway_url = f"http://127.0.0.1:{port}"
    log = open(stack.run_dir / "gateway.log", "ab")  # noqa: SIM115  (lives as long as the process)
    stack.gateway_proc = subprocess.Popen(
        [sys.executable, "-m", "gateway"],
        cwd=paths.ROOT,
        env=stack.gateway_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_ready(f"{stack.gateway_url}/ready", 90, stack.gateway_proc)
    except Exception:
        print(stack.gateway_log())
        raise


def stop_gateway(stack: Stack) -> None:
    """Stop the gateway process (SIGTERM, then SIGKILL)."""
    proc = stack.gateway_proc
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, default_weights: Path) -> Iterator[Stack]:
    """TorchServe + gateway over an isolated copy of models/ and data/."""
    root = tmp_path_factory.mktemp("stack")
    models_dir, data_dir, run_dir = root / "models", root / "data", root / "run"
    _copy_models(models_dir)
    _copy_data(data_dir)
    run_dir.mkdir()
    record = package(
        models_dir / "default" / "best.pt",
        Registry(models_dir / "registry.json"),
        store_dir=models_dir / "store",
    )
    ports = free_ports(3)
    ts = TorchServeProcess(
        run_dir / "torchserve",
        *ports,
        model_store=models_dir / "store",
        models_to_load={MODEL_NAME: record.mar},
    )
    ts.start()
    stack = Stack(root, models_dir, data_dir, run_dir, ts, record)
    try:
        try:
            ts.wait_ready(300)
        except Exception:
            print(ts.log_tail(80))
            raise
        start_gateway(stack)
        yield stack
    finally:
        stop_gateway(stack)
        ts.stop()


@pytest.fixture
def gateway(stack: Stack) -> Iterator[httpx.Client]:
    """A client of the live gateway."""
    with httpx.Client(base_url=stack.gateway_url, timeout=60) as client:
        yield client
