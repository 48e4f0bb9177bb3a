"""Every icon the web app shows in its pages, as Streamlit's bundled Material Symbols
(``:material/name:``); the browser tab's icon is a PNG we ship (``APP``).

Emoji render as empty boxes wherever no installed font has them: headless Chromium here, and
many servers and thin clients. The Material Symbols font ships inside Streamlit's own static
files (``MaterialSymbols-Rounded*.woff2``), so these render offline, with no font installed.
Dataframe cells are drawn on a canvas and cannot show them: tables use words instead.

``tests/webapp`` checks that every name here is one Streamlit knows; ``tests/browser`` checks
that the glyphs really render in Chromium.

Example:
    >>> JOB_STATES["running"]
    ':material/directions_run:'
"""

from __future__ import annotations

from pathlib import Path

# The page (browser tab) icon is a file we ship: a ``:material/...:`` page icon makes the browser
# fetch the glyph's SVG from a font CDN (the bundled font covers glyphs inside the page only).
APP = Path(__file__).parent / "static" / "favicon.png"
DETECT = ":material/search:"
MODELS = ":material/neurology:"
REVIEW = ":material/rate_review:"
DISMISSED = ":material/delete:"
QUEUE_EMPTY = ":material/inbox:"

ERROR = ":material/block:"
GATEWAY_DOWN = ":material/power_off:"
GATEWAY_UP = ":material/check_circle:"
FEEDBACK_SAVED = ":material/send:"
MONITORING = ":material/monitoring:"

JOB_STATES: dict[str, str] = {
    "queued": ":material/hourglass_top:",
    "running": ":material/directions_run:",
    "succeeded": ":material/check_circle:",
    "rejected": ":material/block:",
    "failed": ":material/cancel:",
}
UNKNOWN = ":material/help:"

ALL: tuple[str, ...] = (
    DETECT, MODELS, REVIEW, DISMISSED, QUEUE_EMPTY, ERROR, GATEWAY_DOWN, GATEWAY_UP,
    FEEDBACK_SAVED, MONITORING,
    *JOB_STATES.values(), UNKNOWN,
)
