"""``run_with_deadline`` (yoloserve.retrain.deadline) with real child processes: the step's
answer, its failure, its deadline, and the regression of issue 26 (a trainer that has run torch
and ONNX Runtime itself must still be able to start a training child)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import psutil
import pytest

from tests.yoloserve.retrain import deadline_children as children
from yoloserve.retrain.deadline import JobTimedOut, RetrainFailed, run_with_deadline


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_the_answer_and_the_child_log_come_back(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    result = run_with_deadline(children.answer, (7,), 60)
    assert result["value"] == 7 and result["pid"] != os.getpid()
    relayed = [r for r in caplog.records if r.name == "yoloserve.retrain.test"]
    assert [r.getMessage() for r in relayed] == ["answering 7"], "the job's log gets it"
    assert relayed[0].process == result["pid"]


def test_a_child_that_raises_is_a_retrain_failed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with pytest.raises(RetrainFailed, match=r"^ValueError: no good$") as raised:
        run_with_deadline(children.fail, ("no good",), 60)
    assert not isinstance(raised.value, JobTimedOut)
    assert "about to fail: no good" in caplog.text
    assert "Traceback" in caplog.text and "in fail" in caplog.text, "the child's traceback"


def test_a_child_past_its_deadline_is_killed_with_its_process_group(tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    start = time.monotonic()
    with pytest.raises(JobTimedOut, match="timed out after 8 s"):
        run_with_deadline(children.hang_with_a_grandchild, (str(pids_file),), 8)
    assert time.monotonic() - start < 40
    child, grandchild = (int(p) for p in pids_file.read_text().split())
    deadline = time.monotonic() + 10
    while not (_gone(child) and _gone(grandchild)):
        assert time.monotonic() < deadline, "the child or its own child outlived the deadline"
        time.sleep(0.1)


def test_a_function_a_spawned_child_cannot_find_is_refused_at_once() -> None:
    with pytest.raises(TypeError, match="must pickle for a spawned child"):
        run_with_deadline(lambda: 1, (), 60)


@pytest.mark.slow
def test_a_child_trains_after_its_parent_ran_torch_and_onnx_runtime(
    default_weights: Path, tmp_path: Path
) -> None:
    """Issue 26: the trainer packages each candidate itself (ONNX export, then the parity check
    runs torch with 2 threads and ONNX Runtime); with a forked child, the next job's training
    hung loading its weights until the job's deadline. Here the parent does the same first."""
    import torch

    from yoloserve.modelserver.packaging import stage

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert stage(default_weights, "onnx", tmp_path / "stage").check().passed
        start = time.monotonic()
        results = run_with_deadline(children.load_and_forward, (str(default_weights), 2), 120)
        elapsed = time.monotonic() - start
    finally:
        torch.set_num_threads(threads)
    print(f"\nchild loaded and ran the model in {elapsed:.1f} s")
    assert results == 1
