"""``yoloserve.modelserver.rollout.kserve`` against a fake Kubernetes API and Prometheus.

The fake keeps one InferenceService and plays KServe's controller on it the way the v1beta1 API
reports it: a new ``storageUri`` makes a new Knative revision; ``canaryTrafficPercent`` P splits
the traffic P / 100 - P between the newest ready revision and ``latestRolledoutRevision``; no
canary sends 100 % to the newest ready revision (which becomes the rolled-out one); 0 keeps all
of it on the rolled-out revision. Prometheus answers the canary's 5xx share as an instant vector.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from yoloserve import errors as e
from yoloserve.kube import MERGE_PATCH, KubeSettings
from yoloserve.modelserver.registry import Registry
from yoloserve.modelserver.rollout.base import DeploySettings
from yoloserve.modelserver.rollout.kserve import KServeDeployer, storage_uri
from yoloserve.store.engine import Store

ROOT = "pvc://yoloserve-models/kserve/yolo"
KUBE = "http://kube.test"
PROMETHEUS = "http://prometheus.test:9090"
ISVC = "/apis/serving.kserve.io/v1beta1/namespaces/ml/inferenceservices/yolo"
CLASSES = ["circle", "square", "triangle"]


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge(out.get(key), value)
    return out


class FakeCluster:
    """One InferenceService with KServe's status, and a Prometheus, behind one transport."""

    def __init__(self, uri: str) -> None:
        self.spec: dict[str, Any] = {"predictor": {"model": {
            "modelFormat": {"name": "pytorch"}, "protocolVersion": "v1", "storageUri": uri,
        }}}
        self.revisions: list[tuple[str, str]] = [("yolo-predictor-00001", uri)]
        self.ready = self.rolled_out = "yolo-predictor-00001"
        self.generation = self.observed = 1
        self.new_revisions_get_ready = True
        self.error_rate: float | None = 0.0
        self.prometheus_status = 200
        self.patches: list[dict[str, Any]] = []
        self.queries: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "prometheus.test":
            return self._prometheus(request)
        if request.url.path != ISVC:
            return httpx.Response(404, json={"kind": "Status", "reason": "NotFound",
                                             "message": f"{request.url.path} not found"})
        if request.method == "GET":
            self._reconcile()
            return httpx.Response(200, json=self.isvc())
        if request.method == "PATCH":
            assert request.headers["content-type"] == MERGE_PATCH
            patch = json.loads(request.content)
            self.patches.append(patch)
            self.spec = merge(self.spec, patch["spec"])
            self.generation += 1
            return httpx.Response(200, json=self.isvc())  # status not reconciled yet
        return httpx.Response(405, json={"message": f"{request.method} not allowed"})

    # --- the controller

    @property
    def canary(self) -> int | None:
        return self.spec["predictor"].get("canaryTrafficPercent")

    def _reconcile(self) -> None:
        uri = self.spec["predictor"]["model"]["storageUri"]
        if self.revisions[-1][1] != uri:
            self.revisions.append((f"yolo-predictor-{len(self.revisions) + 1:05d}", uri))
        if self.new_revisions_get_ready:
            self.ready = self.revisions[-1][0]
        if self.canary is None:
            self.rolled_out = self.ready
        self.observed = self.generation

    def traffic(self) -> dict[str, int]:
        if self.canary is None or self.ready == self.rolled_out:
            split = {self.ready if self.canary is None else self.rolled_out: 100}
        else:
            split = {self.ready: self.canary, self.rolled_out: 100 - self.canary}
        return {name: percent for name, percent in split.items() if percent}

    def serving_uri(self) -> str:
        """The storageUri of the revision that has all the traffic (fails on a split)."""
        (name,) = self.traffic()
        return dict(self.revisions)[name]

    def isvc(self) -> dict[str, Any]:
        latest = self.revisions[-1][0]
        ready = "True" if self.ready == latest else "False"
        return {
            "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "yolo", "namespace": "ml", "generation": self.generation},
            "spec": copy.deepcopy(self.spec),
            "status": {
                "observedGeneration": self.observed,
                "conditions": [
                    {"type": "PredictorReady", "status": ready},
                    {"type": "Ready", "status": ready,
                     **({} if ready == "True" else {"reason": "RevisionMissing",
                                                    "message": f"{latest} is not ready"})},
                ],
                "components": {"predictor": {
                    "latestCreatedRevision": latest,
                    "latestReadyRevision": self.ready,
                    "latestRolledoutRevision": self.rolled_out,
                    "traffic": [
                        {"revisionName": name, "percent": percent, "latestRevision": name == latest}
                        for name, percent in self.traffic().items()
                    ],
                }},
            },
        }

    # --- Prometheus

    def _prometheus(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/query"
        self.queries.append(request.url.params["query"])
        if self.prometheus_status != 200:
            return httpx.Response(self.prometheus_status, text="unavailable")
        result = ([] if self.error_rate is None
                  else [{"metric": {}, "value": [1767225600.0, str(self.error_rate)]}])
        return httpx.Response(200, json={"status": "success",
                                         "data": {"resultType": "vector", "result": result}})


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    store = tmp_path / "store"
    store.mkdir()
    reg = Registry(Store.sqlite(tmp_path / "yoloserve.db"))
    for n in ("1", "2", "3"):
        (store / f"yolo_v{n}.mar").write_bytes(f"archive {n}".encode())
        reg.add_version(sha256=n * 64, mar=f"yolo_v{n}.mar", classes=CLASSES)
    reg.set_status("3", "rejected")
    return reg


@pytest.fixture
def cluster() -> FakeCluster:
    return FakeCluster(storage_uri(ROOT, "1"))


def deployer(
    cluster: FakeCluster, registry: Registry, tmp_path: Path, **changes: Any
) -> KServeDeployer:
    settings = DeploySettings(
        backend="kserve", kserve_namespace="ml", kserve_storage_root=ROOT,
        kserve_layout_dir=tmp_path / "kserve", store_dir=tmp_path / "store",
        canary_percent=10, ready_timeout_s=2.0, poll_s=0.01, canary_observe_s=0,
        prometheus_url=PROMETHEUS, max_error_rate=0.05,
    ).model_copy(update=changes)
    return KServeDeployer(settings, registry, kube=KubeSettings(api_url=KUBE),
                          transport=httpx.MockTransport(cluster))


async def test_a_healthy_canary_is_promoted(
    cluster: FakeCluster, registry: Registry, tmp_path: Path
) -> None:
    result = await deployer(cluster, registry, tmp_path).deploy("2")

    assert result.promoted, result.reason
    assert cluster.patches == [
        {"spec": {"predictor": {"canaryTrafficPercent": 10,
                                "model": {"storageUri": f"{ROOT}/v2"}}}},
        {"spec": {"predictor": {"canaryTrafficPercent": None}}},
    ]
    assert cluster.traffic() == {"yolo-predictor-00002": 100}
    assert "canaryTrafficPercent" not in cluster.spec["predictor"]
    assert registry.load().default_version == "2"
    assert result.checks["canary_revision"] == "yolo-predictor-00002"
    assert result.checks["canary_check"]["error_rate"] == 0.0
    assert "promoted to 100 %" in result.reason and result.previous == "1"
    # The error rate asked for is the canary revision's, in the service's namespace.
    (query,) = cluster.queries
    assert 'revision_name="yolo-predictor-00002"' in query and 'namespace_name="ml"' in query
    assert 'response_code_class="5xx"' in query and "[60s]" in query
    # The version's folder in the KServe layout: its archive and a snapshot naming it alone.
    folder = tmp_path / "kserve" / "v2"
    assert (folder / "model-store" / "yolo_v2.mar").read_bytes() == b"archive 2"
    config = (folder / "config" / "config.properties").read_text()
    snapshot = json.loads(config.split("model_snapshot=", 1)[1].splitlines()[0])
    assert set(snapshot["models"]["yolo"]) == {"2"}
    assert "inference_address=http://0.0.0.0:8080\n" in config  # the runtime's container port


async def test_a_canary_that_fails_the_error_rate_check_is_rolled_back(
    cluster: FakeCluster, registry: Registry, tmp_path: Path
) -> None:
    cluster.error_rate = 0.2

    result = await deployer(cluster, registry, tmp_path).deploy("2")

    assert not result.promoted
    assert "failed the error-rate check" in result.reason
    assert "5xx share 0.200 > 0.050" in result.reason
    assert f"rolled back to {ROOT}/v1" in result.reason
    assert result.checks["canary_check"]["passed"] is False
    assert result.checks["rolled_back"] is True
    # The last patch restores the storageUri and sends the canary nothing.
    assert cluster.patches[-1] == {"spec": {"predictor": {
        "canaryTrafficPercent": 0, "model": {"storageUri": f"{ROOT}/v1"}}}}
    cluster._reconcile()
    assert cluster.spec["predictor"]["model"]["storageUri"] == f"{ROOT}/v1"
    assert cluster.traffic() == {"yolo-predictor-00001": 100}
    assert cluster.serving_uri() == f"{ROOT}/v1"
    data = registry.load()
    assert data.default_version == "1" and data.get("2").status == "ready"


async def test_a_canary_that_never_gets_ready_times_out_and_is_rolled_back(
    cluster: FakeCluster, registry: Registry, tmp_path: Path
) -> None:
    cluster.new_revisions_get_ready = False

    result = await deployer(cluster, registry, tmp_path, ready_timeout_s=0.2).deploy("2")

    assert not result.promoted
    assert "not ready with 10 % of the traffic after 0 s" in result.reason
    assert "RevisionMissing" in result.reason, "the last status seen is quoted"
    assert cluster.queries == [], "no check on a canary that never served"
    assert cluster.patches[-1]["spec"]["predictor"] == {
        "canaryTrafficPercent": 0, "model": {"storageUri": f"{ROOT}/v1"}}
    assert cluster.traffic() == {"yolo-predictor-00001": 100}
    assert registry.load().default_version == "1"


async def test_without_prometheus_the_check_is_skipped_and_says_so(
    cluster: FakeCluster, registry: Registry, tmp_path: Path
) -> None:
    result = await deployer(cluster, registry, tmp_path, prometheus_url=None).deploy("2")

    assert result.promoted
    assert result.checks["canary_check"]["skipped"] is True
    assert "skipped: no Prometheus configured" in result.reason
    assert cluster.queries == []


@pytest.mark.parametrize(
    ("error_rate", "prometheus_status", "require_traffic", "promoted", "says"),
    [
        (0.05, 200, False, True, "5xx share 0.050 <= 0.050"),
        (None, 200, False, True, "no request reached the canary"),
        (None, 200, True, False, "no request reached the canary"),
        (0.0, 503, False, False, "Prometheus could not be asked"),
    ],
)
async def test_canary_check_verdicts(
    cluster: FakeCluster, registry: Registry, tmp_path: Path, error_rate: float | None,
    prometheus_status: int, require_traffic: bool, promoted: bool, says: str,
) -> None:
    cluster.error_rate, cluster.prometheus_status = error_rate, prometheus_status
    result = await deployer(cluster, registry, tmp_path,
                            require_canary_traffic=require_traffic).deploy("2")
    assert result.promoted is promoted
    assert says in result.reason
    assert registry.load().default_version == ("2" if promoted else "1")


async def test_activate_serves_a_version_at_once_without_a_canary(
    cluster: FakeCluster, registry: Registry, tmp_path: Path
) -> None:
    await deployer(cluster, registry, tmp_path).deploy("2")
    cluster.patches.clear()

    record = await deployer(cluster, registry, tmp_path).activate("1")

    assert record.version == "1" and record.status == "serving"
    assert cluster.patches == [{"spec": {"predictor": {
        "canaryTrafficPercent": None, "model": {"storageUri": f"{ROOT}/v1"}}}}]
    assert cluster.serving_uri() == f"{ROOT}/v1"
    assert registry.load().default_version == "1"


async def test_activate_that_never_gets_ready_restores_the_previous_uri(
    cluster: FakeCluster, registry: Registry, tmp_path: Path
) -> None:
    cluster.new_revisions_get_ready = False
    with pytest.raises(e.ModelNotReady, match="did not take all traffic"):
        await deployer(cluster, registry, tmp_path, ready_timeout_s=0.2).activate("2")
    assert cluster.patches[-1]["spec"]["predictor"] == {
        "canaryTrafficPercent": 0, "model": {"storageUri": f"{ROOT}/v1"}}
    assert cluster.traffic() == {"yolo-predictor-00001": 100}
    assert registry.load().default_version == "1"


async def test_rejected_unknown_and_missing_things_are_refused(
    cluster: FakeCluster, registry: Registry, tmp_path: Path
) -> None:
    with pytest.raises(e.VersionRejected):
        await deployer(cluster, registry, tmp_path).deploy("3")
    with pytest.raises(e.UnknownVersion):
        await deployer(cluster, registry, tmp_path).activate("9")
    with pytest.raises(e.KubernetesError, match="404") as caught:
        await deployer(cluster, registry, tmp_path, kserve_name="other").deploy("2")
    assert caught.value.status == 404
    (tmp_path / "store" / "yolo_v2.mar").unlink()
    with pytest.raises(e.RegistryError, match="yolo_v2.mar"):
        await deployer(cluster, registry, tmp_path).deploy("2")
    assert cluster.patches == [], "nothing was patched"
    assert registry.load().default_version == "1"


async def test_an_api_failure_mid_rollout_rolls_back_and_raises(
    cluster: FakeCluster, registry: Registry, tmp_path: Path
) -> None:
    calls = {"n": 0}

    def flaky(request: httpx.Request) -> httpx.Response:
        # The promotion patch (the second PATCH) is refused by the API server.
        if request.method == "PATCH":
            calls["n"] += 1
            if calls["n"] == 2:
                return httpx.Response(500, json={"message": "etcdserver: request timed out"})
        return cluster(request)

    d = deployer(cluster, registry, tmp_path)
    d._transport = httpx.MockTransport(flaky)
    with pytest.raises(e.KubernetesError, match="etcdserver"):
        await d.deploy("2")
    assert cluster.patches[-1]["spec"]["predictor"]["canaryTrafficPercent"] == 0
    cluster._reconcile()
    assert cluster.serving_uri() == f"{ROOT}/v1"
    assert registry.load().default_version == "1"
