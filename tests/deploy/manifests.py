"""Reading the rendered overlays: objects by kind, the pod specs they run, containers, env, and
what RBAC grants a ServiceAccount. Shared by test_manifests.py and test_control_plane.py."""

from __future__ import annotations

from typing import Any

import yaml

Doc = dict[str, Any]

# The oldest Kubernetes the manifests target (KServe 0.15+ needs 1.30+; bundled by
# kubernetes-validate 1.37, whose strict schemas reject unknown fields).
KUBERNETES_VERSION = "1.32.0"
JOB_TEMPLATE = "yoloserve-trainer-job"


def find(docs: list[Doc], kind: str, name: str | None = None) -> list[Doc]:
    return [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


def job_template(docs: list[Doc]) -> Doc:
    (config_map,) = find(docs, "ConfigMap", JOB_TEMPLATE)
    return yaml.safe_load(config_map["data"]["job.yaml"])


def pod_specs(docs: list[Doc]) -> dict[str, Doc]:
    """Every pod spec an overlay runs, by owner: Deployments, StatefulSets, CronJobs and the
    trainer Job template (``trainer-job``)."""
    specs = {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]
        for kind in ("Deployment", "StatefulSet")
        for d in find(docs, kind)
    }
    for cron in find(docs, "CronJob"):
        specs[cron["metadata"]["name"]] = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    specs["trainer-job"] = job_template(docs)["spec"]["template"]["spec"]
    return specs


def pod_labels(docs: list[Doc]) -> dict[str, dict[str, str]]:
    """The labels of the pods each owner of :func:`pod_specs` starts."""
    labels = {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
        for kind in ("Deployment", "StatefulSet")
        for d in find(docs, kind)
    }
    for cron in find(docs, "CronJob"):
        template = cron["spec"]["jobTemplate"]["spec"]["template"]
        labels[cron["metadata"]["name"]] = template["metadata"]["labels"]
    labels["trainer-job"] = job_template(docs)["spec"]["template"]["metadata"]["labels"]
    return labels


def containers(docs: list[Doc]) -> dict[str, Doc]:
    out = {
        f"{owner}/{c['name']}": c
        for owner, spec in pod_specs(docs).items()
        for c in spec.get("initContainers", []) + spec["containers"]
    }
    for isvc in find(docs, "InferenceService"):
        out[f"isvc/{isvc['metadata']['name']}"] = isvc["spec"]["predictor"]["model"]
    for runtime in find(docs, "ServingRuntime"):
        for c in runtime["spec"]["containers"]:
            out[f"runtime/{runtime['metadata']['name']}/{c['name']}"] = c
    return out


def env(container: Doc) -> dict[str, Doc]:
    return {item["name"]: item for item in container.get("env", [])}


def workload_container(docs: list[Doc], kind: str, name: str) -> Doc:
    """The one container of a Deployment or StatefulSet."""
    (workload,) = find(docs, kind, name)
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return container


def gateway(docs: list[Doc]) -> Doc:
    return workload_container(docs, "Deployment", "yoloserve-gateway")


def controller(docs: list[Doc]) -> Doc:
    return workload_container(docs, "Deployment", "yoloserve-controller")


def granted(docs: list[Doc], service_account: str) -> list[Doc]:
    """Every Role rule bound to ``service_account`` in the overlay (ClusterRoles: none here)."""
    assert not find(docs, "ClusterRoleBinding") and not find(docs, "ClusterRole")
    rules: list[Doc] = []
    for binding in find(docs, "RoleBinding"):
        subjects = {(s["kind"], s["name"]) for s in binding.get("subjects", [])}
        if ("ServiceAccount", service_account) in subjects:
            assert binding["roleRef"]["kind"] == "Role"
            (role,) = find(docs, "Role", binding["roleRef"]["name"])
            rules += role["rules"]
    return rules


def verbs_on(rules: list[Doc], group: str, resource: str, name: str | None = None) -> set[str]:
    """The verbs ``rules`` allow on ``group``/``resource``, wildcards included. With ``name``, on
    that object (a rule narrowed by resourceNames counts only for a name it lists); without, on
    any object of the kind (every rule counts)."""
    verbs: set[str] = set()
    for rule in rules:
        if not {group, "*"} & set(rule["apiGroups"]) or not {resource, "*"} & set(
            rule["resources"]
        ):
            continue
        names = rule.get("resourceNames")
        if names and name is not None and name not in names:
            continue
        verbs |= set(rule["verbs"])
    return verbs
