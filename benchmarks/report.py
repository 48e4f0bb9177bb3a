"""The run's record: the machine it ran on, and the whole report as Markdown.

The JSON report (``--json``) is the dict the CLI builds: ``command``, ``options``, ``machine``
(cores, torch, load averages at start and end), ``model_config`` and one entry per section that
ran; ``report_markdown`` turns it into the conditions line and each section's table
(``--markdown``), the form docs/benchmarks.md quotes.
"""

from __future__ import annotations

import os
import platform
from typing import Any

from benchmarks.sections import MARKDOWN
from yoloserve.machine import cpu_flags, cpu_model


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages (how busy the machine was)."""
    return os.getloadavg()


def machine() -> dict[str, Any]:
    """What the figures ran on: cores, processor, Python and torch, the load at start."""
    import torch

    return {
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "load_average_start": load_average(),
    }


def machine_line(info: dict[str, Any]) -> str:
    """The CPU a run's figures belong to: model, cores and the instruction sets that matter."""
    flags = ", ".join(info.get("cpu_flags") or []) or "none of the AVX2/AVX-512/AMX ones"
    return f"{info.get('cpu_model', '?')}, {info['cpu_count']} cores; flags: {flags}"


def report_markdown(report: dict[str, Any]) -> str:
    """A report as Markdown: the command, the conditions, one table per section that ran."""
    info = report["machine"]
    lines = [
        f"`{report['command']}`",
        "",
        f"CPU: {machine_line(info)}.",
        "",
        f"{info['cpu_count']} cores, torch {info['torch']}; load average (1/5/15 min) "
        f"{' / '.join(f'{v:.2f}' for v in info['load_average_start'])} at start, "
        f"{' / '.join(f'{v:.2f}' for v in info['load_average_end'])} at end.",
    ]
    for name, section in report["sections"].items():
        if name in MARKDOWN:
            lines += MARKDOWN[name](report, section)
    return "\n".join(lines) + "\n"
