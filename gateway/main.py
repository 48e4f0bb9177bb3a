"""The gateway's composition root: ``create_app(settings)`` builds every object the app uses.

The lifespan owns the single ``httpx.AsyncClient`` towards TorchServe (one connection pool for
the whole process) and the lazy embedder; tests build apps with their own settings and a fake
network (``transport=httpx.MockTransport(...)``).

Run it with ``python -m gateway`` or ``uvicorn gateway.main:app``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from gateway.config import Settings, get_settings
from gateway.embeddings import EmbedderProvider, EmbeddingBackend, default_loader
from gateway.errors import install_error_handlers
from gateway.feedback import FeedbackService
from gateway.labelstudio.images import TaskImageFetcher
from gateway.labelstudio.service import LabelStudioService
from gateway.metrics import GatewayMetrics
from gateway.middleware import BodyLimitMiddleware, MetricsMiddleware, RequestIdMiddleware
from gateway.prediction_cache import PredictionCache
from gateway.retrain_trigger import RetrainTrigger, count_job_states, serving_version
from gateway.review.service import ReviewService
from gateway.routes import api_router
from gateway.routes.labelstudio import router as labelstudio_router
from yoloserve.drift_summary import read_summary
from yoloserve.feedback.export import BackgroundExporter, open_exporter
from yoloserve.feedback.ledger import FeedbackLedger
from yoloserve.modelserver.client import TorchServeClient
from yoloserve.modelserver.registry import open_registry
from yoloserve.retrain.settings import RetrainSettings
from yoloserve.store.engine import open_store
from yoloserve.tracking.status import read_status

_DESCRIPTION = (
    "Object detection over HTTP. Every non-2xx answer is "
    '`{"error": {"code", "message", "request_id"}}`; see docs/api-contract.md.'
)


def create_app(
    settings: Settings | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    embedder_loader: Callable[[], EmbeddingBackend] | None = None,
    retrain_settings: RetrainSettings | None = None,
) -> FastAPI:
    """Build the gateway app.

    Args:
        settings: Configuration; ``get_settings()`` (the environment) when None.
        transport: Transport of the TorchServe client; tests pass an ``httpx.MockTransport``.
        embedder_loader: Builds the embedding backend on first use; the real
            ``yoloserve.embeddings.embedder`` artifact when None.
        retrain_settings: Where ``every_k`` (feedback rows between two retrain intents) comes
            from; ``RETRAIN_*`` from the environment when None. The jobs themselves run with
            the controller's settings.

    Returns:
        The app, with its lifespan, routes, middleware and error handlers.
    """
    settings = settings or get_settings()
    loader = embedder_loader or default_loader(settings.embedder_path)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        timeout = httpx.Timeout(settings.predict_timeout_s, connect=settings.connect_timeout_s)
        limits = httpx.Limits(
            max_connections=settings.max_connections,
            max_keepalive_connections=settings.max_connections,
        )
        async with httpx.AsyncClient(timeout=timeout, limits=limits, transport=transport) as http:
            app.state.http = http
            app.state.torchserve = TorchServeClient(
                http,
                settings.torchserve.inference_url,
                settings.torchserve.management_url,
                settings.torchserve.model_name,
            )
            # Created here, not at build time: its lock belongs to the serving event loop.
            app.state.embedder = EmbedderProvider(loader, retry_s=settings.embedder_retry_s)
            # prod_data.csv follows the store: after each commit, and now for what was committed
            # while this gateway was down (or by another replica).
            exports = BackgroundExporter(exporter)
            exports.request()
            app.state.feedback = FeedbackService(
                settings, registry, ledger, exports, torchserve=app.state.torchserve,
                embedder=app.state.embedder, metrics=metrics, cache=cache, review=review,
                retrain=app.state.retrain,
            )
            fetcher = TaskImageFetcher(http, settings.labelstudio,
                                       max_bytes=settings.max_upload_bytes,
                                       max_pixels=settings.max_image_pixels)
            app.state.labelstudio = LabelStudioService(
                settings, fetcher, app.state.feedback, torchserve=app.state.torchserve,
                metrics=metrics, cache=cache,
            )
            try:
                yield
            finally:
                exports.close()

    app = FastAPI(
        title="yoloserve gateway",
        version="1.0.0",
        description=_DESCRIPTION,
        lifespan=lifespan,
    )
    store = open_store(settings.store.url)
    registry = open_registry(store)
    # Feedback rows and keys live in the store; an older release's CSV and journal are
    # imported into it on first start.
    ledger = FeedbackLedger(store)
    exporter = open_exporter(store, settings.data_dir)
    app.state.settings = settings
    app.state.registry = registry
    app.state.prediction_cache = cache = PredictionCache(
        settings.prediction_cache_entries, settings.prediction_cache_ttl_s
    )
    app.state.metrics = metrics = GatewayMetrics(
        job_states=lambda: count_job_states(registry),
        serving_version=lambda: serving_version(registry),
        drift_summary=lambda: read_summary(settings.drift_summary_file),
        mlflow_status=lambda: read_status(settings.mlflow_status_dir),
        prediction_cache=lambda: cache.stats,
        review_depth=lambda: review.depth(),
    )
    app.state.review = review = ReviewService(settings, metrics, store)
    every_k = (retrain_settings or RetrainSettings()).every_k
    app.state.retrain = RetrainTrigger(int(every_k), registry, metrics)
    install_error_handlers(app)
    app.include_router(api_router)
    # The Label Studio ML backend (/labelstudio/*) is an integration beside the contract's
    # resources, included here so gateway/routes/__init__.py stays the contract's list.
    app.include_router(labelstudio_router)

    # add_middleware wraps what is already there: the last one added runs first.
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        retry_after_s=settings.retry_after_s,
        message=f"the request is too large: images are limited to {settings.max_upload_bytes} B",
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "X-API-Key", "X-Request-ID", "Idempotency-Key"],
            expose_headers=[
                "X-Request-ID", "X-Model-Version", "Retry-After", "Idempotent-Replayed"
            ],
        )
    app.add_middleware(RequestIdMiddleware)
    return app


app = create_app()
