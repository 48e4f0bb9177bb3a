"""``GET /metrics``: Prometheus text exposition of this app's registry."""

from __future__ import annotations

from fastapi import APIRouter, Response

from gateway.deps import MetricsDep
from gateway.metrics import CONTENT_TYPE

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
    summary="Prometheus metrics",
)
async def metrics(gateway_metrics: MetricsDep) -> Response:
    """Request counts and latency by route and status, model-server errors, feedback, retrains."""
    return Response(gateway_metrics.render(), media_type=CONTENT_TYPE)
