"""Token accounting: text tokens by a tokenizer, visual tokens by the image-size recipe.

Counts feed the manifest (tokens per shard and dataset) and the sequence
budgets of packing steps. Tokenizers are loaded once per process.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
import math
import os
import re
from typing import Callable

CLIP_BPE = "clip-bpe"
WHITESPACE = "whitespace"
RESOLUTIONS = ("auto", "medium", "high", "ultra")

MEDIUM_SIDE = 490
HIGH_SIDE = 980
MEDIUM_TOKENS = 128
HIGH_TOKENS = 256

_WORD_PIECES = re.compile(r"\w+|[^\w\s]")
_MAX_BPE_WORD = 128  # CLIP BPE is quadratic in word length; longer pre-tokens count in pieces
_BPE_CACHE_LIMIT = 200_000


class TextTokenizer:
    """Counts the text tokens of a string.

    Attributes:
        name: the spec it was loaded from (``clip-bpe``, ``whitespace`` or the path).
    """

    def __init__(self, name: str, counter: Callable[[str], int]):
        self.name = name
        self._counter = counter

    @classmethod
    def load(cls, spec: str = CLIP_BPE) -> TextTokenizer:
        """The tokenizer for ``spec``, loaded once per process.

        Args:
            spec: ``clip-bpe`` for the byte-level BPE that open_clip bundles
                (offline; no truncation, no start/end tokens counted);
                ``whitespace`` for regex word and punctuation pieces; otherwise
                a local path to a HuggingFace ``tokenizer.json`` or a directory
                holding one (read with the ``tokenizers`` package; special
                tokens are not counted and truncation is off). Only local
                paths: copy a remote tokenizer to the worker first.

        Raises:
            ValueError: when ``spec`` is a path no tokenizer can be loaded from.
        """
        return _load(cls, spec)

    def count(self, text: str) -> int:
        """The number of tokens in ``text``."""
        return self._counter(text) if text else 0

    def __repr__(self) -> str:
        return f"TextTokenizer({self.name!r})"


def visual_tokens(width: int, height: int, resolution: str = "auto") -> int:
    """Visual tokens an image of ``width`` x ``height`` pixels costs, as the Aria recipe counts them.

    - ``medium``: resized to a long edge of 490 px, 128 tokens.
    - ``high``: resized to a long edge of 980 px, 256 tokens.
    - ``ultra``: split into 980x980 high-resolution crops,
      ``ceil(width / 980) * ceil(height / 980)`` of them at 256 tokens each,
      plus 256 for the downscaled overview image.
    - ``auto``: by the long edge: up to 490 px is medium, up to 980 px is
      high, anything larger is ultra.

    For example a 3000x1000 image is 4 x 2 = 8 crops, so 8 * 256 + 256 = 2304
    tokens in ``auto`` or ``ultra``.

    Raises:
        ValueError: on an unknown ``resolution`` or a non-positive size.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if resolution not in RESOLUTIONS:
        raise ValueError(f"image resolution must be one of {RESOLUTIONS}, got {resolution!r}")
    if resolution == "auto":
        long_side = max(width, height)
        resolution = "medium" if long_side <= MEDIUM_SIDE else "high" if long_side <= HIGH_SIDE else "ultra"
    if resolution == "medium":
        return MEDIUM_TOKENS
    if resolution == "high":
        return HIGH_TOKENS
    crops = math.ceil(width / HIGH_SIDE) * math.ceil(height / HIGH_SIDE)
    return HIGH_TOKENS * (crops + 1)


@functools.lru_cache(maxsize=None)
def _load(cls: type[TextTokenizer], spec: str) -> TextTokenizer:
    if spec == CLIP_BPE:
        return cls(spec, _clip_bpe_counter())
    if spec == WHITESPACE:
        return cls(spec, lambda text: sum(1 for _ in _WORD_PIECES.finditer(text)))
    return cls(spec, _huggingface_counter(spec))


def _clip_bpe_counter() -> Callable[[str], int]:
    """Counts like ``len(SimpleTokenizer().encode(text))`` without importing torch."""
    from curation.clip_bpe import ClipBpe

    return ClipBpe(max_word=_MAX_BPE_WORD, cache_limit=_BPE_CACHE_LIMIT).count


def _huggingface_counter(spec: str) -> Callable[[str], int]:
    """A counter from a ``tokenizer.json`` file or a directory that holds one."""
    path = os.path.join(spec, "tokenizer.json") if os.path.isdir(spec) else spec
    if not os.path.isfile(path):
        raise ValueError(
            f"text tokenizer {spec!r}: not {CLIP_BPE!r}, {WHITESPACE!r}, "
            "or a tokenizer.json file or a directory holding one"
        )
    try:
        from tokenizers import Tokenizer
    except ImportError as error:
        raise ValueError(f"text tokenizer {spec!r}: reading tokenizer.json needs the 'tokenizers' package") from error
    try:
        tokenizer = Tokenizer.from_file(path)
    except Exception as error:  # the Rust loader raises its own exception type
        raise ValueError(f"text tokenizer {spec!r}: cannot load {path}: {error}") from error
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)


@dataclass(frozen=True)
class TokenSettings:
    """Token accounting: ``text_tokenizer`` is ``clip-bpe``, ``whitespace`` or a tokenizer.json path;
    ``image_resolution`` is ``auto``, ``medium``, ``high`` or ``ultra``."""

    text_tokenizer: str = "clip-bpe"
    image_resolution: str = "auto"
