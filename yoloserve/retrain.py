"""The retrain job: fine-tune the serving model on feedback, judge it, hot-swap it if it holds up.

One job, start to end (``run_job``)::

    queued --> running --> build dataset (reference sample + feedback, held-out eval slice)
                       --> fine-tune from the default version's weights     } one forked child,
                       --> evaluate candidate and current on the same eval  } killed at timeout_s
                       --> gate: candidate.map50 >= current.map50 - tolerance
                             yes: package as version N (parent = current) --> hot swap --> succeeded
                             no:  package as version N, status rejected            --> rejected
    any exception (or the deadline) -------------------------------------------------> failed

Failure rules: nothing is promoted unless every step before the swap worked; the serving version
keeps serving whatever happens (the swap itself rolls back, see ``yoloserve.deploy``); the job
record always ends in a final state with a reason, and the registry is only ever changed by its
own atomic writes.

One job at a time, across processes: ``start_job_process`` takes ``<run_dir>/retrain.lock``
(non-blocking; held means ``RetrainAlreadyRunning``), records the job as ``queued`` and spawns
``python -m scripts.retrain run --job-id ID`` detached, with the child's pid in the record. The
child takes the same lock for its whole life (``run_job_process``), so the lock is held exactly
while a job process lives, whoever started it and even if the gateway restarts. A job whose
process died without finishing is marked failed by ``reap_stale_jobs`` on the next check.

Example:
    >>> settings = RetrainSettings(epochs=1)
    >>> job_id = start_job_process(settings, trigger="api")  # doctest: +SKIP
    >>> Registry().get_job(job_id).state  # doctest: +SKIP
    'queued'
"""

from __future__ import annotations

import ctypes
import logging
import math
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import filelock
import psutil
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from yoloserve import paths, training
from yoloserve.deploy import hot_swap_sync
from yoloserve.errors import RetrainAlreadyRunning
from yoloserve.packaging import METRIC_KEYS, MODEL_NAME, package, sha256_file
from yoloserve.registry import Registry, RetrainJob, utcnow
from yoloserve.retrain_data import RetrainData, build_retrain_dataset
from yoloserve.torchserve import DEFAULT_INFERENCE_URL, DEFAULT_MANAGEMENT_URL

logger = logging.getLogger("yoloserve.retrain")

ACTIVE_STATES = ("queued", "running")
LOCK_NAME = "retrain.lock"
JOBS_DIR = "retrain"


class RetrainSettings(BaseSettings):
    """How retrain jobs run. Environment variables are ``RETRAIN_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="RETRAIN_", extra="ignore")

    every_k: int = Field(default=50, ge=1, description="Feedback rows between automatic jobs")
    epochs: int = Field(default=8, ge=1, description="Fine-tuning epochs")
    imgsz: int = Field(default=320, ge=32)
    batch: int = Field(default=16, ge=1)
    # Gentle on purpose: Ultralytics' defaults (AdamW via optimizer=auto, 3 warmup epochs with
    # bias lr 0.1) took a 0.983-mAP50 model to 0.949 (mAP50-95 0.66) in 2 epochs on 60 images;
    # SGD at lr0 0.002 without warmup kept it at 0.982 (mAP50-95 0.87). Measured on this CPU.
    optimizer: str = Field(default="SGD", description="Ultralytics optimizer ('auto' ignores lr0)")
    lr0: float | None = Field(default=0.002, gt=0, description="None: Ultralytics' default")
    warmup_epochs: float | None = Field(default=0.0, ge=0, description="None: Ultralytics' 3")
    seed: int = 0
    tolerance: float = Field(
        default=0.01, ge=0, le=1, description="Promote if cand. mAP50 >= current - tolerance"
    )
    holdout_pct: int = Field(default=25, ge=1, le=99, description="Feedback % kept for eval")
    ref_train_images: int = Field(default=200, ge=0, description="Reference images mixed in")
    ref_eval_images: int = Field(default=50, ge=0, description="Reference images judged on")
    oversample_feedback: int = Field(default=2, ge=1, description="Copies of each feedback image")
    timeout_s: float = Field(default=1800.0, gt=0, description="Whole job; then failed")
    management_url: str = DEFAULT_MANAGEMENT_URL
    inference_url: str = DEFAULT_INFERENCE_URL
    model_name: str = MODEL_NAME
    deploy: bool = Field(default=True, description="Hot-swap a promoted candidate")
    drain_s: float = Field(default=2.0, ge=0)
    worker_timeout_s: float = Field(default=180.0, gt=0)
    lock_wait_s: float = Field(default=60.0, ge=0, description="Child waits this for the lock")
    ref_dir: Path = Field(
        default=paths.DATA_DIR / "shapes", description="Reference dataset (generated if missing)"
    )
    feedback_dir: Path = paths.DATA_DIR / "feedback"
    registry_path: Path = paths.REGISTRY_FILE
    store_dir: Path = paths.STORE_DIR
    run_dir: Path = Field(default=paths.RUN_DIR, description="Lock, job folders and logs")

    def child_environment(self, registry_path: Path | None = None) -> dict[str, str]:
        """This process's environment plus every setting as ``RETRAIN_*``, for the job process."""
        env = dict(os.environ)
        values = self.model_dump()
        if registry_path is not None:
            values["registry_path"] = registry_path
        for name, value in values.items():
            key = f"RETRAIN_{name.upper()}"
            if value is None:
                env.pop(key, None)
            else:
                env[key] = str(value).lower() if isinstance(value, bool) else str(value)
        env.setdefault("YOLO_OFFLINE", "1")
        env["PYTHONUNBUFFERED"] = "1"
        return env


class RetrainFailed(RuntimeError):
    """A step of the job failed; the message becomes the job's reason."""


class JobTimedOut(RetrainFailed):
    """The job ran past ``timeout_s``."""


def lock_path(settings: RetrainSettings) -> Path:
    """The file whose lock is held while a job process lives."""
    return settings.run_dir / LOCK_NAME


def job_dir(settings: RetrainSettings, job_id: str) -> Path:
    """The job's working folder (dataset lists, training run, weights)."""
    return settings.run_dir / JOBS_DIR / job_id


def job_log(settings: RetrainSettings, job_id: str) -> Path:
    """The job process's log."""
    return settings.run_dir / JOBS_DIR / f"{job_id}.log"


# --------------------------------------------------------------------------------- the gate


@dataclass(frozen=True)
class GateDecision:
    """Whether to promote the candidate, and why, in words for the job record."""

    promote: bool
    reason: str


def gate(
    candidate: Mapping[str, Any], current: Mapping[str, Any], tolerance: float
) -> GateDecision:
    """Promote when ``candidate["map50"] >= current["map50"] - tolerance`` (same eval set).

    A candidate without a finite mAP50 is never promoted; a current model without one counts as 0.

    Example:
        >>> gate({"map50": 0.90}, {"map50": 0.905}, 0.01).promote
        True
    """
    cand = float(candidate.get("map50", math.nan))
    curr = float(current.get("map50", math.nan))
    if not math.isfinite(cand):
        return GateDecision(False, "candidate has no finite mAP50")
    if not math.isfinite(curr):
        curr = 0.0
    bar = curr - tolerance
    if cand >= bar:
        return GateDecision(
            True, f"candidate mAP50 {cand:.4f} >= current {curr:.4f} - tolerance {tolerance:g}"
        )
    return GateDecision(
        False,
        f"candidate mAP50 {cand:.4f} < current {curr:.4f} - tolerance {tolerance:g} = {bar:.4f}",
    )


# ------------------------------------------------------------------------ training (forked)


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


def _train_and_evaluate(
    data_yaml: Path, parent_weights: Path, out_dir: Path, settings: RetrainSettings
) -> dict[str, Any]:
    """Fine-tune, then evaluate candidate and current on the same eval split (runs forked)."""
    best = training.train(
        data_yaml, out_dir, weights=parent_weights, epochs=settings.epochs, imgsz=settings.imgsz,
        batch=settings.batch, seed=settings.seed, lr0=settings.lr0, optimizer=settings.optimizer,
        warmup_epochs=settings.warmup_epochs, name="candidate",
    )
    # The last epoch, not Ultralytics' best.pt: best.pt is picked on the eval split, and a
    # candidate chosen on the data that judges it would get an unfair edge at the gate.
    last = best.with_name("last.pt")
    weights = last if last.is_file() else best
    candidate = training.evaluate(weights, data_yaml, split="test", imgsz=settings.imgsz,
                                  batch=settings.batch)
    current = training.evaluate(parent_weights, data_yaml, split="test", imgsz=settings.imgsz,
                                batch=settings.batch)
    return {"weights": str(weights), "candidate": candidate.to_dict(),
            "current": current.to_dict()}


# ----------------------------------------------------------------------------------- the job


def extract_weights(mar: Path, sha256: str, dest: Path) -> Path:
    """Copy the weights whose sha256 the registry recorded out of a version's ``.mar``.

    Raises:
        RetrainFailed: the archive is missing or holds no such weights.
    """
    if not mar.is_file():
        raise RetrainFailed(f"the archive {mar} of the serving version is missing")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(mar) as archive:
        for member in archive.infolist():
            if member.filename.endswith(".pt"):
                with archive.open(member) as src, dest.open("wb") as out:
                    shutil.copyfileobj(src, out)
                if sha256_file(dest) == sha256:
                    return dest
    dest.unlink(missing_ok=True)
    raise RetrainFailed(f"{mar.name} holds no weights with the registry's sha256 {sha256[:12]}")


def _ensure_reference(ref_dir: Path) -> None:
    if (ref_dir / "images" / "train").is_dir():
        return
    from yoloserve.dataset import generate_dataset

    # The same dataset `python -m scripts.train dataset` writes (same counts, same seed).
    logger.info("reference dataset missing: generating it in %s", ref_dir)
    generate_dataset(ref_dir)


def _headline(metrics: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: metrics[k] for k in METRIC_KEYS if k in metrics}
    out["eval_images"] = metrics.get("images", 0)
    return out


def _finish(registry: Registry, job_id: str, state: str, reason: str, **extra: Any) -> RetrainJob:
    return registry.update_job(job_id, state=state, reason=reason, finished_at=utcnow(), **extra)


def run_job(job_id: str, settings: RetrainSettings, registry: Registry | None = None) -> RetrainJob:
    """Run job ``job_id`` (already recorded) to its end, synchronously; returns its final record.

    Never raises for a failed step: the job ends ``failed`` with the reason, and the serving
    version keeps serving. ``KeyboardInterrupt``/``SystemExit`` are recorded, then re-raised.
    """
    registry = registry or Registry(settings.registry_path)
    deadline = time.monotonic() + settings.timeout_s
    registry.update_job(job_id, state="running", started_at=utcnow(), pid=os.getpid())
    try:
        return _run(job_id, settings, registry, deadline)
    except BaseException as exc:
        reason = str(exc) if isinstance(exc, RetrainFailed) else f"{type(exc).__name__}: {exc}"
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            reason = "the job process was stopped"
        expected = isinstance(exc, RetrainFailed)  # its message says it all: no traceback
        logger.error("job %s failed: %s", job_id, reason, exc_info=not expected)
        job = _finish(registry, job_id, "failed", reason)
        if not isinstance(exc, Exception):
            raise
        return job


def _run(job_id: str, settings: RetrainSettings, registry: Registry, deadline: float) -> RetrainJob:
    data = registry.load()
    if data.default_version is None:
        raise RetrainFailed("the registry has no default version to fine-tune from")
    parent = data.get(data.default_version)
    registry.update_job(job_id, parent=parent.version)
    folder = job_dir(settings, job_id)

    _ensure_reference(settings.ref_dir)
    try:
        dataset: RetrainData = build_retrain_dataset(
            folder / "data", settings.ref_dir, settings.feedback_dir, data.classes,
            ref_train_images=settings.ref_train_images, ref_eval_images=settings.ref_eval_images,
            holdout_pct=settings.holdout_pct, oversample_feedback=settings.oversample_feedback,
            seed=settings.seed,
        )
    except ValueError as exc:
        raise RetrainFailed(f"no usable dataset: {exc}") from exc
    counts = {
        "ref_train": dataset.ref_train, "ref_eval": dataset.ref_eval,
        "feedback_train": dataset.feedback_train, "feedback_eval": dataset.feedback_eval,
    }
    registry.update_job(job_id, data=counts)
    logger.info("job %s: parent v%s, data %s", job_id, parent.version, counts)

    parent_weights = extract_weights(
        settings.store_dir / parent.mar, parent.sha256, folder / "parent.pt"
    )
    result = run_with_deadline(
        _train_and_evaluate, (dataset.data_yaml, parent_weights, folder / "train", settings),
        deadline - time.monotonic(),
    )
    metrics = {"candidate": result["candidate"], "current": result["current"]}
    registry.update_job(job_id, metrics=metrics)
    if time.monotonic() > deadline:
        raise JobTimedOut(f"timed out after {settings.timeout_s:.0f} s (before promotion)")

    decision = gate(result["candidate"], result["current"], settings.tolerance)
    if decision.promote and registry.load().default_version != parent.version:
        now = registry.load().default_version
        decision = GateDecision(False, f"the default changed from v{parent.version} to v{now} "
                                       "while the job ran; not promoting over it")
    trained_on = {"ref_images": dataset.ref_train, "feedback_images": dataset.feedback_train}
    record = package(
        Path(result["weights"]), registry, parent=parent.version,
        metrics=_headline(result["candidate"]), store_dir=settings.store_dir,
        trained_on=trained_on, make_default=False, reuse=False,
    )
    if not decision.promote:
        registry.set_status(record.version, "rejected")
        logger.info("job %s: rejected v%s: %s", job_id, record.version, decision.reason)
        return _finish(registry, job_id, "rejected", decision.reason,
                       candidate_version=record.version)

    registry.update_job(job_id, candidate_version=record.version)
    if not settings.deploy:
        return _finish(registry, job_id, "succeeded",
                       f"{decision.reason}; packaged as v{record.version}, not deployed "
                       "(RETRAIN_DEPLOY=false)")
    try:
        hot_swap_sync(
            settings.management_url, settings.inference_url, registry, record.version,
            model_name=settings.model_name, drain_s=settings.drain_s,
            worker_timeout_s=settings.worker_timeout_s,
        )
    except Exception as exc:
        raise RetrainFailed(
            f"{decision.reason}; packaged as v{record.version}, but the hot swap failed "
            f"({type(exc).__name__}: {exc}); v{parent.version} keeps serving"
        ) from exc
    logger.info("job %s: v%s serves now", job_id, record.version)
    return _finish(registry, job_id, "succeeded", f"{decision.reason}; v{record.version} serves")


# ------------------------------------------------------------------ one job at a time, detached


def job_process_alive(pid: int | None, job_id: str) -> bool:
    """Whether ``pid`` is still the process running ``job_id`` (not a zombie, not a reused pid)."""
    if pid is None:
        return False
    if pid == os.getpid():
        return True
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        cmdline = " ".join(proc.cmdline())
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # someone else's process we cannot inspect: assume it is the job
    return job_id in cmdline or "scripts.retrain" in cmdline


def reap_stale_jobs(registry: Registry, *, queued_grace_s: float = 60.0) -> list[str]:
    """Mark ``queued``/``running`` jobs whose process is gone as ``failed``; returns their ids.

    A queued job without a pid is being started by someone holding the lock; it is only reaped
    after ``queued_grace_s`` (pass 0 while holding the retrain lock yourself).
    """
    def stale(job: RetrainJob, now: datetime) -> bool:
        if job.state not in ACTIVE_STATES:
            return False
        if job.pid is None:
            since = job.created_at or job.started_at
            return since is None or (now - since).total_seconds() >= queued_grace_s
        return not job_process_alive(job.pid, job.job_id)

    if not any(stale(j, utcnow()) for j in registry.load().jobs):
        return []  # the common case: no write at all
    reaped: list[str] = []
    with registry.update() as data:  # re-checked under the lock: a job may have just finished
        now = utcnow()
        for job in data.jobs:
            if stale(job, now):
                job.state = "failed"
                job.finished_at = now
                job.reason = (f"the job process (pid {job.pid}) ended without finishing"
                              if job.pid else "the job process was never started")
                reaped.append(job.job_id)
    for job_id in reaped:
        logger.warning("retrain job %s was stale: marked failed", job_id)
    return reaped


def active_job(registry: Registry) -> RetrainJob | None:
    """The queued or running job, after reaping stale ones; ``None`` when idle."""
    reap_stale_jobs(registry)
    return next((j for j in registry.load().jobs if j.state in ACTIVE_STATES), None)


def _lock(settings: RetrainSettings) -> filelock.FileLock:
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    # Not thread-local: the gateway may take it from any threadpool thread.
    return filelock.FileLock(str(lock_path(settings)), thread_local=False)


def start_job_process(
    settings: RetrainSettings, *, trigger: str, registry: Registry | None = None
) -> str:
    """Record a queued job and start ``python -m scripts.retrain run`` for it, detached.

    Returns the job id at once; the job runs in its own session and survives this process.

    Raises:
        RetrainAlreadyRunning: a job process holds the lock, or a queued job's process is alive.
        OSError: the process could not be started (the job is then recorded as failed).
    """
    registry = registry or Registry(settings.registry_path)
    lock = _lock(settings)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout as exc:
        active = next((j for j in registry.load().jobs if j.state in ACTIVE_STATES), None)
        what = f"retrain job {active.job_id} is {active.state}" if active else "a retrain job runs"
        raise RetrainAlreadyRunning(what) from exc
    try:
        # Holding the lock, nobody is between recording a job and starting its process.
        reap_stale_jobs(registry, queued_grace_s=0)
        active = next((j for j in registry.load().jobs if j.state in ACTIVE_STATES), None)
        if active is not None:  # started, its process has not taken the lock yet
            raise RetrainAlreadyRunning(f"retrain job {active.job_id} is {active.state}")
        job = registry.record_job(state="queued", created_at=utcnow(), trigger=trigger)
        log = job_log(settings, job.job_id)
        log.parent.mkdir(parents=True, exist_ok=True)
        try:
            with log.open("ab") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "scripts.retrain", "run", "--job-id", job.job_id],
                    cwd=paths.ROOT,
                    env=settings.child_environment(registry.path),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # outlives a gateway restart; killable as a group
                )
        except OSError as exc:
            _finish(registry, job.job_id, "failed", f"could not start the job process: {exc}")
            raise
        registry.update_job(job.job_id, pid=proc.pid)
        # Reap it when it ends, so a long-lived starter (the gateway) collects no zombies.
        threading.Thread(target=proc.wait, name=f"reap-{job.job_id}", daemon=True).start()
        logger.info("retrain job %s started (pid %s, log %s)", job.job_id, proc.pid, log)
        return job.job_id
    finally:
        lock.release()


def run_foreground(
    settings: RetrainSettings, *, trigger: str = "cli", registry: Registry | None = None
) -> RetrainJob:
    """Record a job and run it in this process, holding the retrain lock (an operator's run).

    Raises:
        RetrainAlreadyRunning: another job holds the lock or is starting.
    """
    registry = registry or Registry(settings.registry_path)
    lock = _lock(settings)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout as exc:
        raise RetrainAlreadyRunning("a retrain job is running") from exc
    try:
        reap_stale_jobs(registry, queued_grace_s=0)
        active = next((j for j in registry.load().jobs if j.state in ACTIVE_STATES), None)
        if active is not None:
            raise RetrainAlreadyRunning(f"retrain job {active.job_id} is {active.state}")
        job = registry.record_job(state="queued", created_at=utcnow(), trigger=trigger,
                                  pid=os.getpid())
        return run_job(job.job_id, settings, registry)
    finally:
        lock.release()


def run_job_process(
    job_id: str, settings: RetrainSettings, registry: Registry | None = None
) -> RetrainJob:
    """What the job process runs: hold the retrain lock, then ``run_job``.

    Raises:
        UnknownJob: no such job.
    """
    registry = registry or Registry(settings.registry_path)
    job = registry.get_job(job_id)
    lock = _lock(settings)
    try:
        # The starter holds the lock until it has written our pid: wait for it, briefly.
        lock.acquire(timeout=settings.lock_wait_s)
    except filelock.Timeout:
        if job.state not in ACTIVE_STATES:
            return job
        return _finish(registry, job_id, "failed",
                       f"could not take {lock_path(settings)} in {settings.lock_wait_s:.0f} s")
    try:
        job = registry.get_job(job_id)
        if job.state != "queued":
            logger.warning("job %s is %s, not queued: nothing to run", job_id, job.state)
            return job
        return run_job(job_id, settings, registry)
    finally:
        lock.release()
