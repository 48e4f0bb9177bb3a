"""``CONTROLLER_*``: who this controller is and how it is elected."""

from __future__ import annotations

import socket
import uuid
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_id() -> str:
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"


class ControllerSettings(BaseSettings):
    """How the controller takes its lease. Environment variables are ``CONTROLLER_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="CONTROLLER_", extra="ignore")

    id: str = Field(default_factory=_default_id, description="This controller's identity "
                    "(Kubernetes: the pod name); unique among the candidates")
    lease_backend: Literal["store", "kubernetes"] = Field(
        default="store", description="store: a row in the store; kubernetes: a Lease object")
    lease_name: str = Field(default="yoloserve-controller", description="The lease's name")
    lease_namespace: str | None = Field(
        default=None, description="kubernetes: the Lease's namespace; None: the pod's own")
    lease_duration_s: float = Field(
        default=15.0, gt=0, description="A holder that stops renewing loses it after this")
