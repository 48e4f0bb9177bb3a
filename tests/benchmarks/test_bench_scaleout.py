"""benchmarks.scaleout and the counting it uses (benchmarks.rows.tally): lost and duplicated rows
per request, the round-robin spreading, the percentiles, the goals and the Markdown table. The
real run (a PostgreSQL and four gateways) is `python -m benchmarks --sections scaleout`, not a
test."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from benchmarks.feedback import round_robin
from benchmarks.rows import Tally, rows_by_pair, tally
from benchmarks.scaleout import percentiles, scaleout_markdown, verdicts
from yoloserve.machine import cpu_model


@pytest.mark.parametrize(
    ("found", "unanswered", "expected"),
    [
        ({"r1": {"f1": 2}, "r2": {"f2": 1}}, set(), Tally(3, 3, 0, 0, 0)),
        ({"r1": {"f1": 1}}, set(), Tally(3, 1, 2, 0, 0)),  # one row of r1 and all of r2 lost
        ({"r1": {"f1": 3}, "r2": {"f2": 1}}, set(), Tally(3, 3, 0, 1, 0)),  # one row too many
        # r2 stored twice: under its acknowledged id and another one
        ({"r1": {"f1": 2}, "r2": {"f2": 1, "f9": 1}}, set(), Tally(3, 3, 0, 1, 0)),
        # r3 got no 201 but was stored (a timeout after the commit): neither lost nor duplicated
        ({"r1": {"f1": 2}, "r2": {"f2": 1}, "r3": {"f3": 2}}, {"r3"}, Tally(3, 3, 0, 0, 2)),
    ],
)
def test_tally_counts_lost_duplicated_and_unacknowledged_rows(
    found: dict[str, dict[str, int]], unanswered: set[str], expected: Tally
) -> None:
    acknowledged = {"r1": ("f1", 2), "r2": ("f2", 1)}
    assert tally(acknowledged, found, unanswered) == expected


def test_rows_by_pair_counts_a_csv_per_request_then_feedback_id(tmp_path: Path) -> None:
    csv = tmp_path / "prod.csv"
    csv.write_text("emb_0,request_id,feedback_id\n0.1,r1,f1\n0.2,r1,f1\n0.3,r1,f9\n0.4,r2,f2\n")
    assert rows_by_pair(csv, "request_id", "feedback_id") == {
        "r1": Counter({"f1": 2, "f9": 1}), "r2": Counter({"f2": 1})}
    assert rows_by_pair(tmp_path / "missing.csv", "request_id", "feedback_id") == {}


@pytest.mark.parametrize(("calls", "replicas"), [(10, 3), (9, 3), (5, 1), (2, 3)])
def test_round_robin_spreads_calls_evenly_and_pins_each_call(calls: int, replicas: int) -> None:
    gateways = [f"http://g{i}" for i in range(replicas)]
    spread = Counter(round_robin(gateways, i) for i in range(calls))
    assert max(spread.values()) - min(spread.get(g, 0) for g in gateways) <= 1
    assert sum(spread.values()) == calls
    assert [round_robin(gateways, i) for i in range(calls)] == \
        [round_robin(gateways, i) for i in range(calls)]  # predict and feedback meet


def test_percentiles() -> None:
    assert percentiles([]) == {"p50_ms": None, "p99_ms": None, "max_ms": None}
    figures = percentiles([float(v) for v in range(1, 101)])
    assert figures["p50_ms"] == 50.5 and figures["max_ms"] == 100.0
    assert 99.0 <= (figures["p99_ms"] or 0) <= 100.0


def _counts(lost: int = 0, duplicated: int = 0) -> dict[str, int]:
    return {"rows_acknowledged": 100, "rows_found": 100 - lost, "rows_lost": lost,
            "rows_duplicated": duplicated, "rows_unacknowledged": 0}


def _deployment(gateways: int, rows_per_s: float, p99: float, lost: int = 0,
                accepted: int = 50) -> dict[str, Any]:
    intent = {"requests": 50, "accepted": accepted, "conflicts": 50 - accepted, "other": 0,
              "p50_ms": 10.0, "p99_ms": p99, "max_ms": p99}
    return {"gateways": gateways, "calls_per_s": rows_per_s / 2, "rows_per_s": rows_per_s,
            "p50_ms": 100.0, "p95_ms": 200.0, "failed": 0, "store": _counts(lost),
            "csv": _counts(lost), "cache_hits": 100, "cache_misses": 0,
            "activate": intent, "retrain": dict(intent)}


def _out() -> dict[str, Any]:
    return {"cpu_model": "AMD EPYC", "calls": 400, "writers": 32, "intents": 50,
            "goals": {"rows_per_s": {"sqlite": 400.0, "postgres": 300.0},
                      "intent_p99_ms": 100.0},
            "deployments": {"sqlite": _deployment(1, 420.0, 20.0),
                            "postgres": _deployment(3, 250.0, 150.0, lost=1, accepted=49)}}


def test_verdicts_put_each_goal_beside_its_figure() -> None:
    rows = verdicts(_out())
    assert [met for *_, met in rows] == [True, True, True, False, False, False]
    assert rows[0][0].startswith("1 gateway, SQLite: >= 400 rows/s")
    assert rows[0][1] == "420.0 rows/s, 0 lost, 0 duplicated (CSV: 0, 0), 0 failed"
    assert rows[3][0].startswith("3 gateways, PostgreSQL: >= 300 rows/s")
    assert rows[4][1] == "p99 150.0 ms (49 of 50 202)"


def test_markdown_names_the_cpu_and_shows_both_deployments_and_the_goals() -> None:
    text = "\n".join(scaleout_markdown({}, _out()))
    assert "AMD EPYC" in text
    assert ("| 1 gateway, SQLite | 210.0 | 420.0 | 100.0 | 200.0 | 0 | 100 | 0 | 0 | 0 / 0 | "
            "10.0 / 20.0 | 10.0 / 20.0 |") in text
    assert "| 3 gateways, PostgreSQL | 125.0 | 250.0 |" in text
    assert text.count("| **no** |") == 3


def test_cpu_model_reads_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Some CPU @ 2.0GHz\n")
    assert cpu_model(info) == "Some CPU @ 2.0GHz"
    assert cpu_model(tmp_path / "missing")  # falls back to platform, never empty here
