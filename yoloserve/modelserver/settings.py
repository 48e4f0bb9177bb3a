"""Where TorchServe is: ``TORCHSERVE_*``, read alike by everyone who talks to it.

The gateway (predictions, readiness), the controller and retrain jobs (hot swaps) and
``scripts/models.py`` nest or read the same class, so one set of variables points them all at
one model server.

Example:
    >>> TorchServeSettings(inference_url="http://serving:8085").inference_url
    'http://serving:8085'
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from yoloserve.modelserver import MODEL_NAME
from yoloserve.modelserver.client import DEFAULT_INFERENCE_URL, DEFAULT_MANAGEMENT_URL


class TorchServeSettings(BaseSettings):
    """``TORCHSERVE_*``: the model server's two APIs and the name the model is served under."""

    model_config = SettingsConfigDict(env_prefix="TORCHSERVE_", extra="ignore")

    inference_url: str = Field(
        default=DEFAULT_INFERENCE_URL,
        description="TorchServe's inference API (predictions, /ping); KServe: the predictor",
    )
    management_url: str = Field(
        default=DEFAULT_MANAGEMENT_URL,
        description="TorchServe's management API (workers, registering and swapping versions)",
    )
    model_name: str = Field(
        default=MODEL_NAME, description="The name TorchServe serves the model under"
    )
