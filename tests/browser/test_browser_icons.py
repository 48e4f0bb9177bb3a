"""The web app's icons really render in headless Chromium: glyphs, not empty "tofu" boxes.

Emoji icons came out as identical hollow boxes here (no installed font has them). Each icon is
now a Material Symbol from Streamlit's bundled font; this test looks at the pixels:

* the icon font is one the page loaded (``document.fonts``), and each icon element uses it;
* each icon is one glyph about as wide as it is tall (a ligature whose font failed shows the
  icon's *name* as text, e.g. "search", several times wider);
* each icon's ink differs from a tofu box drawn on the same page at the same size, and from the
  other icons (tofu boxes are all alike).

Screenshots (page and each icon) go to ``tests/artifacts/`` for a human to look at.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Locator, Page

pytestmark = [pytest.mark.browser, pytest.mark.integration]

ICON_FONT = "Material Symbols Rounded"
# Streamlit's icon elements: nav and buttons (material or emoji), alerts (either kind).
ICONS = ("[data-testid='stIconMaterial'], [data-testid='stIconEmoji'], "
         "[data-testid$='DynamicIcon']")
TOFU_ID = "tofu-reference"
MASK = (24, 24)  # ink masks are compared at this size


def _ink(png: bytes) -> np.ndarray:
    """Boolean mask of the pixels darker than the background, cropped to them and resized."""
    gray = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.int16)
    background = int(np.bincount(gray.ravel()).argmax())
    ink = gray < background - 40
    assert ink.any(), "nothing drawn at all"
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    cropped = ink[rows[0]: rows[-1] + 1, cols[0]: cols[-1] + 1]
    image = Image.fromarray(cropped.astype(np.uint8) * 255).resize(MASK, Image.Resampling.BOX)
    return np.asarray(image) > 127


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def _tofu(page: Page, like: Locator) -> bytes:
    """A glyph no installed font has, in the same place, size and colour as ``like``."""
    like.evaluate(
        """(icon, id) => {
            const style = getComputedStyle(icon);
            const tofu = document.createElement("span");
            tofu.id = id;
            tofu.textContent = "\\u{1F50D}";  // the old Detect emoji
            tofu.style.cssText = `font-size:${style.fontSize};color:${style.color};` +
                "font-family:sans-serif;line-height:1;display:inline-block";
            icon.parentElement.appendChild(tofu);
        }""",
        TOFU_ID,
    )
    tofu = page.locator(f"#{TOFU_ID}")
    try:
        return tofu.screenshot()
    finally:
        tofu.evaluate("node => node.remove()")


def _check_icons(
    page: Page, where: str, artifacts: Path, expected: int, name: str
) -> list[np.ndarray]:
    """Check every icon inside ``where`` (at least ``expected``); their ink masks, in order."""
    icons = page.locator(where).locator(ICONS)
    assert icons.count() >= expected, f"{where}: {icons.count()} icons, expected {expected}"
    loaded = page.evaluate(
        "family => [...document.fonts].some(f => f.family.includes(family) && "
        "f.status === 'loaded')",
        ICON_FONT,
    )
    assert loaded, f"{ICON_FONT} was not loaded by the page"
    tofu = _ink(_tofu(page, icons.first))
    masks = []
    for i in range(icons.count()):
        icon = icons.nth(i)
        text = icon.inner_text()
        family = icon.evaluate("node => getComputedStyle(node).fontFamily")
        assert ICON_FONT in family, f"{text!r} is drawn with {family}, not the icon font"
        box = icon.bounding_box()
        assert box is not None and box["height"] > 8
        assert box["width"] <= 1.5 * box["height"], f"{text!r} renders as text: {box}"
        png = icon.screenshot()
        label = text if text.isascii() and text.isidentifier() else "glyph"
        (artifacts / f"browser_icon_{name}_{i}_{label}.png").write_bytes(png)
        mask = _ink(png)
        assert _iou(mask, tofu) < 0.6, f"{text!r} looks like a tofu box"
        masks.append(mask)
    return masks


def test_sidebar_and_page_icons_render_as_glyphs(
    page: Page, webapp_url: str, artifacts: Path
) -> None:
    page.goto(webapp_url)
    page.get_by_role("heading", name="Detect objects").wait_for()
    page.get_by_text("Gateway is up").wait_for()
    page.evaluate("document.fonts.ready")
    page.screenshot(path=str(artifacts / "browser_icons_detect.png"))

    nav = _check_icons(page, "[data-testid='stSidebarNav']", artifacts, 2, "nav")
    # Distinct icons draw distinct glyphs; tofu boxes would all be the same rectangle.
    assert all(_iou(a, b) < 0.8 for i, a in enumerate(nav) for b in nav[i + 1:])
    _check_icons(page, "[data-testid='stSidebarUserContent']", artifacts, 1, "sidebar")

    page.get_by_role("link", name="Models").click()
    page.get_by_role("heading", name="Models").wait_for()
    page.get_by_role("link", name="Open the Evidently dashboard").wait_for()  # the page's end
    page.evaluate("document.fonts.ready")
    page.screenshot(path=str(artifacts / "browser_icons_models.png"))
    _check_icons(page, "[data-testid='stMain']", artifacts, 1, "models")  # the Evidently link
