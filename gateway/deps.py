"""FastAPI dependencies: what routes declare instead of reaching for globals.

Everything comes from ``app.state``, filled by ``create_app`` and its lifespan (the composition
root), so an app built with other settings in a test sees only its own objects. The dependencies
are ``async def`` although they never await: FastAPI runs a plain ``def`` dependency in its thread
pool, one thread hop each, which was half of the gateway's own time per request (measured: p50
2.6-3.5 ms -> 1.3-1.8 ms in process, docs/benchmarks.md).

Auth: write routes take ``Depends(require_api_key)``, admin routes ``Depends(require_admin_key)``.
With no keys configured at all, both are open (local development). Admin routes accept
``admin_api_keys``, or ``api_keys`` when no admin key is configured.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Annotated

import httpx
from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPBasic, HTTPBasicCredentials

from gateway.config import Settings
from gateway.embeddings import EmbedderProvider
from gateway.feedback import FeedbackService
from gateway.labelstudio.service import LabelStudioService
from gateway.metrics import GatewayMetrics
from gateway.middleware import request_id_of
from gateway.prediction_cache import PredictionCache
from gateway.retrain_trigger import RetrainTrigger
from gateway.review.service import ReviewService
from yoloserve.errors import Forbidden, Unauthorized
from yoloserve.modelserver.client import TorchServeClient
from yoloserve.modelserver.registry import Registry


async def get_app_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    settings: Settings = request.app.state.settings
    return settings


async def get_http_client(request: Request) -> httpx.AsyncClient:
    """The app's single outgoing HTTP client (owned by the lifespan)."""
    client: httpx.AsyncClient = request.app.state.http
    return client


async def get_torchserve(request: Request) -> TorchServeClient:
    """The TorchServe client bound to the app's HTTP client."""
    torchserve: TorchServeClient = request.app.state.torchserve
    return torchserve


async def get_metrics(request: Request) -> GatewayMetrics:
    """The app's metrics."""
    metrics: GatewayMetrics = request.app.state.metrics
    return metrics


async def get_embedder_provider(request: Request) -> EmbedderProvider:
    """Lazy access to the embedder."""
    provider: EmbedderProvider = request.app.state.embedder
    return provider


async def get_registry(request: Request) -> Registry:
    """The model registry (versions and jobs in the store)."""
    registry: Registry = request.app.state.registry
    return registry


async def get_feedback_service(request: Request) -> FeedbackService:
    """Records feedback (built by the lifespan)."""
    service: FeedbackService = request.app.state.feedback
    return service


async def get_prediction_cache(request: Request) -> PredictionCache:
    """Recent predictions, for the feedback on the same image."""
    cache: PredictionCache = request.app.state.prediction_cache
    return cache


async def get_retrain_trigger(request: Request) -> RetrainTrigger:
    """Starts retrain jobs."""
    trigger: RetrainTrigger = request.app.state.retrain
    return trigger


async def get_review(request: Request) -> ReviewService:
    """The review queue."""
    review: ReviewService = request.app.state.review
    return review


async def get_labelstudio(request: Request) -> LabelStudioService:
    """The Label Studio ML backend (built by the lifespan)."""
    service: LabelStudioService = request.app.state.labelstudio
    return service


async def get_request_id(request: Request) -> str:
    """This request's id (also sent back as ``X-Request-ID``)."""
    return request_id_of(request.scope)


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
ClientDep = Annotated[httpx.AsyncClient, Depends(get_http_client)]
TorchServeDep = Annotated[TorchServeClient, Depends(get_torchserve)]
MetricsDep = Annotated[GatewayMetrics, Depends(get_metrics)]
EmbedderDep = Annotated[EmbedderProvider, Depends(get_embedder_provider)]
RequestIdDep = Annotated[str, Depends(get_request_id)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
FeedbackDep = Annotated[FeedbackService, Depends(get_feedback_service)]
RetrainDep = Annotated[RetrainTrigger, Depends(get_retrain_trigger)]
PredictionCacheDep = Annotated[PredictionCache, Depends(get_prediction_cache)]
ReviewDep = Annotated[ReviewService, Depends(get_review)]
LabelStudioDep = Annotated[LabelStudioService, Depends(get_labelstudio)]

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)
ApiKeyHeaderDep = Annotated[str | None, Security(_api_key_header)]
_basic = HTTPBasic(auto_error=False, description="Label Studio's ML backend basic auth: the "
                   "password is a gateway API key, the user name is not checked")
BasicDep = Annotated[HTTPBasicCredentials | None, Security(_basic)]


def _matches(key: str, allowed: Iterable[str]) -> bool:
    # compare_digest on every candidate: timing does not reveal which key nearly matched.
    results = [hmac.compare_digest(key.encode(), candidate.encode()) for candidate in allowed]
    return any(results)


async def require_api_key(settings: SettingsDep, key: ApiKeyHeaderDep) -> None:
    """Allow write routes: any configured key (plain or admin) passes.

    Raises:
        Unauthorized: Keys are configured and none was sent.
        Forbidden: The key sent is not one of them.
    """
    if not settings.auth_enabled:
        return
    if not key:
        raise Unauthorized()
    if not _matches(key, [*settings.api_keys, *settings.admin_api_keys]):
        raise Forbidden("this API key is not valid")


async def require_admin_key(settings: SettingsDep, key: ApiKeyHeaderDep) -> None:
    """Allow admin routes: only admin keys pass (plain keys when no admin key is configured).

    Raises:
        Unauthorized: Keys are configured and none was sent.
        Forbidden: The key sent is not an admin key.
    """
    if not settings.auth_enabled:
        return
    if not key:
        raise Unauthorized()
    if not _matches(key, settings.admin_api_keys or settings.api_keys):
        raise Forbidden("this API key may not use admin routes")


async def require_api_key_or_basic(settings: SettingsDep, key: ApiKeyHeaderDep,
                                   basic: BasicDep) -> None:
    """Allow a write route that Label Studio calls: ``X-API-Key`` (a webhook's headers) or HTTP
    basic auth whose password is a key (an ML backend connection's basic auth).

    Raises:
        Unauthorized: Keys are configured and neither was sent.
        Forbidden: What was sent is not a key.
    """
    await require_api_key(settings, key or (basic.password if basic is not None else None))
