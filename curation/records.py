"""Record types: one per modality, each with its Arrow schema.

Every record carries ``id`` (a content hash), ``source`` (where it came from),
``meta`` (free-form, JSON-serialisable facts about the input) and ``stats``
(numeric scores written by filters and models). Images are stored once per
record as :class:`ImageData` and addressed by their sha256.

Records convert to and from plain Arrow rows with :func:`to_row` and
:func:`from_row`; ``meta`` travels as a JSON string so that any input column
can ride along without widening the schema.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pyarrow as pa

IMAGE_TYPE = pa.struct(
    [
        ("sha256", pa.string()),
        ("phash", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("format", pa.string()),
        ("data", pa.binary()),
    ]
)
STATS_TYPE = pa.map_(pa.string(), pa.float64())
COMMON_FIELDS = [
    ("id", pa.string()),
    ("source", pa.string()),
    ("meta", pa.string()),
    ("stats", STATS_TYPE),
]


@dataclass
class ImageData:
    """A decoded-and-checked image, as stored in a shard.

    Attributes:
        sha256: hex sha256 of ``data`` (the bytes stored, after any re-encode).
        phash: 64-bit perceptual hash as 16 hex characters.
        width: width in pixels after EXIF orientation was applied.
        height: height in pixels after EXIF orientation was applied.
        format: ``jpeg``, ``png`` or ``webp``; also the shard file extension.
        data: the encoded image bytes.
    """

    sha256: str
    phash: str
    width: int
    height: int
    format: str
    data: bytes

    @property
    def extension(self) -> str:
        return "jpg" if self.format == "jpeg" else self.format


SYNTHETIC_CAPTION_KEY = "synthetic_caption"  # CaptionPair.meta key of a generated caption; ``text`` stays the alt text


@dataclass
class CaptionPair:
    """An image with one caption (LAION-style alt text or a synthetic caption)."""

    SCHEMA: ClassVar[pa.Schema]
    id: str
    source: str
    url: str
    text: str
    image: ImageData | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)


@dataclass
class Segment:
    """One piece of an interleaved document: a text or an image reference."""

    kind: str  # "text" or "image"
    text: str = ""
    image_sha256: str = ""
    image_url: str = ""


@dataclass
class InterleavedDoc:
    """A web page as an ordered list of segments; images stored once by hash."""

    SCHEMA: ClassVar[pa.Schema]
    id: str
    source: str
    url: str
    segments: list[Segment] = field(default_factory=list)
    images: list[ImageData] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The text segments joined by blank lines: what text filters and dedup read."""
        return "\n\n".join(s.text for s in self.segments if s.kind == "text")

    @property
    def image_count(self) -> int:
        return sum(1 for s in self.segments if s.kind == "image")


@dataclass
class QAPair:
    question: str
    answer: str


@dataclass
class DocumentSource:
    """A document before it becomes pages: a file's bytes (PDF or page image), or a rendering
    source (plain text, chart JSON, LaTeX) in ``text``; ``kind`` says which."""

    SCHEMA: ClassVar[pa.Schema]
    id: str
    source: str
    kind: str
    data: bytes = b""
    text: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)


@dataclass
class DocumentPage:
    """A rendered or scanned document page with its transcript and QA pairs."""

    SCHEMA: ClassVar[pa.Schema]
    id: str
    source: str
    image: ImageData | None = None
    transcript: str = ""
    qa: list[QAPair] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The transcript, under the name text filters and dedup read."""
        return self.transcript


@dataclass
class VideoFrame:
    """One sampled frame of a video: its time, scene, image and dense caption.

    Attributes:
        t: the frame's time in seconds from the start of the video.
        scene: the index of the scene (shot) it belongs to.
        keyframe: True for the frame that stands for its scene (kept when a sample is thinned).
        caption: the generator's description of the frame ("" before captioning).
    """

    id: str
    source: str
    t: float
    scene: int
    image: ImageData | None = None
    keyframe: bool = False
    caption: str = ""
    stats: dict[str, float] = field(default_factory=dict)


@dataclass
class VideoClip:
    """A video: its file, facts (``meta``: duration, fps, size, codec, rotation, scenes), sampled
    frames with their dense captions, a summary and QA pairs written from those captions."""

    SCHEMA: ClassVar[pa.Schema]
    id: str
    source: str
    path: str
    frames: list[VideoFrame] = field(default_factory=list)
    summary: str = ""
    qa: list[QAPair] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The timestamped frame descriptions, one per line (what QA and summaries are written from)."""
        return "\n".join(f"[{frame.t:.1f}s] {frame.caption}" for frame in self.frames if frame.caption)


@dataclass
class TextDoc:
    """A plain language-data document."""

    SCHEMA: ClassVar[pa.Schema]
    id: str
    source: str
    url: str
    text: str
    meta: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)


@dataclass
class Reject:
    """An input that left the pipeline: dropped by a filter or failed (dead letter).

    Attributes:
        id: the record id (or the input's id when no record could be built).
        source: the input it came from.
        step: the pipeline step that rejected it (a funnel step name).
        reason: a short snake_case reason, counted in the funnel.
        dead_letter: True for failures (unreadable, unfetchable, undecodable),
            False for quality judgments.
        detail: human-readable detail (an error message, a score).
        url: the record's URL, when it has one.
        text: the record's text, when it has one.
        stats: the record's scores at the time it was rejected.
    """

    SCHEMA: ClassVar[pa.Schema]
    id: str
    source: str
    step: str
    reason: str
    dead_letter: bool = False
    detail: str = ""
    url: str = ""
    text: str = ""
    stats: dict[str, float] = field(default_factory=dict)


_QA_TYPE = pa.list_(pa.struct([("question", pa.string()), ("answer", pa.string())]))

CaptionPair.SCHEMA = pa.schema(
    COMMON_FIELDS[:2] + [("url", pa.string()), ("text", pa.string()), ("image", IMAGE_TYPE)]
    + COMMON_FIELDS[2:]
)
InterleavedDoc.SCHEMA = pa.schema(
    COMMON_FIELDS[:2]
    + [
        ("url", pa.string()),
        (
            "segments",
            pa.list_(
                pa.struct(
                    [
                        ("kind", pa.string()),
                        ("text", pa.string()),
                        ("image_sha256", pa.string()),
                        ("image_url", pa.string()),
                    ]
                )
            ),
        ),
        ("images", pa.list_(IMAGE_TYPE)),
    ]
    + COMMON_FIELDS[2:]
)
DocumentSource.SCHEMA = pa.schema(
    COMMON_FIELDS[:2] + [("kind", pa.string()), ("data", pa.binary()), ("text", pa.string())] + COMMON_FIELDS[2:]
)
DocumentPage.SCHEMA = pa.schema(
    COMMON_FIELDS[:2]
    + [("image", IMAGE_TYPE), ("transcript", pa.string()), ("qa", _QA_TYPE)]
    + COMMON_FIELDS[2:]
)
VideoClip.SCHEMA = pa.schema(
    COMMON_FIELDS[:2]
    + [
        ("path", pa.string()),
        (
            "frames",
            pa.list_(
                pa.struct(
                    [
                        ("id", pa.string()),
                        ("source", pa.string()),
                        ("t", pa.float64()),
                        ("scene", pa.int32()),
                        ("image", IMAGE_TYPE),
                        ("keyframe", pa.bool_()),
                        ("caption", pa.string()),
                        ("stats", STATS_TYPE),
                    ]
                )
            ),
        ),
        ("summary", pa.string()),
        ("qa", _QA_TYPE),
    ]
    + COMMON_FIELDS[2:]
)
TextDoc.SCHEMA = pa.schema(
    COMMON_FIELDS[:2] + [("url", pa.string()), ("text", pa.string())] + COMMON_FIELDS[2:]
)
Reject.SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source", pa.string()),
        ("step", pa.string()),
        ("reason", pa.string()),
        ("dead_letter", pa.bool_()),
        ("detail", pa.string()),
        ("url", pa.string()),
        ("text", pa.string()),
        ("stats", STATS_TYPE),
    ]
)


def to_row(record: Any) -> dict[str, Any]:
    """Converts a record to a plain dict matching its class's ``SCHEMA``."""
    row = {}
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        if f.name == "meta":
            value = json.dumps(value, sort_keys=True, ensure_ascii=False)
        elif f.name == "stats":
            value = sorted((k, float(v)) for k, v in value.items())
        elif dataclasses.is_dataclass(value):
            value = dataclasses.asdict(value)
        elif isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
            value = [dataclasses.asdict(v) for v in value]
        row[f.name] = value
    return row


def from_row(cls: type, row: dict[str, Any]) -> Any:
    """Rebuilds a record of type ``cls`` from a row produced by :func:`to_row`."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        value = row[f.name]
        if f.name == "meta":
            value = json.loads(value) if value else {}
        elif f.name == "stats":
            value = dict(value or [])
        else:
            value = _rebuild(hints[f.name], value)
        kwargs[f.name] = value
    return cls(**kwargs)


def _rebuild(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    origin = typing.get_origin(hint)
    if origin is list and args and dataclasses.is_dataclass(args[0]):
        return [_nested(args[0], v) for v in value]
    if dataclasses.is_dataclass(hint):
        return hint(**value)
    if args and dataclasses.is_dataclass(args[0]) and origin is not list:
        return args[0](**value)
    return value


def _nested(cls: type, value: dict[str, Any]) -> Any:
    """A dataclass inside a record (a video's frame): its own nested dataclasses and ``stats`` rebuilt."""
    hints = typing.get_type_hints(cls)
    return cls(**{
        name: dict(item or []) if name == "stats" else _rebuild(hints[name], item) for name, item in value.items()
    })


def to_table(records: list[Any], cls: type) -> pa.Table:
    """Builds an Arrow table of ``cls`` records."""
    return pa.Table.from_pylist([to_row(r) for r in records], schema=cls.SCHEMA)


def reject(record: Any, step: str, reason: str, *, dead_letter: bool = False, detail: str = "") -> Reject:
    """Builds the :class:`Reject` row for a record leaving the pipeline at ``step``."""
    return Reject(
        id=record.id,
        source=record.source,
        step=step,
        reason=reason,
        dead_letter=dead_letter,
        detail=detail,
        url=getattr(record, "url", "") or "",
        text=getattr(record, "text", "") or "",
        stats=dict(record.stats),
    )
