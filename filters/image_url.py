"""Image URL rules of the interleaved web-page pipeline: drop decoration before fetching.

OBELICS (Laurençon et al. 2023, arXiv:2306.16527, "Filtering multimodal web documents")
keeps images in the formats of its config, ``valid_formats: {jpg, jpeg, png,
webp}`` (``obelisc/configs/config_filter_web_documents.yaml``), and removes
images whose URL holds a banned sub-string such as ``logo``, as generic,
non-content pictures. Here both judgments are made on the URL alone, before any
download. :data:`BAN_WORDS` is this project's list: OBELICS's examples plus the
usual names of decoration (icons, buttons, banners, avatars, sprites, spacers,
tracking pixels, ads); it matches whole words, not sub-strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import unquote, urlsplit

from filters.base import Filter

ALLOWED_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
BAN_WORDS = (
    "logo",
    "button",
    "icon",
    "favicon",
    "plugin",
    "widget",
    "banner",
    "avatar",
    "sprite",
    "pixel",
    "spacer",
    "badge",
    "ad",
)
_TOKEN = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+|[^\W\d_]+")
_EXTENSION = re.compile(r"[a-z0-9]*")


@dataclass(frozen=True)
class ImageUrlFilter(Filter):
    """Judges an image URL (a plain string) by its scheme, extension and words.

    A URL is dropped, in this order, when it is a ``data:`` URL
    (``image_url_data``); it cannot be parsed (``image_url_malformed``); its scheme
    is not an allowed one, relative URLs included (``image_url_scheme``); its file
    name has an extension outside ``allowed_extensions``, or none while
    ``allow_missing_extension`` is off (``image_url_extension``); or a word of its
    path is a ban word or a ban word plus ``s`` (``image_url_ban_word``).

    Words are the runs of letters or digits of the percent-decoded path, split
    at camel-case humps (``siteLogo2.png`` -> ``site logo 2 png``), so ``ad``
    bans ``/ad/banner-728.jpg`` and ``ads_top.png`` but not ``adventure.jpg``,
    and ``sitelogo.png`` goes through. The host and query are not read.

    The record is a URL string, which has no ``stats``: call :meth:`judge`, not the
    filter itself (``Filter.__call__`` writes into ``record.stats``). The score is
    ``{"scheme", "extension", "ban_word"}`` (strings; ``scheme`` is ``None`` for a
    URL that does not parse).

    Attributes:
        allowed_schemes: accepted URL schemes, lower case.
        allowed_extensions: accepted file extensions, lower case (OBELICS's
            ``valid_formats``; GIF, SVG, ICO, BMP and the rest are dropped).
        allow_missing_extension: keep URLs whose file name has no extension
            (CDN URLs often have none; the decoded image is checked later).
        ban_words: words that mark an image as decoration, lower case.
    """

    name: ClassVar[str] = "image_url"
    allowed_schemes: tuple[str, ...] = ("http", "https")
    allowed_extensions: tuple[str, ...] = ALLOWED_EXTENSIONS
    allow_missing_extension: bool = True
    ban_words: tuple[str, ...] = BAN_WORDS

    def score(self, record: str) -> dict[str, str | None]:
        url = record.strip()
        try:
            parts = urlsplit(url)
        except ValueError:
            return {"scheme": None, "extension": "", "ban_word": ""}
        path = unquote(parts.path)
        filename = path.rsplit("/", 1)[-1]
        extension = filename.rpartition(".")[2].lower() if "." in filename else ""
        return {
            "scheme": parts.scheme.lower(),
            "extension": _EXTENSION.match(extension).group(),
            "ban_word": _ban_word(path, self.ban_words),
        }

    def keep(self, score: dict[str, str | None]) -> tuple[bool, str | None]:
        if score["scheme"] == "data":
            return False, "image_url_data"
        if score["scheme"] is None:
            return False, "image_url_malformed"
        if score["scheme"] not in self.allowed_schemes:
            return False, "image_url_scheme"
        if score["extension"]:
            if score["extension"] not in self.allowed_extensions:
                return False, "image_url_extension"
        elif not self.allow_missing_extension:
            return False, "image_url_extension"
        if score["ban_word"]:
            return False, "image_url_ban_word"
        return True, None

    def judge(self, url: str) -> tuple[bool, str | None]:
        """Decides on one URL: ``(True, None)`` or ``(False, reason)``."""
        return self.keep(self.score(url))


def _ban_word(path: str, ban_words: tuple[str, ...]) -> str:
    """The first word of ``path`` that is a ban word or its plural, or ``""``."""
    banned = set(ban_words)
    for token in _TOKEN.findall(path):
        word = token.lower()
        if word in banned:
            return word
        if word.endswith("s") and word[:-1] in banned:
            return word[:-1]
    return ""
