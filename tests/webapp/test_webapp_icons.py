"""The web app's icons are Streamlit's bundled Material Symbols, never emoji.

Emoji render as empty boxes where no installed font has them (headless Chromium here); the
browser test (tests/browser/test_browser_icons.py) checks the glyphs on screen, these check the
sources cheaply: every icon name exists in Streamlit, and no emoji is left anywhere in webapp/.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.material_icon_names import ALL_MATERIAL_ICONS
from streamlit.string_util import validate_material_icon

from webapp import icons

WEBAPP = Path(icons.__file__).parent
# What only a colour-emoji font draws: pictographs, the emoji-presentation symbols (✅ ❌ ❔ ⏳ ⭐)
# and the emoji variation selector. Text symbols such as ✓ ✗ → are left alone: DejaVu has them.
EMOJI = re.compile(
    "[\U0001f000-\U0001faff\u2600-\u26ff\u2705\u274c\u274e\u2753-\u2755\u2795-\u2797"
    "\u23e9-\u23fa\u2b50\u2b55\ufe0f]"
)


@pytest.mark.parametrize("icon", icons.ALL)
def test_every_icon_is_a_material_icon_streamlit_ships(icon: str) -> None:
    match = re.fullmatch(r":material/([a-z0-9_]+):", icon)
    assert match, icon
    assert match.group(1) in ALL_MATERIAL_ICONS
    assert validate_material_icon(icon) == icon  # what st.Page / st.error / st.button accept


def test_no_emoji_in_the_web_app() -> None:
    found = [
        f"{path.relative_to(WEBAPP)}:{number}: {line.strip()}"
        for path in sorted(WEBAPP.rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if EMOJI.search(line)
    ]
    assert not found, "emoji render as empty boxes without an emoji font:\n" + "\n".join(found)
