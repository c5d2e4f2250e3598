"""Readers: turn input files into rows, and rows into records.

Readers take open binary file objects (the Beam layer opens them through Beam
filesystems), so they work on local, ``gs://`` and ``s3://`` inputs alike.
"""

from __future__ import annotations

import gzip
import io
import json
import math
from dataclasses import dataclass
from typing import Any, BinaryIO, Iterator

import pyarrow.parquet as pq

from curation.ids import content_id
from curation.records import CaptionPair, Reject, TextDoc


@dataclass(frozen=True)
class PairColumns:
    """Column names of an image-text table (LAION: ``URL``/``TEXT``; img2dataset: ``url``/``caption``).

    Attributes:
        url: column holding the image URL.
        text: column holding the alt text or caption.
        keep_extra: copy every other column into the record's ``meta``.
    """

    url: str = "URL"
    text: str = "TEXT"
    keep_extra: bool = True


def parquet_row_groups(fileobj: BinaryIO) -> int:
    """Number of row groups in a Parquet file (the unit of parallel reading)."""
    return pq.ParquetFile(fileobj).num_row_groups


def iter_parquet_rows(fileobj: BinaryIO, row_group: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yields ``(row_index_in_file, row)`` for one row group of a Parquet file."""
    parquet = pq.ParquetFile(fileobj)
    start = sum(parquet.metadata.row_group(i).num_rows for i in range(row_group))
    for offset, row in enumerate(parquet.read_row_group(row_group).to_pylist()):
        yield start + offset, row


def pair_from_row(
    row: dict[str, Any], source: str, columns: PairColumns = PairColumns()
) -> CaptionPair | Reject:
    """Builds a :class:`CaptionPair` from a table row, or a read-step :class:`Reject`.

    The id is a content hash of URL and text, so the same pair gets the same id
    wherever it appears (exact duplicates collide on purpose).
    """
    url = row.get(columns.url)
    text = row.get(columns.text)
    url = url.strip() if isinstance(url, str) else ""
    text = text if isinstance(text, str) else ""
    if columns.url not in row or columns.text not in row:
        missing = columns.url if columns.url not in row else columns.text
        return Reject(
            id=content_id(source),
            source=source,
            step="read",
            reason="missing_column",
            dead_letter=True,
            detail=f"column '{missing}' not found (columns: {', '.join(sorted(row))})",
        )
    if not url:
        return Reject(
            id=content_id(source), source=source, step="read", reason="missing_url",
            dead_letter=True, text=text,
        )
    meta = {}
    if columns.keep_extra:
        meta = {
            key: _jsonable(value)
            for key, value in row.items()
            if key not in (columns.url, columns.text)
        }
    return CaptionPair(id=content_id(url, text), source=source, url=url, text=text, meta=meta)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


@dataclass(frozen=True)
class TextColumns:
    """Field names of a text corpus (JSONL objects or Parquet columns).

    Attributes:
        text: field holding the document text.
        id: optional field holding the corpus's own id (kept in ``meta``).
        url: optional field holding the document URL.
    """

    text: str = "text"
    id: str = "id"
    url: str = "url"


def decompressed(fileobj: BinaryIO, name: str) -> BinaryIO:
    """Wraps a file object in a decompressor chosen by the file name (``.gz``, ``.zst``).

    The caller's file object stays open when the wrapper is closed.
    """
    lowered = name.lower()
    if lowered.endswith((".gz", ".gzip")):
        return gzip.GzipFile(fileobj=fileobj, mode="rb")
    if lowered.endswith((".zst", ".zstd")):
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(fileobj, closefd=False)
    return fileobj


def iter_jsonl(fileobj: BinaryIO, name: str) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """Yields ``(line_number, object)`` of a JSON Lines file, plain or compressed.

    A line that is not a JSON object is yielded as its error message (a string)
    so the caller can turn it into a dead letter; blank lines are skipped.
    """
    stream = io.TextIOWrapper(decompressed(fileobj, name), encoding="utf-8", errors="replace")
    for number, line in enumerate(stream):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            yield number, f"invalid JSON: {error}"
            continue
        yield number, value if isinstance(value, dict) else f"not a JSON object: {type(value).__name__}"


def text_doc_from_row(
    row: dict[str, Any] | str, source: str, columns: TextColumns = TextColumns()
) -> TextDoc | Reject:
    """Builds a :class:`TextDoc` (id = content hash of the text) or a read-step :class:`Reject`."""
    if isinstance(row, str):
        return Reject(id=content_id(source), source=source, step="read", reason="invalid_json",
                      dead_letter=True, detail=row[:500])
    text = row.get(columns.text)
    if not isinstance(text, str) or not text.strip():
        return Reject(id=content_id(source), source=source, step="read", reason="missing_text",
                      dead_letter=True, detail=f"no text in field '{columns.text}'")
    url = row.get(columns.url)
    meta = {"corpus_id": _jsonable(row[columns.id])} if columns.id in row else {}
    return TextDoc(id=content_id(text), source=source, url=url if isinstance(url, str) else "",
                   text=text, meta=meta)
