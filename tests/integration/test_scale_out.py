"""Scale-out, for real: three gateway processes and two controllers over one PostgreSQL, in front
of the session's real TorchServe.

* 32 writers post keyed feedback spread over the three gateways; one gateway is SIGKILLed under
  that load and every request left unanswered is sent again, with its key, to another replica:
  every acknowledged box is in the store exactly once, none lost, and the CSV export has them.
* A retrain asked at the same instant through two replicas is recorded once.
* The acting controller is SIGKILLed while its job trains: the standby takes the lease over and
  the job ends ``failed`` (its controller died), never stuck ``running``.

The controllers run ``tests.yoloserve.controller.controller_child``: the real controller with the
training step faked (it can hang on a file), so no test here waits for a real fine-tune.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from devstack.ports import free_ports
from devstack.supervisor import Program
from devstack.waiting import url_ready
from tests.conftest import NEVER_K
from tests.integration.conftest import ADMIN_KEY, USER_KEY, Stack
from tests.yoloserve.retrain import fakes
from tests.yoloserve.retrain.job_support import wait_final
from yoloserve import paths
from yoloserve.feedback.store import count_rows
from yoloserve.modelserver.registry import Registry
from yoloserve.retrain.heartbeat import read_heartbeats
from yoloserve.retrain.settings import RetrainSettings
from yoloserve.store.engine import Store
from yoloserve.store.lease import StoreLease
from yoloserve.store.tables import FeedbackRowRecord
from yoloserve.training.dataset import generate_dataset

pytestmark = [pytest.mark.integration, pytest.mark.slow]

GATEWAYS = 3
CONTROLLERS = 2
WRITERS = 32
LEASE_S = 5.0
GT_BOXES = [{"xyxy": [4.0, 4.0, 44.0, 40.0], "name": "circle"},
            {"xyxy": [60.0, 8.0, 120.0, 70.0], "name": "square"}]


@dataclass
class Cluster:
    stack: Stack
    url: str
    registry: Registry
    data_dir: Path
    run_dir: Path
    gateways: list[str]
    hold: Path
    calls: Path
    names: list[str] = field(default_factory=list)

    def gateway_pid(self, i: int) -> int | None:
        return self.stack.supervisor.pid(f"scale-gw-{i}")

    def acting_pid(self, holder: str) -> int:
        """The pid of the controller holding the lease (its heartbeat names its id)."""
        beats = read_heartbeats(RetrainSettings(run_dir=self.run_dir))
        [pid] = [b.pid for b in beats if b.trainer_id == holder]
        assert pid in {self.stack.supervisor.pid(n) for n in self.names}
        return int(pid)


@pytest.fixture(scope="module")
def cluster(stack: Stack, postgres_server: Any,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("scale")
    database = f"scale_{uuid.uuid4().hex[:8]}"
    url = postgres_server.new_database(database)
    registry = Registry(Store(url))
    versions = stack.registry.load()
    with registry.update() as data:  # the stack's versions, in the shared database
        data.name, data.classes = versions.name, versions.classes
        data.default_version, data.versions = versions.default_version, versions.versions
    data_dir, run_dir = root / "data", root / "run"
    data_dir.mkdir()
    run_dir.mkdir()
    shutil.copytree(stack.data_dir / "samples", data_dir / "samples")
    ref = root / "shapes"
    generate_dataset(ref, n_train=8, n_val=4, n_test=0, seed=5)
    hold, calls = root / "hold", root / "calls.jsonl"
    fake_file = root / "fakes.json"
    # Rejected (0.5 < 0.9): the candidate never swaps the session's TorchServe.
    fake_file.write_text(fakes.FakeTraining(str(calls), str(stack.weights), candidate=0.5,
                                            current=0.9, hold=str(hold)).to_env())
    shared = {"STORE_DATABASE_URL": url, "YOLOSERVE_DATA_DIR": str(data_dir),
              "YOLOSERVE_RUN_DIR": str(run_dir), "RETRAIN_EVERY_K": str(NEVER_K)}
    ports = free_ports(GATEWAYS)
    programs = []
    for i, port in enumerate(ports):
        env = {**stack.gateway_variables(port), **shared}
        programs.append(Program(f"scale-gw-{i}", [sys.executable, "-m", "gateway"], env=env,
                                ready=url_ready(f"http://127.0.0.1:{port}/ready")))
    names = [f"scale-ctl-{i}" for i in range(CONTROLLERS)]
    for name in names:
        # No CONTROLLER_ID: each process is a candidate of its own (host + random), as pods are.
        env = {**stack.trainer_variables(), **shared,
               "CONTROLLER_LEASE_DURATION_S": str(LEASE_S), "RETRAIN_TRAINER_POLL_S": "0.5",
               "RETRAIN_TRAINER_HEARTBEAT_S": "1", "RETRAIN_REF_DIR": str(ref),
               "RETRAIN_REF_TRAIN_IMAGES": "8", "RETRAIN_REF_EVAL_IMAGES": "4",
               "RETRAIN_FEEDBACK_DIR": str(data_dir / "feedback"), "RETRAIN_DEPLOY": "false",
               "RETRAIN_TIMEOUT_S": "600"}
        programs.append(Program(name, [sys.executable, "-m",
                                       "tests.yoloserve.controller.controller_child",
                                       str(fake_file)], env=env, cwd=paths.ROOT))
    try:
        for program in programs:
            stack.start_program(program, 120)
        yield Cluster(stack, url, registry, data_dir, run_dir,
                      [f"http://127.0.0.1:{p}" for p in ports], hold, calls, names)
    finally:
        for program in programs:
            stack.programs.pop(program.name, None)
        stack.supervisor.apply(list(stack.programs.values()))  # stops ours
        postgres_server.drop_database(database)


def _post(client: httpx.Client, key: str, image: bytes) -> httpx.Response:
    labels = {"request_id": key, "boxes": GT_BOXES}
    return client.post("/feedback", headers={"Idempotency-Key": key, "X-API-Key": USER_KEY},
                       files={"file": ("shapes.jpg", image)},
                       data={"labels": json.dumps(labels)}, timeout=60)


def test_feedback_through_three_gateways_one_killed_is_stored_exactly_once(
    cluster: Cluster,
) -> None:
    image = (cluster.data_dir / "samples" / "shapes_1.jpg").read_bytes()
    run = f"scale-{uuid.uuid4().hex[:6]}"
    answers: dict[str, dict[str, Any]] = {}
    unanswered: dict[str, int] = {}  # key -> the replica that did not answer
    lock = threading.Lock()
    stop = threading.Event()
    counter = iter(range(1_000_000))

    def writer(w: int) -> None:
        clients = [httpx.Client(base_url=url) for url in cluster.gateways]
        try:
            while not stop.is_set():
                with lock:
                    i = next(counter)
                key, replica = f"{run}-{i}", i % GATEWAYS
                try:
                    response: httpx.Response | None = _post(clients[replica], key, image)
                except httpx.HTTPError:
                    response = None
                with lock:
                    if response is not None and response.status_code == 201:
                        answers[key] = response.json()
                    else:
                        unanswered[key] = replica
        finally:
            for c in clients:
                c.close()

    threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(WRITERS)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 180
    while len(answers) < 4 * WRITERS:
        assert time.monotonic() < deadline, f"only {len(answers)} answers"
        time.sleep(0.05)
    victim = cluster.gateway_pid(1)
    assert victim is not None
    os.killpg(victim, signal.SIGKILL)  # replica 1 dies with requests in flight
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(120)

    # Every request left without an answer goes again, with its key, to another replica.
    replayed = 0
    for key, replica in sorted(unanswered.items()):
        if key in answers:
            continue
        with httpx.Client(base_url=cluster.gateways[(replica + 1) % GATEWAYS]) as client:
            response = _post(client, key, image)
        assert response.status_code == 201, response.text
        replayed += response.headers.get("Idempotent-Replayed") == "true"
        answers[key] = response.json()

    store = Store(cluster.url)
    with store.read() as session:
        rows = session.execute(select(FeedbackRowRecord.request_id,
                                      FeedbackRowRecord.feedback_id,
                                      FeedbackRowRecord.target)).all()
    by_key: dict[str, list[Any]] = {}
    for request_id, feedback_id, target in rows:
        by_key.setdefault(request_id, []).append((feedback_id, target))
    for key, body in answers.items():
        mine = by_key.get(key, [])
        assert len(mine) == body["rows_written"], f"{key}: {len(mine)} rows, {body}"
        assert {f for f, _ in mine} == {body["feedback_id"]}, key
        assert sorted(t for _, t in mine if t != "__background__") == ["circle", "square"]
    ours = {k for k in by_key if k.startswith(run)}
    assert ours == set(answers), "no request stored that nobody acknowledged twice"
    # Every committed row reaches the CSV (the exporters of the live replicas catch up).
    csv = cluster.data_dir / "prod_data.csv"
    deadline = time.monotonic() + 30
    while count_rows(csv) != len(rows):
        assert time.monotonic() < deadline, f"CSV {count_rows(csv)} rows, store {len(rows)}"
        time.sleep(0.2)
    print(f"\n{len(answers)} keyed feedbacks over {GATEWAYS} gateways; "
          f"{len(unanswered)} unanswered at the SIGKILL, {replayed} of them already stored "
          f"(answered on retry from the store); {len(rows)} rows, each once")


def test_a_retrain_asked_through_two_replicas_at_once_is_recorded_once(
    cluster: Cluster,
) -> None:
    cluster.hold.unlink(missing_ok=True)
    barrier = threading.Barrier(2)
    statuses: list[tuple[int, dict[str, Any]]] = []

    def ask(url: str) -> None:
        barrier.wait()
        r = httpx.post(f"{url}/retrain", headers={"X-API-Key": ADMIN_KEY}, timeout=30)
        statuses.append((r.status_code, r.json()))

    threads = [threading.Thread(target=ask, args=(u,))
               for u in (cluster.gateways[0], cluster.gateways[2])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(s for s, _ in statuses) == [202, 409], statuses
    [job_id] = [body["job_id"] for status, body in statuses if status == 202]
    job = wait_final(cluster.registry, job_id, timeout=300)
    assert job.state in ("succeeded", "rejected"), job.reason
    assert [j.job_id for j in cluster.registry.jobs(kind="retrain")].count(job_id) == 1


def test_the_standby_takes_over_when_the_acting_controller_dies_mid_job(
    cluster: Cluster,
) -> None:
    lease = StoreLease(Store(cluster.url), "yoloserve-controller", "probe", LEASE_S)
    acting = lease.current_holder()
    assert acting is not None
    cluster.hold.touch()  # the next job's training hangs
    r = httpx.post(f"{cluster.gateways[0]}/retrain", headers={"X-API-Key": ADMIN_KEY}, timeout=30)
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    deadline = time.monotonic() + 120
    while cluster.registry.get_job(job_id).state != "running" or not _training(cluster, job_id):
        assert time.monotonic() < deadline, cluster.registry.get_job(job_id)
        time.sleep(0.2)

    pid = cluster.acting_pid(acting)
    os.killpg(os.getpgid(pid), signal.SIGKILL)  # mid-job, without a release
    killed = time.monotonic()
    deadline = killed + 30
    while lease.current_holder() in (acting, None):
        assert time.monotonic() < deadline, "no standby took the lease within 30 s"
        time.sleep(0.2)
    took_over = time.monotonic() - killed
    job = wait_final(cluster.registry, job_id, timeout=60)
    cluster.hold.unlink()
    assert job.state in ("failed", "succeeded", "rejected"), job
    print(f"\nacting controller {acting} SIGKILLed mid-job; {lease.current_holder()} acting "
          f"after {took_over:.1f} s (lease {LEASE_S:.0f} s); job {job_id} ended {job.state}: "
          f"{job.reason}")


def _training(cluster: Cluster, job_id: str) -> bool:
    if not cluster.calls.exists():
        return False
    return any(json.loads(line).get("job_id") == job_id and json.loads(line)["call"] == "train"
               for line in cluster.calls.read_text().splitlines() if line.strip())
