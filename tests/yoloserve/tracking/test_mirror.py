"""The mirror's tags and the shipped model's benchmark (yoloserve.tracking.mirror), offline."""

from __future__ import annotations

import pytest

from yoloserve.modelserver.registry import ModelVersion, RegistryData, RetrainJob
from yoloserve.tracking import mirror


def _data() -> RegistryData:
    data = RegistryData(classes=["a"])
    data.add_version(ModelVersion(version="1", sha256="ab" * 32, mar="yolo_v1.mar"), ["a"])
    data.add_version(ModelVersion(version="2", sha256="cd" * 32, mar="yolo_v2.mar", parent="1",
                                  status="rejected", mlflow_run_id="r2",
                                  metrics={"map50": 0.5, "eval_set": {"name": "r-0001 held-out",
                                                                      "images": 9}}), ["a"])
    data.jobs.append(RetrainJob(job_id="r-0001", state="rejected", candidate_version="2",
                                reason="candidate mAP50 0.5000 < current 0.9000 - tolerance"))
    return data


def test_a_rejected_candidate_is_tagged_with_its_gate_result() -> None:
    data = _data()
    tags = mirror._tags(data.get("2"), data)
    assert tags["gate"] == "rejected" and tags["job_id"] == "r-0001"
    assert tags["gate_reason"].startswith("candidate mAP50 0.5000 <")
    assert tags["status"] == "rejected" and tags["parent"] == "1" and tags["run_id"] == "r2"
    assert tags["weights_sha256"] == "cd" * 32 and "torchserve" in tags["runtime"]
    assert '"images": 9' in tags["eval_set"]
    first = mirror._tags(data.get("1"), data)
    assert "gate" not in first and first["status"] == "serving"


def test_the_shipped_benchmark_is_its_recorded_test_run_only_on_the_same_images(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shipped = {"split": "test", "images": 150, "map50": 0.977, "map50_95": 0.849}
    monkeypatch.setattr(mirror, "_shipped_metrics", lambda record: shipped)
    record = _data().get("1")
    bench = {"name": "shapes-test", "images": 150, "manifest_sha256": "9f" * 32}
    assert mirror.shipped_benchmark(record, bench) == {"set": bench, "map50": 0.977,
                                                       "map50_95": 0.849}
    assert mirror.shipped_benchmark(record, {**bench, "images": 20}) == {}
    assert mirror.shipped_benchmark(record, None) == {}
