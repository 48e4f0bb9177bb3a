"""The latest drift result as one small JSON file: written by ``reporting``, read by the gateway.

The reporting watcher stores its runs as Evidently snapshots, which only Evidently reads (and
importing it takes seconds). The gateway exports drift to Prometheus at every scrape and must
not depend on Evidently, so each reporting run that has a drift report also writes its headline
numbers to ``<data_dir>/drift_summary.json``: the data folder is the one both services already
share (locally and in compose).

Example:
    >>> s = DriftSummary(run_id="ab", timestamp=1.0, prod_rows=60, drift_share=0.75,
    ...                  dataset_drift=True, embedding_drift=4.1)
    >>> DriftSummary.from_json(s.to_json()) == s
    True
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from yoloserve.files import atomic_write

FILE_NAME = "drift_summary.json"


@dataclass(frozen=True)
class DriftSummary:
    """Headline numbers of one reporting run's drift report.

    Attributes:
        run_id: The run (Evidently snapshot metadata ``run_id``).
        timestamp: When the run was computed, Unix seconds.
        prod_rows: Production rows the drift report compared with the reference.
        drift_share: Share of drifted embedding columns, 0..1.
        dataset_drift: Whether the share reached the configured dataset-drift threshold.
        embedding_drift: Distance between the mean prod and mean ref embeddings (None when the
            report had no such metric).
    """

    run_id: str
    timestamp: float
    prod_rows: int
    drift_share: float
    dataset_drift: bool
    embedding_drift: float | None = None

    def to_json(self) -> str:
        """The file's content."""
        return json.dumps(asdict(self), sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> DriftSummary:
        """Parse the file's content.

        Raises:
            ValueError: not JSON, or a field is missing or of the wrong type.
        """
        try:
            data = json.loads(text)
            embedding = data.get("embedding_drift")
            return cls(
                run_id=str(data["run_id"]),
                timestamp=float(data["timestamp"]),
                prod_rows=int(data["prod_rows"]),
                drift_share=float(data["drift_share"]),
                dataset_drift=bool(data["dataset_drift"]),
                embedding_drift=None if embedding is None else float(embedding),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a drift summary: {exc}") from exc


def write_summary(path: Path, summary: DriftSummary) -> None:
    """Replace the summary file atomically: a scrape never reads half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, summary.to_json().encode("utf-8"), temp_suffix=".tmp")


def read_summary(path: Path) -> DriftSummary | None:
    """The summary at ``path``; None when no run has written one yet.

    Raises:
        ValueError: the file exists but is not a drift summary.
        OSError: the file exists but cannot be read.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return DriftSummary.from_json(text)
