"""The figures of one scenario run and the before/after table printed at the end."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from rich.table import Table

from scripts.scenario.output import console
from yoloserve.training.dataset import CLASSES


@dataclass
class Outcome:
    """Every figure of one scenario run (written to ``scenario_result.json``)."""

    old_version: str
    new_version: str | None
    jobs: list[dict[str, Any]]
    before: dict[str, float]
    after: dict[str, float]
    map50_old: float
    map50_new: float | None
    ref_map50_old: float | None
    ref_map50_new: float | None
    sent_before: dict[str, Any]
    sent_after: dict[str, Any]
    test_images: int
    manual_trigger: bool
    seconds: float

    @property
    def drift_flagged_before(self) -> bool:
        return bool(self.before.get("dataset_drift"))

    @property
    def gain(self) -> float | None:
        return None if self.map50_new is None else self.map50_new - self.map50_old

    def as_dict(self, min_gain: float) -> dict[str, Any]:
        """The figures, the verdicts drawn from them and the goal, as ``scenario_result.json``."""
        return {**asdict(self), "drift_flagged_before": self.drift_flagged_before,
                "map50_gain": self.gain, "min_gain": min_gain}


def _fmt(value: float | None, flag: bool = False) -> str:
    if value is None:
        return "n/a"
    text = f"{value:.0f}" if float(value).is_integer() and abs(value) > 1 else f"{value:.3f}"
    return text + ("  (drift)" if flag else "")


def print_table(o: Outcome, min_gain: float) -> None:
    """The before/after table, the retrain chain, and whether each goal was met."""
    table = Table(title="Drift scenario: before and after the retrain")
    table.add_column("measure")
    table.add_column(f"before (v{o.old_version})", justify="right")
    table.add_column(f"after (v{o.new_version or o.old_version})", justify="right")
    table.add_column("change", justify="right")

    def row(
        name: str, a: float | None, b: float | None, fa: bool = False, fb: bool = False
    ) -> None:
        change = "" if a is None or b is None else _fmt(b - a).replace("n/a", "")
        change = f"+{change}" if change and not change.startswith("-") else change
        table.add_row(name, _fmt(a, fa), _fmt(b, fb), change)

    row("drift share (embedding columns)", o.before.get("drift_share"), o.after.get("drift_share"),
        bool(o.before.get("dataset_drift")), bool(o.after.get("dataset_drift")))
    row("embedding drift (mean distance)", o.before.get("embedding_drift"),
        o.after.get("embedding_drift"))
    row("F1 macro, feedback rows", o.before.get("f1"), o.after.get("f1"))
    row("balanced accuracy, feedback rows", o.before.get("balanced_accuracy"),
        o.after.get("balanced_accuracy"))
    for name in CLASSES:
        row(f"  F1 {name}", o.before.get(f"f1:{name}"), o.after.get(f"f1:{name}"))
    row("feedback rows in the run", o.before.get("feedback_rows"), o.after.get("feedback_rows"))
    row(f"mAP50, shifted test ({o.test_images} images)", o.map50_old, o.map50_new)
    if o.ref_map50_old is not None:
        row("mAP50, reference test (no shift)", o.ref_map50_old, o.ref_map50_new)
    console.print(table)
    chain = ", ".join(
        f"{j['job_id']} {j['state']}"
        + (f" -> v{j['candidate_version']}" if j.get("candidate_version") else "")
        for j in o.jobs
    )
    how = "started by hand (POST /retrain)" if o.manual_trigger else "started by the loop"
    console.print(
        f"retrains ({how}): {chain or 'none'}; {o.sent_before.get('images')} shifted images "
        "sent before the last one"
    )
    flagged = "yes" if o.drift_flagged_before else "NO"
    console.print(
        f"dashboard flagged drift before the retrain: {flagged} "
        f"(drift share {_fmt(o.before.get('drift_share'))})"
    )
    gain = o.gain
    met = gain is not None and gain >= min_gain
    console.print(
        f"mAP50 gain on the shifted test set: {'n/a' if gain is None else f'{gain:+.3f}'} "
        f"(goal >= +{min_gain:.2f}): {'met' if met else 'NOT met'}"
    )
