"""Record -> webdataset sample: which files each modality's sample holds."""

from __future__ import annotations

import json

import msgpack

from curation.ids import content_id
from curation.records import CaptionPair, DocumentPage, InterleavedDoc, TextDoc, VideoClip
from curation.tokens import TextTokenizer, visual_tokens
from curation.video_budget import clip_tokens
from manifests.shards import Sample


IMAGES_FIELD = "images.mp"
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")  # the field of a sample's one image


def pack_images(images: list[bytes]) -> bytes:
    """A sample's images as one field: a msgpack list of their encoded bytes.

    Samples with several images (pages, videos, long sequences) keep them in
    one field so that every sample of a dataset has the same fields, which is
    what Hugging Face ``datasets`` needs to read webdataset shards whole.
    """
    return msgpack.packb(list(images), use_bin_type=True)


def unpack_images(data: bytes) -> list[bytes]:
    """The encoded images :func:`pack_images` stored, in order."""
    images = msgpack.unpackb(data, raw=False)
    if not isinstance(images, list) or not all(isinstance(image, bytes) for image in images):
        raise ValueError("an images field must hold a msgpack list of byte strings")
    return images


def caption_pair_sample(record: CaptionPair, tokenizer: TextTokenizer, resolution: str = "auto") -> Sample:
    """A caption pair as ``<id>.jpg`` (``<id>.webp`` when the run re-encodes to WebP: one image
    format per run), ``<id>.txt`` and ``<id>.json``.

    The JSON carries the source URL, the image facts, every score in ``stats``
    and the input's extra columns in ``meta``.
    """
    image = record.image
    info = {
        "id": record.id,
        "source": record.source,
        "url": record.url,
        "text": record.text,
        "image": {
            "sha256": image.sha256,
            "phash": image.phash,
            "width": image.width,
            "height": image.height,
            "format": image.format,
        },
        "stats": dict(sorted(record.stats.items())),
        "meta": record.meta,
    }
    return Sample(
        key=record.id,
        fields={
            image.extension: image.data,
            "txt": record.text.encode("utf-8"),
            "json": json.dumps(info, sort_keys=True, ensure_ascii=False).encode("utf-8"),
        },
        text_tokens=tokenizer.count(record.text),
        visual_tokens=visual_tokens(image.width, image.height, resolution),
    )


def document_page_sample(page: DocumentPage, tokenizer: TextTokenizer, resolution: str = "auto") -> Sample:
    """A document page as ``<id>.<png|jpg|webp>`` (the page), ``<id>.txt`` (the transcription) and
    ``<id>.json``: ``file`` (source name), ``page`` (from 0), ``route`` (``text_layer``, ``ocr`` or the
    renderer), ``engine``, ``confidence``, ``lines`` (text, box, confidence), ``qa`` and the scores."""
    image = page.image
    meta = {key: value for key, value in page.meta.items() if key not in _DOCUMENT_FIELDS}
    info = {
        "id": page.id,
        "source": page.source,
        **{key: page.meta.get(key, default) for key, default in _DOCUMENT_FIELDS.items()},
        "qa": [{"question": pair.question, "answer": pair.answer} for pair in page.qa],
        "image": {"sha256": image.sha256, "width": image.width, "height": image.height, "format": image.format},
        "stats": dict(sorted(page.stats.items())),
        "meta": meta,
    }
    qa_text = "\n".join(f"{pair.question}\n{pair.answer}" for pair in page.qa)
    return Sample(
        key=page.id,
        fields={
            image.extension: image.data,
            "txt": page.transcript.encode("utf-8"),
            "json": json.dumps(info, sort_keys=True, ensure_ascii=False).encode("utf-8"),
        },
        text_tokens=tokenizer.count(page.transcript) + (tokenizer.count(qa_text) if qa_text else 0),
        visual_tokens=visual_tokens(image.width, image.height, resolution),
    )


_DOCUMENT_FIELDS = {"file": "", "page": 0, "route": "", "engine": "", "confidence": None, "lines": []}
_VIDEO_FIELDS = ("file", "duration", "fps", "width", "height", "codec", "rotation", "scenes")


def video_sample(clip: VideoClip, tokenizer: TextTokenizer, resolution: str = "auto") -> Sample:
    """A video as ``<id>.images.mp`` (its sampled frames as JPEG, in time order: see
    :func:`pack_images`), ``<id>.txt`` (the timestamped frame descriptions) and ``<id>.json``:
    ``file``, ``duration``, ``fps``, ``width``, ``height``, ``codec``, ``rotation``, ``scenes``
    (``[{start, end}]`` in seconds), ``frames`` (``[{t, image, caption, scene, keyframe}]``,
    ``image`` the frame's index in the images field),
    ``summary``, ``qa``, ``tokens`` (``{visual, text, total}``), the scores and the rest of meta."""
    meta = {key: value for key, value in clip.meta.items() if key not in _VIDEO_FIELDS}
    tokens = clip_tokens(clip, tokenizer, resolution)
    info = {
        "id": clip.id,
        "source": clip.source,
        **{key: clip.meta.get(key) for key in _VIDEO_FIELDS},
        "scenes": [{"start": start, "end": end} for start, end in clip.meta.get("scenes", [])],
        "frames": [
            {"t": frame.t, "image": n, "caption": frame.caption, "scene": frame.scene,
             "keyframe": frame.keyframe}
            for n, frame in enumerate(clip.frames)
        ],
        "summary": clip.summary,
        "qa": [{"question": pair.question, "answer": pair.answer} for pair in clip.qa],
        "tokens": tokens,
        "stats": dict(sorted(clip.stats.items())),
        "meta": meta,
    }
    return Sample(
        key=clip.id,
        fields={
            IMAGES_FIELD: pack_images([frame.image.data for frame in clip.frames]),
            "txt": clip.text.encode("utf-8"),
            "json": json.dumps(info, sort_keys=True, ensure_ascii=False).encode("utf-8"),
        },
        text_tokens=tokens["text"],
        visual_tokens=tokens["visual"],
    )


def packed_sequence_sample(
    pieces: list[tuple[TextDoc, int, int, int]], sep_tokens: int, separator: str = "\n\n"
) -> Sample:
    """A packed training sequence as ``<key>.txt`` (the pieces joined) and ``<key>.json``.

    Args:
        pieces: ``(doc, start_token, end_token, doc_tokens)`` in sequence order. A
            piece that is a whole document holds its full text; a piece of a
            document longer than a sequence holds the character span proportional
            to its token span (the trainer re-tokenises the text anyway).
        sep_tokens: separator tokens counted after each piece.
        separator: the text written between pieces.

    The JSON lists the distinct document ids in order (``documents``) and every
    piece with its token span, its document's content id (``id``), the corpus's own
    id (``corpus_id``, None when the input had none), source file and row, and URL;
    ``text_tokens`` counts pieces plus separators.
    """
    texts, rows = [], []
    for doc, start, end, total in pieces:
        if (start, end) == (0, total):
            texts.append(doc.text)
        else:
            texts.append(doc.text[round(len(doc.text) * start / total) : round(len(doc.text) * end / total)])
        rows.append({"id": doc.id, "corpus_id": doc.meta.get("corpus_id"), "source": doc.source, "url": doc.url,
                     "start_token": start, "end_token": end, "doc_tokens": total})
    text_tokens = sum(end - start + sep_tokens for _, start, end, _ in pieces)
    info = {
        "documents": list(dict.fromkeys(row["id"] for row in rows)),
        "pieces": rows,
        "text_tokens": text_tokens,
    }
    return Sample(
        key=content_id(*(f"{row['id']}:{row['start_token']}:{row['end_token']}" for row in rows)),
        fields={
            "txt": separator.join(texts).encode("utf-8"),
            "json": json.dumps(info, sort_keys=True, ensure_ascii=False).encode("utf-8"),
        },
        text_tokens=text_tokens,
    )


def interleaved_sample(doc: InterleavedDoc, tokenizer: TextTokenizer, resolution: str = "auto") -> Sample:
    """A page as ``<id>.json`` (its ordered segments) and ``<id>.images.mp`` (its images: see
    :func:`pack_images`).

    The JSON's ``segments`` list holds ``{"type": "text", "text": ...}`` and
    ``{"type": "image", "image": n, "url": ..., "alt": ...}`` in reading order,
    ``n`` the image's index in the images field; ``images`` describes each
    stored image once, in that order (with its ``format``). Text tokens count
    the text segments, visual tokens every stored image.
    """
    names = {image.sha256: n for n, image in enumerate(doc.images)}
    segments = [
        {"type": "text", "text": s.text}
        if s.kind == "text"
        else {"type": "image", "image": names[s.image_sha256], "url": s.image_url, "alt": s.text}
        for s in doc.segments
    ]
    info = {
        "id": doc.id,
        "source": doc.source,
        "url": doc.url,
        "segments": segments,
        "images": [
            {"sha256": i.sha256, "phash": i.phash, "width": i.width, "height": i.height, "format": i.format}
            for i in doc.images
        ],
        "stats": dict(sorted(doc.stats.items())),
        "meta": doc.meta,
    }
    return Sample(
        key=doc.id,
        fields={
            IMAGES_FIELD: pack_images([image.data for image in doc.images]),
            "json": json.dumps(info, sort_keys=True, ensure_ascii=False).encode("utf-8"),
        },
        text_tokens=sum(tokenizer.count(s.text) for s in doc.segments if s.kind == "text"),
        visual_tokens=sum(visual_tokens(i.width, i.height, resolution) for i in doc.images),
    )
