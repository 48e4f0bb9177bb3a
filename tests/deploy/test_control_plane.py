"""The control plane on Kubernetes, read from the rendered overlays: one controller acting at a
time (a Lease), the gateway unable to change the cluster, the store (PostgreSQL) and who reaches
it, and the scheduled drift report."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from tests.deploy.kustomize import OVERLAYS, ROOT
from tests.deploy.manifests import (
    KUBERNETES_VERSION,
    Doc,
    containers,
    controller,
    env,
    find,
    granted,
    pod_labels,
    pod_specs,
    verbs_on,
    workload_container,
)

LEASE = "yoloserve-controller"
WRITES = {"create", "update", "patch", "delete", "deletecollection", "*"}
# The clients of the store: the only pods with STORE_DATABASE_URL, the only ones postgres admits.
STORE_CLIENTS = {"yoloserve-gateway", "yoloserve-controller", "yoloserve-drift-report"}
# dev's own TorchServe asks the store which version to load when it starts (prod: KServe's
# runtime, given its model by the InferenceService).
CLIENTS_BY_OVERLAY = {"dev": STORE_CLIENTS | {"yoloserve-serving"}, "prod": STORE_CLIENTS}


def from_field(item: Doc) -> str:
    return str(item["valueFrom"]["fieldRef"]["fieldPath"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_one_controller_acts_at_a_time_through_a_lease(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    docs = rendered[overlay]
    (deployment,) = find(docs, "Deployment", "yoloserve-controller")
    assert deployment["spec"]["replicas"] == 2  # one active, one standby
    container = controller(docs)
    assert container["command"] == ["python", "-m", "yoloserve.controller", "run"]
    assert container["image"].split(":")[0] == "yoloserve/trainer"
    variables = env(container)
    assert variables["CONTROLLER_LEASE_BACKEND"]["value"] == "kubernetes"
    assert variables["CONTROLLER_LEASE_NAME"]["value"] == LEASE
    assert from_field(variables["CONTROLLER_LEASE_NAMESPACE"]) == "metadata.namespace"
    assert from_field(variables["CONTROLLER_ID"]) == "metadata.name"  # one holder id per pod
    # The standby takes over once the lease expires: within 30 s, with room for one retry.
    assert int(variables["CONTROLLER_LEASE_DURATION_S"]["value"]) * 2 <= 30
    # The Role of the controller's ServiceAccount takes and renews exactly that lease.
    spec = deployment["spec"]["template"]["spec"]
    rules = granted(docs, spec["serviceAccountName"])
    assert {"get", "create", "update"} <= verbs_on(rules, "coordination.k8s.io", "leases", LEASE)
    assert "update" not in verbs_on(rules, "coordination.k8s.io", "leases", "another-lease")
    # A drain keeps one replica: the PodDisruptionBudget selects the controller's pods.
    (budget,) = find(docs, "PodDisruptionBudget", "yoloserve-controller")
    assert budget["spec"]["minAvailable"] == 1
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_controller_replaced_every_trainer_service(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    # Today's `python -m yoloserve.retrain trainer` loop runs nowhere: the controller claims.
    for name, container in containers(rendered[overlay]).items():
        command = " ".join(container.get("command", []) + container.get("args", []))
        assert "yoloserve.retrain trainer" not in command, name
        assert "reporting watch" not in command, name  # the CronJob replaces the watcher
    assert not find(rendered[overlay], "Deployment", "yoloserve-watcher")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_gateway_cannot_change_the_cluster(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    docs = rendered[overlay]
    spec = pod_specs(docs)["yoloserve-gateway"]
    rules = granted(docs, spec.get("serviceAccountName", "default"))
    for group, resource in (("batch", "jobs"), ("serving.kserve.io", "inferenceservices")):
        assert not verbs_on(rules, group, resource) & WRITES, (group, resource)
        # The same reading catches the writes where they are meant to be.
        assert verbs_on(granted(docs, "yoloserve-controller"), group, resource) & WRITES
    # It reads nothing from the API either (jobs and versions come from the store): no token.
    assert rules == []
    assert spec["automountServiceAccountToken"] is False


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_postgres_keeps_its_data_and_reports_readiness(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    docs = rendered[overlay]
    (statefulset,) = find(docs, "StatefulSet", "yoloserve-postgres")
    spec = statefulset["spec"]
    (container,) = spec["template"]["spec"]["containers"]
    # The image compose already pins for mlflow-db.
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert container["image"] == compose["services"]["mlflow-db"]["image"] == "postgres:17.6"
    # Its data on a volume of its own, from the claim template, where PGDATA points.
    (template,) = spec["volumeClaimTemplates"]
    assert template["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert template["spec"]["resources"]["requests"]["storage"]
    (mount,) = container["volumeMounts"]
    assert mount["name"] == template["metadata"]["name"]
    assert env(container)["PGDATA"]["value"].startswith(mount["mountPath"] + "/")
    probe = container["readinessProbe"]["exec"]["command"]
    assert probe[0] == "pg_isready"
    variables = env(container)
    assert probe[probe.index("-U") + 1] == variables["POSTGRES_USER"]["value"]
    assert probe[probe.index("-d") + 1] == variables["POSTGRES_DB"]["value"]
    # Non-root, as the image's own user, and no way up.
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    # Clients find it as `postgres`: the StatefulSet's Service, selecting its pods.
    (service,) = find(docs, "Service", "postgres")
    assert spec["serviceName"] == "postgres"
    assert service["spec"]["selector"].items() <= spec["template"]["metadata"]["labels"].items()
    assert [p["port"] for p in service["spec"]["ports"]] == [5432]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_store_url_comes_from_a_secret(rendered: dict[str, list[Doc]], overlay: str) -> None:
    docs = rendered[overlay]
    (secret,) = [
        s for s in find(docs, "Secret") if s["metadata"]["name"].startswith("yoloserve-postgres-")
    ]
    server = env(workload_container(docs, "StatefulSet", "yoloserve-postgres"))
    clients = set()
    for owner, spec in pod_specs(docs).items():
        for container in spec["containers"]:
            entries = container.get("env", [])
            names = [item["name"] for item in entries]
            if "STORE_DATABASE_URL" not in names:
                continue
            clients.add(owner)
            item = entries[names.index("STORE_DATABASE_URL")]
            if "valueFrom" in item:
                assert item["valueFrom"]["secretKeyRef"]["name"] == secret["metadata"]["name"]
                continue
            # Composed: every $(VAR) in it is an earlier entry read from the Secret (Kubernetes
            # expands only those defined before), and no password is written in the value.
            url = urlsplit(item["value"])
            refs = re.findall(r"\$\((\w+)\)", item["value"])
            assert url.password == "$(POSTGRES_PASSWORD)" and refs == ["POSTGRES_PASSWORD"], owner
            earlier = {e["name"]: e for e in entries[: names.index("STORE_DATABASE_URL")]}
            ref = earlier["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]
            assert ref == server["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"], owner
            assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["data"]
            # It names the server's user, database and Service.
            assert url.scheme == "postgresql+psycopg"
            assert (url.hostname, url.port) == ("postgres", 5432)
            assert url.username == server["POSTGRES_USER"]["value"]
            assert url.path == "/" + server["POSTGRES_DB"]["value"]
    assert clients == CLIENTS_BY_OVERLAY[overlay]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_store_clients_reach_postgres(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    docs = rendered[overlay]
    (statefulset,) = find(docs, "StatefulSet", "yoloserve-postgres")
    postgres_labels = statefulset["spec"]["template"]["metadata"]["labels"].items()
    # Every policy selecting the postgres pods (they add up).
    policies = [p for p in find(docs, "NetworkPolicy")
                if p["spec"]["podSelector"]["matchLabels"].items() <= postgres_labels]
    assert "yoloserve-postgres" in {p["metadata"]["name"] for p in policies}
    admitted = set()
    for policy in policies:
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        for rule in policy["spec"]["ingress"]:
            assert [p["port"] for p in rule["ports"]] == [5432]
            for peer in rule["from"]:
                assert set(peer) == {"podSelector"}, peer  # no namespace, no ipBlock
                (name,) = peer["podSelector"]["matchLabels"].items()
                admitted.add(name)
    clients = CLIENTS_BY_OVERLAY[overlay]
    # Exactly the pods of the store's clients, by the labels their templates give them, and a
    # label no other pod carries.
    labels = {o: ("app.kubernetes.io/name", v["app.kubernetes.io/name"]) for o, v in
              pod_labels(docs).items()}
    assert admitted == {labels[owner] for owner in clients}
    assert not admitted & {label for owner, label in labels.items() if owner not in clients}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_drift_reports_run_on_a_schedule(rendered: dict[str, list[Doc]], overlay: str) -> None:
    (cron,) = find(rendered[overlay], "CronJob", "yoloserve-drift-report")
    kubernetes_validate.validate(cron, KUBERNETES_VERSION, strict=True)
    spec = cron["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"  # one writer of the Evidently workspace
    assert len(spec["schedule"].split()) == 5
    assert 1 <= spec["successfulJobsHistoryLimit"] <= 5
    assert 1 <= spec["failedJobsHistoryLimit"] <= 5
    job = spec["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] > 0
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] in ("Never", "OnFailure")
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", "reporting", "run-once"]
    assert container["image"].split(":")[0] == "yoloserve/reporting"
    variables = env(container)
    assert variables["YOLOSERVE_DATA_DIR"]["value"] == "/data"
    assert variables["REPORTING_WORKSPACE"]["value"].startswith("/data/")
    (mount,) = container["volumeMounts"]
    (volume,) = pod["volumes"]
    assert (mount["name"], mount["mountPath"]) == (volume["name"], "/data")
    assert volume["persistentVolumeClaim"]["claimName"] == "yoloserve-data"
    assert "STORE_DATABASE_URL" in variables
