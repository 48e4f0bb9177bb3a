"""The sections of ``python -m benchmarks``, in the order they run, and their Markdown writers.

One function of the :class:`benchmarks.context.BenchContext` per section; they run in this
order whatever ``--sections`` lists (``loop`` restarts the gateway with a small
``RETRAIN_EVERY_K`` and leaves a retrained default, so it comes last). Adding a section: a
module with ``<name>_section`` and ``<name>_markdown``, and one line in each dict below.
"""

from __future__ import annotations

from benchmarks.context import MarkdownWriter, Section
from benchmarks.feedback import feedback_markdown, feedback_section
from benchmarks.hops import hops_markdown, hops_section
from benchmarks.hotswap import hotswap_markdown, hotswap_section
from benchmarks.loop import loop_markdown, loop_section
from benchmarks.runtimes import runtimes_markdown, runtimes_section
from benchmarks.scaleout import scaleout_markdown, scaleout_section
from benchmarks.serving import serving_markdown, serving_section

SECTIONS: dict[str, Section] = {
    "runtimes": runtimes_section,
    "serving": serving_section,
    "hops": hops_section,
    "feedback": feedback_section,
    "scaleout": scaleout_section,
    "hotswap": hotswap_section,
    "loop": loop_section,
}
MARKDOWN: dict[str, MarkdownWriter] = {
    "runtimes": runtimes_markdown,
    "serving": serving_markdown,
    "hops": hops_markdown,
    "feedback": feedback_markdown,
    "scaleout": scaleout_markdown,
    "hotswap": hotswap_markdown,
    "loop": loop_markdown,
}
# loop measured at ~4.5 min: under 10
DEFAULT_SECTIONS = "runtimes,serving,hops,feedback,scaleout,hotswap,loop"


def summary(name: str) -> str:
    """The first line of a section function's docstring: what it measures."""
    return (SECTIONS[name].__doc__ or "").strip().splitlines()[0]
