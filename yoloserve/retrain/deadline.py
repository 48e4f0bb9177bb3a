"""Run a step in a spawned child with a deadline, and the errors a job step raises.

Exceptions::

    RuntimeError
     └── RetrainFailed       a step failed; its message becomes the job's reason
          └── JobTimedOut    the deadline passed (the child's whole process group was killed)

Why spawn, never fork: the trainer service runs job after job in one process, and each job
packages its candidate in that process (ONNX export, parity check: torch, ONNX Runtime). Once a
process has used torch's OpenMP thread pool with more than one thread, a forked child that uses
it again waits forever on threads that were not copied (issue 26: the second retrain of a trainer
hung in ``Module.float`` until its 30-minute deadline). A spawned child is a fresh interpreter,
safe whatever its parent ran before; it costs an interpreter start and its imports (1-2 s).
"""

from __future__ import annotations

import copy
import ctypes
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

logger = logging.getLogger("yoloserve.retrain")


class RetrainFailed(RuntimeError):
    """A step of the job failed; the message becomes the job's reason."""


class JobTimedOut(RetrainFailed):
    """The job ran past ``timeout_s``."""


def _die_with_parent(parent_pid: int) -> None:
    # If the job process is killed, its training child must not live on (it would keep training
    # for nobody). Linux only; elsewhere the timeout still bounds it.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # it died while this interpreter started: too late to ask
        os._exit(1)


class _Channel:
    """The child's end of the pipe, shared by the logging handler and the final answer.

    A lock, because Ultralytics logs from threads too and two sends must not interleave.
    """

    def __init__(self, send: Connection) -> None:
        self._send = send
        self._lock = threading.Lock()

    def send(self, message: tuple[Any, ...]) -> None:
        with self._lock:
            self._send.send(message)


class _RelayHandler(logging.Handler):
    """Ships the child's log records to the parent, which hands them to its own handlers.

    A spawned child inherits no logging set-up, and the job's log (the trainer's root handler
    for ``.run/retrain/<id>.log``) must still get the training phases and epochs logged there.
    """

    def __init__(self, channel: _Channel) -> None:
        super().__init__()
        self.channel = channel
        self.pid = os.getpid()

    def emit(self, record: logging.LogRecord) -> None:
        if os.getpid() != self.pid:
            return  # a process forked from the child (a dataloader worker) shares no lock
        try:
            shipped = copy.copy(record)
            # Arguments and exc_info may not pickle: ship the text (with any traceback).
            shipped.msg = shipped.message = self.format(record)
            shipped.args, shipped.exc_info, shipped.exc_text = None, None, None
            shipped.stack_info = None
            self.channel.send(("log", shipped))
        except Exception:
            self.handleError(record)


def _child_main(send: Connection, fn: Callable[..., Any], args: tuple[Any, ...],
                parent_pid: int, log_level: int) -> None:
    os.setpgrp()  # its own group: a timeout kills it with its dataloader workers
    _die_with_parent(parent_pid)
    channel = _Channel(send)
    root = logging.getLogger()
    root.addHandler(_RelayHandler(channel))
    root.setLevel(log_level)
    try:
        channel.send(("ok", fn(*args)))
    except BaseException as exc:  # everything goes back to the parent as text
        channel.send(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
    finally:
        send.close()


def _relay(record: logging.LogRecord) -> None:
    # Through the parent's logger of the same name: its levels and handlers decide.
    target = logging.getLogger(record.name)
    if target.isEnabledFor(record.levelno):
        target.handle(record)


def run_with_deadline(fn: Callable[..., Any], args: tuple[Any, ...], timeout_s: float) -> Any:
    """Run ``fn(*args)`` in a spawned child; kill it (and its process group) after ``timeout_s``.

    Spawned, not forked: a fork of a process that has run torch with several threads (the
    trainer, after packaging a job's candidate) deadlocks in the child; see the module docstring.
    So ``fn`` must be an importable module-level function and ``args`` must pickle (no lambdas,
    closures or open handles), and the child sees the parent's environment variables and files,
    never its memory: a monkeypatched function in the parent is not the one the child runs.
    The child's log records reach the parent's handlers (the job's log); the child dies with the
    parent (``PR_SET_PDEATHSIG``).

    Args:
        fn: what to run, found by its module and name in the child.
        args: its positional arguments, pickled.
        timeout_s: seconds from now until the child's process group is killed.

    Returns:
        What ``fn`` returned (pickled back).

    Raises:
        TypeError: ``fn`` or ``args`` cannot be sent to a spawned child.
        JobTimedOut: the deadline passed.
        RetrainFailed: ``fn`` raised (its message and traceback are logged) or the child died.
    """
    end = time.monotonic() + timeout_s
    ctx = multiprocessing.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    child = ctx.Process(
        target=_child_main, name="retrain-step",
        args=(send, fn, args, os.getpid(), logging.getLogger().getEffectiveLevel()),
    )
    try:
        child.start()
    except (pickle.PicklingError, AttributeError, TypeError) as exc:
        recv.close()
        send.close()
        raise TypeError(
            f"run_with_deadline: {fn!r} and its arguments must pickle for a spawned child "
            f"(a module-level function, plain arguments): {exc}"
        ) from exc
    send.close()
    try:
        answer = _wait_answer(recv, child, end, timeout_s)
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


def _wait_answer(recv: Connection, child: multiprocessing.process.BaseProcess, end: float,
                 timeout_s: float) -> tuple[Any, ...]:
    """Relay the child's log records until its answer comes, it dies, or ``end`` passes."""
    while True:
        if not recv.poll(max(0.0, end - time.monotonic())):
            raise JobTimedOut(f"timed out after {timeout_s:.0f} s (training/evaluation killed)")
        try:
            message: tuple[Any, ...] = recv.recv()
        except EOFError:
            child.join(10)
            raise RetrainFailed(
                f"the training process died (exit code {child.exitcode})"
            ) from None
        if message[0] != "log":
            return message
        _relay(message[1])
