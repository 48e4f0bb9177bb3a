"""The feedback's annotation canvas in real Chromium: image pixels <-> the mouse on the page.

The canvas (``streamlit-image-annotation``, a Konva stage in the component's iframe) shows the
image scaled; the test thinks in the image's own pixels, as the gateway does, and this maps them
to page coordinates from the canvas's measured box. Its controls are the component's own:
click a box to select it (drag it or its corner anchors then), *Class* selects the class of the
selected box or of the next one drawn, *Complete* hands the boxes to the app.
"""

from __future__ import annotations

from dataclasses import dataclass

from playwright.sync_api import FrameLocator, Page

#: The component's iframe, by the title Streamlit gives it (its module and name).
FRAME = "iframe[title='streamlit_image_annotation.Detection.st-detection']"
#: Mouse steps per drag: Konva follows pointermove events, so a drag needs a few in between.
STEPS = 12


@dataclass
class AnnotationCanvas:
    """The canvas on ``page`` for an image of ``width`` x ``height`` pixels."""

    page: Page
    width: int
    height: int

    @property
    def frame(self) -> FrameLocator:
        return self.page.frame_locator(FRAME)

    def ready(self) -> None:
        """Wait for the canvas, and bring it into the viewport (the mouse only acts there)."""
        stage = self.frame.locator("canvas").first
        stage.wait_for()
        stage.scroll_into_view_if_needed()
        self.page.wait_for_timeout(500)  # the image loads into the stage after the canvas

    def at(self, x: float, y: float) -> tuple[float, float]:
        """Page coordinates of image pixel ``(x, y)``, from where the canvas is now."""
        box = self.frame.locator("canvas").first.bounding_box()
        assert box is not None, "the canvas is not displayed"
        return (box["x"] + x * box["width"] / self.width,
                box["y"] + y * box["height"] / self.height)

    def scale(self) -> float:
        """Screen pixels per image pixel (the same on both axes, up to a rounding)."""
        box = self.frame.locator("canvas").first.bounding_box()
        assert box is not None, "the canvas is not displayed"
        return float(box["width"]) / self.width

    def click(self, x: float, y: float) -> None:
        self.page.mouse.click(*self.at(x, y))
        self.page.wait_for_timeout(200)

    def drag(self, start: tuple[float, float], end: tuple[float, float]) -> None:
        """Press at image pixel ``start``, move to ``end`` and release, like a hand would."""
        self.page.mouse.move(*self.at(*start))
        self.page.mouse.down()
        self.page.mouse.move(*self.at(*end), steps=STEPS)
        self.page.mouse.up()
        self.page.wait_for_timeout(300)

    def choose_class(self, name: str) -> None:
        """The component's *Class* list (the second select, after *Mode*)."""
        self.frame.locator("select").nth(1).select_option(name)
        self.page.wait_for_timeout(200)

    def complete(self) -> None:
        """Hand the boxes to the app (it reruns with them)."""
        self.frame.get_by_role("button", name="Complete").click()
