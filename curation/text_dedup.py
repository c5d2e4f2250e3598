"""Exact and paragraph-level dedup keys for language data.

Near-duplicate documents are handled by :mod:`curation.minhash`; this module
covers the two other granularities: whole documents that are identical after
normalisation, and paragraphs repeated across many documents (boilerplate).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Iterable

from curation.ids import content_id

_SPACE = re.compile(r"\s+")


def normalize_exact(text: str) -> str:
    """NFKC, whitespace runs collapsed to one space, ends stripped."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def exact_key(text: str) -> str:
    """Key shared by documents that are identical after :func:`normalize_exact`."""
    return content_id(normalize_exact(text))


def split_paragraphs(text: str) -> list[str]:
    """Paragraphs as CCNet defines them for dedup: non-empty lines, stripped.

    Web text extracted from HTML (and text after C4 line cleaning) keeps one
    paragraph per line, so a line is the unit that repeats across documents.
    """
    return [line.strip() for line in text.splitlines() if line.strip()]


def paragraph_key(paragraph: str) -> str:
    """Key shared by paragraphs equal up to case and whitespace."""
    return content_id(normalize_exact(paragraph).casefold())


def paragraph_keys(text: str) -> list[str]:
    """The distinct paragraph keys of a document, in first-seen order."""
    return list(dict.fromkeys(paragraph_key(p) for p in split_paragraphs(text)))


def paragraph_losers(doc_ids: Iterable[str], min_docs: int) -> list[str]:
    """Documents that must drop a paragraph found in ``doc_ids``.

    A paragraph found in ``min_docs`` or more distinct documents is kept only in
    the first of them (the smallest id, so the choice is the same on any runner);
    every other document loses it.
    """
    distinct = sorted(set(doc_ids))
    return distinct[1:] if len(distinct) >= min_docs else []


def drop_paragraphs(text: str, keys: set[str]) -> str:
    """The text without the paragraphs whose key is in ``keys`` (the rest rejoined by newlines)."""
    return "\n".join(p for p in split_paragraphs(text) if paragraph_key(p) not in keys)
