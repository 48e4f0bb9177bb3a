"""`python -m scripts.train train` on a team's own dataset: fine-tune, evaluate, install apart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from scripts import train as train_cli
from yoloserve import paths
from yoloserve.training.dataset import generate_dataset

pytestmark = pytest.mark.slow

NAMES = ["ball", "crate", "tent"]  # another team's classes: the head is re-made for them


@pytest.fixture
def team_dataset(tmp_path: Path) -> Path:
    """A small dataset folder as an import leaves it, with no test split and its own names."""
    root = tmp_path / "datasets" / "pets"
    generate_dataset(root, n_train=8, n_val=4, n_test=0, seed=5)
    spec = yaml.safe_load((root / "data.yaml").read_text())
    spec["names"] = dict(enumerate(NAMES))
    (root / "data.yaml").write_text(yaml.safe_dump(spec))
    return root


def test_fine_tunes_a_dataset_folder_into_its_own_models_folder(
    team_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    default_weights: Path,
) -> None:
    from ultralytics import YOLO

    monkeypatch.setattr(paths, "MODELS_DIR", tmp_path / "models")
    monkeypatch.setattr(paths, "DEFAULT_WEIGHTS", default_weights)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = CliRunner().invoke(train_cli.app, [
        "train", "--data", str(team_dataset), "--epochs", "1", "--batch", "4",
        "--runs", str(tmp_path / "runs"),
    ])
    assert result.exit_code == 0, result.output
    best = tmp_path / "models" / "pets" / "best.pt"
    assert best.is_file() and "make redeploy WEIGHTS=" in result.output
    assert list(YOLO(str(best)).names.values()) == NAMES
    metrics = json.loads((best.parent / "metrics.json").read_text())
    # No test split in the dataset: judged on val, and the record says so.
    assert metrics["split"] == "val" and metrics["eval_set"]["name"] == "pets-val"
    assert metrics["fine_tuned_from"] == str(default_weights)
    # The shipped weights are never the target of a team's training.
    assert not (tmp_path / "models" / "default").exists()


# Wide enough that rich's error box does not wrap the message.
WIDE = {"COLUMNS": "400"}


def test_refuses_a_dataset_that_was_not_imported(tmp_path: Path) -> None:
    result = CliRunner(env=WIDE).invoke(train_cli.app, ["train", "--data", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "import the dataset first" in result.output


def test_refuses_missing_weights(team_dataset: Path, tmp_path: Path) -> None:
    result = CliRunner(env=WIDE).invoke(train_cli.app, [
        "train", "--data", str(team_dataset), "--from", str(tmp_path / "mine.pt")])
    assert result.exit_code == 2 and "does not exist" in result.output
