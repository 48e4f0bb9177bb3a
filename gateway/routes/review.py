"""The review queue: ``GET /review``, its images, ``POST /review/{review_id}/dismiss``.

The gateway samples live predictions into the queue after answering them (``gateway/review/``);
a user labels an item with ``POST /feedback`` (``review_id`` in ``labels``) or drops it here.

Keys: listing the queue and reading its images are read routes, open like ``GET /models``
(the images are users' uploads: keep the gateway behind the same network rules as ``/predict``);
dismissing needs a user or admin key, like ``/feedback``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, cast

from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.responses import FileResponse

from gateway.deps import ReviewDep, require_api_key
from gateway.errors import error_responses
from gateway.review.store import StoredItem
from yoloserve.schemas import (
    REVIEW_ID_PATTERN,
    Box,
    ImageSize,
    ReviewItem,
    ReviewList,
    ReviewReason,
)

router = APIRouter(tags=["review"])

ReviewIdPath = Annotated[
    str, Path(pattern=REVIEW_ID_PATTERN, description="An id from GET /review, e.g. rv-1f3a...")
]


def image_url(review_id: str) -> str:
    """The gateway path that answers an item's stored image."""
    return f"/review/{review_id}/image"


def to_item(stored: StoredItem) -> ReviewItem:
    """The contract's view of a stored item."""
    return ReviewItem(
        review_id=stored.review_id,
        reason=cast(ReviewReason, stored.reason),  # the store only holds what strategies say
        created_at=datetime.fromisoformat(stored.created_at),
        model_version=stored.model_version,
        image_url=image_url(stored.review_id),
        image=ImageSize(width=stored.width, height=stored.height),
        boxes=[Box.model_validate(box) for box in stored.boxes],
        request_id=stored.request_id,
        priority=stored.priority,
    )


@router.get(
    "/review",
    response_model=ReviewList,
    responses=error_responses(400),
    summary="Predictions worth labelling (the review queue), highest priority first",
)
async def list_review(
    review: ReviewDep,
    limit: Annotated[int, Query(ge=1, le=100, description="Most items answered (1..100)")] = 20,
) -> ReviewList:
    """Open items of the review queue; ``total`` counts them all.

    The gateway samples predictions of ``/predict`` and ``/predict/image`` whose boxes have a
    confidence near the threshold (``uncertain``), a class scarce in the reference data
    (``rare``) or an embedding far from it (``novel``), at most ``GATEWAY_REVIEW_MAX_PER_MINUTE``
    per minute, ``GATEWAY_REVIEW_MAX_ITEMS`` open at most (the lowest priority goes first).
    Send the corrected boxes with ``POST /feedback``, ``review_id`` in ``labels``, to close an
    item; ``POST /review/{review_id}/dismiss`` drops it. A read route: open unless configured.
    """
    items, total = await review.list_open(limit)
    return ReviewList(items=[to_item(item) for item in items], total=total)


@router.get(
    "/review/{review_id}/image",
    response_class=FileResponse,
    responses={
        200: {
            "content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}, "image/bmp": {}},
            "description": "The image as it was uploaded",
        },
        **error_responses(400, 404, 409),
    },
    summary="The stored image of an open review item (its image_url)",
)
async def review_image(review_id: ReviewIdPath, review: ReviewDep) -> FileResponse:
    """The uploaded image of an open item; 404 ``unknown_review_item``, 409
    ``review_item_closed`` once it was labelled, dismissed or evicted (its image is deleted)."""
    path, media_type = await review.image(review_id)
    return FileResponse(path, media_type=media_type)


@router.post(
    "/review/{review_id}/dismiss",
    status_code=204,
    response_class=Response,
    responses=error_responses(400, 401, 403, 404, 409),
    dependencies=[Depends(require_api_key)],
    summary="Drop an item of the review queue without labelling it",
)
async def dismiss(review_id: ReviewIdPath, review: ReviewDep) -> Response:
    """204 once the item is closed as dismissed (its image is deleted); 404
    ``unknown_review_item``; 409 ``review_item_closed`` when it was already closed. Needs a
    user or admin key (``X-API-Key``) when the gateway has keys."""
    await review.close(review_id, "dismissed")
    return Response(status_code=204)
