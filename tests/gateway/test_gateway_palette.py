"""One class colour everywhere: the contract's palette, the gateway's and the web app's drawers.

``POST /predict/image`` (``gateway/images.py``) and the web app (``webapp/drawing.py``) each
keep a copy of the palette, since the web app imports nothing of the gateway; these tests keep
both copies equal to the table in ``docs/api-contract.md`` and check the pixels they paint.
"""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image

from gateway import images as gateway_images
from webapp import drawing as webapp_drawing
from yoloserve import paths
from yoloserve.schemas import Box

CONTRACT = paths.ROOT / "docs" / "api-contract.md"
_ROW = re.compile(r"^\|\s*(\d+)\s*\|\s*`#([0-9A-Fa-f]{6})`\s*\|\s*$")


def contract_palette() -> list[tuple[int, int, int]]:
    """The ``Box colours`` table of the contract, in index order."""
    text = CONTRACT.read_text()
    section = text.split("### Box colours", 1)[1].split("\n#", 1)[0]
    rows = [m.groups() for line in section.splitlines() if (m := _ROW.match(line.strip()))]
    assert [int(i) for i, _ in rows] == list(range(len(rows))), "indexes must be 0, 1, 2, ..."
    return [(int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)) for _, h in rows]


def test_palettes_are_the_contracts() -> None:
    palette = contract_palette()
    assert len(palette) >= 8
    assert len(set(palette)) == len(palette)  # distinct colours
    assert list(gateway_images.PALETTE) == palette
    assert list(webapp_drawing.PALETTE) == palette


@pytest.mark.parametrize("cls", [0, 1, 2, 5, 11, 12, 25])
def test_both_drawers_paint_class_k_the_same_colour(cls: int) -> None:
    palette = contract_palette()
    expected = palette[cls % len(palette)]
    xyxy = (50.0, 60.0, 150.0, 90.0)

    box = Box(xyxy=xyxy, conf=0.9, cls=cls, name=f"class{cls}")
    encoded = gateway_images.draw_boxes(Image.new("RGB", (200, 100)), [box], fmt="png")
    with Image.open(io.BytesIO(encoded)) as drawn:
        gateway_pixel = drawn.convert("RGB").getpixel((100, 89))  # bottom edge of the box

    annotation = webapp_drawing.Annotation(xyxy, f"class{cls} 0.90", cls)
    webapp_pixel = webapp_drawing.draw_boxes(Image.new("RGB", (200, 100)), [annotation]).getpixel(
        (100, 89)
    )

    assert gateway_pixel == webapp_pixel == expected


@pytest.mark.parametrize("color", contract_palette())
def test_both_drawers_pick_the_same_label_text_colour(
    color: tuple[int, int, int],
) -> None:
    assert gateway_images.text_color_on(color) == webapp_drawing.text_color_on(color)
