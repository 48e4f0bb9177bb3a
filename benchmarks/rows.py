"""Acknowledged feedback rows counted back from the CSV: the "none lost" half of a write figure.

A writer is told ``rows_written`` per ``feedback_id``; ``rows_by_column`` counts what the file
holds per id, ``lost_rows`` compares the two. With the prediction's ``request_id`` each feedback
names, :func:`tally` also finds duplicates (a request stored twice, under two ids, or more rows
than acknowledged): ``rows_by_pair`` counts a CSV that way, the scaleout section a store.

Example:
    >>> lost_rows({"a": 2, "b": 1}, {"a": 1, "b": 1})
    {'a': 1}
    >>> tally({"r1": ("f1", 2)}, {"r1": {"f1": 2, "f9": 2}})
    Tally(acknowledged=2, found=2, lost=0, duplicated=2, unacknowledged=0)
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


def rows_by_column(path: Path, column: str) -> Counter[str]:
    """Data rows of a CSV file per value of ``column`` (empty when the file is missing)."""
    counts: Counter[str] = Counter()
    if not path.is_file():
        return counts
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        index = header.index(column)
        for row in reader:
            counts[row[index]] += 1
    return counts


def lost_rows(acknowledged: Mapping[str, int], found: Mapping[str, int]) -> dict[str, int]:
    """Rows acknowledged (key -> rows_written) but missing from ``found``, per key.

    A key with more rows in the file than acknowledged is not a loss and is not listed.
    """
    return {key: n - found.get(key, 0) for key, n in acknowledged.items() if found.get(key, 0) < n}


def rows_by_pair(path: Path, key: str, sub: str) -> dict[str, Counter[str]]:
    """Data rows of a CSV file per value of ``key``, then of ``sub`` (e.g. ``request_id``,
    ``feedback_id``); empty when the file is missing."""
    counts: dict[str, Counter[str]] = {}
    if not path.is_file():
        return counts
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        k, s = header.index(key), header.index(sub)
        for row in reader:
            counts.setdefault(row[k], Counter())[row[s]] += 1
    return counts


@dataclass(frozen=True)
class Tally:
    """Acknowledged rows against what was found, per request.

    ``found``: rows found under the acknowledged ``feedback_id`` (at most ``acknowledged``);
    ``lost``: acknowledged but not found; ``duplicated``: found beyond the acknowledged count,
    or under another ``feedback_id`` for the same request; ``unacknowledged``: rows of requests
    whose call got no 201 (a timeout after the commit), neither lost nor duplicated.
    """

    acknowledged: int
    found: int
    lost: int
    duplicated: int
    unacknowledged: int


def tally(acknowledged: Mapping[str, tuple[str, int]],
          found: Mapping[str, Mapping[str, int]],
          unanswered: frozenset[str] | set[str] = frozenset()) -> Tally:
    """Count rows back per request.

    Args:
        acknowledged: request -> (``feedback_id``, ``rows_written``) of each 201 answer.
        found: request -> rows found per ``feedback_id`` (in the store, or the CSV); only the
            requests of this run, so other writers' rows do not count.
        unanswered: requests sent without a 201; their rows are ``unacknowledged``.
    """
    acked = got = lost = duplicated = unacked = 0
    for request, (feedback_id, rows) in acknowledged.items():
        per_id = found.get(request, {})
        mine = per_id.get(feedback_id, 0)
        acked += rows
        got += min(mine, rows)
        lost += max(rows - mine, 0)
        duplicated += max(mine - rows, 0)
        duplicated += sum(n for other, n in per_id.items() if other != feedback_id)
    for request in unanswered:
        if request not in acknowledged:
            unacked += sum(found.get(request, {}).values())
    return Tally(acked, got, lost, duplicated, unacked)
