"""HTTP routes, one router per resource, collected in ``api_router``."""

from fastapi import APIRouter

from gateway.routes import health, metrics, models, predict

api_router = APIRouter()
api_router.include_router(predict.router)
api_router.include_router(models.router)
api_router.include_router(health.router)
api_router.include_router(metrics.router)

__all__ = ["api_router"]
