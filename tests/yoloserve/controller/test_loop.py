"""One controller acts at a time: two candidates over one store, the standby taking over when
the acting one stops (released at once) or dies (after the lease expired), in threads with
recording fakes and as real processes SIGKILLed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from yoloserve import paths
from yoloserve.controller.loop import Controller
from yoloserve.modelserver.registry import RetrainJob
from yoloserve.store.engine import Store
from yoloserve.store.lease import StoreLease
from yoloserve.store.settings import sqlite_url


class Recorder:
    """Stands in for the trainer and the rollout worker: records when it acts."""

    def __init__(self, name: str, log: list[tuple[str, str, float]]) -> None:
        self.name, self.log = name, log

    def run_forever(self, stop: threading.Event) -> None:
        self.log.append((self.name, "start", time.monotonic()))
        stop.wait()
        self.log.append((self.name, "end", time.monotonic()))

    def fail_orphans(self) -> list[str]:
        return []

    def step(self) -> RetrainJob | None:
        return None


def candidate(store: Store, name: str, log: list[tuple[str, str, float]]) -> Controller:
    lease = StoreLease(store, "yoloserve-controller", name, duration_s=0.6)
    worker = Recorder(name, log)
    return Controller(lease, worker, worker, poll_s=0.05)  # type: ignore[arg-type]


def test_one_acts_and_the_standby_takes_over_when_it_stops(tmp_path: Path) -> None:
    store = Store.sqlite(tmp_path / "yoloserve.db")
    log: list[tuple[str, str, float]] = []
    stops = {name: threading.Event() for name in ("a", "b")}
    controllers = {name: candidate(store, name, log) for name in stops}
    threads = {name: threading.Thread(target=controllers[name].run_forever, args=(stops[name],))
               for name in stops}
    threads["a"].start()
    assert _wait(controllers["a"].acting.is_set, 5)
    threads["b"].start()
    time.sleep(1.5)  # several lease periods: b stays standby while a renews
    assert not controllers["b"].acting.is_set()

    stops["a"].set()  # a stops: it releases the lease, b acts within a poll
    threads["a"].join(5)
    assert _wait(controllers["b"].acting.is_set, 2)
    stops["b"].set()
    threads["b"].join(5)

    starts = [(name, t) for name, what, t in log if what == "start"]
    ends = {name: t for name, what, t in log if what == "end"}
    assert [name for name, _ in starts] == ["a", "b"]
    assert ends["a"] <= starts[1][1], "never two acting at once"


def test_a_lost_lease_stops_acting(tmp_path: Path) -> None:
    store = Store.sqlite(tmp_path / "yoloserve.db")
    log: list[tuple[str, str, float]] = []
    controller = candidate(store, "a", log)
    stop = threading.Event()
    thread = threading.Thread(target=controller.run_forever, args=(stop,))
    thread.start()
    assert _wait(controller.acting.is_set, 5)
    thief = StoreLease(store, "yoloserve-controller", "thief", duration_s=60.0, clock=lambda: 1e12)
    assert thief.try_acquire()  # its clock says a's lease expired long ago

    assert _wait(lambda: not controller.acting.is_set(), 3), "a noticed at its next renewal"
    stop.set()
    thread.join(5)
    assert [what for name, what, _ in log if name == "a"] == ["start", "end"]


def test_a_killed_controller_process_is_replaced_within_the_lease(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "data" / "yoloserve.db")
    env = {**os.environ, "STORE_DATABASE_URL": url, "YOLOSERVE_RUN_DIR": str(tmp_path / "run"),
           "YOLOSERVE_DATA_DIR": str(tmp_path / "data"),
           "YOLOSERVE_MODELS_DIR": str(tmp_path / "models"),
           "RETRAIN_LAUNCHER": "queue", "RETRAIN_TRAINER_POLL_S": "0.2",
           "CONTROLLER_LEASE_DURATION_S": "3", "YOLO_OFFLINE": "1"}
    store = Store(url)
    probe = StoreLease(store, "yoloserve-controller", "probe", 3.0)
    procs = {}
    try:
        for name in ("first", "second"):
            procs[name] = subprocess.Popen(
                [sys.executable, "-m", "yoloserve.controller", "run", "--controller-id", name],
                cwd=paths.ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True)
            if name == "first":
                assert _wait(lambda: probe.current_holder() == "first", 60)
        time.sleep(2)
        assert probe.current_holder() == "first", "the second stands by"

        os.killpg(procs["first"].pid, signal.SIGKILL)  # no release: the lease must expire
        killed_at = time.monotonic()
        assert _wait(lambda: probe.current_holder() == "second", 30)
        took = time.monotonic() - killed_at
        print(f"standby acting {took:.1f} s after the SIGKILL (lease 3 s)")
        assert took < 3 + 3, "within the lease and one standby poll"
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _wait(condition: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False
