"""The annotation canvas under ``AppTest``: what it was rendered with, and pressing *Complete*.

``AppTest`` cannot click inside a custom component (its frontend never runs), but a component's
value lives in the session under its key, as Streamlit stores it when the frontend sends one:
setting it and rerunning is what *Complete* does. The browser tests press the real button.
"""

from __future__ import annotations

import json
from typing import Any

from streamlit.testing.v1 import AppTest

from webapp.views.feedback import canvas_key, revision_key


def canvas_key_of(at: AppTest, detection_key: str) -> str:
    """The key of the canvas on screen, from ``AppTest``'s session (not this process's)."""
    try:
        revision = int(at.session_state[revision_key(detection_key)])
    except KeyError:  # Start over never pressed
        revision = 0
    return canvas_key(detection_key, revision)


def canvas_args(at: AppTest, detection_key: str) -> dict[str, Any]:
    """The arguments the canvas of detection ``detection_key`` was rendered with."""
    key = canvas_key_of(at, detection_key)
    (canvas,) = [c for c in at.get("component_instance") if key in c.proto.id]
    args: dict[str, Any] = json.loads(canvas.proto.json_args)
    return args


def complete(at: AppTest, detection_key: str, boxes: list[dict[str, Any]]) -> AppTest:
    """Press *Complete* with ``boxes`` (the component's ``[x, y, w, h]`` form) on the canvas."""
    at.session_state[canvas_key_of(at, detection_key)] = boxes
    return at.run()
