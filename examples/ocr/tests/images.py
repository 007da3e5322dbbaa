"""Images with known text, drawn with Pillow's own font: the OCR tests need no image files."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw, ImageFont


def text_image(lines: list[str], *, fmt: str = "PNG", size: int = 40, width: int = 640) -> bytes:
    """An image file with ``lines`` drawn black on white, one under the other."""
    font = ImageFont.load_default(size=size)
    image = Image.new("RGB", (width, 40 + int(size * 1.8) * len(lines)), "white")
    draw = ImageDraw.Draw(image)
    for row, line in enumerate(lines):
        draw.text((24, 20 + int(size * 1.8) * row), line, fill="black", font=font)
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()
