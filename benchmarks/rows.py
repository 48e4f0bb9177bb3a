"""Acknowledged feedback rows counted back from the CSV: the "none lost" half of a write figure.

A writer is told ``rows_written`` per ``feedback_id``; ``rows_by_column`` counts what the file
holds per id, ``lost_rows`` compares the two.

Example:
    >>> lost_rows({"a": 2, "b": 1}, {"a": 1, "b": 1})
    {'a': 1}
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Mapping
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
