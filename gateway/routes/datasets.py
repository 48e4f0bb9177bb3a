"""``GET /datasets/feedback/export`` (admin): the labels collected so far, as a zip.

The export is built by ``yoloserve.datasets.export`` into a temporary file in the thread pool,
then streamed from disk (the zip may be far larger than the gateway's memory should hold) and
removed when the answer is sent. Formats and layouts: docs/api-contract.md.
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from gateway.deps import RegistryDep, SettingsDep, require_admin_key
from gateway.errors import error_responses
from yoloserve.datasets.export import ExportFormat, export_feedback
from yoloserve.modelserver.registry import Registry

router = APIRouter(tags=["datasets"])


def build_export(registry: Registry, data_dir: Path, format_name: str) -> Path:
    """The export zip in a temporary file (the caller removes it)."""
    fd, name = tempfile.mkstemp(prefix="feedback-export-", suffix=".zip")
    os.close(fd)
    path = Path(name)
    try:
        data = registry.load(jobs=False)
        export_feedback(registry.store, data_dir, data.classes, format_name, path,
                        data.version_classes)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


@router.get(
    "/datasets/feedback/export",
    response_class=FileResponse,
    responses={200: {"content": {"application/zip": {}},
                     "description": "The dataset as a zip"},
               **error_responses(400, 401, 403, 404, 500)},
    dependencies=[Depends(require_admin_key)],
    summary="Download the collected labels (feedback, labelled reviews) as YOLO or COCO",
)
async def export_collected(
    settings: SettingsDep,
    registry: RegistryDep,
    format: Annotated[ExportFormat, Query(description="yolo or coco")] = "yolo",
) -> FileResponse:
    """A zip: ``yolo`` (``data.yaml``, ``images/``, ``labels/``) or ``coco``
    (``annotations.json``, ``images/``). Another format: 400 ``invalid_parameter`` (the query
    parameter's schema); 404
    ``no_labels_collected`` before any feedback."""
    path = await run_in_threadpool(build_export, registry, settings.data_dir, format)
    filename = f"feedback-{format}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.zip"
    return FileResponse(path, media_type="application/zip", filename=filename,
                        background=BackgroundTask(path.unlink, missing_ok=True))
