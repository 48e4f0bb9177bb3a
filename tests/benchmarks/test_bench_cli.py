"""``python -m benchmarks``: its help lists every section; a wrong section fails before any
stack starts. ``python -m benchmarks.embeddings --help`` works too. Real subprocesses, as a user
runs them (the help imports no torch: about a second each)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from benchmarks.sections import SECTIONS, summary
from yoloserve.paths import ROOT


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    # Wide and plain, so that rich neither wraps a section line nor colours it.
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_help_lists_every_section_with_what_it_measures() -> None:
    result = _run("benchmarks", "--help")
    assert result.returncode == 0, result.stderr
    for name in SECTIONS:
        assert f"{name}: {summary(name)}" in result.stdout
    assert f"of {', '.join(SECTIONS)}" in result.stdout  # the --sections option names them too
    for option in ("--requests", "--rounds", "--set", "--ts-property", "--json", "--markdown"):
        assert option in result.stdout


def test_unknown_section_is_refused_before_the_stack_starts() -> None:
    result = _run("benchmarks", "--sections", "serving,nope")
    assert result.returncode == 2
    assert "unknown sections ['nope']" in result.stdout + result.stderr


@pytest.mark.parametrize("option", ["--images", "--background", "--repeat", "--embedder"])
def test_embeddings_help(option: str) -> None:
    result = _run("benchmarks.embeddings", "--help")
    assert result.returncode == 0, result.stderr
    assert option in result.stdout
