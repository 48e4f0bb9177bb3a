"""The CPU a measurement belongs to: its model name and the instruction sets that matter.

A latency or a runtime choice measured on one CPU is not a property of the platform: an AMX Xeon
and an AMD EPYC without AMX rank the runtimes differently. Every figure the platform records (the
runtime ``auto`` chose, ``make bench``) carries this.

Example:
    >>> isinstance(cpu_model(), str) and isinstance(cpu_flags(), list)
    True
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

CPUINFO = Path("/proc/cpuinfo")
# The instruction sets that decide which runtime and precision is fastest on a CPU: a ratio
# measured with AMX is not one measured without it.
SPEED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile",
               "amx_bf16", "amx_int8")


def _cpuinfo_field(name: str, cpuinfo: Path) -> str | None:
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith(name):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return None


def cpu_model(cpuinfo: Path = CPUINFO) -> str:
    """The processor's model name (Linux ``/proc/cpuinfo``), else what ``platform`` knows."""
    return _cpuinfo_field("model name", cpuinfo) or platform.processor() or platform.machine()


def cpu_flags(cpuinfo: Path = CPUINFO) -> list[str]:
    """Which of :data:`SPEED_FLAGS` the processor has (Linux ``/proc/cpuinfo``; else none)."""
    present = set((_cpuinfo_field("flags", cpuinfo) or "").split())
    return [flag for flag in SPEED_FLAGS if flag in present]


def describe() -> dict[str, Any]:
    """``{"cpu_model", "cpu_flags", "cpu_count"}`` of this machine."""
    return {"cpu_model": cpu_model(), "cpu_flags": cpu_flags(), "cpu_count": os.cpu_count()}
