"""How a new version goes out, whatever serves it: the ``Deployer`` interface and its selection.

Two implementations, chosen by ``DEPLOY_BACKEND`` (``DeploySettings``):

- ``torchserve`` (default; local and compose): ``TorchServeDeployer``, today's hot swap through
  TorchServe's management API (``yoloserve.modelserver.deploy``: register, wait for a worker,
  set-default, drain, unregister), wrapped as it is;
- ``kserve`` (Kubernetes): ``yoloserve.modelserver.kserve.KServeDeployer``, the InferenceService's
  storageUri patched as a canary at ``DEPLOY_CANARY_PERCENT``, an error-rate check, promotion to
  100 % or a rollback.

Both keep the same registry rules: ``registry.set_default`` only once the new version serves,
nothing changed when the rollout stops before that; both take ``models/.swap.lock``.

``deploy(version)`` answers a ``DeployResult`` when the rollout ran to a decision (``promoted``
false: it was rolled back, ``reason`` says why) and raises when it could not run (unknown or
rejected version, the model server or the Kubernetes API failing). ``activate(version)`` (the
rollback verb) serves an existing version at once, with no canary, and answers its record.

Example:
    >>> registry = Registry(Path("/tmp/example-registry.json"))
    >>> deployer = deployer_from_settings(DeploySettings(), registry)
    >>> deployer.backend
    'torchserve'
    >>> result = run_sync(deployer.deploy("2"))  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import httpx
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from yoloserve import paths
from yoloserve.kube import KubeSettings
from yoloserve.modelserver import MODEL_NAME, deploy
from yoloserve.modelserver.client import (
    DEFAULT_INFERENCE_URL,
    DEFAULT_MANAGEMENT_URL,
    TorchServeClient,
)
from yoloserve.modelserver.registry import ModelVersion, Registry

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
        """Roll ``version`` out; see the module docstring for result versus raise."""
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


class TorchServeDeployer:
    """Today's hot swap, as a ``Deployer``.

    Args:
        registry: the registry the swap records in.
        options: TorchServe's URLs, model name and the swap's timings.
        client: a TorchServe client to use (the gateway's); one of our own per call when None.
        transport: transport of that client of our own (tests pass an ``httpx.MockTransport``).
    """

    backend = "torchserve"

    def __init__(
        self,
        registry: Registry,
        options: SwapOptions | None = None,
        *,
        client: TorchServeClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.registry = registry
        self.options = options or SwapOptions()
        self._client = client
        self._transport = transport

    @contextlib.asynccontextmanager
    async def _torchserve(self) -> AsyncIterator[TorchServeClient]:
        if self._client is not None:
            yield self._client
            return
        o = self.options
        timeout = deploy.swap_timeout(o.worker_timeout_s)
        async with httpx.AsyncClient(timeout=timeout, transport=self._transport) as http:
            yield TorchServeClient(http, o.inference_url, o.management_url, o.model_name)

    def _swap_kw(self) -> dict[str, Any]:
        o = self.options
        return {"model_name": o.model_name, "drain_s": o.drain_s,
                "worker_timeout_s": o.worker_timeout_s, "lock_timeout_s": o.lock_timeout_s}

    async def deploy(self, version: str) -> DeployResult:
        """Hot-swap ``version`` in (``deploy.hot_swap``); its errors are raised as they are."""
        previous = self.registry.load().default_version
        async with self._torchserve() as client:
            await deploy.hot_swap(client, self.registry, version, **self._swap_kw())
        return DeployResult(version, self.backend, True, f"v{version} serves (hot swap)",
                            previous=previous)

    async def activate(self, version: str) -> ModelVersion:
        """``deploy.activate``: the same swap, for a version that exists already."""
        async with self._torchserve() as client:
            return await deploy.activate(client, self.registry, version, **self._swap_kw())


def deployer_from_settings(
    settings: DeploySettings,
    registry: Registry,
    swap: SwapOptions | None = None,
    *,
    client: TorchServeClient | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    kube: KubeSettings | None = None,
) -> Deployer:
    """The deployer ``DEPLOY_BACKEND`` names.

    Args:
        settings: ``DEPLOY_*``.
        registry: the registry both deployers record in.
        swap: TorchServe's URLs and swap timings (the ``torchserve`` backend).
        client: the caller's TorchServe client (the ``torchserve`` backend).
        transport: replaces the network of the clients the deployer makes (TorchServe, or the
            Kubernetes API and Prometheus); tests pass one ``httpx.MockTransport``.
        kube: where the Kubernetes API is (the ``kserve`` backend); ``KUBE_*`` when None.
    """
    if settings.backend == "kserve":
        # Here, not at the top: kserve imports this module's settings and result types.
        from yoloserve.modelserver.kserve import KServeDeployer

        return KServeDeployer(settings, registry, kube=kube, transport=transport)
    return TorchServeDeployer(registry, swap, client=client, transport=transport)


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
