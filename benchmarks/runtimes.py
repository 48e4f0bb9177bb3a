"""The ``runtimes`` section: what ``RUNTIME=auto`` measured when the bench's stack packaged the
weights, every runtime side by side.

The stack's version 1 is packaged like ``make package`` packages it (``--runtime auto``, the
default): every runtime staged, gated (parity for the float ones, mAP on the benchmark set for
INT8, and mAP for the float ones too) and its packed handler timed on two real photos on this
machine. This section prints those figures, so that one ``make bench`` run holds the runtime
choice, its accuracy and the serving figures of the runtime chosen. With a runtime named
(``--runtime onnx``) there is nothing to compare and the section says so.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

from benchmarks.context import BenchContext


def runtimes_section(ctx: BenchContext) -> dict[str, Any]:
    """RUNTIME=auto's figures: each runtime's handler p50 here, its gate and its mAP vs the .pt."""
    record = ctx.stack.first_version
    selection = dict(record.selection)
    if not selection:
        ctx.console.print(f"runtimes: version 1 was packaged for {record.runtime} (no auto)")
        return {"chosen": record.runtime, "selection": {}}
    table = Table(title=f"RUNTIME=auto on {selection['machine']['cpu_model']}: packed handler, "
                        f"median of {selection['rounds']} lone requests on two photos")
    for column in ("runtime", "p50 ms", "vs chosen", "mAP50", "mAP50-95", "gate"):
        table.add_column(column, justify="left" if column == "runtime" else "right")
    chosen = selection["chosen"]
    for runtime, p50 in sorted(selection["p50_ms"].items(), key=lambda item: item[1]):
        scores = selection.get("accuracy", {}).get(runtime, {})
        table.add_row(
            f"{runtime}{' (chosen)' if runtime == chosen else ''}", f"{p50:.1f}",
            f"{p50 / selection['p50_ms'][chosen]:.2f}",
            _score(scores, "map50"), _score(scores, "map50_95"), "passed",
        )
    for runtime, why in selection["refused"].items():
        table.add_row(runtime, "", "", "", "", f"refused: {why[:60]}")
    ctx.console.print(table)
    return {"chosen": chosen, "selection": selection}


def _score(scores: dict[str, Any], key: str) -> str:
    if not scores:
        return ""
    return f"{scores[key]:.4f} (.pt {scores[f'reference_{key}']:.4f})"


def runtimes_markdown(report: dict[str, Any], section: dict[str, Any]) -> list[str]:
    """The runtime comparison as a Markdown table."""
    selection = section["selection"]
    if not selection:
        return ["", f"Runtime {section['chosen']} (named, not chosen by auto)."]
    chosen = selection["chosen"]
    lines = ["", f"RUNTIME=auto chose **{chosen}** on {selection['machine']['cpu_model']} "
             f"(flags: {', '.join(selection['machine']['cpu_flags']) or 'none listed'}).", "",
             "| runtime | handler p50 ms | mAP50 | mAP50-95 | gate |", "|---|---|---|---|---|"]
    for runtime, p50 in sorted(selection["p50_ms"].items(), key=lambda item: item[1]):
        scores = selection.get("accuracy", {}).get(runtime, {})
        lines.append(f"| {runtime} | {p50:.1f} | {_score(scores, 'map50')} | "
                     f"{_score(scores, 'map50_95')} | passed |")
    for runtime, why in selection["refused"].items():
        lines.append(f"| {runtime} | | | | refused: {why[:80]} |")
    return [*lines, ""]
