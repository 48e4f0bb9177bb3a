"""Which reference dataset a retrain mixes in: RETRAIN_REF_DIR, else the store's imported
reference, else the synthetic set; and a reference of other classes is refused, not mixed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from yoloserve import paths
from yoloserve.datasets import catalog
from yoloserve.retrain.deadline import RetrainFailed
from yoloserve.retrain.settings import RetrainSettings
from yoloserve.retrain.steps import _ensure_reference, reference_dir
from yoloserve.store.engine import open_store
from yoloserve.store.settings import StoreSettings, sqlite_url
from yoloserve.training.dataset import CLASSES, generate_dataset


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> RetrainSettings:
    monkeypatch.setattr(paths, "DATA_DIR", tmp_path / "data")
    store = StoreSettings(database_url=sqlite_url(tmp_path / "store.db"))
    return RetrainSettings(store=store)


def _import(settings: RetrainSettings, name: str, reference: bool) -> Path:
    catalog.save(open_store(settings.store.url), catalog.DatasetRecord(
        name=name, format="coco", source="/src", classes=list(CLASSES), counts={},
        manifest_sha256="0" * 64, created_at=datetime.now(UTC), is_reference=reference))
    return catalog.dataset_dir(paths.DATA_DIR, name)


def test_unset_means_the_synthetic_set(settings: RetrainSettings) -> None:
    assert reference_dir(settings) == paths.DATA_DIR / "shapes"


def test_the_imported_reference_is_mixed_in(settings: RetrainSettings) -> None:
    _import(settings, "other", reference=False)
    assert reference_dir(settings) == paths.DATA_DIR / "shapes", "imported is not reference"
    pets = _import(settings, "pets", reference=True)
    assert reference_dir(settings) == pets == paths.DATA_DIR / "datasets" / "pets"


def test_retrain_ref_dir_wins(settings: RetrainSettings, tmp_path: Path) -> None:
    _import(settings, "pets", reference=True)
    chosen = settings.model_copy(update={"ref_dir": tmp_path / "mine"})
    assert reference_dir(chosen) == tmp_path / "mine"


def test_a_reference_of_other_classes_is_refused(settings: RetrainSettings) -> None:
    root = _import(settings, "pets", reference=True)
    generate_dataset(root, n_train=2, n_val=1, n_test=0, seed=1)
    _ensure_reference(root, list(CLASSES))  # same names: fine
    spec = yaml.safe_load((root / "data.yaml").read_text())
    spec["names"] = {0: "cat", 1: "dog", 2: "bird"}
    (root / "data.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(RetrainFailed, match=r"classes \['cat', 'dog', 'bird'\]"):
        _ensure_reference(root, list(CLASSES))


def test_an_imported_reference_that_is_gone_is_not_made_up(settings: RetrainSettings) -> None:
    root = _import(settings, "pets", reference=True)
    with pytest.raises(RetrainFailed, match="import it again"):
        _ensure_reference(root, list(CLASSES))
    assert not root.exists(), "no synthetic images written where the team's data was"
