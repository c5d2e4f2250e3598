"""Sentence splitting for interleaved documents.

:func:`split_sentences` splits a paragraph with pysbd's rule-based segmenter
(abbreviations such as "Dr." and "e.g.", decimals, ellipses, CJK full stops).
Sentences are cut out of the whitespace-normalised paragraph by offset, never
rebuilt from the segmenter's output, so no character is dropped or altered:
the sentences are consecutive, non-overlapping slices of
``normalize_whitespace(text)`` that, with the single spaces between them
(none between CJK sentences), make up the whole of it.

:func:`sentence_layout` splits a document's text segments once and places each
image segment at its anchor, the index of the first sentence after it; this is
the structure that CLIP scoring and :func:`synth.reorder.reorder` work on.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import pysbd
from pysbd.languages import LANGUAGE_CODES

from curation.records import Segment

DEFAULT_LANGUAGE = "en"


@dataclass(frozen=True)
class SentenceLayout:
    """A document's segments with its text split into sentences s_0..s_{n-1}.

    Attributes:
        segments: the document's segments, unchanged.
        sentences: every text segment's sentences, in document order.
        sentence_segment: for each sentence, the index in ``segments`` of the
            text segment (paragraph) it came from.
        spans: for each sentence, its ``(start, end)`` offsets in the
            whitespace-normalised text of its paragraph.
        image_segments: the index in ``segments`` of each image segment, in
            document order; image ``i`` of the document is
            ``segments[image_segments[i]]``.
        anchors: for each image, the index of the first sentence after it
            (``len(sentences)`` when no text follows).
    """

    segments: tuple[Segment, ...]
    sentences: tuple[str, ...]
    sentence_segment: tuple[int, ...]
    spans: tuple[tuple[int, int], ...]
    image_segments: tuple[int, ...]
    anchors: tuple[int, ...]

    @property
    def images(self) -> list[Segment]:
        """The image segments in document order (the rows of a similarity matrix)."""
        return [self.segments[k] for k in self.image_segments]


def normalize_whitespace(text: str) -> str:
    """Collapses every whitespace run to one space and strips both ends."""
    return " ".join(text.split())


def split_sentences(text: str, language: str = DEFAULT_LANGUAGE) -> list[str]:
    """Splits a paragraph into sentences.

    Args:
        text: the paragraph; whitespace runs (newlines included) count as one space.
        language: ISO 639-1 code selecting pysbd's abbreviation rules; codes
            pysbd does not know fall back to English rules.

    Returns:
        The sentences, stripped, non-empty, in order; empty for blank text.
        Joined with the whitespace between them they give back
        ``normalize_whitespace(text)`` exactly.
    """
    normalized = normalize_whitespace(text)
    return [normalized[start:end] for start, end in sentence_spans(normalized, language)]


def sentence_spans(normalized: str, language: str = DEFAULT_LANGUAGE) -> list[tuple[int, int]]:
    """Finds sentence offsets in whitespace-normalised text.

    The segmenter's sentences are matched left to right in ``normalized`` and
    only their end offsets are kept as cut points. A sentence the segmenter
    altered (it rewrites a few marker characters internally) does not match;
    the text from there on stays one sentence, so nothing is ever lost.

    Args:
        normalized: text as returned by :func:`normalize_whitespace`.
        language: as for :func:`split_sentences`.

    Returns:
        ``(start, end)`` per sentence: consecutive, non-overlapping, stripped of
        spaces, covering every non-space character of ``normalized``.
    """
    if not normalized:
        return []
    cuts = [0]
    for sentence in _segmenter(language).processor(normalized).process():
        sentence = sentence.strip()
        found = normalized.find(sentence, cuts[-1]) if sentence else -1
        if found < 0:
            break
        cuts.append(found + len(sentence))
    cuts.append(len(normalized))
    spans = []
    for start, end in zip(cuts, cuts[1:]):
        piece = normalized[start:end]
        stripped = piece.strip()
        if stripped:
            lead = len(piece) - len(piece.lstrip())
            spans.append((start + lead, start + lead + len(stripped)))
    return spans


def sentence_layout(segments: list[Segment], language: str = DEFAULT_LANGUAGE) -> SentenceLayout:
    """Splits a document's text segments into sentences and anchors its images.

    Args:
        segments: the document's segments (``kind`` ``"text"`` or ``"image"``).
        language: as for :func:`split_sentences`.

    Returns:
        The :class:`SentenceLayout`. Text segments without sentences (blank)
        contribute none; an image's anchor counts the sentences before it.
    """
    sentences, owners, spans, images, anchors = [], [], [], [], []
    for k, segment in enumerate(segments):
        if segment.kind == "image":
            images.append(k)
            anchors.append(len(sentences))
            continue
        normalized = normalize_whitespace(segment.text)
        for start, end in sentence_spans(normalized, language):
            sentences.append(normalized[start:end])
            owners.append(k)
            spans.append((start, end))
    return SentenceLayout(
        segments=tuple(segments),
        sentences=tuple(sentences),
        sentence_segment=tuple(owners),
        spans=tuple(spans),
        image_segments=tuple(images),
        anchors=tuple(anchors),
    )


@functools.lru_cache(maxsize=None)
def _segmenter(language: str) -> pysbd.Segmenter:
    """One pysbd segmenter per language per process.

    Only its stateless ``processor`` factory is used: ``Segmenter.segment``
    keeps the text on the shared instance (unsafe across threads) and drops
    sentences it cannot find again.
    """
    return pysbd.Segmenter(language=language if language in LANGUAGE_CODES else DEFAULT_LANGUAGE, clean=False)
