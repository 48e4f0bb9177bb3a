"""Sample images offered on the Detect page, and the image types the gateway accepts.

Example:
    >>> content_type("street.JPG")
    'image/jpeg'
"""

from __future__ import annotations

from pathlib import Path

#: File extensions the gateway's ``/predict`` accepts, with the MIME type sent for each.
IMAGE_TYPES: dict[str, str] = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
}

#: The same list in the form ``st.file_uploader(type=...)`` wants (no dots).
UPLOAD_EXTENSIONS: list[str] = [ext.lstrip(".") for ext in IMAGE_TYPES]


def content_type(filename: str) -> str:
    """The MIME type for an image file name; unknown extensions get a neutral type.

    The gateway checks the bytes, not this header, so a wrong guess is harmless; a neutral
    type just avoids claiming something false.
    """
    return IMAGE_TYPES.get(Path(filename).suffix.lower(), "application/octet-stream")


def list_samples(folder: Path) -> list[Path]:
    """The images directly inside ``folder``, sorted by name.

    A missing folder, a file in its place or an unreadable folder give an empty list: samples
    are a convenience, never a reason for the page to fail.
    """
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    return sorted(
        (
            p
            for p in entries
            if p.suffix.lower() in IMAGE_TYPES and not p.name.startswith(".") and p.is_file()
        ),
        key=lambda p: p.name.lower(),
    )
