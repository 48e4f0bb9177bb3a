"""The registry in the store: serialised writes that lose no update across threads and processes,
snapshot reads, compare-and-set job transitions, and the import of an older registry.json."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import threading
from pathlib import Path

import pytest

from yoloserve.errors import RegistryError, UnknownJob, UnknownVersion, VersionClassesDiffer
from yoloserve.modelserver.registry import Registry, import_registry_file, open_registry
from yoloserve.store.engine import Store

CLASSES = ["circle", "square", "triangle"]


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """Every test runs on the embedded SQLite file and on a real PostgreSQL."""
    if request.param == "sqlite":
        return Store.sqlite(tmp_path / "yoloserve.db")
    return Store(request.getfixturevalue("postgres_url"))


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _add(registry: Registry, n: int) -> None:
    for i in range(n):
        registry.add_version(sha256=sha(f"{os.getpid()}-{threading.get_ident()}-{i}"),
                             mar="yolo.mar", classes=CLASSES)


def _add_in_process(url: str, n: int) -> None:
    _add(Registry(Store(url)), n)


def test_versions_are_sequential_and_the_first_is_default(store: Store, tmp_path: Path) -> None:
    registry = Registry(store)
    first = registry.add_version(sha256=sha("a"), mar="yolo_v1.mar", classes=CLASSES)
    second = registry.add_version(sha256=sha("b"), mar="yolo_v2.mar", classes=CLASSES, parent="1")
    assert (first.version, second.version) == ("1", "2")
    data = registry.load()
    assert data.default_version == "1"
    assert registry.get("2").parent == "1"
    registry.set_default("2")
    statuses = {v.version: v.status for v in registry.load().versions}
    assert statuses == {"1": "ready", "2": "serving"}


def test_unknown_version_job_and_parent_are_domain_errors(store: Store, tmp_path: Path) -> None:
    registry = Registry(store)
    with pytest.raises(UnknownVersion):
        registry.get("9")
    with pytest.raises(UnknownJob):
        registry.get_job("r-0001")
    with pytest.raises(UnknownVersion):
        registry.add_version(sha256=sha("a"), mar="m", classes=CLASSES, parent="7")


def test_classes_must_match_the_registry(store: Store, tmp_path: Path) -> None:
    registry = Registry(store)
    registry.add_version(sha256=sha("a"), mar="m", classes=CLASSES)
    with pytest.raises(RegistryError):
        registry.add_version(sha256=sha("b"), mar="m", classes=["cat", "dog"])


def test_a_model_of_other_classes_replaces_the_old_ones_only_when_asked(
    store: Store, tmp_path: Path
) -> None:
    registry = open_registry(store, tmp_path / "registry.json")
    registry.add_version(sha256=sha("a"), mar="m1", classes=CLASSES)
    registry.add_version(sha256=sha("b"), mar="m2", classes=CLASSES)
    with pytest.raises(RegistryError, match="--replace-classes"):
        registry.add_version(sha256=sha("c"), mar="m3", classes=["cat", "dog"])
    # Asked for, not made default by the caller: it serves anyway (the registry's classes are
    # what feedback and retrains speak, so the default must detect them).
    third = registry.add_version(sha256=sha("c"), mar="m3", classes=["cat", "dog"],
                                 make_default=False, replace_classes=True)
    data = registry.load()
    assert data.classes == ["cat", "dog"] and data.default_version == third.version == "3"
    assert [v.classes for v in data.versions] == [CLASSES, CLASSES, ["cat", "dog"]]
    with pytest.raises(RegistryError, match="cannot serve again"):
        registry.set_default("1")
    with pytest.raises(VersionClassesDiffer):  # the intent is refused at once (409)
        registry.request_activation("2")
    fourth = registry.add_version(sha256=sha("d"), mar="m4", classes=["cat", "dog"])
    assert fourth.classes == ["cat", "dog"] and registry.load().default_version == "3"


def test_concurrent_threads_and_processes_lose_no_update(store: Store, tmp_path: Path) -> None:
    registry = Registry(store)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_add_in_process, args=(store.url, 10)) for _ in range(3)]
    threads = [threading.Thread(target=_add, args=(registry, 10)) for _ in range(3)]
    for worker in [*procs, *threads]:
        worker.start()
    for t in threads:
        t.join()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    versions = [v.version for v in registry.load().versions]
    assert sorted(versions, key=int) == [str(i) for i in range(1, 61)]
    assert len({v.sha256 for v in registry.load().versions}) == 60


def test_readers_see_whole_snapshots_while_jobs_are_written(store: Store, tmp_path: Path) -> None:
    registry = Registry(store)
    registry.add_version(sha256=sha("seed"), mar="m", classes=CLASSES)
    stop = threading.Event()
    seen: list[list[int]] = [[], []]
    errors: list[BaseException] = []

    def read(mine: list[int]) -> None:
        while not stop.is_set():
            try:
                mine.append(len(registry.load().jobs))
            except BaseException as exc:
                errors.append(exc)

    readers = [threading.Thread(target=read, args=(mine,)) for mine in seen]
    for r in readers:
        r.start()
    for _ in range(150):
        registry.record_job(state="queued", reason="x" * 2000)
    stop.set()
    for r in readers:
        r.join()
    assert not errors
    for mine in seen:  # each reader: never an older state after a newer one
        assert mine and mine == sorted(mine)
    assert [j.job_id for j in registry.load().jobs][:2] == ["r-0001", "r-0002"]


def test_an_exception_inside_update_writes_nothing(store: Store, tmp_path: Path) -> None:
    registry = Registry(store)
    registry.add_version(sha256=sha("a"), mar="m", classes=CLASSES)
    before = registry.load()
    with pytest.raises(RuntimeError), registry.update() as data:
        data.versions.clear()
        data.default_version = None
        raise RuntimeError("half-way")
    assert registry.load() == before
    # And the write lock was released: the next writer goes through.
    assert registry.add_version(sha256=sha("b"), mar="m", classes=CLASSES).version == "2"


def test_a_job_transition_applies_once_when_two_race_for_it(store: Store, tmp_path: Path) -> None:
    registry = Registry(store)
    job = registry.record_job(state="queued")
    barrier = threading.Barrier(8)
    won: list[str] = []

    def claim(name: str) -> None:
        barrier.wait()
        if registry.transition_job(job.job_id, ("queued",), state="running", reason=name):
            won.append(name)

    threads = [threading.Thread(target=claim, args=(f"c{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    assert registry.get_job(job.job_id).reason == won[0]


def test_readers_of_versions_leave_the_jobs_unread(store: Store, tmp_path: Path) -> None:
    registry = Registry(store)
    _add(registry, 2)
    registry.record_job(state="queued")
    full, versions_only = registry.load(), registry.load(jobs=False)
    assert [j.job_id for j in full.jobs] == ["r-0001"] and versions_only.jobs == []
    assert versions_only.versions == full.versions
    assert versions_only.default_version == full.default_version == "1"


def test_activation_jobs_have_their_own_ids_and_kind(store: Store, tmp_path: Path) -> None:
    registry = Registry(store)
    registry.record_job(state="queued")
    activation = registry.record_job(kind="activate", version="1", state="queued")
    assert activation.job_id == "a-0001"
    assert [j.job_id for j in registry.jobs(kind="activate")] == ["a-0001"]
    assert [j.job_id for j in registry.jobs(states=("queued",))] == ["r-0001", "a-0001"]


def test_an_older_registry_json_is_imported_once_and_renamed(store: Store, tmp_path: Path) -> None:
    legacy = tmp_path / "registry.json"
    legacy.write_text(json.dumps({
        "name": "yolo", "classes": CLASSES, "default_version": "2",
        "versions": [
            {"version": "1", "sha256": sha("a"), "mar": "yolo_v1.mar", "status": "ready"},
            {"version": "2", "sha256": sha("b"), "mar": "yolo_v2.mar", "status": "serving",
             "parent": "1"},
        ],
        "jobs": [{"job_id": "r-0001", "state": "succeeded", "candidate_version": "2"}],
    }))
    registry = open_registry(store, legacy)
    data = registry.load()
    assert data.default_version == "2" and data.classes == CLASSES
    assert [v.version for v in data.versions] == ["1", "2"]
    assert registry.get_job("r-0001").candidate_version == "2"
    assert not legacy.exists() and (tmp_path / "registry.json.migrated").is_file()
    # A second start finds nothing to import; new jobs continue the numbering.
    assert import_registry_file(registry, legacy) is False
    assert registry.record_job(state="queued").job_id == "r-0002"
