"""``DEPLOY_BACKEND=torchserve``: today's hot swap through TorchServe's management API.

``yoloserve.modelserver.deploy`` does the swap (register, wait for a worker, set-default, drain,
unregister); this module wraps it as a ``Deployer``, as it is.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

from yoloserve.modelserver import deploy
from yoloserve.modelserver.client import TorchServeClient
from yoloserve.modelserver.registry import ModelVersion, Registry
from yoloserve.modelserver.replicas import discover
from yoloserve.modelserver.rollout.base import DeployResult, SwapOptions


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
    async def _torchserve(self) -> AsyncIterator[list[TorchServeClient]]:
        """A client per replica (``replicas.discover``), or the caller's one client."""
        if self._client is not None:
            yield [self._client]
            return
        o = self.options
        timeout = deploy.swap_timeout(o.worker_timeout_s)
        async with httpx.AsyncClient(timeout=timeout, transport=self._transport) as http:
            yield [TorchServeClient(http, inference, management, o.model_name)
                   for inference, management in discover(o.inference_url, o.management_url)]

    def _swap_kw(self) -> dict[str, Any]:
        o = self.options
        return {"model_name": o.model_name, "drain_s": o.drain_s,
                "worker_timeout_s": o.worker_timeout_s, "lock_timeout_s": o.lock_timeout_s}

    async def deploy(self, version: str) -> DeployResult:
        """Hot-swap ``version`` in (``deploy.hot_swap``); its errors are raised as they are."""
        previous = self.registry.load().default_version
        async with self._torchserve() as clients:
            # One replica after the other: each keeps serving while it swaps; a failure stops
            # the rollout there (the replicas done so far serve the new version).
            for client in clients:
                await deploy.hot_swap(client, self.registry, version, **self._swap_kw())
        return DeployResult(version, self.backend, True, f"v{version} serves (hot swap)",
                            previous=previous)

    async def activate(self, version: str) -> ModelVersion:
        """``deploy.activate``: the same swap, for a version that exists already."""
        async with self._torchserve() as clients:
            for client in clients:
                record = await deploy.activate(client, self.registry, version,
                                               **self._swap_kw())
        return record
