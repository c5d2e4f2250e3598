"""Moving images of interleaved pages next to the sentences they show (Aria recipe).

An image moves to the front of an earlier sentence when that sentence has a
higher CLIP similarity with it than the sentence it stands beside.

Positions follow :class:`curation.sentences.SentenceLayout`: the text segments
are split into sentences s_0..s_{n-1} and each image stands at an anchor ``a``,
the index of the first sentence after it (``n`` when no text follows). The
sentence an image stands beside is s_a, or s_{n-1} when ``a == n``.

The sentence split is done once per document, and the pipeline calls::

    layout, images = clip_inputs(doc)                # split once
    sim = clip(images, layout.sentences)             # [images, sentences], batched elsewhere
    doc.stats["clip_page_score"] = page_score(sim)
    doc.segments, moves = reorder(layout, sim)
    doc.meta["image_moves"] = [m.to_dict() for m in moves]

A similarity may be NaN (an image that was not scored, e.g. never fetched):
a NaN sentence is never a target, and an image whose current sentence is NaN
stays put, so an image whose row is all NaN never moves.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from curation.records import ImageData, InterleavedDoc, Segment
from curation.sentences import DEFAULT_LANGUAGE, SentenceLayout, normalize_whitespace, sentence_layout


@dataclass(frozen=True)
class Move:
    """One image moved to an earlier sentence.

    Attributes:
        image: the image's index in document image order (its similarity row).
        image_sha256: the image segment's ``image_sha256``.
        image_url: the image segment's ``image_url``.
        from_anchor: the sentence index it stood before (``n`` at the end of the text).
        to_anchor: the sentence index it now stands before.
        sentences_moved: ``from_anchor - to_anchor`` (always > 0).
        old_score: similarity with the sentence it stood beside.
        new_score: similarity with the sentence it now stands before.
    """

    image: int
    image_sha256: str
    image_url: str
    from_anchor: int
    to_anchor: int
    sentences_moved: int
    old_score: float
    new_score: float

    def to_dict(self) -> dict[str, Any]:
        """The move as a JSON-serialisable dict (plain ints, floats and strings)."""
        return dataclasses.asdict(self)


def clip_inputs(
    doc: InterleavedDoc, language: str = DEFAULT_LANGUAGE
) -> tuple[SentenceLayout, list[ImageData | None]]:
    """Splits a document once and lists what CLIP must score.

    Args:
        doc: the interleaved document.
        language: ISO 639-1 code for the sentence splitter.

    Returns:
        The layout, whose ``sentences`` are the similarity matrix's columns,
        and, per image segment in document order (the matrix's rows), the
        :class:`ImageData` whose sha256 it references, or None when the
        document holds no such image (score that row NaN).
    """
    layout = sentence_layout(doc.segments, language)
    by_sha = {image.sha256: image for image in doc.images}
    return layout, [by_sha.get(segment.image_sha256) for segment in layout.images]


def page_score(sim: np.ndarray) -> float:
    """How well a page's images are matched by its text.

    Args:
        sim: ``[images, sentences]`` similarities; NaN entries are ignored.

    Returns:
        The mean over images of each image's best similarity with any
        sentence. Images whose row is all NaN are left out; NaN when no image
        has a score (no images, no sentences, or all NaN).
    """
    sim = _as_matrix(sim)
    scored = ~np.isnan(sim)
    rows = scored.any(axis=1)
    if not rows.any():
        return float("nan")
    return float(np.where(scored, sim, -np.inf)[rows].max(axis=1).mean())


def reorder(layout: SentenceLayout, sim: np.ndarray, margin: float = 0.0) -> tuple[list[Segment], list[Move]]:
    """Moves each image to the front of the best earlier sentence, if it beats its current one.

    For an image at anchor ``a > 0``, ``j*`` is the earlier sentence (``j < a``)
    with the highest similarity; among equal highest it is the latest one, so an
    image moves no further than it must. The image moves to just before
    s_{j*} when ``sim[i, j*] > sim[i, beside] + margin``. Text order never
    changes and images never move later. Images that end up before the same
    sentence keep their original relative order, moved ones after those that
    already stood there.

    Args:
        layout: the document's layout from :func:`curation.sentences.sentence_layout`.
        sim: ``[len(layout.images), len(layout.sentences)]`` similarities.
        margin: how much (>= 0) an earlier sentence must beat the current one by.

    Returns:
        The new segments and one :class:`Move` per moved image, in image order.
        Segments that no move touches are returned as they were; a paragraph
        an image moves into the middle of is split into text segments that are
        slices of its whitespace-normalised text, cut at the image.

    Raises:
        ValueError: if ``sim`` has the wrong shape or ``margin`` is negative.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    sim = _as_matrix(sim)
    expected = (len(layout.image_segments), len(layout.sentences))
    if sim.shape != expected:
        raise ValueError(f"similarity matrix has shape {sim.shape}, expected {expected}")
    moves = []
    for i, anchor in enumerate(layout.anchors):
        target = _target(sim[i], anchor, margin)
        if target is not None:
            segment = layout.segments[layout.image_segments[i]]
            moves.append(
                Move(
                    image=i,
                    image_sha256=segment.image_sha256,
                    image_url=segment.image_url,
                    from_anchor=anchor,
                    to_anchor=target,
                    sentences_moved=anchor - target,
                    old_score=float(sim[i, min(anchor, len(layout.sentences) - 1)]),
                    new_score=float(sim[i, target]),
                )
            )
    return _rebuild(layout, moves), moves


def _as_matrix(sim: np.ndarray) -> np.ndarray:
    sim = np.asarray(sim, dtype=np.float64)
    if sim.ndim != 2:
        raise ValueError(f"similarity matrix must be 2-D, got shape {sim.shape}")
    return sim


def _target(row: np.ndarray, anchor: int, margin: float) -> int | None:
    """The sentence an image at ``anchor`` moves before, or None when it stays."""
    if anchor == 0:
        return None
    earlier = np.where(np.isnan(row[:anchor]), -np.inf, row[:anchor])
    best = anchor - 1 - int(np.argmax(earlier[::-1]))
    return best if earlier[best] > row[min(anchor, len(row) - 1)] + margin else None


def _rebuild(layout: SentenceLayout, moves: list[Move]) -> list[Segment]:
    """The segments with each moved image taken out and put before its target sentence."""
    moved = {layout.image_segments[m.image] for m in moves}
    inserts: dict[int, dict[int, list[Segment]]] = {}
    for m in moves:
        paragraph = layout.sentence_segment[m.to_anchor]
        offset = layout.spans[m.to_anchor][0]
        image = layout.segments[layout.image_segments[m.image]]
        inserts.setdefault(paragraph, {}).setdefault(offset, []).append(image)
    out = []
    for k, segment in enumerate(layout.segments):
        if k in moved:
            continue
        at = inserts.get(k, {})
        out.extend(at.get(0, []))
        cuts = sorted(offset for offset in at if offset > 0)
        if not cuts:
            out.append(segment)
            continue
        text = normalize_whitespace(segment.text)
        bounds = [0, *cuts, len(text)]
        for start, end in zip(bounds, bounds[1:]):
            if start:
                out.extend(at[start])
            out.append(dataclasses.replace(segment, text=text[start:end].rstrip()))
    return out
