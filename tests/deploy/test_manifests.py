"""The rendered overlays: every object valid against the Kubernetes schemas (strict, a fixed
version), the InferenceService and the ServingRuntime against KServe's models, and the rules we
hold ourselves to."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.kustomize import (
    KUSTOMIZE_DIR,
    OVERLAYS,
    POSTGRES_SECRET_VALUES,
    ROOT,
    SECRET_VALUES,
)
from tests.deploy.manifests import (
    JOB_TEMPLATE,
    KUBERNETES_VERSION,
    Doc,
    containers,
    controller,
    env,
    find,
    gateway,
    granted,
    job_template,
    pod_labels,
    pod_specs,
)
from yoloserve.modelserver.kserve_layout import MOUNT, SERVER_PROPERTIES

ISVC_SCHEMA = KUSTOMIZE_DIR / "schema" / "inferenceservice-v1beta1.schema.json"
RUNTIME_SCHEMA = KUSTOMIZE_DIR / "schema" / "servingruntime-v1alpha1.schema.json"
KSERVE_GROUP = "serving.kserve.io/"
RUNTIME = "yoloserve-torchserve"
# Who may reach TorchServe's management API: the gateway (readiness, version reads), the
# controller and the trainer Jobs it launches (they swap versions).
MANAGEMENT_CLIENTS = {"gateway", "controller", "yoloserve-trainer"}
IMAGES = {"gateway", "webapp", "reporting", "serving", "trainer"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_valid_kubernetes(rendered: dict[str, list[Doc]], overlay: str) -> None:
    docs = rendered[overlay] + [job_template(rendered[overlay])]
    checked = 0
    for doc in docs:
        if doc["apiVersion"].startswith(KSERVE_GROUP):
            continue  # KServe's CRDs: kubernetes-validate has no schema for them (checked below)
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        checked += 1
    assert checked >= 15
    # The kinds the control plane added are among those checked, not skipped.
    kinds = {doc["kind"] for doc in docs}
    assert {"StatefulSet", "CronJob", "Role", "NetworkPolicy", "PodDisruptionBudget"} <= kinds


def test_inferenceservice_matches_kserve_models(rendered: dict[str, list[Doc]]) -> None:
    schema = json.loads(ISVC_SCHEMA.read_text())
    assert schema["x-kserve-sdk-version"].startswith("0.21.")
    (isvc,) = find(rendered["prod"], "InferenceService")
    jsonschema.Draft202012Validator(schema).validate(isvc)
    predictor = isvc["spec"]["predictor"]
    assert predictor["model"]["modelFormat"]["name"] == "pytorch"
    assert predictor["model"]["protocolVersion"] == "v1"
    assert predictor["model"]["storageUri"] == "pvc://yoloserve-models/kserve/yolo"
    assert predictor["model"]["runtime"] == RUNTIME
    assert {"minReplicas", "maxReplicas", "scaleMetric", "scaleTarget"} <= predictor.keys()


def servingruntime(docs: list[Doc]) -> tuple[Doc, Doc]:
    """The prod overlay's ServingRuntime and its one container."""
    (runtime,) = find(docs, "ServingRuntime", RUNTIME)
    (container,) = runtime["spec"]["containers"]
    return runtime, container


def test_servingruntime_matches_kserve_models(rendered: dict[str, list[Doc]]) -> None:
    schema = json.loads(RUNTIME_SCHEMA.read_text())
    assert schema["x-kserve-sdk-version"].startswith("0.21.")
    runtime, container = servingruntime(rendered["prod"])
    validator = jsonschema.Draft202012Validator(schema)
    validator.validate(runtime)
    # The schema is strict where a typo would pass silently: in the container and the spec.
    typo = json.loads(json.dumps(runtime))
    typo["spec"]["containers"][0]["arg"] = typo["spec"]["containers"][0].pop("args")
    wrong_type = json.loads(json.dumps(runtime))
    wrong_type["spec"]["supportedModelFormats"][0]["autoSelect"] = "no"
    for bad in (typo, wrong_type):
        assert not validator.is_valid(bad)
    # The Kubernetes part of it (the container) also passes the strict core schema.
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "x"},
        "spec": {"containers": [container]},
    }
    kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)


def test_servingruntime_runs_our_image_as_plain_torchserve(
    rendered: dict[str, list[Doc]],
) -> None:
    runtime, container = servingruntime(rendered["prod"])
    assert runtime["apiVersion"] == "serving.kserve.io/v1alpha1"
    spec = runtime["spec"]
    # Only an InferenceService naming it gets it; v1 only: TorchServe's own inference API.
    assert spec["supportedModelFormats"] == [
        {"name": "pytorch", "version": "1", "autoSelect": False}
    ]
    assert spec["protocolVersions"] == ["v1"]
    assert container["name"] == "kserve-container"  # the name KServe merges the predictor into
    assert container["image"].split(":")[0] == "yoloserve/serving"
    assert "command" not in container  # the image's entrypoint hands the args over (below)
    args = container["args"]
    assert args[:3] == ["torchserve", "--start", "--foreground"]
    assert {"--disable-token-auth", "--ncs"} <= set(args)
    flags = dict(zip(args[3::], args[4::], strict=False))
    assert flags["--ts-config"] == f"{MOUNT}/config/config.properties"
    assert flags["--model-store"] == SERVER_PROPERTIES["model_store"]
    # The layout's addresses meet the runtime: inference on the container port, on every
    # interface; metrics where the annotations send Prometheus; management on loopback only.
    ports = [p["containerPort"] for p in container["ports"]]
    inference = urlsplit(SERVER_PROPERTIES["inference_address"])
    assert ports == [8080] == [inference.port] and inference.hostname == "0.0.0.0"
    metrics = urlsplit(SERVER_PROPERTIES["metrics_address"])
    assert spec["annotations"]["prometheus.kserve.io/port"] == str(metrics.port)
    assert urlsplit(SERVER_PROPERTIES["management_address"]).hostname == "127.0.0.1"
    # Readiness is Knative's TCP default on the container port.
    assert not {"readinessProbe", "livenessProbe", "startupProbe"} & container.keys()
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] > 0
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]


def test_serving_entrypoint_hands_arguments_over() -> None:
    # KServe's args replace the image's CMD, not its ENTRYPOINT (serving-entrypoint.sh).
    script = ROOT / "deploy" / "images" / "serving-entrypoint.sh"
    assert (
        'ENTRYPOINT ["/usr/local/bin/serving-entrypoint"]'
        in (ROOT / "deploy" / "images" / "Dockerfile").read_text()
    )
    result = subprocess.run(
        ["sh", str(script), "echo", "torchserve", "--start"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (result.returncode, result.stdout) == (0, "torchserve --start\n"), result.stderr


def test_the_schema_refuses_what_kserve_would_not_read(rendered: dict[str, list[Doc]]) -> None:
    validator = jsonschema.Draft202012Validator(json.loads(ISVC_SCHEMA.read_text()))
    (isvc,) = find(rendered["prod"], "InferenceService")
    typo = json.loads(json.dumps(isvc))
    typo["spec"]["predictor"]["minReplica"] = 1
    no_format = json.loads(json.dumps(isvc))
    del no_format["spec"]["predictor"]["model"]["modelFormat"]
    wrong_type = json.loads(json.dumps(isvc))
    wrong_type["spec"]["predictor"]["maxReplicas"] = "four"
    for bad in (typo, no_format, wrong_type):
        assert not validator.is_valid(bad)


def test_prod_serves_with_kserve_and_dev_with_torchserve(rendered: dict[str, list[Doc]]) -> None:
    (isvc,) = find(rendered["prod"], "InferenceService")
    runtime = isvc["spec"]["predictor"]["model"]["runtime"]
    assert [r["metadata"]["name"] for r in find(rendered["prod"], "ServingRuntime")] == [runtime]
    assert not find(rendered["prod"], "Deployment", "yoloserve-serving")
    assert not find(rendered["dev"], "InferenceService")
    assert not find(rendered["dev"], "ServingRuntime")
    assert find(rendered["dev"], "Deployment", "yoloserve-serving")
    # Rollouts are the controller's: KServe's canary in prod, TorchServe's hot swap in dev.
    assert env(controller(rendered["prod"]))["DEPLOY_BACKEND"]["value"] == "kserve"
    assert env(controller(rendered["dev"]))["DEPLOY_BACKEND"]["value"] == "torchserve"
    prod, dev = env(gateway(rendered["prod"])), env(gateway(rendered["dev"]))
    # The predictor's Knative service, in the InferenceService's namespace, on its default port.
    predictor = urlsplit(prod["TORCHSERVE_INFERENCE_URL"]["value"])
    name, namespace = isvc["metadata"]["name"], isvc["metadata"]["namespace"]
    assert predictor.hostname == f"{name}-predictor.{namespace}.svc.cluster.local"
    assert predictor.port is None and predictor.path == ""
    # Management stays inside the predictor pod: readiness from /ping alone in prod.
    assert prod["GATEWAY_READINESS"]["value"] == "ping"
    assert "GATEWAY_READINESS" not in dev  # the management check, TorchServe's API in reach


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_value_in_plain_text(
    rendered_text: dict[str, str], rendered: dict[str, list[Doc]], overlay: str
) -> None:
    for value in [*SECRET_VALUES.values(), *POSTGRES_SECRET_VALUES.values()]:
        assert value not in rendered_text[overlay]
    secrets = {
        s["metadata"]["name"].rsplit("-", 1)[0]: s for s in find(rendered[overlay], "Secret")
    }
    # Generated, hashed: the API keys and the store's password, each from its own file.
    assert set(secrets) == {"yoloserve-api-keys", "yoloserve-postgres"}
    for prefix, expected, marker in (
        ("yoloserve-api-keys", SECRET_VALUES, "KEY"),
        ("yoloserve-postgres", POSTGRES_SECRET_VALUES, "PASSWORD"),
    ):
        secret = secrets[prefix]
        assert "stringData" not in secret
        decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        assert decoded == expected
        for name, container in containers(rendered[overlay]).items():
            for item in container.get("env", []):
                if marker in item["name"]:
                    ref = item["valueFrom"]["secretKeyRef"]
                    assert ref["name"] == secret["metadata"]["name"], name
    for config_map in find(rendered[overlay], "ConfigMap"):
        text = json.dumps(config_map)
        assert "KEY" not in text and "PASSWORD" not in text, config_map["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_and_limits(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    found = containers(rendered[overlay])
    assert len(found) >= 6
    for name, container in found.items():
        resources = container["resources"]
        for part in ("requests", "limits"):
            assert {"cpu", "memory"} <= resources[part].keys(), f"{name}: {part}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes(rendered: dict[str, list[Doc]], overlay: str) -> None:
    found = containers(rendered[overlay])
    expected = {
        "yoloserve-gateway/gateway": ("/ready", "/health"),
        "yoloserve-webapp/webapp": ("/_stcore/health", "/_stcore/health"),
        "yoloserve-evidently/evidently": ("/api/projects", "/api/projects"),
    }
    for name, (ready, live) in expected.items():
        assert found[name]["readinessProbe"]["httpGet"]["path"] == ready
        assert found[name]["livenessProbe"]["httpGet"]["path"] == live


def _admits(rule: Doc, port: int) -> bool:
    ports = rule.get("ports")
    return not ports or any(p.get("port") == port for p in ports)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_management_port_admits_only_gateway_controller_and_trainer(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    (policy,) = find(rendered[overlay], "NetworkPolicy", "yoloserve-serving")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    management = [r for r in policy["spec"]["ingress"] if _admits(r, 8086)]
    assert management
    for rule in management:
        for peer in rule["from"]:
            assert set(peer) == {"podSelector"}, peer  # no namespace, no ipBlock
            labels = peer["podSelector"]["matchLabels"]
            assert set(labels) == {"app.kubernetes.io/name"}
            assert labels["app.kubernetes.io/name"] in MANAGEMENT_CLIENTS
    admitted = {
        p["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
        for r in management
        for p in r["from"]
    }
    assert admitted == MANAGEMENT_CLIENTS
    # The policy selects the pods that serve the model in this overlay.
    selector = policy["spec"]["podSelector"]["matchLabels"]
    if overlay == "dev":
        (serving,) = find(rendered["dev"], "Deployment", "yoloserve-serving")
        labels = serving["spec"]["template"]["metadata"]["labels"]
        inference = [r for r in policy["spec"]["ingress"] if _admits(r, 8085)]
        assert [p["podSelector"]["matchLabels"] for r in inference for p in r["from"]] == [
            {"app.kubernetes.io/name": "gateway"}
        ]
    else:
        (isvc,) = find(rendered["prod"], "InferenceService")
        labels = isvc["spec"]["predictor"]["labels"]
    assert selector.items() <= labels.items()
    # The pods allowed in carry those labels.
    labels_of = pod_labels_by_name(rendered[overlay])
    assert labels_of["yoloserve-gateway"] == "gateway"
    assert labels_of["yoloserve-controller"] == "controller"
    assert labels_of["trainer-job"] == "yoloserve-trainer"


def pod_labels_by_name(docs: list[Doc]) -> dict[str, str]:
    return {owner: labels["app.kubernetes.io/name"] for owner, labels in pod_labels(docs).items()}


def test_roles_allow_exactly_what_the_controller_and_the_trainer_jobs_need(
    rendered: dict[str, list[Doc]],
) -> None:
    def table(rules: list[Doc]) -> dict[tuple[str, str, tuple[str, ...]], list[str]]:
        return {
            (group, resource, tuple(rule.get("resourceNames", ()))): sorted(rule["verbs"])
            for rule in rules
            for group in rule["apiGroups"]
            for resource in rule["resources"]
        }

    for overlay in OVERLAYS:
        docs = rendered[overlay]
        assert table(granted(docs, "yoloserve-controller")) == {
            ("coordination.k8s.io", "leases", ()): ["create"],
            ("coordination.k8s.io", "leases", ("yoloserve-controller",)): ["get", "update"],
            ("batch", "jobs", ()): ["create", "delete", "get", "list", "watch"],
            ("serving.kserve.io", "inferenceservices", ()): ["get", "patch"],
            ("", "configmaps", (JOB_TEMPLATE,)): ["get"],
        }
        # A trainer Job rolls out in prod (the deployer patches the InferenceService) and
        # nothing else: it cannot take the lease or start Jobs.
        assert table(granted(docs, "yoloserve-trainer")) == {
            ("serving.kserve.io", "inferenceservices", ()): ["get", "patch"],
        }
        specs = pod_specs(docs)
        assert specs["yoloserve-controller"]["serviceAccountName"] == "yoloserve-controller"
        assert specs["trainer-job"]["serviceAccountName"] == "yoloserve-trainer"
        # Every other pod runs without a Kubernetes token.
        for owner, spec in specs.items():
            if owner not in ("yoloserve-controller", "trainer-job"):
                assert spec.get("automountServiceAccountToken") is False, owner
                assert spec.get("serviceAccountName", "default") == "default", owner


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway_settings_and_trainer_image(rendered: dict[str, list[Doc]], overlay: str) -> None:
    docs = rendered[overlay]
    kustomization = yaml.safe_load(
        (KUSTOMIZE_DIR / "overlays" / overlay / "kustomization.yaml").read_text()
    )
    tags = {i["name"]: i["newTag"] for i in kustomization["images"]}
    assert set(tags) == {f"yoloserve/{name}" for name in IMAGES}
    # The gateway: the data plane's settings only.
    variables = env(gateway(docs))
    for name in (
        "GATEWAY_HOST", "GATEWAY_PORT", "TORCHSERVE_INFERENCE_URL",
        "TORCHSERVE_MANAGEMENT_URL", "STORE_DATABASE_URL",
    ):
        assert name in variables
    assert variables["YOLOSERVE_MODELS_DIR"]["value"] == "/models"
    assert variables["YOLOSERVE_DATA_DIR"]["value"] == "/data"
    # It queues a retrain for the controller, never trains itself (the library default).
    assert variables["RETRAIN_LAUNCHER"]["value"] == "queue"
    control = [n for n in variables if n.startswith(("DEPLOY_", "RETRAIN_K8S_", "CONTROLLER_"))]
    assert not control, control
    gateway_variables = variables
    # The controller: the launcher's and the deployer's settings.
    variables = env(controller(docs))
    for name in ("DEPLOY_KSERVE_NAMESPACE", "DEPLOY_CANARY_PERCENT", "RETRAIN_K8S_NAMESPACE"):
        assert name in variables
    # One model server, named alike (TORCHSERVE_*) for the gateway and the controller: the same
    # URL, or (dev) the headless Service of the same pods, so the controller swaps each replica.
    services = {s["metadata"]["name"]: s["spec"] for s in find(docs, "Service")}
    for name in ("TORCHSERVE_INFERENCE_URL", "TORCHSERVE_MANAGEMENT_URL"):
        ours, theirs = (urlsplit(v[name]["value"]) for v in (variables, gateway_variables))
        assert ours.port == theirs.port, name
        if ours.hostname != theirs.hostname:
            headless, front = services[ours.hostname or ""], services[theirs.hostname or ""]
            assert headless.get("clusterIP") == "None", name
            assert headless["selector"] == front["selector"], name
    assert variables["YOLOSERVE_MODELS_DIR"]["value"] == "/models"
    assert variables["YOLOSERVE_DATA_DIR"]["value"] == "/data"
    assert variables["RETRAIN_LAUNCHER"]["value"] == "kubernetes"
    assert variables["DEPLOY_KSERVE_NAME"]["value"] == "yolo"
    assert variables["RETRAIN_K8S_JOB_TEMPLATE"]["value"] == JOB_TEMPLATE
    # The launcher sets the Job's image from this setting: it must be the overlay's trainer tag.
    trainer = f"yoloserve/trainer:{tags['yoloserve/trainer']}"
    assert variables["RETRAIN_K8S_IMAGE"]["value"] == trainer
    for name, container in containers(docs).items():
        if "image" in container and not name.startswith("trainer-job"):
            repo, _, tag = container["image"].partition(":")
            if repo.startswith("yoloserve/"):
                assert tags[repo] == tag, name
            else:  # official images (postgres) are pinned in the manifest itself
                assert tag and tag != "latest", name
    assert job_template(docs)["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "yoloserve/trainer"
    )


def test_prod_trainer_asks_for_a_gpu_node(rendered: dict[str, list[Doc]]) -> None:
    spec = job_template(rendered["prod"])["spec"]["template"]["spec"]
    assert spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert spec["nodeSelector"] and spec["tolerations"]
    assert "nvidia.com/gpu" not in json.dumps(job_template(rendered["dev"]))
    # The variant changes what it must and keeps the rest of the base template.
    base, prod = job_template(rendered["dev"]), job_template(rendered["prod"])
    assert {k: v for k, v in base.items() if k != "spec"} == {
        k: v for k, v in prod.items() if k != "spec"
    }
    assert env(spec["containers"][0])["DEPLOY_BACKEND"]["value"] == "kserve"


@pytest.mark.parametrize(("overlay", "mode"), [("dev", "ReadWriteOnce"), ("prod", "ReadWriteMany")])
def test_volumes(rendered: dict[str, list[Doc]], overlay: str, mode: str) -> None:
    claims = {c["metadata"]["name"]: c for c in find(rendered[overlay], "PersistentVolumeClaim")}
    assert set(claims) == {"yoloserve-models", "yoloserve-data"}
    assert all(c["spec"]["accessModes"] == [mode] for c in claims.values())


def test_secrets_files_are_ignored_and_examples_ship() -> None:
    ignored = (Path(__file__).resolve().parents[2] / ".gitignore").read_text()
    assert "deploy/kubernetes/overlays/*/secrets.env" in ignored
    assert "deploy/kubernetes/rendered/" in ignored
    assert "deploy/kubernetes/overlays/*/postgres.env" in ignored
    for overlay in OVERLAYS:
        for name, values in (("secrets", SECRET_VALUES), ("postgres", POSTGRES_SECRET_VALUES)):
            example = KUSTOMIZE_DIR / "overlays" / overlay / f"{name}.env.example"
            assert set(values) == {
                line.split("=", 1)[0] for line in example.read_text().splitlines()
                if line and not line.startswith("#")
            }
