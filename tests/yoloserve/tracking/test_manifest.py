"""Dataset manifests and eval-set names (yoloserve.tracking.manifest), on generated data."""

from __future__ import annotations

from pathlib import Path

import pytest

from yoloserve import paths
from yoloserve.tracking import manifest
from yoloserve.training.dataset import generate_dataset


def test_manifest_lists_every_image_and_label_with_their_hashes(tmp_path: Path) -> None:
    data_yaml = generate_dataset(tmp_path / "a", n_train=3, n_val=2, n_test=2, seed=5)
    files = manifest.dataset_manifest(data_yaml)

    assert {k: v["images"] for k, v in files["splits"].items()} == {"train": 3, "val": 2,
                                                                     "test": 2}
    assert len(files["files"]) == 7
    for entry in files["files"]:
        assert Path(entry["image"]).is_file() and Path(entry["label"]).is_file()
        assert len(entry["image_sha256"]) == 64 and len(entry["label_sha256"]) == 64
    named = manifest.eval_set("shapes-test", files, "test")
    assert named == {"name": "shapes-test", "images": 2,
                     "manifest_sha256": files["splits"]["test"]["manifest_sha256"]}


def test_the_hash_names_the_content_not_the_folder(tmp_path: Path) -> None:
    a = manifest.dataset_manifest(generate_dataset(tmp_path / "a", 3, 2, 2, seed=5))
    b = manifest.dataset_manifest(generate_dataset(tmp_path / "b", 3, 2, 2, seed=5))
    c = manifest.dataset_manifest(generate_dataset(tmp_path / "c", 3, 2, 2, seed=6))
    assert a["sha256"] == b["sha256"] != c["sha256"]


def test_list_file_splits_are_read_like_ultralytics(tmp_path: Path) -> None:
    data_yaml = generate_dataset(tmp_path / "ref", 2, 1, 3, seed=1)
    images = sorted((tmp_path / "ref" / "images" / "test").iterdir())
    (tmp_path / "eval.txt").write_text("".join(f"{p}\n" for p in images[:2]))
    (tmp_path / "data.yaml").write_text(f"path: {tmp_path}\ntrain: eval.txt\ntest: eval.txt\n")
    files = manifest.dataset_manifest(tmp_path / "data.yaml", splits=("train", "test"))
    assert files["splits"]["test"]["images"] == 2
    assert data_yaml.is_file()


def test_benchmark_is_the_first_images_of_the_reference_test_split(tmp_path: Path) -> None:
    generate_dataset(tmp_path / "ref", 2, 1, 4, seed=2)
    found = manifest.benchmark_dataset(tmp_path / "ref", tmp_path / "bench", 3, ["a", "b", "c"])
    assert found is not None
    data_yaml, named = found
    assert named["name"] == manifest.BENCHMARK_NAME and named["images"] == 3
    again = manifest.benchmark_dataset(tmp_path / "ref", tmp_path / "other", 3, ["a", "b", "c"])
    assert again is not None and again[1] == named, "a fixed set: same images, same name"
    assert "names:" in data_yaml.read_text()
    no_test = tmp_path / "no_test"
    generate_dataset(no_test, 2, 1, 0, seed=2)
    assert manifest.benchmark_dataset(no_test, tmp_path / "none", 3, ["a"]) is None
    val = manifest.benchmark_images(no_test, 3, or_val=True)
    assert val is not None and val[1]["name"] == "shapes-val" and val[1]["images"] == 1


def test_an_imported_dataset_names_its_benchmark_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(paths, "DATA_DIR", tmp_path)
    generate_dataset(tmp_path / "datasets" / "pets", 2, 1, 2, seed=2)
    found = manifest.benchmark_images(tmp_path / "datasets" / "pets", 5)
    assert found is not None and found[1]["name"] == "pets-test" and len(found[0]) == 2
