"""The run report: one static HTML page that shows a person what a run made.

:func:`write_report` reads an output folder (``manifest.json``, ``shards/``,
``rejects/``) and writes ``report.html`` beside it: the funnel as a chart with
every drop reason (and the item funnels), samples and tokens per shard and per
source, histograms of every numeric score in the samples' ``stats`` (kept
against rejected), a gallery of kept samples rendered per modality and of
rejected ones with their reasons, the models (random weights in red), the
resolved config and the warnings. A stage manifest (``curate mix``) gets its
sources' table and a gallery drawn from each source.

The page needs no network to be read: styles and a small script are inline,
images are JPEG thumbnails as ``data:`` URIs and plots are matplotlib SVGs as
``data:`` URIs; a Content-Security-Policy forbids every other load. The script
marks ``<body data-images>`` ``loaded`` once every image decoded (``broken``,
with a banner, otherwise).
"""

from __future__ import annotations

import base64
import glob
import html
import io
import itertools
import json
import math
import os
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import matplotlib
import pyarrow.parquet as pq
import yaml
from matplotlib.figure import Figure
from PIL import Image

from manifests.manifest import RANDOM_INIT, default_opener, load_manifest, resolve_path
from manifests.samples import IMAGE_EXTENSIONS, IMAGES_FIELD, unpack_images

GALLERY_SIZE = 24
REJECTS_PER_REASON = 3
MAX_REJECTS_SHOWN = 60
MAX_IMAGES_PER_SAMPLE = 12
MAX_SOURCES_CHARTED = 20
STAGE_KIND = "stage"

_MEMBER = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")  # webdataset's key.ext split
_BLOCK = 512
_END_BLOCK = bytes(_BLOCK)
_SOURCE_GROUP = re.compile(r"[#@]")  # "file#row", "warc@offset", "file@rowgroup3" -> the file
_KEPT_COLOR, _REJECTED_COLOR = "#3b7d4f", "#c8553d"
_CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'"
)


def _create_local(path: str) -> BinaryIO:
    return open(path, "wb")


def _glob_local(pattern: str) -> list[str]:
    return sorted(glob.glob(pattern))


@dataclass(frozen=True)
class Storage:
    """How the report reaches files: local paths by default; the CLI passes Beam's filesystems.

    Attributes:
        open: path -> binary file object to read.
        create: path -> binary file object to write (closed by the caller).
        glob: pattern -> the matching paths, sorted.
        join: joins path parts.
    """

    open: Callable[[str], BinaryIO] = default_opener
    create: Callable[[str], BinaryIO] = _create_local
    glob: Callable[[str], list[str]] = _glob_local
    join: Callable[..., str] = os.path.join


LOCAL = Storage()


def write_report(
    output_dir: str, path: str | None = None, *, gallery_size: int = GALLERY_SIZE, storage: Storage = LOCAL
) -> str:
    """Writes the report of the run in ``output_dir`` and returns its path.

    Args:
        output_dir: the run's output folder, holding ``manifest.json``.
        path: where to write the page; ``output_dir/report.html`` when omitted.
        gallery_size: kept samples shown (the first ones, in shard order).
        storage: how to read and write files.
    """
    path = path or storage.join(output_dir, "report.html")
    page = build_report(output_dir, gallery_size=gallery_size, storage=storage)
    with storage.create(path) as handle:
        handle.write(page.encode("utf-8"))
    return path


def build_report(output_dir: str, *, gallery_size: int = GALLERY_SIZE, storage: Storage = LOCAL) -> str:
    """The report page of the run in ``output_dir`` (see :func:`write_report`): its
    ``manifest.json``, or the ``stage.json`` that ``curate mix`` writes."""
    found = [path for name in ("manifest.json", "stage.json") for path in storage.glob(storage.join(output_dir, name))]
    if not found:
        raise FileNotFoundError(f"{output_dir} holds neither manifest.json nor stage.json: not the output of a run")
    manifest_path = found[0]
    manifest = load_manifest(manifest_path, storage.open)
    if manifest.get("kind") == STAGE_KIND:
        sources = _stage_sources(manifest_path, manifest, storage)
    else:
        sources = [Source(str(manifest.get("dataset", "")), manifest_path, manifest, None)]
    scan = _scan_sources(sources, gallery_size, storage)
    rejects = _read_rejects(storage.join(output_dir, "rejects"), storage)
    return _page(manifest, sources, scan, rejects)


# --- reading -------------------------------------------------------------------------------


@dataclass
class Source:
    """One dataset the report covers: the run itself, or one source of a stage.

    Attributes:
        name: the dataset (or the stage's source) name.
        manifest_path: where its dataset manifest is.
        manifest: the dataset manifest.
        entry: the stage manifest's entry for it; None for a plain run.
    """

    name: str
    manifest_path: str
    manifest: dict[str, Any]
    entry: Mapping[str, Any] | None


@dataclass
class Scan:
    """What one pass over a dataset's shards found.

    Attributes:
        gallery: ``(stage source name or "", key, fields)`` of the first samples, every field read.
        scores: score name -> its values over every sample.
        sources: source group -> samples (pieces, for packed text) that came from it.
        source_tokens: source group -> tokens, where the samples' JSON counts them.
        samples: samples read.
    """

    gallery: list[tuple[str, str, dict[str, bytes]]] = field(default_factory=list)
    scores: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    sources: Counter = field(default_factory=Counter)
    source_tokens: Counter = field(default_factory=Counter)
    samples: int = 0


def _stage_sources(stage_path: str, stage: Mapping[str, Any], storage: Storage) -> list[Source]:
    sources = []
    for entry in stage.get("sources", []):
        path = resolve_path(stage_path, entry["manifest"])
        sources.append(Source(entry["name"], path, load_manifest(path, storage.open), entry))
    return sources


def _scan_sources(sources: Sequence[Source], gallery_size: int, storage: Storage) -> Scan:
    scan = Scan()
    per_source = math.ceil(gallery_size / max(len(sources), 1))
    for source in sources:
        wanted = len(scan.gallery) + min(per_source, gallery_size - len(scan.gallery))
        for entry in source.manifest.get("shards", []):
            with storage.open(resolve_path(source.manifest_path, entry["path"])) as stream:
                for key, fields in _shard_samples(stream, wanted - len(scan.gallery)):
                    _tally(scan, fields.get("json"))
                    if len(scan.gallery) < wanted:
                        scan.gallery.append((source.name if source.entry is not None else "", key, fields))
    return scan


def _shard_samples(stream: BinaryIO, full: int) -> Iterator[tuple[str, dict[str, bytes]]]:
    """``(key, fields)`` of each sample in a webdataset tar: every field of the first ``full``
    samples, only the ``json`` of the others."""
    key, fields, seen = None, {}, 0

    def wanted(name: str) -> bool:
        match = _MEMBER.match(name)
        index = seen + (key is not None and match is not None and match.group(1) != key)
        return match is not None and (index < full or match.group(2) == "json")

    for name, data in _tar_files(stream, wanted):
        match = _MEMBER.match(name)
        if match is None:
            continue
        if match.group(1) != key:
            if key is not None:
                yield key, fields
                seen += 1
            key, fields = match.group(1), {}
        if data is not None:
            fields[match.group(2)] = data
    if key is not None:
        yield key, fields


def _tar_files(stream: BinaryIO, wanted: Callable[[str], bool]) -> Iterator[tuple[str, bytes | None]]:
    """``(name, data)`` of each regular file of a tar stream, ``data`` None unless ``wanted(name)``:
    unwanted data is skipped (by seeking when the stream can). Reads ustar, PAX and GNU long names: a
    few times faster than :mod:`tarfile`, whose header parsing dominates a pass over many
    small samples.

    Raises:
        ValueError: on a block that is not a tar header.
    """
    extended: dict[str, str] = {}
    while True:
        header = stream.read(_BLOCK)
        if len(header) < _BLOCK or header == _END_BLOCK:
            return
        if _tar_number(header[148:156]) != sum(header[:148]) + 8 * 32 + sum(header[156:]):
            raise ValueError("not a tar header (bad checksum)")
        kind, size = header[156:157], _tar_number(header[124:136])
        if kind in (b"x", b"L"):  # PAX extended header / GNU long name: they describe the next member
            data = stream.read(_padded(size))[:size]
            extended = _pax_records(data) if kind == b"x" else {"path": data.rstrip(b"\0").decode("utf-8", "surrogateescape")}
            continue
        name, size = extended.get("path") or _ustar_name(header), int(extended.get("size", size))
        extended = {}
        regular = kind in (b"0", b"\0")
        if regular and wanted(name):
            yield name, stream.read(_padded(size))[:size]
            continue
        if stream.seekable():
            stream.seek(_padded(size), os.SEEK_CUR)
        else:
            stream.read(_padded(size))
        if regular:
            yield name, None


def _tar_number(field: bytes) -> int:
    if field[0] & 0x80:  # base-256
        return int.from_bytes(field[1:], "big")
    try:
        return int(field.strip(b"\0 ") or b"0", 8)
    except ValueError:
        raise ValueError(f"not a tar header (number field {field!r})") from None


def _padded(size: int) -> int:
    return -(-size // _BLOCK) * _BLOCK


def _ustar_name(header: bytes) -> str:
    name = header[:100].split(b"\0", 1)[0]
    if header[257:262] == b"ustar" and header[345]:
        name = header[345:500].split(b"\0", 1)[0] + b"/" + name
    return name.decode("utf-8", "surrogateescape")


def _pax_records(data: bytes) -> dict[str, str]:
    """The ``"<length> <key>=<value>\\n"`` records of a PAX extended header."""
    records, position = {}, 0
    while position < len(data):
        space = data.index(b" ", position)
        length = int(data[position:space])
        key, _, value = data[space + 1 : position + length - 1].partition(b"=")
        records[key.decode("utf-8")] = value.decode("utf-8", "surrogateescape")
        position += length
    return records


def _tally(scan: Scan, data: bytes | None) -> None:
    scan.samples += 1
    info = json.loads(data) if data else {}
    for name, value in _scores(info):
        scan.scores[name].append(value)
    for group, tokens in _source_shares(info):
        scan.sources[group] += 1
        if tokens is not None:
            scan.source_tokens[group] += tokens


def _scores(info: Mapping[str, Any]) -> Iterator[tuple[str, float]]:
    """The numeric scores of a sample: its ``stats``, and a document page's OCR ``confidence``."""
    for name, value in (info.get("stats") or {}).items():
        if _is_number(value):
            yield name, float(value)
    if _is_number(info.get("confidence")):
        yield "ocr_confidence", float(info["confidence"])


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _source_shares(info: Mapping[str, Any]) -> list[tuple[str, int | None]]:
    """``(source group, tokens or None)`` of a sample: one per packed piece or sequence segment,
    else its own source."""
    if isinstance(info.get("pieces"), list):
        return [
            (_source_group(piece.get("source", "")), piece.get("end_token", 0) - piece.get("start_token", 0))
            for piece in info["pieces"]
        ]
    if _is_sequence(info):
        return [(_source_group(row.get("source", "")), row.get("visual_tokens", 0) + row.get("text_tokens", 0))
                for row in info["segments"]]
    tokens = info.get("tokens", {}).get("total") if isinstance(info.get("tokens"), dict) else None
    return [(_source_group(info.get("source", "")), tokens)]


def _source_group(source: Any) -> str:
    return _SOURCE_GROUP.split(str(source), maxsplit=1)[0] or "(none)"


def _read_rejects(directory: str, storage: Storage) -> list[dict[str, Any]]:
    rows = []
    for path in storage.glob(storage.join(directory, "*.parquet")):
        with storage.open(path) as handle:
            rows.extend(pq.read_table(io.BytesIO(handle.read())).to_pylist())
    return sorted(rows, key=lambda row: (row["step"], row["reason"], row["id"]))


# --- plots ---------------------------------------------------------------------------------


def _svg_img(figure: Figure, element_id: str, alt: str, kind: str) -> str:
    """The figure as an ``<img>`` holding its SVG (text kept as text, ids salted for determinism)."""
    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": element_id}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    uri = "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img id="{element_id}" class="chart {kind}" alt="{_e(alt)}" src="{uri}">'


def _funnel_chart(steps: Sequence[Mapping[str, Any]], element_id: str) -> str:
    """A horizontal bar per step: what it let out, then one segment per drop reason (dead letters
    hatched), labelled in the legend with step, reason and count."""
    figure = Figure(figsize=(9, 1.2 + 0.45 * len(steps)), layout="constrained")
    axes = figure.add_subplot()
    labels = [step["step"] for step in steps]
    axes.barh(labels, [step["out"] for step in steps], color=_KEPT_COLOR, label="kept")
    colors = itertools.cycle(matplotlib.colormaps["tab20"].colors)
    for row, step in enumerate(steps):
        left = step["out"]
        dead = step.get("dead_letters", {})
        for reason, count in sorted(step["dropped"].items()):
            kind = " (dead letter)" if reason in dead else ""
            axes.barh(row, count, left=left, color=next(colors), hatch="//" if kind else None,
                      label=f"{step['step']}: {reason}{kind} = {count:,}")
            left += count
        axes.text(step["in"], row, f" {step['out']:,} / {step['in']:,}", va="center", fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel("records (kept / in)")
    axes.margins(x=0.15)
    axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=7, frameon=False)
    return _svg_img(figure, element_id, "funnel: " + ", ".join(labels), "funnel")


def _bars_chart(names: Sequence[str], series: Mapping[str, Sequence[float]], title: str, element_id: str) -> str:
    """Grouped bars: one group per name, one bar per series (``series`` name -> values)."""
    figure = Figure(figsize=(min(9, 3 + 0.8 * len(names) * len(series)), 3.2), layout="constrained")
    axes = figure.add_subplot()
    width = 0.8 / max(len(series), 1)
    for n, (label, values) in enumerate(series.items()):
        axes.bar([i + n * width for i in range(len(names))], values, width=width, label=label)
    axes.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(names))])
    axes.set_xticklabels([_clip(name, 28) for name in names], rotation=45 if len(names) > 4 else 0,
                         ha="right" if len(names) > 4 else "center", fontsize=7)
    highest = max((max(values, default=0) for values in series.values()), default=0)
    lowest = min((v for values in series.values() for v in values if v > 0), default=highest)
    if highest > 50 * lowest:  # samples and tokens differ by orders of magnitude
        axes.set_yscale("symlog")
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=8, frameon=False)
    return _svg_img(figure, element_id, title, "bars")


def _histograms(scores: Mapping[str, tuple[Sequence[float], Sequence[float]]], element_id: str) -> str:
    """One panel per score: its kept and rejected values on shared bins (``scores``: name ->
    ``(kept, rejected)``)."""
    columns = min(3, len(scores))
    rows = math.ceil(len(scores) / columns)
    figure = Figure(figsize=(3.4 * columns, 2.4 * rows), layout="constrained")
    for n, (name, (kept, rejected)) in enumerate(scores.items()):
        axes = figure.add_subplot(rows, columns, n + 1)
        low, high = min([*kept, *rejected]), max([*kept, *rejected])
        if high == low:  # one value: a narrow bar at it
            low, high = low - (abs(low) * 0.1 or 0.5), high + (abs(high) * 0.1 or 0.5)
        bins = [low + (high - low) * i / 30 for i in range(31)]
        for label, data, color in (("kept", kept, _KEPT_COLOR), ("rejected", rejected, _REJECTED_COLOR)):
            if data:
                axes.hist(data, bins=bins, color=color, alpha=0.6, label=f"{label} ({len(data):,})")
        axes.set_title(name, fontsize=9)
        axes.tick_params(labelsize=7)
        axes.legend(fontsize=7, frameon=False)
    return _svg_img(figure, element_id, "histograms of " + ", ".join(scores), "histograms")


# --- thumbnails ----------------------------------------------------------------------------


def _thumbnail(data: bytes, size: int, alt: str) -> str:
    """An ``<img>`` with a JPEG thumbnail of ``data``, or a notice when it does not decode."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (size, size))
            image.thumbnail((size, size))
            rgb = _on_white(image)
    except Exception as error:  # a broken image is a notice in the report, not a failed report
        return f'<div class="notice">image does not decode: {_e(type(error).__name__)}</div>'
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", quality=80)
    uri = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img class="thumb" alt="{_e(alt)}" src="{uri}" width="{rgb.width}" height="{rgb.height}">'


def _on_white(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        background = Image.new("RGB", image.size, "white")
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")


# --- gallery -------------------------------------------------------------------------------


def _images(fields: Mapping[str, bytes]) -> list[bytes]:
    if IMAGES_FIELD in fields:
        return unpack_images(fields[IMAGES_FIELD])
    return [fields[ext] for ext in IMAGE_EXTENSIONS if ext in fields]


def _sample_card(source: str, key: str, fields: Mapping[str, bytes]) -> str:
    """One kept sample, rendered by what it holds: a page's segments, a video's frames, packed
    text pieces, a document page or a captioned image; anything else as its text and JSON."""
    info = json.loads(fields["json"]) if "json" in fields else {}
    text = fields.get("txt", b"").decode("utf-8", "replace")
    try:
        images = _images(fields)
    except ValueError as error:
        images, text = [], f"[images field does not unpack: {error}]\n{text}"
    if _is_sequence(info):
        kind, body = "sequence", _sequence(info, images)
    elif isinstance(info.get("segments"), list):
        kind, body = "interleaved", _interleaved(info, images)
    elif isinstance(info.get("frames"), list):
        kind, body = "video", _video(info, images)
    elif isinstance(info.get("pieces"), list):
        kind, body = "text", _packed(info, text)
    elif images and "route" in info:
        kind, body = "document", _document(info, images[0], text)
    elif len(images) == 1:
        kind, body = "caption", _caption(info, images[0], text)
    else:
        kind, body = "sample", _generic(images, text)
    where = " · ".join(_e(part) for part in (source, info.get("source")) if part)
    head = f'<div class="key">{_e(kind)} · <code>{_e(key)}</code> · {where}</div>'
    return f'<article class="card {kind}">{head}{body}{_stats_line(info.get("stats"))}</article>'


def _indexed_thumbnail(images: Sequence[bytes], index: Any, size: int, alt: str) -> str:
    """The thumbnail of ``images[index]`` (an index from the sample's JSON), or a notice."""
    if isinstance(index, int) and 0 <= index < len(images):
        return _thumbnail(images[index], size, alt)
    return f'<div class="notice">image {_e(index)} is missing from the sample</div>'


def _interleaved(info: Mapping[str, Any], images: Sequence[bytes]) -> str:
    parts = []
    for segment in info["segments"]:
        if segment.get("type") != "image":
            parts.append(f'<p>{_e(_clip(segment.get("text", ""), 600))}</p>')
            continue
        figure = _indexed_thumbnail(images, segment.get("image"), 200, segment.get("alt", ""))
        parts.append(f'<figure>{figure}<figcaption>alt: {_e(_clip(segment.get("alt", ""), 200))}</figcaption></figure>')
    return f'<div class="reading">{"".join(parts)}</div><div class="url">{_e(info.get("url", ""))}</div>'


def _is_sequence(info: Mapping[str, Any]) -> bool:
    """A synthetic long sequence: segments that each pair an image with its description."""
    segments = info.get("segments")
    return isinstance(segments, list) and bool(segments) and all(
        isinstance(row, dict) and "type" not in row and "image" in row for row in segments)


def _sequence(info: Mapping[str, Any], images: Sequence[bytes]) -> str:
    parts = []
    for row in info["segments"][:MAX_IMAGES_PER_SAMPLE]:
        picture = _indexed_thumbnail(images, row["image"], 160, row.get("text", ""))
        parts.append(f'<figure>{picture}<figcaption>{_e(row["image"])}: '
                     f'{_e(_clip(row.get("text", ""), 240))}</figcaption></figure>')
    more = len(info["segments"]) - MAX_IMAGES_PER_SAMPLE
    if more > 0:
        parts.append(f'<div class="notice">+{more} more images</div>')
    return f'<p>input images, each with its target description:</p><div class="frames">{"".join(parts)}</div>'


def _video(info: Mapping[str, Any], images: Sequence[bytes]) -> str:
    frames = []
    for frame in info["frames"][:MAX_IMAGES_PER_SAMPLE]:
        picture = _indexed_thumbnail(images, frame.get("image"), 160, frame.get("caption", ""))
        frames.append(f'<figure>{picture}<figcaption>{_e(frame.get("t"))} s: '
                      f'{_e(_clip(frame.get("caption", ""), 240))}</figcaption></figure>')
    more = len(info["frames"]) - MAX_IMAGES_PER_SAMPLE
    if more > 0:
        frames.append(f'<div class="notice">+{more} more frames</div>')
    summary = f'<p><b>summary:</b> {_e(_clip(info.get("summary", ""), 600))}</p>' if info.get("summary") else ""
    return f'<div class="frames">{"".join(frames)}</div>{summary}{_qa(info.get("qa"))}'


def _packed(info: Mapping[str, Any], text: str) -> str:
    rows = "".join(
        f'<tr><td><code>{_e(piece.get("id", ""))[:16]}</code></td><td>{_e(piece.get("source", ""))}</td>'
        f'<td>{_e(piece.get("start_token"))}–{_e(piece.get("end_token"))} of {_e(piece.get("doc_tokens"))}</td></tr>'
        for piece in info["pieces"]
    )
    return (f'<table class="small"><tr><th>document</th><th>source</th><th>tokens</th></tr>{rows}</table>'
            f'<pre class="text">{_e(_clip(text, 1200))}</pre>')


def _document(info: Mapping[str, Any], image: bytes, text: str) -> str:
    facts = " · ".join(f"{name}: {info[name]}" for name in ("file", "page", "route", "engine", "confidence")
                       if info.get(name) not in (None, ""))
    return (f'<div class="side">{_thumbnail(image, 300, "page")}<pre class="text">{_e(_clip(text, 1500))}</pre></div>'
            f'<div class="facts">{_e(facts)}</div>{_qa(info.get("qa"))}')


def _caption(info: Mapping[str, Any], image: bytes, text: str) -> str:
    meta = info.get("meta") or {}
    rows = [("caption", text or info.get("text", ""))]
    if meta.get("alt_text") not in (None, "", text):
        rows.append(("alt text", meta["alt_text"]))
    if meta.get("caption_source"):
        rows.append(("from", meta["caption_source"]))
    table = "".join(f"<tr><th>{_e(name)}</th><td>{_e(_clip(value, 600))}</td></tr>" for name, value in rows)
    return (f'<div class="side">{_thumbnail(image, 240, text)}<table class="small">{table}</table></div>'
            f'<div class="url">{_e(info.get("url", ""))}</div>')


def _generic(images: Sequence[bytes], text: str) -> str:
    pictures = "".join(_thumbnail(image, 160, "image") for image in images[:MAX_IMAGES_PER_SAMPLE])
    more = len(images) - MAX_IMAGES_PER_SAMPLE
    notice = f'<div class="notice">+{more} more images</div>' if more > 0 else ""
    return f'<div class="frames">{pictures}{notice}</div><pre class="text">{_e(_clip(text, 1500))}</pre>'


def _qa(pairs: Any) -> str:
    if not pairs:
        return ""
    items = "".join(f'<li><b>Q:</b> {_e(_clip(p.get("question", ""), 300))} <b>A:</b> '
                    f'{_e(_clip(p.get("answer", ""), 300))}</li>' for p in pairs[:5])
    return f'<ul class="qa">{items}</ul>'


def _stats_line(stats: Any) -> str:
    if not stats:
        return ""
    return '<div class="stats">' + " · ".join(
        f"{_e(name)}={_number(value)}" for name, value in sorted(stats.items())) + "</div>"


def _reject_card(row: Mapping[str, Any]) -> str:
    flag = ' <span class="bad">dead letter</span>' if row.get("dead_letter") else ""
    lines = [f'<div class="key"><b>{_e(row["step"])}: {_e(row["reason"])}</b>{flag} · <code>{_e(row["id"])}</code></div>',
             f'<div class="url">{_e(row.get("source", ""))}</div>']
    for name in ("url", "detail", "text"):
        if row.get(name):
            lines.append(f'<div><b>{name}:</b> {_e(_clip(row[name], 400))}</div>')
    lines.append(_stats_line(dict(row.get("stats") or [])))
    return f'<article class="card reject">{"".join(lines)}</article>'


def _rejects_shown(rejects: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """A few rejects of every (step, reason), at most :data:`MAX_REJECTS_SHOWN` in all."""
    shown, per_reason = [], Counter()
    for row in rejects:
        reason = (row["step"], row["reason"])
        if per_reason[reason] < REJECTS_PER_REASON:
            per_reason[reason] += 1
            shown.append(row)
    return shown[:MAX_REJECTS_SHOWN]


# --- the page ------------------------------------------------------------------------------


def _page(manifest: Mapping[str, Any], sources: Sequence[Source], scan: Scan, rejects: Sequence[dict]) -> str:
    title = f"curate report: {manifest.get('dataset') or manifest.get('name') or 'stage'}"
    sections = [
        _summary_section(manifest, scan),
        _warnings_section(manifest, sources),
        _funnel_section(manifest, sources),
        _shards_section(sources),
        _sources_section(sources, scan),
        _scores_section(scan, rejects),
        _gallery_section(scan),
        _rejects_section(rejects),
        _models_section(sources),
        _config_section(manifest, sources),
    ]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{_e(title)}</title><style>{_STYLE}</style></head>\n'
            f'<body data-images="pending"><h1>{_e(title)}</h1>{_NAV}\n' + "\n".join(sections)
            + f"\n<script>{_SCRIPT}</script></body></html>\n")


def _section(element_id: str, heading: str, body: str) -> str:
    return f'<section id="{element_id}"><h2>{_e(heading)}</h2>{body}</section>'


def _summary_section(manifest: Mapping[str, Any], scan: Scan) -> str:
    facts = [(key, value) for key, value in sorted(manifest.items()) if not isinstance(value, (dict, list))]
    facts += [(key, value) for key, value in (manifest.get("totals") or {}).items()]
    facts.append(("samples read for this report", scan.samples))
    return _section("summary", "Summary", _table(("fact", "value"), [(k, _number(v)) for k, v in facts]))


def _warnings_section(manifest: Mapping[str, Any], sources: Sequence[Source]) -> str:
    lines = list(manifest.get("warnings", []))
    for source in sources:
        if source.entry is not None:
            lines += [f"{source.name}: {line}" for line in source.manifest.get("warnings", [])]
    notes = (manifest.get("extra") or {}).get("notes", [])
    body = "".join(f'<li class="bad">{_e(line)}</li>' for line in lines)
    body += "".join(f"<li>note: {_e(line)}</li>" for line in notes)
    return _section("warnings", "Warnings", f"<ul>{body}</ul>" if body else "<p>none</p>")


def _is_funnel(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(row, dict) and "step" in row for row in value)


def _funnel_section(manifest: Mapping[str, Any], sources: Sequence[Source]) -> str:
    """The run's funnels; a stage's are those of its sources."""
    if manifest.get("kind") != STAGE_KIND:
        return _section("funnel", "Funnel", _funnels(manifest, "funnel"))
    body = "".join(f"<h3>source {_e(source.name)}</h3>{_funnels(source.manifest, f'funnel-{n}')}"
                   for n, source in enumerate(sources))
    return _section("funnel", "Funnel", body)


def _funnels(manifest: Mapping[str, Any], prefix: str) -> str:
    """Chart and table of the record funnel and of every item funnel (``extra.*_funnel``)."""
    funnels = [(prefix, "records", manifest.get("funnel"))] + [
        (f"{prefix}-{key}", key.removesuffix("_funnel").replace("_", " "), value)
        for key, value in sorted((manifest.get("extra") or {}).items()) if _is_funnel(value)
    ]
    parts = []
    for element_id, name, steps in funnels:
        if not _is_funnel(steps):
            parts.append(f"<p>this manifest has no {_e(name)} funnel</p>")
            continue
        parts.append(f"<h4>{_e(name)}</h4>{_funnel_chart(steps, element_id + '-chart')}{_funnel_table(steps)}")
    return "".join(parts)


def _funnel_table(steps: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for step in steps:
        dead = step.get("dead_letters", {})
        reasons = [f"{reason}{' (dead letter)' if reason in dead else ''}: {count:,}"
                   for reason, count in sorted(step["dropped"].items())]
        reasons += [f"fallback {reason}: {count:,}" for reason, count in sorted(step.get("fallback", {}).items())]
        rows.append((step["step"], _number(step["in"]), _number(step["out"]), "; ".join(reasons) or "–"))
    return _table(("step", "in", "out", "dropped, by reason"), rows)


def _shards_section(sources: Sequence[Source]) -> str:
    rows = [(source.name, shard) for source in sources for shard in source.manifest.get("shards", [])]
    if not rows:
        return _section("shards", "Shards", "<p>no shards were written</p>")
    names = [shard["path"].rsplit("/", 1)[-1] for _, shard in rows]
    chart = _bars_chart(names, {
        "samples": [shard["samples"] for _, shard in rows],
        "text tokens": [shard["text_tokens"] for _, shard in rows],
        "visual tokens": [shard["visual_tokens"] for _, shard in rows],
    }, "samples and tokens per shard", "shards-chart")
    table = _table(("source", "shard", "samples", "text tokens", "visual tokens", "bytes"), [
        (name, shard["path"], *(_number(shard[k]) for k in ("samples", "text_tokens", "visual_tokens", "bytes")))
        for name, shard in rows
    ])
    return _section("shards", "Shards", chart + table)


def _sources_section(sources: Sequence[Source], scan: Scan) -> str:
    if any(source.entry is not None for source in sources):
        return _section("sources", "Sources", _stage_sources_body(sources))
    counts = scan.sources.most_common()
    if not counts:
        return _section("sources", "Sources", "<p>the samples name no source</p>")
    shown = counts[:MAX_SOURCES_CHARTED]
    series = {"samples": [n for _, n in shown]}
    if scan.source_tokens:
        series["tokens"] = [scan.source_tokens.get(name, 0) for name, _ in shown]
    chart = _bars_chart([name for name, _ in shown], series, "samples per source", "sources-chart")
    note = f"<p>{len(counts) - len(shown)} more sources in the table</p>" if len(counts) > len(shown) else ""
    table = _table(("source", "samples", "tokens"), [
        (name, _number(n), _number(scan.source_tokens[name]) if name in scan.source_tokens else "–") for name, n in counts
    ])
    return _section("sources", "Sources", chart + note + table)


def _stage_sources_body(sources: Sequence[Source]) -> str:
    keys = list(dict.fromkeys(k for s in sources for k, v in s.entry.items() if not isinstance(v, (dict, list))))
    totals = [source.manifest.get("totals", {}) for source in sources]
    series = {"samples in source": [t.get("samples", 0) for t in totals],
              "tokens in source": [t.get("text_tokens", 0) + t.get("visual_tokens", 0) for t in totals]}
    for key in ("samples_per_epoch", "tokens_per_epoch"):
        if key in keys:
            series[key.replace("_", " ")] = [s.entry.get(key, 0) for s in sources]
    chart = _bars_chart([source.name for source in sources], series, "samples and tokens per source", "sources-chart")
    table = _table((*keys, "samples in source", "text tokens", "visual tokens"), [
        (*(_number(s.entry.get(k, "")) for k in keys),
         *(_number(t.get(k, 0)) for k in ("samples", "text_tokens", "visual_tokens")))
        for s, t in zip(sources, totals)
    ])
    return chart + table


def _scores_section(scan: Scan, rejects: Sequence[Mapping[str, Any]]) -> str:
    rejected: dict[str, list[float]] = defaultdict(list)
    for row in rejects:
        for name, value in row.get("stats") or []:
            if _is_number(value):
                rejected[name].append(float(value))
    names = sorted(set(scan.scores) | set(rejected))
    if not names:
        return _section("scores", "Scores", "<p>the samples carry no numeric scores</p>")
    chart = _histograms({name: (scan.scores.get(name, []), rejected.get(name, [])) for name in names}, "scores-chart")
    return _section("scores", "Scores", chart)


def _gallery_section(scan: Scan) -> str:
    if not scan.gallery:
        return _section("gallery", "Kept samples", '<div id="kept-gallery"><p>no samples were kept</p></div>')
    cards = "".join(_sample_card(source, key, fields) for source, key, fields in scan.gallery)
    intro = f"<p>the first {len(scan.gallery)} samples, in shard order</p>"
    return _section("gallery", "Kept samples", f'{intro}<div id="kept-gallery" class="gallery">{cards}</div>')


def _rejects_section(rejects: Sequence[Mapping[str, Any]]) -> str:
    if not rejects:
        return _section("rejects", "Rejected records", '<div id="rejects-gallery"><p>no rejects</p></div>')
    counts = Counter((row["step"], row["reason"], bool(row.get("dead_letter"))) for row in rejects)
    table = _table(("step", "reason", "dead letter", "records"), [
        (step, reason, "yes" if dead else "", _number(n)) for (step, reason, dead), n in sorted(counts.items())
    ])
    shown = _rejects_shown(rejects)
    cards = "".join(_reject_card(row) for row in shown)
    intro = (f"<p>{len(shown)} of {len(rejects):,} rejects, a few of every reason (rejects keep their text, "
             "URL and scores, not their images)</p>")
    return _section("rejects", "Rejected records", f'{table}{intro}<div id="rejects-gallery" class="gallery">{cards}</div>')


def _models_section(sources: Sequence[Source]) -> str:
    rows = []
    for source in sources:
        for model in source.manifest.get("models", []):
            random = model.get("weights") == RANDOM_INIT
            cells = "".join(f"<td>{_e(model.get(k, ''))}</td>" for k in ("role", "name", "weights", "note"))
            label = '<td class="bad">RANDOM WEIGHTS</td>' if random else "<td></td>"
            rows.append(f'<tr class="{"random" if random else ""}"><td>{_e(source.name)}</td>{cells}{label}</tr>')
    if not rows:
        return _section("models", "Models", "<p>no models</p>")
    head = "".join(f"<th>{h}</th>" for h in ("dataset", "role", "name", "weights", "note", ""))
    return _section("models", "Models", f"<table><tr>{head}</tr>{''.join(rows)}</table>")


def _config_section(manifest: Mapping[str, Any], sources: Sequence[Source]) -> str:
    configs = [("this run", manifest.get("config"))] + [
        (source.name, source.manifest.get("config")) for source in sources if source.entry is not None
    ]
    body = "".join(f"<h3>{_e(name)}</h3><pre>{_e(yaml.safe_dump(config, sort_keys=False))}</pre>"
                   for name, config in configs if config is not None)
    return _section("config", "Resolved config", body or "<p>no config recorded</p>")


# --- html helpers --------------------------------------------------------------------------


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    header = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_e(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{header}</tr>{body}</table>"


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _clip(text: Any, limit: int) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:.4g}"


_NAV = "<nav>" + " · ".join(
    f'<a href="#{target}">{label}</a>' for target, label in (
        ("summary", "summary"), ("warnings", "warnings"), ("funnel", "funnel"), ("shards", "shards"),
        ("sources", "sources"), ("scores", "scores"), ("gallery", "kept"), ("rejects", "rejected"),
        ("models", "models"), ("config", "config"))
) + "</nav>"

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;max-width:1400px}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;margin-top:1.6em}h3{font-size:1.05em}h4{font-size:1em;margin-bottom:0}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#f4f4f4}.small{font-size:12px}.bad{color:#b00020;font-weight:bold}tr.random td{background:#fde8e8;color:#b00020}
.chart{max-width:100%;height:auto;display:block;margin:.5em 0}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:12px}
.card{border:1px solid #ccc;border-radius:6px;padding:8px;overflow:hidden;background:#fff}.card.reject{background:#fff8f6}
.key{font-size:12px;color:#555;margin-bottom:4px;word-break:break-all}.url{font-size:11px;color:#777;word-break:break-all}
.stats{font-size:11px;color:#555;margin-top:4px}.side{display:flex;gap:8px;align-items:flex-start}
.side table{flex:1}.text{white-space:pre-wrap;font-size:12px;max-height:320px;overflow:auto;background:#fafafa;flex:1;margin:0}
.reading{max-height:520px;overflow:auto}.reading p{margin:.3em 0}figure{margin:4px;display:inline-block;vertical-align:top}
figcaption{font-size:11px;color:#555;max-width:200px}.frames{display:flex;flex-wrap:wrap}.thumb{border:1px solid #eee}
.notice{font-size:12px;color:#b00020}.qa{font-size:12px}.facts{font-size:12px;color:#444}pre{white-space:pre-wrap}
#image-banner{background:#b00020;color:#fff;padding:6px}
"""

# Marks <body data-images> "loaded" when every image decoded, else "broken" with a banner.
_SCRIPT = """
window.addEventListener("load", function () {
  var broken = Array.prototype.filter.call(document.images, function (img) {
    return !(img.complete && img.naturalWidth > 0);
  });
  document.body.setAttribute("data-images", broken.length ? "broken" : "loaded");
  document.body.setAttribute("data-image-count", String(document.images.length));
  if (broken.length) {
    var banner = document.createElement("div");
    banner.id = "image-banner";
    banner.textContent = broken.length + " image(s) of this report did not load";
    document.body.insertBefore(banner, document.body.firstChild);
  }
});
"""
