"""The drift scenario's own pieces: keys, the shifted sets and their labels, weights of a .mar.

The scenario as a whole needs a running platform and a retrain (minutes of CPU); it is run by
hand (`make scenario`, or `--images 60` for a quick check) and its figures go to the notes.
"""

from __future__ import annotations

import hashlib
import random
import zipfile
from pathlib import Path

import pytest
import yaml

from scripts.scenario import (
    AFTER,
    PROD,
    TEST,
    ScenarioError,
    first_key,
    generate_sets,
    read_env_file,
    read_label,
    resolve_keys,
    split_seed,
    weights_of,
)
from yoloserve.modelserver.registry import Registry
from yoloserve.training.dataset import iter_images


def test_keys_come_from_options_before_the_demo_file(tmp_path: Path) -> None:
    env_file = tmp_path / "demo.env"
    env_file.write_text(
        "# API keys of the local demo\nGATEWAY_API_KEYS=user-1, user-2\n"
        "GATEWAY_ADMIN_API_KEYS=admin-1\n"
    )
    assert read_env_file(env_file)["GATEWAY_API_KEYS"] == "user-1, user-2"
    assert resolve_keys(None, None, env_file) == ("user-1", "admin-1")
    assert resolve_keys("mine", "boss", env_file) == ("mine", "boss")
    assert resolve_keys(None, None, tmp_path / "absent.env") == (None, None)


def test_admin_key_alone_serves_both_routes(tmp_path: Path) -> None:
    env_file = tmp_path / "demo.env"
    env_file.write_text("GATEWAY_ADMIN_API_KEYS=admin-1\n")
    assert resolve_keys(None, None, env_file) == ("admin-1", "admin-1")


@pytest.mark.parametrize(("value", "key"), [("a,b", "a"), (" a ", "a"), ("", None), (None, None)])
def test_first_key(value: str | None, key: str | None) -> None:
    assert first_key(value) == key


def test_sets_are_seeded_disjoint_and_labels_read_back_in_pixels(tmp_path: Path) -> None:
    sets = generate_sets(tmp_path / "shifted", n_prod=4, n_after=2, n_test=3, seed=1, opacity=0.6)
    assert [len(sets.images(s)) for s in (PROD, AFTER, TEST)] == [4, 2, 3]
    data = yaml.safe_load(sets.data_yaml.read_text())
    assert (data["train"], data["val"], data["test"]) == ("images/prod", "images/test",
                                                          "images/test")
    digests = {
        hashlib.sha256(p.read_bytes()).hexdigest() for s in (PROD, AFTER, TEST)
        for p in sets.images(s)
    }
    assert len(digests) == 9  # no image is in two splits

    again = generate_sets(tmp_path / "again", n_prod=4, n_after=2, n_test=3, seed=1, opacity=0.6)
    same = [p.read_bytes() for p in sets.images(TEST)]
    assert [p.read_bytes() for p in again.images(TEST)] == same

    # The labels sent as feedback are the drawn shapes, back in pixels (label precision: 1e-6).
    first = sets.images(PROD)[0]
    _, shapes = next(iter_images(1, split_seed(1, PROD), background="photo", opacity=0.6))
    boxes = read_label(first)
    assert [name for _, name in boxes] == [s.name for s in shapes]
    for (xyxy, _), shape in zip(boxes, shapes, strict=True):
        assert xyxy == pytest.approx(list(shape.xyxy), abs=0.02)


def _registry_with(tmp_path: Path, weights: bytes, sha: str | None = None) -> Registry:
    registry = Registry(tmp_path / "registry.json")
    registry.add_version(
        sha256=sha or hashlib.sha256(weights).hexdigest(), mar="yolo_v1.mar",
        classes=["circle", "square", "triangle"], version="1", make_default=True,
    )
    return registry


def _mar(store: Path, members: dict[str, bytes]) -> None:
    store.mkdir(exist_ok=True)
    with zipfile.ZipFile(store / "yolo_v1.mar", "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def test_weights_come_out_of_the_mar_checked(tmp_path: Path) -> None:
    weights = random.Random(0).randbytes(1000)
    registry = _registry_with(tmp_path, weights)
    _mar(tmp_path / "store", {"best.pt": weights, "handler.py": b"", "MAR-INF/MANIFEST.json": b""})
    out = weights_of("1", registry, tmp_path / "store", tmp_path)
    assert out.read_bytes() == weights


def test_weights_that_differ_from_the_registry_are_refused(tmp_path: Path) -> None:
    registry = _registry_with(tmp_path, b"other", sha=hashlib.sha256(b"other").hexdigest())
    _mar(tmp_path / "store", {"best.pt": b"weights"})
    with pytest.raises(ScenarioError, match="sha256"):
        weights_of("1", registry, tmp_path / "store", tmp_path)


def test_missing_mar_is_a_clear_error(tmp_path: Path) -> None:
    registry = _registry_with(tmp_path, b"w")
    with pytest.raises(ScenarioError, match="not found"):
        weights_of("1", registry, tmp_path / "store", tmp_path)
