"""``devstack.torchserve``: what one supervised start loads and cleans up (no TorchServe started).

The supervised TorchServe itself is tested under SIGKILL in
``tests/integration/test_supervision.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil

from devstack.torchserve import PGID_FILE, TorchServeProcess, read_properties
from yoloserve.modelserver.packaging import MODEL_NAME
from yoloserve.modelserver.registry import ModelVersion, Registry
from yoloserve.store.engine import Store
from yoloserve.store.settings import sqlite_url


def _record(registry: Registry, version: str, store: Path) -> None:
    mar = f"{MODEL_NAME}_v{version}.mar"
    (store / mar).write_bytes(b"not really a mar")
    with registry.update() as data:
        data.versions.append(ModelVersion(version=version, mar=mar, sha256="0" * 64))
        data.default_version = version


def _ts(tmp_path: Path) -> TorchServeProcess:
    store = tmp_path / "store"
    store.mkdir(exist_ok=True)
    return TorchServeProcess(tmp_path / "run", 18085, 18086, 18087, store,
                             {MODEL_NAME: "yolo_v1.mar"},
                             database_url=sqlite_url(tmp_path / "yoloserve.db"))


def test_a_start_loads_the_registrys_default_not_the_first_version(tmp_path: Path) -> None:
    ts = _ts(tmp_path)
    assert ts.models_for_start() == {MODEL_NAME: "yolo_v1.mar"}  # no registry yet: fallback
    registry = Registry(Store.sqlite(tmp_path / "yoloserve.db"))
    _record(registry, "1", ts.model_store)
    _record(registry, "3", ts.model_store)
    assert ts.models_for_start() == {MODEL_NAME: "yolo_v3.mar"}
    ts.run_dir.mkdir(parents=True)
    props = read_properties(ts.write_config())
    assert props["load_models"] == f"{MODEL_NAME}=yolo_v3.mar"
    assert props["inference_address"] == "http://127.0.0.1:18085"
    assert props["management_address"] == "http://127.0.0.1:18086"
    assert props["model_store"] == str(ts.model_store)
    assert props["grpc_inference_port"] != props["grpc_management_port"]


def test_a_default_whose_archive_is_missing_falls_back(tmp_path: Path) -> None:
    ts = _ts(tmp_path)
    registry = Registry(Store.sqlite(tmp_path / "yoloserve.db"))
    _record(registry, "2", ts.model_store)
    (ts.model_store / "yolo_v2.mar").unlink()
    assert ts.models_for_start() == {MODEL_NAME: "yolo_v1.mar"}


def test_the_spec_round_trips_through_the_run_folder(tmp_path: Path) -> None:
    ts = _ts(tmp_path)
    program = ts.program()
    again = TorchServeProcess.from_run_dir(ts.run_dir)
    assert again.spec() == ts.spec()
    assert program.command[-2:] == ["--run-dir", str(ts.run_dir)]
    assert program.env["TMPDIR"] == str(ts.run_dir / "tmp")


def test_leftovers_of_the_previous_start_are_killed(tmp_path: Path) -> None:
    ts = _ts(tmp_path)
    ts.run_dir.mkdir(parents=True)
    # A process group standing in for an orphaned frontend with a worker.
    leader = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time; subprocess.Popen([sys.executable,"
         " '-c', 'import time; time.sleep(600)']); time.sleep(600)"],
        start_new_session=True,
    )
    try:
        (ts.run_dir / PGID_FILE).write_text(f"{leader.pid}\n")
        parent = psutil.Process(leader.pid)
        psutil.wait_procs([parent], timeout=1)
        child = parent.children()
        killed = ts.kill_leftovers()
        assert leader.pid in killed
        leader.wait(10)
        _, alive = psutil.wait_procs(child, timeout=10)
        assert not alive
    finally:
        if leader.poll() is None:
            os.killpg(leader.pid, signal.SIGKILL)
            leader.wait()


def test_no_leftovers_and_our_own_group_are_left_alone(tmp_path: Path) -> None:
    ts = _ts(tmp_path)
    ts.run_dir.mkdir(parents=True)
    assert ts.kill_leftovers() == []
    (ts.run_dir / PGID_FILE).write_text(f"{os.getpgid(0)}\n")
    assert ts.kill_leftovers() == []
