"""models/registry.json: atomic, locked writes that lose no update across threads and processes,
and a file that is never seen half-written, even when a write fails midway."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import threading
from pathlib import Path

import pytest

from yoloserve.errors import RegistryError, UnknownJob, UnknownVersion
from yoloserve.modelserver.registry import Registry

CLASSES = ["circle", "square", "triangle"]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _add(registry: Registry, n: int) -> None:
    for i in range(n):
        registry.add_version(sha256=sha(f"{os.getpid()}-{threading.get_ident()}-{i}"),
                             mar="yolo.mar", classes=CLASSES)


def _add_in_process(path: str, n: int) -> None:
    _add(Registry(Path(path)), n)


def test_versions_are_sequential_and_the_first_is_default(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry.json")
    first = registry.add_version(sha256=sha("a"), mar="yolo_v1.mar", classes=CLASSES)
    second = registry.add_version(sha256=sha("b"), mar="yolo_v2.mar", classes=CLASSES, parent="1")
    assert (first.version, second.version) == ("1", "2")
    data = registry.load()
    assert data.default_version == "1"
    assert registry.get("2").parent == "1"
    registry.set_default("2")
    statuses = {v.version: v.status for v in registry.load().versions}
    assert statuses == {"1": "ready", "2": "serving"}


def test_unknown_version_job_and_parent_are_domain_errors(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry.json")
    with pytest.raises(UnknownVersion):
        registry.get("9")
    with pytest.raises(UnknownJob):
        registry.get_job("r-0001")
    with pytest.raises(UnknownVersion):
        registry.add_version(sha256=sha("a"), mar="m", classes=CLASSES, parent="7")


def test_classes_must_match_the_registry(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry.json")
    registry.add_version(sha256=sha("a"), mar="m", classes=CLASSES)
    with pytest.raises(RegistryError):
        registry.add_version(sha256=sha("b"), mar="m", classes=["cat", "dog"])


def test_concurrent_threads_and_processes_lose_no_update(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    registry = Registry(path)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_add_in_process, args=(str(path), 10)) for _ in range(3)]
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


def test_readers_never_see_a_partial_file(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry.json")
    registry.add_version(sha256=sha("seed"), mar="m", classes=CLASSES)
    stop = threading.Event()
    seen: list[list[int]] = [[], []]
    errors: list[BaseException] = []

    def read(mine: list[int]) -> None:
        while not stop.is_set():
            try:
                mine.append(len(registry.load().jobs))  # parses the whole file every time
            except BaseException as exc:  # a torn read would be a JSON/validation error
                errors.append(exc)

    readers = [threading.Thread(target=read, args=(mine,)) for mine in seen]
    for r in readers:
        r.start()
    for _ in range(150):
        registry.record_job(state="queued", reason="x" * 2000)  # big enough to need many writes
    stop.set()
    for r in readers:
        r.join()
    assert not errors
    for mine in seen:  # each reader: never an older file after a newer one
        assert mine and mine == sorted(mine)


def test_a_failed_write_leaves_the_old_file_and_no_temp_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "registry.json"
    registry = Registry(path)
    registry.add_version(sha256=sha("a"), mar="m", classes=CLASSES)
    before = path.read_bytes()

    def crash(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        registry.add_version(sha256=sha("b"), mar="m", classes=CLASSES)
    monkeypatch.undo()

    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert json.loads(before)["versions"][0]["sha256"] == sha("a")
    # And the lock was released: the next writer goes through.
    assert registry.add_version(sha256=sha("b"), mar="m", classes=CLASSES).version == "2"


def test_an_exception_inside_update_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    registry = Registry(path)
    registry.add_version(sha256=sha("a"), mar="m", classes=CLASSES)
    before = path.read_bytes()
    with pytest.raises(RuntimeError), registry.update() as data:
        data.versions.clear()
        raise RuntimeError("half-way")
    assert path.read_bytes() == before
