"""Picks the deployer ``DEPLOY_BACKEND`` names: the only module that imports the implementations.

Example:
    >>> from yoloserve.modelserver.registry import Registry
    >>> from yoloserve.store.engine import Store
    >>> registry = Registry(Store("sqlite:////tmp/example-store.db"))
    >>> deployer_from_settings(DeploySettings(), registry).backend
    'torchserve'
"""

from __future__ import annotations

import httpx

from yoloserve.kube import KubeSettings
from yoloserve.modelserver.client import TorchServeClient
from yoloserve.modelserver.registry import Registry
from yoloserve.modelserver.rollout.base import Deployer, DeploySettings, SwapOptions
from yoloserve.modelserver.rollout.kserve import KServeDeployer
from yoloserve.modelserver.rollout.torchserve import TorchServeDeployer


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
        return KServeDeployer(settings, registry, kube=kube, transport=transport)
    return TorchServeDeployer(registry, swap, client=client, transport=transport)
