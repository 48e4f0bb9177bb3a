"""Fixtures shared by every test folder: an offline Ultralytics and seeded sample images.

The environment is set at import, before any test module imports torch or Ultralytics:
``OMP_WAIT_POLICY=PASSIVE`` because the test machines have 2 cores shared with training jobs, and
OpenMP threads that spin while waiting made a 2-thread forward 10-30x slower there (measured).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from collections.abc import Callable, Iterator  # noqa: E402  (the environment above must come first)
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402
import pytest  # noqa: E402

from tests.support import real_photos  # noqa: E402
from yoloserve.offline import configure_offline  # noqa: E402
from yoloserve.paths import DEFAULT_WEIGHTS  # noqa: E402

configure_offline()


@pytest.fixture(scope="session")
def default_weights() -> Path:
    """The shipped YOLO weights (3 classes); tests only rely on them running, not on accuracy."""
    if not DEFAULT_WEIGHTS.is_file():
        pytest.fail(f"{DEFAULT_WEIGHTS} is missing: it ships with the repository")
    return DEFAULT_WEIGHTS


@pytest.fixture(scope="session")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real photos of every kind a user uploads (``tests.support.real_photos``)."""
    return real_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="session")
def reference(default_weights: Path) -> Any:
    """Ultralytics' own model on the shipped weights: what the parity tests compare with."""
    from ultralytics import YOLO

    return YOLO(str(default_weights))


@pytest.fixture(scope="session")
def sample_jpegs(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int, int], list[Path]]:
    """Factory: ``n`` seeded synthetic shape images written as JPEG files, cached per (n, seed)."""
    from yoloserve.training.dataset import iter_images

    root = tmp_path_factory.mktemp("samples")
    cache: dict[tuple[int, int], list[Path]] = {}

    def make(n: int, seed: int) -> list[Path]:
        if (n, seed) not in cache:
            paths = []
            for i, (image, _) in enumerate(iter_images(n, seed)):
                path = root / f"s{seed}_{i}.jpg"
                image.save(path, quality=90)
                paths.append(path)
            cache[(n, seed)] = paths
        return cache[(n, seed)]

    return make


NEVER_K = 1_000_000_000  # RETRAIN_EVERY_K that no test reaches

# The real platform (TorchServe + gateway over isolated models/ and data/), one per session, shared
# by tests/integration and tests/browser; see tests/integration/conftest.py.
@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, default_weights: Path) -> Iterator[Any]:
    """TorchServe + gateway over an isolated copy of models/ and data/."""
    from tests.integration.conftest import ADMIN_KEY, USER_KEY, Stack, start_gateway

    stack = Stack.create(
        tmp_path_factory.mktemp("stack"),
        weights=default_weights,
        user_key=USER_KEY,
        admin_key=ADMIN_KEY,
        # Feedback never starts a retrain by itself here: the tests that post feedback would
        # otherwise cross a multiple of k in an order-dependent way, and a job process would
        # swap the model under the next test. The loop's tests set RETRAIN_EVERY_K themselves.
        extra_env={"RETRAIN_EVERY_K": str(NEVER_K)},
    )
    try:
        try:
            stack.start_torchserve(300)
        except Exception:
            print(stack.torchserve.log_tail(80))
            raise
        start_gateway(stack)
        # The controller carries out what the gateway records (activations, retrains).
        stack.start_trainer(timeout=90)
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def gateway(stack: Any) -> Iterator[httpx.Client]:
    """A client of the live gateway."""
    with httpx.Client(base_url=stack.gateway_url, timeout=60) as client:
        yield client


# One real PostgreSQL per session (devstack/postgres.py), started only when a test asks for it.
# Missing binaries fail, not skip: CI must notice a machine that `make setup` did not prepare.
@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """A throwaway PostgreSQL server on a free port (as root: run as an unprivileged user)."""
    from devstack.postgres import PostgresNotFound, PostgresServer

    try:
        server = PostgresServer().start()
    except PostgresNotFound as exc:
        pytest.fail(f"PostgreSQL is needed by this test and is not installed: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database on the session's server: its SQLAlchemy URL (psycopg 3)."""
    import re
    import uuid

    stem = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:40]
    name = f"t_{stem}_{uuid.uuid4().hex[:8]}"
    url = postgres_server.new_database(name)
    yield url
    postgres_server.drop_database(name)  # WITH (FORCE): connections a test left open too
