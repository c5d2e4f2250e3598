"""Shared types of the renderers (``render_text``, ``render_chart``, ``render_latex``).

Each renderer turns a source (plain text, a chart spec, a LaTeX snippet) into one
:class:`RenderedPage`: an RGB image, the exact target text a model should read off
it, the renderer that drew it (``text:two_column``, ``matplotlib:bar``,
``vega-lite``, ``pdflatex``, ``mathtext``, ``matplotlib:table``) and the layout
choices it made. A source it cannot or will not render raises
:class:`RenderError` with a snake_case ``reason`` from :data:`REASONS` and a
human ``detail`` (for LaTeX errors, TeX's own ``!`` error line).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from curation.failures import NamedFailure

REASONS = frozenset(
    {
        "bad_chart_spec",
        "unknown_chart_type",
        "latex_error",
        "latex_timeout",
        "latex_refused",
        "render_failed",
        "empty_source",
    }
)


@dataclass
class RenderedPage:
    """One rendered sample: ``image`` (RGB), its exact ``target`` text, ``renderer`` and ``layout``."""

    image: Image.Image
    target: str
    renderer: str
    layout: dict[str, Any] = field(default_factory=dict)


class RenderError(NamedFailure):
    """A source that was not rendered; ``reason`` is one of :data:`REASONS`."""

    reasons = frozenset(REASONS)


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as RGB, transparent areas composited onto white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "P"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def ink_bbox(image: Image.Image, threshold: int = 250) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) of the pixels darker than ``threshold`` in any channel; None if blank."""
    pixels = np.asarray(image.convert("RGB"))
    ink = (pixels < threshold).any(axis=2)
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def crop_to_ink(image: Image.Image, margin: int) -> Image.Image:
    """``image`` cropped to its ink plus ``margin`` white pixels on each side."""
    box = ink_bbox(image)
    if box is None:
        raise RenderError("render_failed", "the rendering is blank")
    left, top, right, bottom = box
    cropped = image.crop((left, top, right, bottom))
    out = Image.new("RGB", (cropped.width + 2 * margin, cropped.height + 2 * margin), (255, 255, 255))
    out.paste(cropped, (margin, margin))
    return out
