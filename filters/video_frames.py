"""Frame judgments inside a video: blank frames (fades to black or white, empty slates)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from filters.base import Filter


@dataclass(frozen=True)
class BlankFrameFilter(Filter):
    """Drops a frame that is nearly one flat dark or bright tone (``blank_frame``): the black
    frames of fades and cuts, a white slate. A flat frame of any other colour is kept (a
    coloured title card says something). Scores ``mean`` and ``std`` of the luma (0..255).

    Attributes:
        max_std: a frame whose luma varies less than this is flat.
        dark: a flat frame darker than this is blank.
        bright: a flat frame brighter than this is blank.
    """

    name: str = "blank"
    max_std: float = 4.0
    dark: float = 16.0
    bright: float = 240.0

    def score(self, frame: Any) -> dict[str, float]:
        with Image.open(io.BytesIO(frame.image.data)) as image:
            image.draft("L", (64, 64))
            luma = np.asarray(image.convert("L").resize((64, 64)), dtype=np.float32)
        return {"mean": float(luma.mean()), "std": float(luma.std())}

    def keep(self, score: dict[str, float]) -> tuple[bool, str | None]:
        flat = score["std"] < self.max_std
        if flat and (score["mean"] < self.dark or score["mean"] > self.bright):
            return False, "blank_frame"
        return True, None
