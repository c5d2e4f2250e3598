"""Tests of curation.mp4_rotation: the display rotation of an MP4's video track, read and written.

Real files come from PyAV (through sampledata.videos, and through PyAV's own display-matrix API
as an independent reference for the sign convention); hostile files are built box by box here.
"""

from __future__ import annotations

import builtins
import signal
import struct

import av
import numpy as np
import pytest

from curation import mp4_rotation
from curation.mp4_rotation import display_rotation, rotation_matrix, set_display_rotation
from sampledata.videos import random_bytes, truncate, write_audio_only, write_scene_video

ONE = 0x10000
W_ONE = 0x40000000
SCENES = [(0.3, (200, 40, 40)), (0.3, (40, 40, 200))]


def box(box_type: bytes, payload: bytes = b"", size: int | None = None, large: bool = False) -> bytes:
    """An ISO BMFF box; ``size`` overrides the size field (0, 1, garbage), ``large`` writes a 64-bit size."""
    if large:
        return struct.pack(">I4sQ", 1, box_type, 16 + len(payload)) + payload
    return struct.pack(">I4s", 8 + len(payload) if size is None else size, box_type) + payload


def matrix(a: int, b: int, c: int, d: int) -> bytes:
    return struct.pack(">9i", a, b, 0, c, d, 0, 0, 0, W_ONE)


def tkhd(mat: bytes, version: int = 0) -> bytes:
    times = struct.pack(">IIIII", 1, 2, 1, 0, 100) if version == 0 else struct.pack(">QQIIQ", 1, 2, 1, 0, 100)
    fields = bytes(8) + struct.pack(">hhhH", 0, 0, 0, 0)
    return box(b"tkhd", bytes([version, 0, 0, 7]) + times + fields + mat + struct.pack(">II", 160 << 16, 96 << 16))


def hdlr(handler: bytes) -> bytes:
    return box(b"hdlr", bytes(4) + bytes(4) + handler + bytes(12) + b"VideoHandler\x00")


def trak(mat: bytes, handler: bytes = b"vide", version: int = 0) -> bytes:
    return box(b"trak", tkhd(mat, version) + box(b"mdia", box(b"mdhd", bytes(24)) + hdlr(handler)))


FTYP = box(b"ftyp", b"isom\x00\x00\x02\x00isomiso2mp41")
MVHD = box(b"mvhd", bytes(100))
ROT90 = matrix(0, ONE, -ONE, 0)
ROT180 = matrix(-ONE, 0, 0, -ONE)


def write(tmp_path, data: bytes, name: str = "f.mp4") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


@pytest.fixture
def video(tmp_path) -> str:
    path = str(tmp_path / "v.mp4")
    write_scene_video(path, SCENES)
    return path


def first_frame(path: str) -> av.VideoFrame:
    with av.open(path) as container:
        return next(container.decode(video=0))


# --- the matrix -------------------------------------------------------------------------------


def test_rotation_matrix_is_ffmpegs_layout():
    assert rotation_matrix(0) == struct.pack(">9i", ONE, 0, 0, 0, ONE, 0, 0, 0, W_ONE)
    assert rotation_matrix(90) == struct.pack(">9i", 0, ONE, 0, -ONE, 0, 0, 0, 0, W_ONE)
    assert rotation_matrix(180) == struct.pack(">9i", -ONE, 0, 0, 0, -ONE, 0, 0, 0, W_ONE)
    assert rotation_matrix(270) == struct.pack(">9i", 0, -ONE, 0, ONE, 0, 0, 0, 0, W_ONE)
    assert rotation_matrix(-90) == rotation_matrix(270)
    assert rotation_matrix(450) == rotation_matrix(90)
    assert all(len(rotation_matrix(d)) == 36 for d in (0, 90, 180, 270))


@pytest.mark.parametrize("bad", [45, 1, 90.0, "90", None, True])
def test_rotation_matrix_rejects_other_angles(bad):
    with pytest.raises(ValueError):
        rotation_matrix(bad)


@pytest.mark.parametrize("ccw", [0, 90, -90, 180])
def test_agrees_with_the_matrix_ffmpeg_writes(tmp_path, ccw):
    """PyAV's own display-matrix API (counter-clockwise degrees) is the reference for the sign."""
    path = str(tmp_path / "ref.mp4")
    with av.open(path, "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.set_display_rotation(ccw)
        for _ in range(2):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    assert display_rotation(path) == (-ccw) % 360
    if ccw == -90:  # FFmpeg writes exactly our matrix for a 90 degree clockwise display
        assert rotation_matrix(90) in open(path, "rb").read()


# --- round trips on real files ----------------------------------------------------------------


def test_plain_pyav_file_has_no_rotation(video):
    assert display_rotation(video) == 0
    assert first_frame(video).rotation == 0


@pytest.mark.parametrize("degrees", [0, 90, 180, 270])
def test_set_then_read_round_trips_and_ffmpeg_agrees(video, degrees):
    before = open(video, "rb").read()
    set_display_rotation(video, 90 if degrees == 0 else 0)  # start from something else
    set_display_rotation(video, degrees)
    after = open(video, "rb").read()
    assert display_rotation(video) == degrees
    # FFmpeg reports counter-clockwise degrees in [-180, 180]: the same turn, other sign.
    assert (-first_frame(video).rotation) % 360 == degrees
    assert len(after) == len(before)
    changed = [i for i, (x, y) in enumerate(zip(before, after)) if x != y]
    if changed:
        assert changed[-1] - changed[0] < 36
        offset = after.index(rotation_matrix(degrees))
        assert offset <= changed[0] and changed[-1] < offset + 36


def test_set_display_rotation_without_a_video_track_raises(tmp_path):
    path = str(tmp_path / "a.m4a")
    write_audio_only(path)
    before = open(path, "rb").read()
    with pytest.raises(ValueError, match="no video track"):
        set_display_rotation(path, 90)
    assert open(path, "rb").read() == before
    assert display_rotation(path) == 0


@pytest.mark.parametrize("name", ["random", "empty", "cut"])
def test_set_display_rotation_on_garbage_raises(tmp_path, video, name):
    path = str(tmp_path / "g.mp4")
    if name == "random":
        random_bytes(path)
    elif name == "empty":
        open(path, "wb").close()
    else:
        truncate(video, path)
    with pytest.raises(ValueError):
        set_display_rotation(path, 90)


def test_set_display_rotation_rejects_bad_angles_before_touching_the_file(video):
    before = open(video, "rb").read()
    with pytest.raises(ValueError):
        set_display_rotation(video, 45)
    assert open(video, "rb").read() == before


# --- broken and hostile files -----------------------------------------------------------------


def test_random_bytes_empty_and_truncated_files_give_zero(tmp_path, video):
    random = str(tmp_path / "r.mp4")
    empty = write(tmp_path, b"", "e.mp4")
    half = str(tmp_path / "h.mp4")
    random_bytes(random)
    truncate(video, half)
    set_display_rotation(video, 90)
    rotated = open(video, "rb").read()
    moov_cut = write(tmp_path, rotated[:-10], "m.mp4")  # moov runs past the end of the file
    for path in (random, empty, half, moov_cut):
        assert display_rotation(path) == 0
    for seed in range(50):
        random_bytes(random, size=1 + seed * 37, seed=seed)
        assert display_rotation(random) == 0


def test_missing_file_raises_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        display_rotation(str(tmp_path / "absent.mp4"))


def test_hand_built_file_is_read(tmp_path):
    assert display_rotation(write(tmp_path, FTYP + box(b"moov", MVHD + trak(ROT90)))) == 90
    assert display_rotation(write(tmp_path, FTYP + box(b"moov", MVHD + trak(ROT90, version=1)))) == 90
    assert display_rotation(write(tmp_path, FTYP + box(b"moov", MVHD + trak(ROT180)))) == 180
    # A QuickTime file need not start with ftyp.
    assert display_rotation(write(tmp_path, box(b"wide") + box(b"moov", trak(ROT90)))) == 90


def test_only_the_first_video_track_counts(tmp_path):
    sound_then_video = box(b"moov", MVHD + trak(ROT90, b"soun") + trak(ROT180) + trak(ROT90))
    assert display_rotation(write(tmp_path, FTYP + sound_then_video)) == 180
    sound_only = box(b"moov", MVHD + trak(ROT90, b"soun"))
    path = write(tmp_path, FTYP + sound_only)
    assert display_rotation(path) == 0
    with pytest.raises(ValueError):
        set_display_rotation(path, 90)


def test_set_display_rotation_on_hand_built_file(tmp_path):
    path = write(tmp_path, FTYP + box(b"moov", MVHD + trak(ROT90, b"soun") + trak(matrix(ONE, 0, 0, ONE), version=1)))
    set_display_rotation(path, 270)
    assert display_rotation(path) == 270
    data = open(path, "rb").read()
    assert data.count(ROT90) == 1  # the sound track's matrix is untouched


@pytest.mark.parametrize(
    "mat",
    [
        matrix(ONE, 0, 0, ONE),  # identity
        matrix(-ONE, 0, 0, ONE),  # mirror
        matrix(0, ONE, ONE, 0),  # transpose
        matrix(ONE, ONE // 2, 0, ONE),  # shear
        matrix(0, 0, 0, 0),
        matrix(-(2**31), 2**31 - 1, -1, 7),
    ],
)
def test_identity_mirrors_and_other_matrices_give_zero(tmp_path, mat):
    assert display_rotation(write(tmp_path, FTYP + box(b"moov", trak(mat)))) == 0


def test_scaled_rotation_counts_as_the_rotation(tmp_path):
    assert display_rotation(write(tmp_path, FTYP + box(b"moov", trak(matrix(0, 2 * ONE, -2 * ONE, 0))))) == 90


def test_size_zero_box_runs_to_the_end_of_the_file(tmp_path):
    last_moov = FTYP + box(b"free", b"x" * 5) + box(b"moov", MVHD + trak(ROT90), size=0)
    assert display_rotation(write(tmp_path, last_moov)) == 90
    # A size-0 trak inside moov runs to the end of moov.
    inner = FTYP + box(b"moov", MVHD + box(b"trak", trak(ROT90)[8:], size=0))
    assert display_rotation(write(tmp_path, inner)) == 90
    # A size-0 mdat swallows the rest of the file, so the moov after it is not a box of its own.
    swallowed = FTYP + box(b"mdat", b"\x00" * 40, size=0) + box(b"moov", trak(ROT90))
    assert display_rotation(write(tmp_path, swallowed)) == 0


def test_64_bit_sizes(tmp_path):
    large_mdat = FTYP + box(b"mdat", b"\xff" * 100, large=True) + box(b"moov", trak(ROT90))
    assert display_rotation(write(tmp_path, large_mdat)) == 90
    large_moov = FTYP + box(b"moov", MVHD + trak(ROT180), large=True)
    assert display_rotation(write(tmp_path, large_moov)) == 180
    large_trak = FTYP + box(b"moov", MVHD + box(b"trak", trak(ROT90)[8:], large=True))
    assert display_rotation(write(tmp_path, large_trak)) == 90
    beyond = FTYP + struct.pack(">I4sQ", 1, b"mdat", 2**64 - 1) + b"\x00" * 32 + box(b"moov", trak(ROT90))
    assert display_rotation(write(tmp_path, beyond)) == 0
    too_small = FTYP + struct.pack(">I4sQ", 1, b"mdat", 8) + box(b"moov", trak(ROT90))
    assert display_rotation(write(tmp_path, too_small)) == 0
    cut_header = FTYP + struct.pack(">I4s", 1, b"mdat") + b"\x00\x00"
    assert display_rotation(write(tmp_path, cut_header)) == 0


def test_zero_64_bit_sizes_do_not_loop(tmp_path):
    """A 64-bit size of 0 (or below the 16-byte header) would never advance a naive walk."""
    zero_top = FTYP + struct.pack(">I4sQ", 1, b"free", 0) + box(b"moov", trak(ROT90))
    zero_nested = FTYP + box(b"moov", struct.pack(">I4sQ", 1, b"udta", 0) + trak(ROT90))
    zero_in_trak = FTYP + box(b"moov", box(b"trak", struct.pack(">I4sQ", 1, b"edts", 0) + trak(ROT90)[8:]))
    paths = [write(tmp_path, data, f"z{i}.mp4") for i, data in enumerate((zero_top, zero_nested, zero_in_trak))]
    previous = signal.signal(signal.SIGALRM, lambda *_: pytest.fail("display_rotation did not return"))
    signal.alarm(10)
    try:
        assert [display_rotation(path) for path in paths] == [0, 0, 0]
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("size", [2, 7, 0xFFFFFFFF, 0x7FFFFFFF])
def test_garbage_sizes_give_zero(tmp_path, size):
    top = FTYP + box(b"free", b"junk", size=size) + box(b"moov", trak(ROT90))
    assert display_rotation(write(tmp_path, top)) == 0
    nested = FTYP + box(b"moov", box(b"udta", b"junk", size=size) + trak(ROT90))
    assert display_rotation(write(tmp_path, nested)) == 0
    in_trak = FTYP + box(b"moov", box(b"trak", box(b"edts", b"", size=size) + trak(ROT90)[8:]))
    assert display_rotation(write(tmp_path, in_trak)) == 0


def test_cut_short_boxes_inside_moov_give_zero(tmp_path):
    short_tkhd = box(b"trak", box(b"tkhd", bytes(30)) + box(b"mdia", hdlr(b"vide")))
    assert display_rotation(write(tmp_path, FTYP + box(b"moov", short_tkhd))) == 0
    short_hdlr = box(b"trak", tkhd(ROT90) + box(b"mdia", box(b"hdlr", bytes(8))))
    assert display_rotation(write(tmp_path, FTYP + box(b"moov", short_hdlr))) == 0
    bad_version = box(b"trak", box(b"tkhd", b"\x02" + bytes(200)) + box(b"mdia", hdlr(b"vide")))
    assert display_rotation(write(tmp_path, FTYP + box(b"moov", bad_version))) == 0
    non_ascii_type = FTYP + struct.pack(">I", 16) + b"\x00\xffab" + bytes(8) + box(b"moov", trak(ROT90))
    assert display_rotation(write(tmp_path, non_ascii_type)) == 0


def test_mdat_is_skipped_not_read(tmp_path, monkeypatch):
    """A 256 MiB (sparse) mdat before moov is skipped by seeking: few bytes are read in all."""
    path = tmp_path / "big.mp4"
    mdat_size = 256 << 20
    with open(path, "wb") as f:
        f.write(FTYP + struct.pack(">I4sQ", 1, b"mdat", mdat_size))
        f.seek(len(FTYP) + mdat_size)
        f.write(box(b"moov", MVHD + trak(ROT90)))
    read = []

    class Counting:
        def __init__(self, f):
            self._f = f

        def read(self, n=-1):
            data = self._f.read(n)
            read.append(len(data))
            return data

        def __getattr__(self, name):
            return getattr(self._f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._f.close()

    monkeypatch.setattr(mp4_rotation, "open", lambda *a, **k: Counting(builtins.open(*a, **k)), raising=False)
    assert display_rotation(str(path)) == 90
    assert read and sum(read) < 4096


def test_moov_over_the_cap_is_not_read(tmp_path, monkeypatch, video):
    set_display_rotation(video, 90)
    monkeypatch.setattr(mp4_rotation, "MAX_MOOV_BYTES", 256)
    assert display_rotation(video) == 0


def test_many_tiny_boxes_end_the_walk(tmp_path):
    few = FTYP + box(b"free") * 100 + box(b"moov", trak(ROT90))
    assert display_rotation(write(tmp_path, few)) == 90
    many = FTYP + box(b"free") * 10000 + box(b"moov", trak(ROT90))
    assert display_rotation(write(tmp_path, many)) == 0


def test_mutated_files_never_raise(tmp_path, video):
    set_display_rotation(video, 180)
    data = open(video, "rb").read()
    moov_at = data.index(b"moov") - 4
    rng = np.random.default_rng(7)
    path = str(tmp_path / "mut.mp4")
    results = set()
    for _ in range(400):
        mutated = bytearray(data)
        for _ in range(int(rng.integers(1, 6))):
            i = int(rng.integers(moov_at, len(data)))
            mutated[i] = int(rng.integers(0, 256))
        if rng.random() < 0.2:
            mutated = mutated[: int(rng.integers(0, len(mutated)))]
        write(tmp_path, bytes(mutated), "mut.mp4")
        results.add(display_rotation(path))
    assert results <= {0, 90, 180, 270}
    assert 180 in results  # most single-byte mutations leave the track header readable
