"""Helpers of the closed-loop integration tests (hot swap, retrain job, crash recovery) on the
shared stack."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.integration.conftest import Stack, start_gateway
from yoloserve.feedback.ledger import FeedbackLedger
from yoloserve.feedback.store import count_rows
from yoloserve.modelserver.packaging import MODEL_NAME
from yoloserve.modelserver.registry import Registry
from yoloserve.modelserver.settings import TorchServeSettings
from yoloserve.retrain.settings import RetrainSettings
from yoloserve.store.engine import open_store
from yoloserve.training.dataset import iter_images, yolo_label_lines


def wait_no_active_job(registry: Registry, timeout: float = 900) -> None:
    """Let a retrain job another test started finish first: it may swap the model too."""
    deadline = time.monotonic() + timeout
    while any(j.state in ("queued", "running") for j in registry.load().jobs):
        assert time.monotonic() < deadline, "a retrain job is still running"
        time.sleep(1)


def write_feedback(feedback_dir: Path, n: int, seed: int) -> list[str]:
    """Images and YOLO labels in the layout ``FeedbackRecorder`` writes (flat, same stem)."""
    (feedback_dir / "images").mkdir(parents=True, exist_ok=True)
    (feedback_dir / "labels").mkdir(parents=True, exist_ok=True)
    ids = []
    for i, (image, shapes) in enumerate(iter_images(n, seed)):
        feedback_id = f"20260101T0000{i:02d}-retrainjob{seed}{i:03d}"
        (feedback_dir / "labels" / f"{feedback_id}.txt").write_text(
            "\n".join(yolo_label_lines(shapes, *image.size)) + "\n"
        )
        image.save(feedback_dir / "images" / f"{feedback_id}.jpg", quality=90)
        ids.append(feedback_id)
    return ids


def loaded_versions(stack: Stack) -> list[str]:
    """Versions of the model TorchServe has registered now."""
    url = f"{stack.torchserve.management_url}/models/{MODEL_NAME}/all"
    return sorted(str(m["modelVersion"]) for m in httpx.get(url, timeout=10).json())


def restore_default(stack: Stack, version: str) -> None:
    """Serve ``version`` again if a test left another one serving (the session stack is shared:
    the other integration tests expect the first version)."""
    if stack.registry.load().default_version != version or loaded_versions(stack) != [version]:
        # The intent POST /models/{v}/activate records, carried out by the stack's controller.
        registry = stack.registry
        job = registry.wait_job(registry.request_activation(version).job_id, 300)
        assert job.state == "succeeded", f"{job.reason}\n{stack.trainer_log()}"


def torchserve_settings(stack: Stack) -> TorchServeSettings:
    """The stack's TorchServe, as a job (or trainer) is pointed at it."""
    return TorchServeSettings(inference_url=stack.torchserve.inference_url,
                              management_url=stack.torchserve.management_url)


def retrain_env(settings: RetrainSettings) -> dict[str, str]:
    """The fields ``settings`` sets, as the variables a trainer (or gateway) reads: ``RETRAIN_*``,
    and a nested settings class's own (``STORE_*``, ``TORCHSERVE_*``) when it is set (only
    those: a default dict field's JSON cannot go through supervisord's environment)."""
    env = settings.child_environment()
    nested = settings.nested_settings()
    prefixes = tuple(str(nested[name].model_config.get("env_prefix"))
                     for name in settings.model_fields_set & nested.keys())
    keys = {f"RETRAIN_{name.upper()}" for name in settings.model_fields_set - nested.keys()}
    return {k: v for k, v in env.items() if k in keys or (prefixes and k.startswith(prefixes))}


@contextlib.contextmanager
def trainer_running(stack: Stack, env: Mapping[str, str]) -> Iterator[None]:
    """The stack's controller with ``env`` (``RETRAIN_*``) while the block runs, then the
    stack's default one again."""
    try:
        stack.start_trainer(env, timeout=60)
    except Exception:
        print(stack.trainer_log())
        raise
    try:
        yield
    finally:
        print(f"--- trainer log\n{stack.trainer_log()}")
        stack.start_trainer(timeout=60)


@contextlib.contextmanager
def gateway_with(stack: Stack, env: Mapping[str, str]) -> Iterator[None]:
    """The shared gateway restarted with ``env`` over its own, then back as it was."""
    before = dict(stack.extra_env)
    stack.extra_env.update(env)
    start_gateway(stack)
    try:
        yield
    finally:
        stack.extra_env.clear()
        stack.extra_env.update(before)
        start_gateway(stack)


@dataclass
class Answer:
    """One request: when it ended, its status (0: no answer), the version that answered, and what
    else matters when it failed."""

    ended: float
    status: int
    version: str | None = None
    retry_after: str | None = None
    body: str = ""
    error: str | None = None


class Traffic:
    """``threads`` clients posting one image to ``/predict`` in a loop until stopped."""

    def __init__(self, url: str, image: bytes, *, threads: int, api_key: str | None = None,
                 timeout_s: float = 60) -> None:
        self.url, self.image, self.timeout_s = url, image, timeout_s
        self.headers = {"X-API-Key": api_key} if api_key else {}
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(threads)]

    def _loop(self) -> None:
        with httpx.Client(base_url=self.url, timeout=self.timeout_s,
                          headers=self.headers) as client:
            while not self._stop.is_set():
                try:
                    r = client.post("/predict", files={"file": ("s.jpg", self.image)})
                    answer = Answer(time.monotonic(), r.status_code,
                                    r.headers.get("X-Model-Version"),
                                    r.headers.get("Retry-After"),
                                    "" if r.status_code == 200 else r.text[:300])
                except httpx.HTTPError as exc:
                    answer = Answer(time.monotonic(), 0, error=repr(exc))
                    time.sleep(0.05)  # refused at once: do not spin
                with self._lock:
                    self.answers.append(answer)

    def count(self) -> int:
        """Requests answered (or refused) so far."""
        with self._lock:
            return len(self.answers)

    def wait_for(self, n: int, timeout: float = 300) -> None:
        """Wait until ``n`` requests have ended."""
        deadline = time.monotonic() + timeout
        while self.count() < n:
            assert time.monotonic() < deadline, f"only {self.count()} requests in {timeout} s"
            time.sleep(0.1)

    def first_ok_after(self, t0: float, version: str, timeout: float) -> float:
        """Seconds from ``t0`` to the first 200 from ``version`` that ended after it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                ok = [a.ended for a in self.answers
                      if a.ended > t0 and a.status == 200 and a.version == version]
            if ok:
                return min(ok) - t0
            time.sleep(0.1)
        raise AssertionError(f"no 200 from v{version} within {timeout} s of the kill")

    def __enter__(self) -> Traffic:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)


def wait_exported(stack: Stack, timeout_s: float = 20.0) -> Path:
    """``prod_data.csv`` once the gateway's exporter caught up with the store (every committed
    row in it); fails after ``timeout_s``."""
    path = stack.data_dir / "prod_data.csv"
    total = FeedbackLedger(open_store(stack.database_url)).total()
    deadline = time.monotonic() + timeout_s
    while count_rows(path) != total:
        assert time.monotonic() < deadline, (
            f"{path} has {count_rows(path)} rows, the store {total}")
        time.sleep(0.1)
    return path
