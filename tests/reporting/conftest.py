"""Synthetic ref/prod frames, and one run stored in a temporary workspace for the whole session.

ref: N(0, 1) embeddings. prod: the same distribution with the first half of the columns shifted
by +1 std, and targets/predictions that contain both detection pseudo-classes. Building a run
costs seconds (Evidently), so the run every read-back test looks at is built once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

if TYPE_CHECKING:  # evidently takes seconds to import: only where a test needs it
    from reporting.config import Settings
    from reporting.service import RunOutcome

CLASSES = ("circle", "square", "triangle")
DIM = 8
SHIFTED = DIM // 2
TIMESTAMP = datetime(2026, 1, 2, 3, 4, 5)


def emb_columns(dim: int = DIM) -> list[str]:
    return [f"emb_{i}" for i in range(dim)]


def make_ref(n: int = 400, dim: int = DIM, seed: int = 0) -> pd.DataFrame:
    """Reference rows: N(0, 1) embeddings and a real class per row."""
    rng = np.random.default_rng(seed)
    ref = pd.DataFrame(rng.normal(size=(n, dim)), columns=emb_columns(dim))
    ref["target"] = rng.choice(CLASSES, size=n)
    return ref


def make_prod(
    n: int = 300, dim: int = DIM, shift: float = 1.0, seed: int = 1, error_rate: float = 0.3
) -> pd.DataFrame:
    """Prod rows in the prod_data.csv layout, shifted by ``shift`` on the first half of columns.

    About 1 row in 4 is a false positive (target ``__background__``, a real class predicted);
    ``error_rate`` of the other rows get a wrong class or ``__missed__``.
    """
    rng = np.random.default_rng(seed)
    prod = pd.DataFrame(rng.normal(size=(n, dim)), columns=emb_columns(dim))
    prod.iloc[:, : dim // 2] += shift
    target = rng.choice([*CLASSES, "__background__"], size=n)
    prediction = target.copy()
    wrong = rng.random(n) < error_rate
    prediction[wrong] = rng.choice([*CLASSES, "__missed__"], size=int(wrong.sum()))
    background = target == "__background__"
    prediction[background] = rng.choice(CLASSES, size=int(background.sum()))
    prod["target"] = target
    prod["prediction"] = prediction
    prod["timestamp"] = "2026-01-02T03:00:00+00:00"
    prod["feedback_id"] = [f"fb{i // 3}" for i in range(n)]
    prod["request_id"] = [f"rq{i // 3}" for i in range(n)]
    prod["model_version"] = "1"
    prod["image"] = [f"img_{i // 3}.png" for i in range(n)]
    return prod


def write_csvs(folder: Path, ref: pd.DataFrame, prod: pd.DataFrame) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    ref_path, prod_path = folder / "ref_data.csv", folder / "prod_data.csv"
    ref.to_csv(ref_path, index=False)
    prod.to_csv(prod_path, index=False)
    return ref_path, prod_path


@dataclass
class StoredRun:
    """A run added by ``run_once`` to a temporary workspace, and the frames it came from."""

    ref: pd.DataFrame
    prod: pd.DataFrame
    settings: Settings
    outcome: RunOutcome


@pytest.fixture(scope="session")
def stored_run(tmp_path_factory: pytest.TempPathFactory) -> StoredRun:
    from reporting.config import Settings
    from reporting.service import run_once

    root = tmp_path_factory.mktemp("reporting")
    ref, prod = make_ref(), make_prod()
    ref_path, prod_path = write_csvs(root / "data", ref, prod)
    settings = Settings(workspace=root / "workspace", ref_csv=ref_path, prod_csv=prod_path)
    outcome = run_once(settings, timestamp=TIMESTAMP)
    assert outcome.run is not None, outcome.message
    return StoredRun(ref=ref, prod=prod, settings=settings, outcome=outcome)
