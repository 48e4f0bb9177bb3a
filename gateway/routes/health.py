"""``GET /health`` (the process is alive) and ``GET /ready`` (predictions can be served)."""

from __future__ import annotations

from fastapi import APIRouter

from gateway.deps import RegistryDep, SettingsDep, TorchServeDep
from gateway.errors import error_responses
from yoloserve.errors import (
    ModelNotReady,
    ModelServerError,
    ModelServerUnavailable,
    RegistryError,
    UnknownVersion,
)
from yoloserve.modelserver.registry import Registry
from yoloserve.schemas import HealthResponse, ModelRef, ReadyResponse

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthResponse, summary="Liveness")
async def health() -> HealthResponse:
    """200 while the gateway process runs; it asks nothing of TorchServe."""
    return HealthResponse()


@router.get(
    "/ready",
    response_model=ReadyResponse,
    responses=error_responses(503),
    summary="Readiness: TorchServe answers and the default model has a live worker",
)
async def ready(
    settings: SettingsDep, torchserve: TorchServeDep, registry: RegistryDep
) -> ReadyResponse:
    """503 ``model_server_unavailable`` or ``model_not_ready`` (with the reason) otherwise.

    With ``GATEWAY_READINESS=ping`` (KServe) only ``/ping`` is asked, and the version reported is
    the registry's default: the revision KServe serves once a rollout is promoted.
    """
    name, timeout = settings.torchserve.model_name, settings.ready_timeout_s
    try:
        healthy = await torchserve.ping(timeout=timeout)
    except ModelServerError as exc:
        # A readiness probe is answered 503 whatever the failure, a timeout included.
        raise ModelServerUnavailable(f"TorchServe does not answer /ping: {exc.message}") from exc
    if not healthy:
        raise ModelServerUnavailable("TorchServe answers /ping but reports itself unhealthy")
    if settings.readiness == "ping":
        return _ready_by_ping(name, registry)
    try:
        described = await torchserve.describe_model(name, timeout=timeout)
    except UnknownVersion as exc:
        raise ModelNotReady(f"model {name!r} is not registered on TorchServe") from exc
    except ModelServerError as exc:
        raise ModelServerUnavailable(
            f"TorchServe's management API does not answer: {exc.message}"
        ) from exc
    live = torchserve.live_workers(described)
    version = str(described[0].get("modelVersion", "")) if described else ""
    if live == 0:
        raise ModelNotReady(f"model {name!r} version {version or '?'} has no live worker")
    return ReadyResponse(model=ModelRef(name=name, version=version), live_workers=live)


def _ready_by_ping(name: str, registry: Registry) -> ReadyResponse:
    try:
        version = registry.head().default_version
    except RegistryError as exc:
        raise ModelNotReady(f"the registry cannot be read: {exc.message}") from exc
    if version is None:
        raise ModelNotReady("the registry has no default version yet")
    return ReadyResponse(model=ModelRef(name=name, version=version))
