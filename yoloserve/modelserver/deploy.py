"""Zero-downtime model swaps on a running TorchServe: hot register, set default, drain, unregister.

A swap to version ``N`` of model ``yolo``, all through TorchServe's management API:

1. ``POST /models?url=yolo_vN.mar&model_name=yolo&initial_workers=1&synchronous=false`` (already
   registered is fine: activating a version that is loaded just skips this). Not synchronous:
   TorchServe 0.12 answers a synchronous register from the Netty I/O thread that read it, blocked
   for the whole worker start (30-40 s on a loaded 2-core box), and inference connections served
   by that thread stall meanwhile: a request that lands there waits out its client's timeout;
2. wait until version ``N`` has a READY worker (polling ``GET /models/yolo/N``), then **warm it
   up**: ``warmup_requests`` predictions pinned to ``N``, sent at once (so TorchServe batches
   them as it batches real traffic). READY only means the handler loaded; the first requests
   through the frontend, the worker's decode path and batched forwards are still cold, and
   without this the first clients after set-default paid for it (requests over 1 s under 8
   clients, docs/benchmarks.md). A warm-up that fails fails the swap: a version that cannot
   answer a prediction must not take traffic;
3. ``PUT /models/yolo/N/set-default``: unpinned predictions go to ``N`` from now on;
4. ``registry.set_default(N)``: the registry says what TorchServe serves;
5. wait ``drain_s``, then send one request pinned to each old version and wait for its answer
   (it queues behind every request already routed there: a drain barrier; unregistering kills
   the worker mid-batch and TorchServe answers none of it), then ``DELETE /models/yolo/<v>`` for
   every other registered version (404s are fine: gone already).

Failure rules: anything that fails before step 3 unregisters what this swap registered and
re-raises: the old version keeps serving, the registry is unchanged. If step 4 fails, TorchServe's
default is put back first. Failures in step 5 are logged, not raised: the new version serves and
an extra loaded version costs memory, not correctness.

Swaps are serialised by a file lock beside the registry (``.swap.lock``), across processes: a
retrain job promoting a candidate and an operator's rollback never interleave.

Example:
    >>> import httpx
    >>> async def rollback(registry: Registry) -> None:
    ...     async with httpx.AsyncClient(timeout=200) as http:
    ...         await activate(TorchServeClient(http), registry, "1")  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Any

import httpx
from PIL import Image

from yoloserve.errors import (
    ModelNotReady,
    SwapInProgress,
    UnknownVersion,
    VersionAlreadyRegistered,
    VersionRejected,
    YoloServeError,
)
from yoloserve.modelserver import MODEL_NAME
from yoloserve.modelserver.client import (
    TorchServeClient,
)
from yoloserve.modelserver.registry import ModelVersion, Registry
from yoloserve.store.lease import StoreLease

logger = logging.getLogger("yoloserve.modelserver.deploy")

WORKER_POLL_S = 0.5
# Two batches of the model config's batchSize (4): the batched forward is warmed as well.
WARMUP_REQUESTS = 8
LOCK_POLL_S = 0.2
SWAP_LEASE_NAME = "swap"
SWAP_LEASE_S = 30.0  # renewed every 10 s while a swap runs; a dead swapper frees it in 30 s


def _same_version(a: str, b: str) -> bool:
    # TorchServe echoes the archive's --version ("2"); older archives may say "2.0".
    def norm(v: str) -> str:
        return v[:-2] if v.endswith(".0") else v

    return norm(str(a)) == norm(str(b))


@contextlib.asynccontextmanager
async def swap_lock(registry: Registry, timeout: float) -> AsyncIterator[None]:
    """Hold the store's ``swap`` lease (every deployer's swaps of this registry), or raise.

    The lease is renewed while the swap runs; a swapper that died frees it within
    ``SWAP_LEASE_S``, whichever host it ran on.

    Raises:
        SwapInProgress: another swap held it for ``timeout`` seconds.
    """
    lease = StoreLease(registry.store, SWAP_LEASE_NAME, f"swap-{uuid.uuid4().hex}",
                       SWAP_LEASE_S)
    # Non-blocking attempts from the event loop, not a blocking acquire in a thread: a cancelled
    # caller must not leave a thread behind that takes the lock later and never gives it back.
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(lease.try_acquire):
        if time.monotonic() >= deadline:
            holder = await asyncio.to_thread(lease.current_holder)
            message = f"another swap ({holder}) still holds the swap lease after {timeout:.0f} s"
            raise SwapInProgress(message)
        await asyncio.sleep(LOCK_POLL_S)

    async def keep() -> None:
        while True:
            await asyncio.sleep(SWAP_LEASE_S / 3)
            await asyncio.to_thread(lease.renew)

    keeper = asyncio.create_task(keep())
    try:
        yield
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        await asyncio.to_thread(lease.release)


async def _wait_live_worker(
    client: TorchServeClient, model_name: str, version: str, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if await client.has_live_worker(model_name, version):
            return
        if time.monotonic() >= deadline:
            raise ModelNotReady(
                f"{model_name} version {version} has no READY worker after {timeout:.0f} s"
            )
        await asyncio.sleep(WORKER_POLL_S)


@functools.cache
def _probe_image() -> bytes:
    """A small blank PNG: the request of the warm-up and of the drain barrier (cheap to run)."""
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (127, 127, 127)).save(out, format="PNG")
    return out.getvalue()


async def _warm_up(
    client: TorchServeClient, model_name: str, version: str, requests: int
) -> None:
    """Send ``requests`` predictions pinned to ``version`` at once and wait for every answer.

    Raises:
        ModelNotReady: one of them failed (the message says how).
    """
    if requests <= 0:
        return
    started = time.monotonic()
    answers = await asyncio.gather(
        *(client.predict(_probe_image(), version=version) for _ in range(requests)),
        return_exceptions=True,
    )
    failed = [a for a in answers if isinstance(a, BaseException)]
    if failed:
        raise ModelNotReady(
            f"{model_name} version {version} has a READY worker but {len(failed)} of {requests} "
            f"warm-up predictions failed: {failed[0]}"
        )
    logger.info("warmed up %s version %s with %d predictions in %.2f s", model_name, version,
                requests, time.monotonic() - started)


async def _drain(client: TorchServeClient, model_name: str, version: str) -> None:
    """Return once every request already routed to ``version`` has been answered.

    A request pinned to ``version`` queues behind them (one FIFO queue per version), so its
    answer is the barrier. Unregistering earlier kills the worker mid-batch, and TorchServe 0.12
    then answers neither the batch nor what is still queued ("Unexpected job in sendError()"):
    their clients wait out their timeout. Nothing in the management API shows a busy worker.
    """
    try:
        await client.predict(_probe_image(), version=version)
    except YoloServeError as exc:  # gone already, or unhealthy: unregistering is all that is left
        logger.info("drain probe of %s version %s: %s", model_name, version, exc)


async def _registered_versions(client: TorchServeClient, model_name: str) -> list[str]:
    try:
        described = await client.describe_model(model_name, "all")
    except UnknownVersion:
        return []
    return [str(m.get("modelVersion")) for m in described if m.get("modelVersion") is not None]


async def _default_version(client: TorchServeClient, model_name: str) -> str | None:
    # Without a version, TorchServe describes the default one.
    try:
        described = await client.describe_model(model_name)
    except UnknownVersion:
        return None
    return str(described[0].get("modelVersion")) if described else None


async def _uncancellable(step: Awaitable[Any]) -> Any:
    """Await ``step`` to its end even if the caller is cancelled meanwhile (then re-raise)."""
    task = asyncio.ensure_future(step)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


async def _quietly(what: str, call: Awaitable[Any]) -> None:
    """Await a clean-up call; log instead of raising (the original error matters more)."""
    try:
        await call
    except UnknownVersion:
        pass
    except (YoloServeError, httpx.HTTPError) as exc:
        logger.warning("%s failed: %s", what, exc)


async def hot_swap(
    client: TorchServeClient,
    registry: Registry,
    version: str,
    *,
    model_name: str = MODEL_NAME,
    drain_s: float = 2.0,
    worker_timeout_s: float = 180.0,
    lock_timeout_s: float | None = None,
    warmup_requests: int = WARMUP_REQUESTS,
) -> None:
    """Make ``version`` the serving default without a restart or a dropped request.

    Args:
        client: TorchServe client (its management URL is used).
        registry: the registry that records ``version`` and gets the new default.
        version: the version to serve; its ``.mar`` must be in TorchServe's model store.
        model_name: model name inside TorchServe.
        drain_s: seconds between set-default and unregistering the old versions, so requests
            queued on them finish.
        worker_timeout_s: how long loading the new version's worker may take.
        lock_timeout_s: how long to wait for another swap; default ``2 * worker_timeout_s``.
        warmup_requests: predictions pinned to ``version`` before it becomes the default
            (0 skips the warm-up).

    Raises:
        UnknownVersion: ``version`` is not in the registry.
        VersionRejected: ``version`` failed the retrain gate.
        SwapInProgress: another swap held the lock for too long.
        ModelNotReady: the new version got no READY worker in time, or failed its warm-up.
        ModelServerError: TorchServe refused or failed a step (message included).
    """
    record = registry.get(version)
    if record.status == "rejected":
        raise VersionRejected(f"version {version} was rejected by the retrain gate")
    lock_timeout = 2 * worker_timeout_s + drain_s if lock_timeout_s is None else lock_timeout_s
    async with swap_lock(registry, lock_timeout):
        await _swap_locked(
            client, registry, record, model_name, drain_s, worker_timeout_s, warmup_requests
        )


async def _swap_locked(
    client: TorchServeClient,
    registry: Registry,
    record: ModelVersion,
    model_name: str,
    drain_s: float,
    worker_timeout_s: float,
    warmup_requests: int,
) -> None:
    version = record.version
    loaded_before = any(
        _same_version(v, version) for v in await _registered_versions(client, model_name)
    )
    # Whatever happens below, a version this swap loaded is unloaded again on failure, even when
    # the register call itself timed out (TorchServe may finish loading after we gave up).
    registered_here = not loaded_before
    previous_default = await _default_version(client, model_name)
    try:
        if not loaded_before:
            try:
                await client.register(
                    record.mar, model_name, initial_workers=1, synchronous=False,
                    timeout=worker_timeout_s,
                )
                logger.info("registered %s version %s (%s)", model_name, version, record.mar)
            except VersionAlreadyRegistered:
                registered_here = False  # somebody else loaded it meanwhile: not ours to drop
                logger.info("%s version %s is already registered", model_name, version)
        await _wait_live_worker(client, model_name, version, worker_timeout_s)
        await _warm_up(client, model_name, version, warmup_requests)
        await client.set_default(model_name, version)
    except BaseException:
        # Nothing switched yet: drop what we loaded; the old default never stopped serving.
        if registered_here:
            await _quietly(f"unregistering {version} after a failed swap",
                           client.unregister(model_name, version))
        raise

    try:
        await _uncancellable(asyncio.to_thread(registry.set_default, version))
    except asyncio.CancelledError:
        raise  # the registry write finished anyway: TorchServe and the registry agree
    except BaseException:
        # TorchServe and the registry must agree on what serves: put TorchServe back.
        if previous_default is not None and not _same_version(previous_default, version):
            await _quietly(f"restoring default {previous_default}",
                           client.set_default(model_name, previous_default))
            if registered_here:
                await _quietly(f"unregistering {version} after a failed swap",
                               client.unregister(model_name, version))
        raise
    logger.info("%s default is now version %s (was %s)", model_name, version, previous_default)

    await asyncio.sleep(drain_s)
    for other in await _registered_versions(client, model_name):
        if not _same_version(other, version):
            # A loaded CPU can take seconds per batch: a fixed drain alone is not enough.
            await _quietly(f"draining old version {other}", _drain(client, model_name, other))
            await _quietly(f"unregistering old version {other}",
                           client.unregister(model_name, other))
            logger.info("unregistered %s version %s", model_name, other)


async def activate(
    client: TorchServeClient,
    registry: Registry,
    version: str,
    *,
    model_name: str = MODEL_NAME,
    drain_s: float = 2.0,
    worker_timeout_s: float = 180.0,
    lock_timeout_s: float | None = None,
) -> ModelVersion:
    """Serve an existing registry version again (the rollback verb); returns its record.

    Raises:
        UnknownVersion: no such version in the registry.
        VersionRejected: the version failed the retrain gate and is never served.
        SwapInProgress, ModelNotReady, ModelServerError: as ``hot_swap``.
    """
    await hot_swap(
        client, registry, version, model_name=model_name, drain_s=drain_s,
        worker_timeout_s=worker_timeout_s, lock_timeout_s=lock_timeout_s,
    )
    return registry.get(version)


@contextlib.contextmanager
def _no_running_loop() -> Iterator[None]:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        yield
        return
    raise RuntimeError("hot_swap_sync() inside an event loop: await hot_swap() instead")


def hot_swap_sync(
    management_url: str,
    inference_url: str,
    registry: Registry,
    version: str,
    *,
    model_name: str = MODEL_NAME,
    drain_s: float = 2.0,
    worker_timeout_s: float = 180.0,
    lock_timeout_s: float | None = None,
    warmup_requests: int = WARMUP_REQUESTS,
    transport: httpx.AsyncBaseTransport | None = None,
) -> None:
    """``hot_swap`` for synchronous callers (CLIs, the retrain job), with its own HTTP client.

    ``transport`` replaces the network (tests pass an ``httpx.MockTransport``).
    """
    with _no_running_loop():
        asyncio.run(
            _hot_swap_with_client(
                management_url, inference_url, registry, version, transport,
                model_name=model_name, drain_s=drain_s, worker_timeout_s=worker_timeout_s,
                lock_timeout_s=lock_timeout_s, warmup_requests=warmup_requests,
            )
        )


def swap_timeout(worker_timeout_s: float) -> httpx.Timeout:
    """HTTP timeouts of a client that swaps: register answers only once the worker loaded."""
    return httpx.Timeout(worker_timeout_s + 30.0, connect=5.0)


async def _hot_swap_with_client(
    management_url: str,
    inference_url: str,
    registry: Registry,
    version: str,
    transport: httpx.AsyncBaseTransport | None,
    **kw: Any,
) -> None:
    timeout = swap_timeout(float(kw.get("worker_timeout_s", 180.0)))
    model_name = str(kw.get("model_name", MODEL_NAME))
    async with httpx.AsyncClient(timeout=timeout, transport=transport) as http:
        client = TorchServeClient(http, inference_url, management_url, model_name)
        await hot_swap(client, registry, version, **kw)
