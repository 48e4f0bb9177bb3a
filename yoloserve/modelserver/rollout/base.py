"""The rollout interface: what every deployer answers to, and the settings that pick one.

``Deployer`` (the interface), ``DeploySettings`` (``DEPLOY_*``), ``DeployResult`` (what a rollout
decided), ``SwapOptions`` (how the TorchServe deployer reaches TorchServe) and ``run_sync``. The
implementations (``torchserve``, ``kserve``) import this module only; ``factory`` alone imports
them. See the package docstring for what ``deploy`` and ``activate`` promise.

Example:
    >>> DeploySettings().backend
    'torchserve'
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from yoloserve import paths
from yoloserve.modelserver import MODEL_NAME
from yoloserve.modelserver.client import DEFAULT_INFERENCE_URL, DEFAULT_MANAGEMENT_URL
from yoloserve.modelserver.registry import ModelVersion

T = TypeVar("T")

# Knative's queue-proxy counts every request of a revision (``revision_request_count``, labels
# ``namespace_name``, ``revision_name``, ``response_code_class``): the canary's 5xx share.
DEFAULT_ERROR_QUERY = (
    'sum(rate(revision_request_count{namespace_name="$namespace",revision_name="$revision",'
    'response_code_class="5xx"}[$window])) / '
    'sum(rate(revision_request_count{namespace_name="$namespace",revision_name="$revision"}'
    "[$window]))"
)


class DeploySettings(BaseSettings):
    """How new versions go out. Environment variables are ``DEPLOY_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="DEPLOY_", extra="ignore")

    backend: Literal["torchserve", "kserve"] = Field(
        default="torchserve", description="torchserve: hot swap; kserve: InferenceService canary"
    )
    kserve_name: str = Field(default=MODEL_NAME, description="The InferenceService")
    kserve_namespace: str | None = Field(default=None, description="None: the pod's namespace")
    kserve_storage_root: str = Field(
        default="pvc://yoloserve-models/kserve/yolo",
        description="KServe layout root; version N is <root>/v<N>",
    )
    kserve_layout_dir: Path | None = Field(
        default=paths.MODELS_DIR / "kserve" / MODEL_NAME,
        description="Where kserve_storage_root is mounted here: v<N>/ is written there first; "
        "None: something else writes it",
    )
    store_dir: Path = Field(default=paths.STORE_DIR, description="The .mar files")
    canary_percent: int = Field(default=10, ge=1, le=99, description="Traffic to a new version")
    ready_timeout_s: float = Field(default=600.0, gt=0, description="Per rollout step")
    poll_s: float = Field(default=2.0, gt=0, description="InferenceService status polls")
    canary_observe_s: float = Field(
        default=300.0, ge=0, description="Canary takes traffic this long; also the query window"
    )
    prometheus_url: str | None = Field(
        default=None, description="Prometheus HTTP API; None: the error-rate check is skipped"
    )
    max_error_rate: float = Field(default=0.05, ge=0, le=1, description="Canary 5xx share limit")
    error_query: str = Field(
        default=DEFAULT_ERROR_QUERY,
        description="PromQL; $namespace, $revision and $window are filled in",
    )
    require_canary_traffic: bool = Field(
        default=False, description="A canary that saw no request fails the check"
    )


@dataclass(frozen=True)
class DeployResult:
    """What a rollout decided.

    Attributes:
        version: the version rolled out.
        backend: ``torchserve`` or ``kserve``.
        promoted: whether it serves all traffic now (and is the registry's default).
        reason: why, for a human (the job's reason quotes it).
        previous: the registry's default before the rollout.
        checks: what was measured on the way (canary revision, error rate, ...).
    """

    version: str
    backend: str
    promoted: bool
    reason: str
    previous: str | None = None
    checks: dict[str, Any] = field(default_factory=dict)


class Deployer(Protocol):
    """Makes a version serve (``deploy``) or serves an existing one again (``activate``)."""

    backend: str

    async def deploy(self, version: str) -> DeployResult:
        """Roll ``version`` out; see the package docstring for result versus raise."""
        ...

    async def activate(self, version: str) -> ModelVersion:
        """Serve ``version`` now (rollback); answers its record, now ``serving``."""
        ...


@dataclass(frozen=True)
class SwapOptions:
    """How the TorchServe deployer reaches TorchServe and paces a swap (see ``deploy.hot_swap``)."""

    management_url: str = DEFAULT_MANAGEMENT_URL
    inference_url: str = DEFAULT_INFERENCE_URL
    model_name: str = MODEL_NAME
    drain_s: float = 2.0
    worker_timeout_s: float = 180.0
    lock_timeout_s: float | None = None



def run_sync(step: Coroutine[Any, Any, T]) -> T:
    """Run a deployer call from synchronous code (the retrain job, CLIs).

    Raises:
        RuntimeError: called inside a running event loop (await the call there instead).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(step)
    step.close()
    raise RuntimeError("run_sync() inside an event loop: await the deployer call instead")
