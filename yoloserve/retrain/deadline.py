"""Run a step in a forked child with a deadline, and the errors a job step raises."""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

logger = logging.getLogger("yoloserve.retrain")


class RetrainFailed(RuntimeError):
    """A step of the job failed; the message becomes the job's reason."""


class JobTimedOut(RetrainFailed):
    """The job ran past ``timeout_s``."""



def _die_with_parent() -> None:
    # If the job process is killed, its training child must not live on (it would keep training
    # for nobody). Linux only; elsewhere the timeout still bounds it.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _child_main(send: Connection, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    os.setpgrp()  # its own group: a timeout kills it with its dataloader workers
    _die_with_parent()
    try:
        send.send(("ok", fn(*args)))
    except BaseException as exc:  # everything goes back to the parent as text
        send.send(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
    finally:
        send.close()


def run_with_deadline(fn: Callable[..., Any], args: tuple[Any, ...], timeout_s: float) -> Any:
    """Run ``fn(*args)`` in a forked child; kill it (and its children) after ``timeout_s``.

    Forked, not spawned, so that ``fn`` may be any function, including one a test replaced;
    call it from a process that has not started torch threads (the job process has not).

    Raises:
        JobTimedOut: the deadline passed.
        RetrainFailed: ``fn`` raised (its message and traceback are logged) or the child died.
    """
    ctx = multiprocessing.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child_main, args=(send, fn, args), name="retrain-train")
    child.start()
    send.close()
    try:
        if not recv.poll(max(0.0, timeout_s)):
            raise JobTimedOut(f"timed out after {timeout_s:.0f} s (training/evaluation killed)")
        try:
            answer = recv.recv()
        except EOFError:
            child.join(10)
            raise RetrainFailed(
                f"the training process died (exit code {child.exitcode})"
            ) from None
    finally:
        recv.close()
        if child.is_alive() and child.pid is not None:
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                child.kill()  # it had not made its own group yet
        child.join(30)
    if answer[0] == "error":
        logger.error("training step failed:\n%s", answer[2])
        raise RetrainFailed(answer[1])
    return answer[1]


