"""Pixel-exact drawing of the synthetic images: flat shapes and stroke letters on a grey background.

Everything is drawn with PIL ``ImageDraw`` primitives without anti-aliasing and without font
files, so every pixel is either the background grey or the shape's colour and the images are the
same on every machine. Boxes are ``(x0, y0, x1, y1)`` with inclusive pixel corners.
"""

from __future__ import annotations

from PIL import Image, ImageDraw

BACKGROUND: tuple[int, int, int] = (128, 128, 128)

# Saturated colours far from the grey background and from each other, so that the mean colour of
# the non-background pixels identifies the label (tests rely on this).
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (230, 25, 25),
    "green": (25, 180, 25),
    "blue": (25, 60, 230),
    "yellow": (240, 220, 20),
    "orange": (245, 130, 20),
    "purple": (140, 40, 200),
    "white": (250, 250, 250),
    "black": (10, 10, 10),
}

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
LETTERS: tuple[str, ...] = ("L", "O", "T", "X")

Box = tuple[int, int, int, int]


def blank(size: int) -> Image.Image:
    """A ``size`` x ``size`` RGB image filled with the background grey."""
    return Image.new("RGB", (size, size), BACKGROUND)


def draw_shape(image: Image.Image, kind: str, box: Box, colour: tuple[int, int, int]) -> None:
    """Fill ``kind`` (circle, square or triangle) so that it touches all four sides of ``box``."""
    draw = ImageDraw.Draw(image)
    x0, y0, x1, y1 = box
    if kind == "circle":
        draw.ellipse(box, fill=colour)
    elif kind == "square":
        draw.rectangle(box, fill=colour)
    elif kind == "triangle":
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=colour)
    else:
        raise ValueError(f"unknown shape {kind!r}; known: {', '.join(SHAPES)}")


def draw_letter(image: Image.Image, letter: str, box: Box, colour: tuple[int, int, int]) -> None:
    """Draw ``letter`` (one of :data:`LETTERS`) with thick strokes filling ``box``."""
    draw = ImageDraw.Draw(image)
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    # Strokes about a quarter of the glyph wide: thin strokes vanish in 8 px patches of a tiny tower.
    t = max(2, round(0.24 * min(w, h)))
    if letter == "L":
        draw.rectangle((x0, y0, x0 + t - 1, y1), fill=colour)
        draw.rectangle((x0, y1 - t + 1, x1, y1), fill=colour)
    elif letter == "T":
        cx = x0 + w // 2
        draw.rectangle((x0, y0, x1, y0 + t - 1), fill=colour)
        draw.rectangle((cx - t // 2, y0, cx - t // 2 + t - 1, y1), fill=colour)
    elif letter == "O":
        draw.ellipse(box, outline=colour, width=t)
    elif letter == "X":
        draw.polygon([(x0, y0), (x0 + t, y0), (x1, y1), (x1 - t, y1)], fill=colour)
        draw.polygon([(x1, y0), (x1 - t, y0), (x0, y1), (x0 + t, y1)], fill=colour)
    else:
        raise ValueError(f"unknown letter {letter!r}; known: {', '.join(LETTERS)}")
