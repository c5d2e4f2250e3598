"""Display rotation of the video track of an ISO BMFF file (MP4, MOV, M4V), read from its box tree.

Phones store portrait video as landscape pixels and record the turn a player must apply in the
transformation matrix of the video track's header (``moov/trak/tkhd``). :func:`display_rotation`
reads that matrix without decoding anything, and :func:`set_display_rotation` rewrites it in place
(for test-data generators).

Convention: :func:`display_rotation` returns the angle by which the stored frame must be rotated
*clockwise* to display upright, so the upright picture is ``np.rot90(stored, k=-degrees // 90)``
(``np.rot90`` with a positive ``k`` turns counter-clockwise). For 90 degrees the matrix is
``a=0, b=1, c=-1, d=0`` (16.16 fixed point), the matrix FFmpeg's mov muxer writes for PyAV's
``VideoStream.set_display_rotation(-90)`` and the one for which FFmpeg's decoder reports
``VideoFrame.rotation == -90`` (counter-clockwise degrees, i.e. 90 degrees clockwise), checked
with PyAV 18.1 (FFmpeg libavformat 62). PyAV hands out the stored pixels unrotated, whereas
decord 0.6.0 (its own FFmpeg 4.1) reads the same matrix and returns frames already turned upright,
without exposing the angle in its Python API (checked for all four angles), so a caller must apply
this rotation to PyAV frames and must not apply it again to decord frames.

Reading is hostile-input safe: the top level is walked box by box (at most 4096 boxes) and
``mdat`` is skipped by seeking, only a ``moov`` box of at most :data:`MAX_MOOV_BYTES` is read into
memory, 64-bit (``size == 1``) and to-the-end (``size == 0``) box sizes are understood, and a size
that is too small, runs past its parent or the file, or a box type that is not four printable
ASCII characters ends the walk, so garbage, truncated and non-ISO-BMFF files give 0 rather than
an exception or an endless loop.
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO

MAX_MOOV_BYTES = 64 << 20  # largest moov box read into memory
_MAX_TOP_LEVEL_BOXES = 4096  # top-level boxes walked before giving up
_ONE = 0x10000  # 1.0 in 16.16 fixed point
_W_ONE = 0x40000000  # 1.0 in 2.30 fixed point
_MATRIX_BYTES = 36
# (a, b, c, d) of a pure rotation, by clockwise display rotation in degrees.
_ROTATIONS = {
    0: (_ONE, 0, 0, _ONE),
    90: (0, _ONE, -_ONE, 0),
    180: (-_ONE, 0, 0, -_ONE),
    270: (0, -_ONE, _ONE, 0),
}


def rotation_matrix(degrees: int) -> bytes:
    """The 36-byte ``tkhd`` matrix that makes a player rotate the stored frame clockwise by ``degrees``.

    The matrix is ``{a, b, u, c, d, v, x, y, w}`` as big-endian 32-bit integers, ``a b c d x y``
    in 16.16 and ``u v w`` in 2.30 fixed point, with no translation (``x = y = 0``), as FFmpeg's
    mov muxer writes it; for 90 degrees ``a=0, b=1, c=-1, d=0``.

    Args:
        degrees: clockwise display rotation: 0, 90, 180 or 270 (any multiple of 90 is taken
            modulo 360).

    Returns:
        The 36 matrix bytes.

    Raises:
        ValueError: ``degrees`` is not a multiple of 90.
    """
    if isinstance(degrees, bool) or not isinstance(degrees, int) or degrees % 90:
        raise ValueError(f"display rotation must be a multiple of 90 degrees, not {degrees!r}")
    a, b, c, d = _ROTATIONS[degrees % 360]
    return struct.pack(">9i", a, b, 0, c, d, 0, 0, 0, _W_ONE)


def display_rotation(path: str) -> int:
    """The clockwise rotation a player applies to the first video track of an ISO BMFF file.

    The stored frame must be rotated clockwise by this many degrees to display upright
    (``np.rot90(frame, k=-degrees // 90)``). It is read from the ``tkhd`` matrix of the first
    ``moov/trak`` whose ``mdia/hdlr`` handler type is ``vide``; a matrix scaled by a positive
    factor counts as the rotation it scales.

    Args:
        path: the file to read.

    Returns:
        0, 90, 180 or 270; 0 when the file is not ISO BMFF, is cut short or malformed, has no
        video track, or its matrix is the identity, a mirror or anything else unrecognised.

    Raises:
        OSError: the file cannot be opened or read. Malformed contents never raise.
    """
    with open(path, "rb") as f:
        found = _video_tkhd_matrix(f)
    if found is None:
        return 0
    a, b, _u, c, d, _v, _x, _y, _w = struct.unpack(">9i", found[1])
    if b == 0 and c == 0 and a == d and a != 0:
        return 0 if a > 0 else 180
    if a == 0 and d == 0 and b == -c and b != 0:
        return 90 if b > 0 else 270
    return 0


def set_display_rotation(path: str, degrees: int) -> None:
    """Rewrite, in place, the ``tkhd`` matrix of the first video track to a rotation.

    Only the 36 matrix bytes change; the pixels and every other byte stay as they are. Meant for
    test-data generators: after ``set_display_rotation(path, 90)`` a player turns the stored
    frames 90 degrees clockwise and :func:`display_rotation` returns 90.

    Args:
        path: an ISO BMFF file (MP4, MOV, M4V) with a video track.
        degrees: clockwise display rotation: 0, 90, 180 or 270.

    Raises:
        ValueError: ``degrees`` is not a multiple of 90, or the file has no video track header
            that can be found.
        OSError: the file cannot be opened, read or written.
    """
    matrix = rotation_matrix(degrees)
    with open(path, "r+b") as f:
        found = _video_tkhd_matrix(f)
        if found is None:
            raise ValueError(f"{path}: no video track header (moov/trak/tkhd with a 'vide' handler) found")
        f.seek(found[0])
        f.write(matrix)


def _video_tkhd_matrix(f: BinaryIO) -> tuple[int, bytes] | None:
    """The file offset and bytes of the first video track's ``tkhd`` matrix, or None."""
    try:
        file_size = os.fstat(f.fileno()).st_size
    except (OSError, ValueError):
        return None
    offset = 0
    for _ in range(_MAX_TOP_LEVEL_BOXES):
        if offset + 8 > file_size:
            return None
        f.seek(offset)
        header = f.read(16)
        box = _parse_header(header, 0, len(header), file_size - offset)
        if box is None:
            return None
        box_type, header_size, box_size = box
        if box_type == b"moov":
            if box_size > MAX_MOOV_BYTES:
                return None
            f.seek(offset + header_size)
            moov = f.read(box_size - header_size)
            if len(moov) != box_size - header_size:
                return None
            found = _find_in_moov(moov)
            return None if found is None else (offset + header_size + found, moov[found : found + _MATRIX_BYTES])
        offset += box_size  # skips mdat (and everything else) without reading it
    return None


def _parse_header(data: bytes, start: int, end: int, room: int) -> tuple[bytes, int, int] | None:
    """Parse the box header at ``data[start:]``: ``(type, header size, box size)``, or None.

    ``end`` bounds the bytes of ``data`` that may be read; ``room`` is how many bytes the box may
    span (to the end of its parent or the file). None for a header cut short, a type that is not
    four printable ASCII characters, or a size smaller than the header or larger than ``room``.
    """
    if end - start < 8:
        return None
    size, box_type = struct.unpack_from(">I4s", data, start)
    if not all(0x20 <= ch < 0x7F for ch in box_type):
        return None
    header_size = 8
    if size == 1:
        if end - start < 16:
            return None
        (size,) = struct.unpack_from(">Q", data, start + 8)
        header_size = 16
    elif size == 0:
        size = room
    if size < header_size or size > room:
        return None
    return box_type, header_size, size


def _children(data: bytes, start: int, end: int):
    """Yield ``(type, payload start, payload end)`` of the boxes in ``data[start:end]``.

    Stops at the first malformed header; every box spans at least 8 bytes, so this ends.
    """
    offset = start
    while offset + 8 <= end:
        box = _parse_header(data, offset, end, end - offset)
        if box is None:
            return
        box_type, header_size, box_size = box
        yield box_type, offset + header_size, offset + box_size
        offset += box_size


def _find_in_moov(moov: bytes) -> int | None:
    """The offset in ``moov`` (its payload) of the first video track's ``tkhd`` matrix, or None."""
    for box_type, start, end in _children(moov, 0, len(moov)):
        if box_type != b"trak":
            continue
        matrix_at = None
        is_video = False
        for child_type, child_start, child_end in _children(moov, start, end):
            if child_type == b"tkhd" and matrix_at is None:
                matrix_at = _tkhd_matrix_offset(moov, child_start, child_end)
            elif child_type == b"mdia":
                is_video = is_video or _is_video_mdia(moov, child_start, child_end)
        if is_video and matrix_at is not None:
            return matrix_at
    return None


def _tkhd_matrix_offset(data: bytes, start: int, end: int) -> int | None:
    """Where the matrix starts in a ``tkhd`` payload ``data[start:end]``, or None if cut short.

    Version 0 holds 32-bit times (matrix at payload offset 40), version 1 64-bit times (52).
    """
    if end - start < 4:
        return None
    version = data[start]
    if version == 0:
        matrix_at = start + 40
    elif version == 1:
        matrix_at = start + 52
    else:
        return None
    return matrix_at if matrix_at + _MATRIX_BYTES <= end else None


def _is_video_mdia(data: bytes, start: int, end: int) -> bool:
    """Whether the ``mdia`` payload ``data[start:end]`` has an ``hdlr`` of handler type ``vide``."""
    for box_type, child_start, child_end in _children(data, start, end):
        # hdlr payload: version and flags (4), pre_defined (4), handler_type (4), ...
        if box_type == b"hdlr" and child_end - child_start >= 12:
            return data[child_start + 8 : child_start + 12] == b"vide"
    return False
