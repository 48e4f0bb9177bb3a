"""The Label Studio ML backend protocol's request bodies, as Label Studio 1.x sends them.

Shapes read from Label Studio's ``ml/api_connector.py`` (the caller) and
label-studio-ml-backend's ``label_studio_ml/api.py`` (the reference server). Label Studio sends
more than these fields; the rest is ignored, so a newer Label Studio keeps working.

Example:
    >>> PredictRequest.model_validate({"tasks": [{"id": 1, "data": {"image": "/x.png"}},],
    ...                                "label_config": "<View/>"}).tasks[0].data
    {'image': '/x.png'}
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Incoming(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Task(_Incoming):
    """A task: its id and its data (the image's URL under the labeling config's field)."""

    id: int | None = None
    data: dict[str, Any] = Field(description="Task data, e.g. {\"image\": \"/data/upload/...\"}")


class PredictRequest(_Incoming):
    """``POST /predict``: tasks to pre-label, with the project's labeling config."""

    tasks: list[Task]
    label_config: str = Field(min_length=1, description="The project's labeling config (XML)")
    project: str | None = Field(default=None, description="'<project id>.<created at>'")
    model_version: str | None = None
    params: dict[str, Any] | None = Field(
        default=None, description="Label Studio's task data login and password, and context"
    )


class SetupRequest(_Incoming):
    """``POST /setup``: sent when the backend is connected and before predictions."""

    project: str | None = None
    schema_: str = Field(alias="schema", min_length=1, description="The labeling config (XML)")
    hostname: str | None = None
    access_token: str | None = None
    extra_params: dict[str, Any] | None = None


class Annotation(_Incoming):
    """An annotation as the webhook carries it: ``result`` holds the boxes."""

    id: int
    result: list[dict[str, Any]] = Field(default_factory=list)
    updated_at: str | None = None
    was_cancelled: bool = False


class Project(_Incoming):
    """The project part of a webhook event."""

    id: int
    label_config: str | None = None


class WebhookEvent(_Incoming):
    """A webhook event: ``action`` and, for annotation events, the annotation, its task and
    project (Label Studio's webhook payload; its ML backend webhook sends the same)."""

    action: str = Field(min_length=1, description="e.g. ANNOTATION_CREATED")
    annotation: Annotation | None = None
    task: Task | None = None
    project: Project | None = None
