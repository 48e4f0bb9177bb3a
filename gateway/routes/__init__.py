"""HTTP routes, one router per resource, collected in ``api_router``."""

from fastapi import APIRouter

from gateway.routes import (
    datasets,
    feedback,
    health,
    jobs,
    metrics,
    models,
    predict,
    retrain,
    review,
)

api_router = APIRouter()
api_router.include_router(predict.router)
api_router.include_router(feedback.router)
api_router.include_router(models.router)
api_router.include_router(retrain.router)
api_router.include_router(jobs.router)
api_router.include_router(review.router)
api_router.include_router(datasets.router)
api_router.include_router(health.router)
api_router.include_router(metrics.router)

__all__ = ["api_router"]
