"""Rollouts on KServe (``DEPLOY_BACKEND=kserve``): a version as a canary, checked, promoted.

The InferenceService (``serving.kserve.io/v1beta1``, ``DEPLOY_KSERVE_NAME`` in
``DEPLOY_KSERVE_NAMESPACE``) runs our ServingRuntime ``yoloserve-torchserve`` (the
``yoloserve/serving`` image, plain TorchServe, inference on 8080: ``/ping``,
``/predictions/yolo``); each version is its own storage folder, so each Knative revision serves
exactly one version (a request pinned to another one gets TorchServe's 404, ``unknown_version``
at the gateway), and a canary's traffic share is KServe's split between two revisions:

    storageUri of version N = <DEPLOY_KSERVE_STORAGE_ROOT>/v<N>
                            = pvc://yoloserve-models/kserve/yolo/v<N>     (the default root)
        config/config.properties     model_snapshot naming yolo version N only
        model-store/yolo_vN.mar

The deployer writes that folder itself before the patch when ``DEPLOY_KSERVE_LAYOUT_DIR`` (the
local mount of the storage root, ``models/kserve/yolo`` by default) is set: the version's
``.mar`` copied from ``DEPLOY_STORE_DIR`` and a ``config.properties`` whose snapshot names that
version only (``yoloserve.modelserver.kserve_layout``'s snapshot and properties).

``deploy(N)`` (a retrain job's promotion, ``scripts/models.py redeploy``)::

    merge-patch spec.predictor: model.storageUri = .../vN, canaryTrafficPercent = P (10)
    wait: Ready, observedGeneration caught up, a new latestReadyRevision with P % of the traffic
    canary check: Prometheus /api/v1/query, the revision's 5xx share over DEPLOY_CANARY_OBSERVE_S
                  (no DEPLOY_PROMETHEUS_URL: skipped, and the result says so)
    passed:  merge-patch canaryTrafficPercent = null (100 % to the new revision), wait for it,
             registry.set_default(N)                                        -> promoted
    failed, or a wait timed out:
             merge-patch storageUri = the previous URI, canaryTrafficPercent = 0 (all traffic back
             on the revision that served before), registry unchanged         -> rolled back

``activate(N)`` (rollback, ``POST /models/N/activate``) serves N at once: storageUri = .../vN with
no canary, wait for 100 % on the new revision, then ``registry.set_default``; if it never gets
ready, the previous URI is restored (canary 0) and ``ModelNotReady`` is raised.

Like the TorchServe hot swap, a rollout holds ``models/.swap.lock`` and the registry says what
serves only after the cluster does; API failures raise ``KubernetesError`` after a best-effort
rollback.
"""

from __future__ import annotations

import asyncio
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

import httpx

from yoloserve.errors import KubernetesError, ModelNotReady, RegistryError, VersionRejected
from yoloserve.files import atomic_write
from yoloserve.kube import AsyncKubeClient, KubeSettings, resource_path
from yoloserve.modelserver import MODEL_NAME
from yoloserve.modelserver.deploy import swap_lock
from yoloserve.modelserver.kserve_layout import config_properties, model_snapshot
from yoloserve.modelserver.registry import ModelVersion, Registry
from yoloserve.modelserver.rollout.base import DeployResult, DeploySettings

logger = logging.getLogger("yoloserve.modelserver.rollout.kserve")

API_VERSION = "serving.kserve.io/v1beta1"
PLURAL = "inferenceservices"


def storage_uri(root: str, version: str) -> str:
    """Where version ``version`` lies in the KServe layout.

    Example:
        >>> storage_uri("pvc://yoloserve-models/kserve/yolo", "3")
        'pvc://yoloserve-models/kserve/yolo/v3'
    """
    return f"{root.rstrip('/')}/v{version}"


def write_version_layout(record: ModelVersion, store_dir: Path, root: Path) -> Path:
    """Write ``<root>/v<N>/`` (config + model-store) for one version; answers the folder.

    Raises:
        RegistryError: the version's ``.mar`` is not in ``store_dir``.
    """
    source = store_dir / record.mar
    if not source.is_file():
        raise RegistryError(f"{record.mar} is not in the model store {store_dir}")
    out = root / f"v{record.version}"
    (out / "model-store").mkdir(parents=True, exist_ok=True)
    (out / "config").mkdir(parents=True, exist_ok=True)
    target = out / "model-store" / record.mar
    partial = target.with_name(f".{record.mar}.partial")
    # Copy then rename: a pod starting meanwhile sees no archive or the whole one.
    shutil.copyfile(source, partial)
    partial.replace(target)
    text = config_properties(model_snapshot([record], record.version, MODEL_NAME))
    atomic_write(out / "config" / "config.properties", text.encode(), sync_dir=True)
    return out


# ------------------------------------------------------------------ reading the status


def _predictor_spec(isvc: dict[str, Any]) -> dict[str, Any]:
    return dict(isvc.get("spec", {}).get("predictor", {}))


def _predictor_status(isvc: dict[str, Any]) -> dict[str, Any]:
    return dict(isvc.get("status", {}).get("components", {}).get("predictor", {}))


def _condition(isvc: dict[str, Any], kind: str) -> dict[str, Any]:
    for condition in isvc.get("status", {}).get("conditions", []):
        if condition.get("type") == kind:
            return dict(condition)
    return {}


def _traffic(isvc: dict[str, Any]) -> dict[str, int]:
    """Percent of the traffic per revision, as the predictor's status reports it."""
    out: dict[str, int] = {}
    for target in _predictor_status(isvc).get("traffic", []):
        name = target.get("revisionName")
        if name:
            out[name] = out.get(name, 0) + int(target.get("percent") or 0)
    return out


def _serving_at(
    isvc: dict[str, Any], generation: int, before: str | None, percent: int
) -> str | None:
    """The new revision if it is ready and has ``percent`` % of the traffic, else None."""
    status = isvc.get("status", {})
    if int(status.get("observedGeneration") or 0) < generation:
        return None
    if _condition(isvc, "Ready").get("status") != "True":
        return None
    predictor = _predictor_status(isvc)
    ready = predictor.get("latestReadyRevision")
    if not ready or ready != predictor.get("latestCreatedRevision") or ready == before:
        return None
    return str(ready) if _traffic(isvc).get(str(ready)) == percent else None


def _describe(isvc: dict[str, Any]) -> str:
    """The status in one line, for a timeout's reason."""
    ready = _condition(isvc, "Ready")
    what = f"Ready={ready.get('status', '?')}"
    if ready.get("reason") or ready.get("message"):
        what += f" ({ready.get('reason', '')}: {ready.get('message', '')})"
    return f"{what}, traffic {_traffic(isvc) or '{}'}"


# ------------------------------------------------------------------ the canary check


@dataclass(frozen=True)
class CanaryCheck:
    """The error-rate check's verdict (``as_dict`` goes to ``DeployResult.checks``)."""

    passed: bool
    reason: str
    skipped: bool = False
    error_rate: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "skipped": self.skipped, "error_rate": self.error_rate,
                "reason": self.reason}


def _sample(body: dict[str, Any]) -> float | None:
    """The one number of an instant-vector answer; None when it holds no sample (no traffic)."""
    if body.get("status") != "success":
        raise ValueError(f"Prometheus answered {body.get('errorType')}: {body.get('error')}")
    result = body.get("data", {}).get("result", [])
    if not result:
        return None
    value = float(result[0]["value"][1])
    return None if math.isnan(value) else value


class KServeDeployer:
    """A ``Deployer`` for a KServe InferenceService.

    Args:
        settings: ``DEPLOY_*`` (name, namespace, storage root, canary, timeouts, Prometheus).
        registry: the registry the outcome is recorded in.
        kube: where the Kubernetes API is; ``KUBE_*`` when None.
        transport: replaces the network for the Kubernetes API and Prometheus (tests).
    """

    backend = "kserve"

    def __init__(
        self,
        settings: DeploySettings,
        registry: Registry,
        *,
        kube: KubeSettings | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.kube = kube or KubeSettings()
        self._transport = transport

    @property
    def namespace(self) -> str:
        return self.settings.kserve_namespace or self.kube.default_namespace()

    @property
    def path(self) -> str:
        return resource_path(API_VERSION, PLURAL, self.namespace, self.settings.kserve_name)

    def _uri(self, version: str) -> str:
        return storage_uri(self.settings.kserve_storage_root, version)

    def _lock_timeout(self) -> float:
        return 3 * self.settings.ready_timeout_s + self.settings.canary_observe_s

    async def _servable(self, version: str) -> ModelVersion:
        record = self.registry.get(version)
        if record.status == "rejected":
            raise VersionRejected(f"version {version} was rejected by the retrain gate")
        if self.settings.kserve_layout_dir is not None:
            await asyncio.to_thread(write_version_layout, record, self.settings.store_dir,
                                    self.settings.kserve_layout_dir)
        return record

    # -------------------------------------------------------------- the verbs

    async def deploy(self, version: str) -> DeployResult:
        """Canary, check, promote or roll back (see the module docstring).

        Raises:
            UnknownVersion, VersionRejected: as the TorchServe swap.
            RegistryError: its ``.mar`` is missing (when the layout is written here).
            SwapInProgress: another rollout held the swap lock too long.
            KubernetesError: the API failed (after a best-effort rollback).
        """
        await self._servable(version)
        previous = self.registry.head().default_version
        s = self.settings
        target = self._uri(version)
        async with (
            swap_lock(self.registry, self._lock_timeout()),
            AsyncKubeClient(self.kube, self._transport) as kube,
        ):
            isvc = await kube.get(self.path)
            before_uri = _predictor_spec(isvc).get("model", {}).get("storageUri")
            before_rev = _predictor_status(isvc).get("latestReadyRevision")
            checks: dict[str, Any] = {"storage_uri": target, "previous_storage_uri": before_uri,
                                      "previous_revision": before_rev}

            def result(promoted: bool, reason: str) -> DeployResult:
                return DeployResult(version, self.backend, promoted, reason, previous, checks)

            if before_uri == target and "canaryTrafficPercent" not in _predictor_spec(isvc):
                await asyncio.to_thread(self.registry.set_default, version)
                return result(True, f"v{version} already serves all traffic ({target})")

            async def roll_back(why: str) -> DeployResult:
                restored = await self._roll_back(kube, before_uri)
                checks["rolled_back"] = restored
                tail = (f"rolled back to {before_uri}" if restored
                        else "the rollback patch failed too: check the InferenceService")
                logger.warning("v%s not promoted: %s; %s", version, why, tail)
                return result(False, f"{why}; {tail}; v{previous} keeps serving")

            canary = {"spec": {"predictor": {"canaryTrafficPercent": s.canary_percent,
                                             "model": {"storageUri": target}}}}
            try:
                patched = await kube.merge_patch(self.path, canary)
                generation = int(patched.get("metadata", {}).get("generation") or 0)
                revision, last = await self._wait(
                    kube, lambda i: _serving_at(i, generation, before_rev, s.canary_percent)
                )
                if revision is None:
                    return await roll_back(
                        f"the canary of v{version} was not ready with {s.canary_percent} % "
                        f"of the traffic after {s.ready_timeout_s:.0f} s ({_describe(last)})"
                    )
                checks["canary_revision"] = revision
                verdict = await self._check(revision)
                checks["canary_check"] = verdict.as_dict()
                if not verdict.passed:
                    return await roll_back(
                        f"the canary {revision} failed the error-rate check: {verdict.reason}"
                    )
                patched = await kube.merge_patch(
                    self.path, {"spec": {"predictor": {"canaryTrafficPercent": None}}}
                )
                generation = int(patched.get("metadata", {}).get("generation") or 0)
                promoted, last = await self._wait(
                    kube, lambda i: _serving_at(i, generation, None, 100)
                )
                if promoted != revision:
                    return await roll_back(
                        f"v{version} did not reach 100 % of the traffic after "
                        f"{s.ready_timeout_s:.0f} s ({_describe(last)})"
                    )
                await asyncio.to_thread(self.registry.set_default, version)
            except BaseException:
                # An API error, a cancelled job, a failed registry write: the cluster must not
                # serve what the registry does not say, so put the previous version back.
                await self._roll_back(kube, before_uri)
                raise
        logger.info("v%s promoted on %s (canary %s)", version, self.path, revision)
        return result(True, f"canary {revision} at {s.canary_percent} %: {verdict.reason}; "
                            f"promoted to 100 %, v{version} serves")

    async def activate(self, version: str) -> ModelVersion:
        """Serve ``version`` at once, without a canary (the rollback verb).

        Raises:
            UnknownVersion, VersionRejected, SwapInProgress: as ``deploy``.
            ModelNotReady: its revision did not take all traffic in time (previous URI restored).
            KubernetesError: the API failed.
        """
        await self._servable(version)
        target = self._uri(version)
        async with (
            swap_lock(self.registry, self._lock_timeout()),
            AsyncKubeClient(self.kube, self._transport) as kube,
        ):
            isvc = await kube.get(self.path)
            before_uri = _predictor_spec(isvc).get("model", {}).get("storageUri")
            before_rev = _predictor_status(isvc).get("latestReadyRevision")
            if before_uri == target and "canaryTrafficPercent" not in _predictor_spec(isvc):
                return await asyncio.to_thread(self.registry.set_default, version)
            patch = {"spec": {"predictor": {"canaryTrafficPercent": None,
                                            "model": {"storageUri": target}}}}
            try:
                patched = await kube.merge_patch(self.path, patch)
                generation = int(patched.get("metadata", {}).get("generation") or 0)
                revision, last = await self._wait(
                    kube, lambda i: _serving_at(i, generation, before_rev, 100)
                )
                if revision is None:
                    raise ModelNotReady(
                        f"v{version} did not take all traffic on {self.path} after "
                        f"{self.settings.ready_timeout_s:.0f} s ({_describe(last)}); "
                        f"restored {before_uri}"
                    )
                record = await asyncio.to_thread(self.registry.set_default, version)
            except BaseException:
                await self._roll_back(kube, before_uri)
                raise
        logger.info("v%s activated on %s (revision %s)", version, self.path, revision)
        return record

    # -------------------------------------------------------------- steps

    async def _wait(
        self, kube: AsyncKubeClient, reached: Callable[[dict[str, Any]], str | None]
    ) -> tuple[str | None, dict[str, Any]]:
        """Poll the InferenceService until ``reached`` names a revision, or the timeout."""
        deadline = time.monotonic() + self.settings.ready_timeout_s
        while True:
            isvc = await kube.get(self.path)
            revision = reached(isvc)
            if revision is not None or time.monotonic() >= deadline:
                return revision, isvc
            await asyncio.sleep(self.settings.poll_s)

    async def _roll_back(self, kube: AsyncKubeClient, before_uri: str | None) -> bool:
        """All traffic back on the revision that served before; False if the patch failed."""
        predictor: dict[str, Any] = {"canaryTrafficPercent": 0}
        if before_uri:
            predictor["model"] = {"storageUri": before_uri}
        try:
            await kube.merge_patch(self.path, {"spec": {"predictor": predictor}})
        except KubernetesError as exc:
            logger.error("rolling %s back to %s failed: %s", self.path, before_uri, exc)
            return False
        return True

    async def _check(self, revision: str) -> CanaryCheck:
        """The canary's 5xx share over the observation window, against the limit."""
        s = self.settings
        if not s.prometheus_url:
            return CanaryCheck(True, "error-rate check skipped: no Prometheus configured "
                                     "(DEPLOY_PROMETHEUS_URL)", skipped=True)
        await asyncio.sleep(s.canary_observe_s)
        window = f"{max(int(s.canary_observe_s), 60)}s"
        query = Template(s.error_query).safe_substitute(
            namespace=self.namespace, revision=revision, window=window
        )
        try:
            async with httpx.AsyncClient(base_url=s.prometheus_url, timeout=30.0,
                                         transport=self._transport) as http:
                response = await http.get("/api/v1/query", params={"query": query})
                response.raise_for_status()
                rate = _sample(response.json())
        except (httpx.HTTPError, ValueError, KeyError, IndexError) as exc:
            return CanaryCheck(False, f"Prometheus could not be asked ({exc}): not promoting "
                                      "blind")
        if rate is None:
            if s.require_canary_traffic:
                return CanaryCheck(False, f"no request reached the canary in {window}")
            return CanaryCheck(True, f"no request reached the canary in {window}: "
                                     "nothing to judge")
        verdict = rate <= s.max_error_rate
        relation = "<=" if verdict else ">"
        return CanaryCheck(verdict, f"5xx share {rate:.3f} {relation} {s.max_error_rate:.3f} "
                                    f"over {window}", error_rate=rate)
