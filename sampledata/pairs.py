"""Generated sample data for demos, end-to-end tests and benchmarks, with no internet.

:class:`ImageServer` is a real HTTP server on 127.0.0.1 that serves deterministic
generated images and every kind of bad response a web-scale fetcher meets (404,
slow, corrupt, truncated, decompression bomb, oversized body, redirect to a
forbidden host). :func:`make_pairs_cases` builds a LAION-style list of
image-text pairs against such a server, each labelled with what the pairs
pipeline should make of it, and :func:`write_pairs_parquet` writes it as the
pipeline's input.

Routes of :class:`ImageServer` (every other path answers 404):

==============================  ===========================================================
``/img/<seed>-<w>x<h>.<ext>``   a generated image (``ext`` is ``jpg``, ``png`` or ``webp``)
``/missing/...``                404
``/slow/...``                   an image, after ``slow_seconds``
``/corrupt/<n>.jpg``            random bytes sent as ``image/jpeg``
``/truncated/<n>.jpg``          the first half of a valid JPEG
``/bomb/<n>.png``               a ~110 KB PNG declaring 30000 x 30000 pixels
``/huge/<n>.jpg``               ``huge_bytes`` of JPEG-looking bytes, no Content-Length
``/redirect-forbidden/<n>``     302 to an image on the forbidden host
``/redirect/<path>``            302 to ``/<path>`` on the same server
``/status/<code>/...``          a short response with that status (200-599)
==============================  ===========================================================
"""

from __future__ import annotations

import functools
import hashlib
import io
import itertools
import re
import socketserver
import struct
import threading
import urllib.parse
import zlib
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from sampledata.loopback import LoopbackHandler, LoopbackService

IMAGE_FORMATS = {"jpg": ("JPEG", "image/jpeg"), "png": ("PNG", "image/png"), "webp": ("WEBP", "image/webp")}
LOSSY_QUALITY = 90
_ENCODE_OPTIONS = {  # fixed, and fast: a 1280x720 WebP takes ~40 ms at method 0, ~130 at the default
    "JPEG": {"quality": LOSSY_QUALITY},
    "PNG": {"compress_level": 1},
    "WEBP": {"quality": LOSSY_QUALITY, "method": 0},
}
MAX_SIDE = 8192  # larger /img/ requests answer 404 rather than allocate gigabytes
BOMB_SIDE = 30_000
HUGE_BYTES = 30_000_000
CORRUPT_MARKER = b"\x00garbage"  # a prefix no image format claims, so the bytes stay unidentifiable

_IMG_PATH = re.compile(r"/img/(\d+)-(\d+)x(\d+)\.(jpg|png|webp)")
_STREAM_CHUNK = 64 * 1024
_JFIF_HEADER = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"


# --------------------------------------------------------------------------- content


def render_image(seed: int, width: int, height: int, image_format: str = "jpg") -> bytes:
    """A deterministic picture: a two-colour gradient, a few blended shapes and noise.

    The pixels depend only on ``(seed, width, height)``; ``image_format`` (``jpg``,
    ``png`` or ``webp``) only chooses the encoding, with fixed settings.
    """
    pillow_format, _ = IMAGE_FORMATS[image_format]
    rng = np.random.default_rng([seed, width, height])
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    angle = rng.uniform(0.0, 2.0 * np.pi)
    cos, sin = float(np.cos(angle)), float(np.sin(angle))
    low, span = min(cos, 0.0) + min(sin, 0.0), abs(cos) + abs(sin)  # range of the projection below
    ramp = (x * np.float32(cos / span) - np.float32(low / span)) + y * np.float32(sin / span)
    start, end = rng.uniform(0.0, 255.0, (2, 3, 1, 1)).astype(np.float32)
    planes = start + ramp * (end - start)  # channels first: numpy is slow on a last axis of 3
    short_side = min(width, height)
    for _ in range(int(rng.integers(3, 9))):
        colour = rng.uniform(0.0, 255.0, (3, 1, 1)).astype(np.float32)
        alpha = float(rng.uniform(0.4, 1.0))
        cx, cy = float(rng.uniform(0, width)), float(rng.uniform(0, height))
        rx = max(float(rng.uniform(0.05, 0.35)) * short_side, 1.0)
        ry = rx * float(rng.uniform(0.3, 1.5))
        x0, x1 = max(int(cx - rx), 0), min(int(cx + rx) + 1, width)
        y0, y1 = max(int(cy - ry), 0), min(int(cy + ry) + 1, height)
        region = planes[:, y0:y1, x0:x1]  # the shape's bounding box; a rectangle fills it
        weight = np.float32(alpha)
        if rng.integers(2):  # an ellipse
            inside = ((np.arange(x0, x1, dtype=np.float32) - cx) / rx) ** 2 + (
                (np.arange(y0, y1, dtype=np.float32)[:, None] - cy) / ry
            ) ** 2 < 1.0
            weight = inside * weight
        region += (colour - region) * weight
    planes += rng.integers(-10, 11, (height, width), dtype=np.int8)  # grain, the same on every channel
    image = Image.merge("RGB", [Image.fromarray(plane) for plane in np.clip(planes, 0, 255).astype(np.uint8)])
    buffer = io.BytesIO()
    image.save(buffer, format=pillow_format, **_ENCODE_OPTIONS[pillow_format])
    return buffer.getvalue()


def corrupt_bytes(n: int, size: int = 4096) -> bytes:
    """``size`` seeded random bytes that no image decoder recognises."""
    return CORRUPT_MARKER + np.random.default_rng([7, n]).bytes(size - len(CORRUPT_MARKER))


def truncated_jpeg(n: int) -> bytes:
    """The first half of a valid 320x240 JPEG: the header parses, the pixels run out."""
    data = render_image(n, 320, 240, "jpg")
    return data[: len(data) // 2]


@functools.cache
def decompression_bomb_png(width: int = BOMB_SIDE, height: int = BOMB_SIDE) -> bytes:
    """A valid 1-bit greyscale PNG of ``width`` x ``height`` black pixels, about 1/1000 of its raw size.

    30000 x 30000 is ~110 KB; decoding it would need 112 MB at 1 bit per pixel
    and 900 MB at 8. It is built in tens of milliseconds: a block of rows is
    deflated once, ending in a full flush so that it refers to nothing before
    it, and the block is repeated inside one zlib stream.
    """

    def chunk(kind: bytes, payload: bytes) -> bytes:
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    def deflate(data: bytes, mode: int) -> bytes:
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate: no header, no checksum
        return compressor.compress(data) + compressor.flush(mode)

    row = bytes(1 + (width + 7) // 8)  # filter byte 0, then all-zero pixels
    block_rows = min(height, 1000)
    repeats, rest = divmod(height, block_rows)
    block, tail = row * block_rows, row * rest
    checksum = 1
    for _ in range(repeats):
        checksum = zlib.adler32(block, checksum)
    checksum = zlib.adler32(tail, checksum)
    stream = deflate(block, zlib.Z_FULL_FLUSH) * repeats + deflate(tail, zlib.Z_FINISH)
    idat = b"\x78\xda" + stream + struct.pack(">I", checksum)
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# --------------------------------------------------------------------------- server


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes = b""
    content_type: str = "text/plain"
    location: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


class _Handler(LoopbackHandler):
    server_version = "curation-sample/1.0"

    def do_GET(self) -> None:  # noqa: N802 - the base class's naming
        self.dispatch()

    def send_reply(self, reply: _Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        if reply.location is not None:
            self.send_header("Location", reply.location)
        for name, value in reply.headers:
            self.send_header(name, value)
        if reply.status not in (204, 304):
            self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if reply.body and reply.status not in (204, 304):
            self.wfile.write(reply.body)


class _ConnectionCounter(socketserver.TCPServer):
    """Accepts TCP connections on ``host`` and closes them at once, calling ``on_connect`` for each."""

    def __init__(self, host: str, on_connect: Callable[[], None]):
        self.on_connect = on_connect
        super().__init__((host, 0), _CountConnection)


class _CountConnection(socketserver.BaseRequestHandler):
    server: _ConnectionCounter

    def handle(self) -> None:
        self.server.on_connect()


class ImageServer(LoopbackService):
    """Threaded HTTP server on 127.0.0.1 (ephemeral port) serving generated content.

    Use it as a context manager or call :meth:`start` and :meth:`stop`; its
    :attr:`base_url` is ``http://127.0.0.1:<port>``, without a trailing slash. Bodies of
    deterministic routes are generated once and cached; normal replies are
    HTTP/1.1 keep-alive with a Content-Length. Every request is counted by path
    (see :meth:`hits`). A second listener on ``forbidden_host`` counts any
    connection made to it (:attr:`forbidden_hits`); ``/redirect-forbidden/``
    points there. ``/opted-out/<image>`` serves ``/img/<image>`` with the creator's
    opt-out, ``X-Robots-Tag: noai``.

    Args:
        slow_seconds: delay of the ``/slow/`` route.
        forbidden_host: loopback address standing for a host that must never be contacted.
        huge_bytes: body size of the ``/huge/`` route.
    """

    handler = _Handler

    def __init__(
        self, *, slow_seconds: float = 3.0, forbidden_host: str = "127.0.0.2", huge_bytes: int = HUGE_BYTES
    ):
        super().__init__()
        self.slow_seconds = slow_seconds
        self.forbidden_host = forbidden_host
        self.huge_bytes = huge_bytes
        self._lock = threading.Lock()
        self._hits: Counter[str] = Counter()
        self._forbidden_hits = 0
        self._cache: dict[str, _Reply] = {}
        self._filler = np.random.default_rng(0).bytes(_STREAM_CHUNK)
        self._forbidden_port = 0
        self._routes: list[tuple[re.Pattern[str], Callable[[_Handler, re.Match[str]], None]]] = [
            (_IMG_PATH, self._image),
            (re.compile(r"/missing/.*"), self._fixed(lambda m: _Reply(404, b"not found"))),
            (re.compile(r"/slow/.*"), self._slow),
            (re.compile(r"/corrupt/(\d+)\.jpg"), self._fixed(lambda m: _jpeg(corrupt_bytes(int(m[1]))))),
            (re.compile(r"/truncated/(\d+)\.jpg"), self._fixed(lambda m: _jpeg(truncated_jpeg(int(m[1]))))),
            (re.compile(r"/bomb/\d+\.png"), self._fixed(lambda m: _png(decompression_bomb_png()))),
            (re.compile(r"/huge/\d+\.jpg"), self._huge),
            (re.compile(r"/redirect-forbidden/(\d+)"), self._redirect_forbidden),
            (re.compile(r"/opted-out(/.*)"), self._opted_out),
            (re.compile(r"/redirect/(.*)"), self._redirect),
            (re.compile(r"/status/(\d{3})(?:/.*)?"), self._status),
        ]

    def _side_listeners(self) -> list[socketserver.BaseServer]:
        """The forbidden host's listener, which counts connections and serves nothing."""
        forbidden = _ConnectionCounter(self.forbidden_host, self._count_forbidden)
        self._forbidden_port = forbidden.server_address[1]
        return [forbidden]

    @property
    def forbidden_hits(self) -> int:
        """Connections ever accepted on the forbidden host's listener."""
        with self._lock:
            return self._forbidden_hits

    def hits(self, path_prefix: str = "/") -> int:
        """Requests received so far whose path (without query) starts with ``path_prefix``."""
        with self._lock:
            return sum(count for path, count in self._hits.items() if path.startswith(path_prefix))

    def _count_forbidden(self) -> None:
        with self._lock:
            self._forbidden_hits += 1

    def _serve(self, handler: _Handler) -> None:
        path = urllib.parse.urlsplit(handler.path).path
        with self._lock:
            self._hits[path] += 1
        for pattern, route in self._routes:
            match = pattern.fullmatch(path)
            if match:
                route(handler, match)
                return
        handler.send_reply(_Reply(404, b"not found"))

    def _cached(self, key: str, make: Callable[[], _Reply]) -> _Reply:
        """The reply stored under ``key``, built by ``make`` the first time."""
        reply = self._cache.get(key)
        if reply is None:
            reply = self._cache.setdefault(key, make())
        return reply

    def _fixed(self, make: Callable[[re.Match[str]], _Reply]) -> Callable[[_Handler, re.Match[str]], None]:
        """A route whose reply depends only on the path: built once, then served from memory."""
        return lambda handler, match: handler.send_reply(self._cached(match[0], lambda: make(match)))

    def _image(self, handler: _Handler, match: re.Match[str], headers: tuple[tuple[str, str], ...] = ()) -> None:
        width, height = int(match[2]), int(match[3])
        if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
            handler.send_reply(_Reply(404, b"size out of range"))
            return
        _, content_type = IMAGE_FORMATS[match[4]]

        def render() -> _Reply:
            return _Reply(200, render_image(int(match[1]), width, height, match[4]), content_type, headers=headers)

        handler.send_reply(self._cached(handler.path.split("?")[0], render))

    def _opted_out(self, handler: _Handler, match: re.Match[str]) -> None:
        image = _IMG_PATH.fullmatch(match[1].replace("/", "/img/", 1))
        if image is None:
            handler.send_reply(_Reply(404, b"not an image path"))
            return
        self._image(handler, image, (("X-Robots-Tag", "noai"),))

    def _slow(self, handler: _Handler, match: re.Match[str]) -> None:
        if self._stopping.wait(self.slow_seconds):
            handler.close_connection = True
            return
        handler.send_reply(self._cached("/slow/", lambda: _jpeg(render_image(0, 320, 240, "jpg"))))

    def _huge(self, handler: _Handler, match: re.Match[str]) -> None:
        handler.close_connection = True  # the body ends when the connection does
        handler.send_response(200)
        handler.send_header("Content-Type", "image/jpeg")
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(_JFIF_HEADER)
        left = self.huge_bytes - len(_JFIF_HEADER)
        while left > 0 and not self._stopping.is_set():
            chunk = self._filler[: min(left, len(self._filler))]
            handler.wfile.write(chunk)
            left -= len(chunk)

    def _redirect_forbidden(self, handler: _Handler, match: re.Match[str]) -> None:
        target = f"http://{self.forbidden_host}:{self._forbidden_port}/img/{match[1]}-64x64.jpg"
        handler.send_reply(_Reply(302, b"", location=target))

    def _redirect(self, handler: _Handler, match: re.Match[str]) -> None:
        query = urllib.parse.urlsplit(handler.path).query
        target = f"{self._base_url}/{match[1]}" + (f"?{query}" if query else "")
        handler.send_reply(_Reply(302, b"", location=target))

    def _status(self, handler: _Handler, match: re.Match[str]) -> None:
        status = int(match[1])
        if not 200 <= status <= 599:
            handler.send_reply(_Reply(400, b"status must be 200-599"))
            return
        handler.send_reply(_Reply(status, b"" if status in (204, 304) else f"status {status}".encode()))


def _jpeg(body: bytes) -> _Reply:
    return _Reply(200, body, "image/jpeg")


def _png(body: bytes) -> _Reply:
    return _Reply(200, body, "image/png")


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class SampleCase:
    """One input row and what the pairs pipeline should make of it.

    ``expect`` is ``"ok"`` or the reason the row should be dropped (``http_404``,
    ``timeout``, ``duplicate``, ``caption_empty``, ...).
    """

    url: str
    text: str
    expect: str


_GOOD_SIZES = (
    (640, 480), (800, 600), (1024, 768), (512, 512), (480, 640), (600, 800),
    (1280, 720), (720, 480), (400, 300), (256, 256), (960, 640), (500, 333),
)
_FORMAT_CYCLE = ("jpg", "jpg", "png", "jpg", "webp", "jpg", "jpg")

_COLOURS = ("red", "blue", "green", "yellow", "black", "white", "orange", "purple", "pink", "grey", "golden")
_THINGS = (
    "bicycle", "vintage typewriter", "wooden boat", "teapot", "armchair", "pickup truck", "umbrella",
    "leather backpack", "ceramic vase", "sports car", "kite", "tram", "guitar", "mailbox", "hot air balloon",
)
_GROUPS = ("sheep", "ducks", "horses", "cyclists", "fishing boats", "tourists", "pigeons")
_ANIMALS = ("golden retriever", "tabby cat", "horse", "pair of swans", "border collie", "owl", "fox", "goat")
_PLACES = (
    "a brick wall", "the harbour", "a wooden fence", "an old church", "a rainy street", "a flower market",
    "the train station", "a lighthouse", "a snowy field", "the river bank", "a cafe window", "a stone bridge",
)
_CITIES = (
    "Amsterdam", "Kyoto", "Lisbon", "Chicago", "Cape Town", "Reykjavik", "Buenos Aires", "Prague", "Seoul",
)
_VERBS = ("leaning against", "parked next to", "standing in front of", "resting beside", "photographed near")
_NAMES = ("Maria", "John", "Aiko", "Pierre", "Fatima", "Lars", "Priya", "Diego", "Olivia", "Kwame")
_EVENTS = ("marathon", "wedding", "graduation ceremony", "jazz festival", "science fair", "harvest market")
_DISHES = ("bowl of ramen", "stack of pancakes", "margherita pizza", "plate of tacos", "slice of lemon cake")
_PRODUCTS = ("Ankle Boots", "Ceramic Mug", "Desk Lamp", "Wool Scarf", "Throw Pillow", "Rain Jacket")
_MATERIALS = ("Leather", "Cotton", "Stoneware", "Oak", "Linen", "Recycled Polyester")


def _a(phrase: str) -> str:
    return f"{'an' if phrase[0] in 'aeiou' else 'a'} {phrase}"


def _caption(rng: np.random.Generator) -> str:
    """An alt text in one of several web styles, from the word lists above."""

    def pick(words: Sequence[str]) -> str:
        return words[int(rng.integers(len(words)))]

    def number(low: int, high: int) -> int:
        return int(rng.integers(low, high))

    templates: tuple[Callable[[], str], ...] = (
        lambda: f"{_a(pick(_COLOURS)).capitalize()} {pick(_THINGS)} {pick(_VERBS)} {pick(_PLACES)}"
        f" in {pick(_CITIES)}",
        lambda: f"{pick(_NAMES)} with {_a(pick(_ANIMALS))} at the {number(1995, 2025)} {pick(_EVENTS)}",
        lambda: f"{pick(_MATERIALS)} {pick(_PRODUCTS)} - {pick(_COLOURS).title()}, Size {number(1, 50)}",
        lambda: f"Homemade {pick(_DISHES)} served on {_a(pick(_COLOURS))} plate",
        lambda: f"{number(2, 12)} {pick(_GROUPS)} near {pick(_PLACES)} at sunset",
        lambda: f"View of {pick(_PLACES)} in {pick(_CITIES)}, photographed by {pick(_NAMES)}"
        f" in {number(1950, 2025)}",
        lambda: f"Close-up of {_a(pick(_COLOURS))} {pick(_THINGS)} on a kitchen table",
    )
    return templates[number(0, len(templates))]()


def make_pairs_cases(base_url: str, n_good: int = 40, seed: int = 0) -> list[SampleCase]:
    """A realistic, shuffled mix of good and bad image-text rows served by an :class:`ImageServer`.

    ``n_good`` rows are expected ``ok`` (varied sizes and formats, realistic
    captions; one is reached through ``/redirect/``). Added to them: two exact
    repeats of good rows, placed after the original (``duplicate``); a 40x40
    (``small_image``) and a 1000x100 image (``bad_aspect``); captions that are
    empty, one word or a camera filename (``caption_empty``, ``caption_too_short``,
    ``caption_filename``); and one row per bad route (``http_404``, ``timeout``,
    ``corrupt_image``, ``truncated_image``, ``decompression_bomb``, ``too_large``,
    ``forbidden_address``, ``http_500``). The same arguments give the same list.
    """
    rng = np.random.default_rng([seed, n_good])
    image_seeds = itertools.count(seed * 100_000)

    def img(width: int, height: int, ext: str = "jpg") -> str:
        return f"{base_url}/img/{next(image_seeds)}-{width}x{height}.{ext}"

    cases = []
    for i in range(n_good):
        width, height = _GOOD_SIZES[int(rng.integers(len(_GOOD_SIZES)))]
        url = img(width, height, _FORMAT_CYCLE[i % len(_FORMAT_CYCLE)])
        if i == n_good - 1:
            url = url.replace(f"{base_url}/img/", f"{base_url}/redirect/img/")
        cases.append(SampleCase(url, _caption(rng), "ok"))
    cases += [
        SampleCase(img(40, 40), _caption(rng), "small_image"),
        SampleCase(img(1000, 100), _caption(rng), "bad_aspect"),
        SampleCase(img(640, 480), "", "caption_empty"),
        SampleCase(img(640, 480), "img", "caption_too_short"),
        SampleCase(img(640, 480), "DSC_0042.JPG", "caption_filename"),
    ]
    for route, expect in (
        ("missing/{n}.jpg", "http_404"),
        ("slow/{n}.jpg", "timeout"),
        ("corrupt/{n}.jpg", "corrupt_image"),
        ("truncated/{n}.jpg", "truncated_image"),
        ("bomb/{n}.png", "decompression_bomb"),
        ("huge/{n}.jpg", "too_large"),
        ("redirect-forbidden/{n}", "forbidden_address"),
        ("status/500/{n}.jpg", "http_500"),
    ):
        cases.append(SampleCase(f"{base_url}/{route.format(n=next(image_seeds))}", _caption(rng), expect))
    cases = [cases[i] for i in rng.permutation(len(cases))]
    for _ in range(min(2, n_good)):
        good = [i for i, case in enumerate(cases) if case.expect == "ok"]
        original = good[int(rng.integers(len(good)))]
        copy = SampleCase(cases[original].url, cases[original].text, "duplicate")
        cases.insert(int(rng.integers(original + 1, len(cases) + 1)), copy)
    return cases


def make_url_list(base_url: str, n: int, seed: int = 0, size: tuple[int, int] = (512, 384)) -> list[str]:
    """``n`` distinct URLs of generated ``size`` JPEGs, for benchmarks."""
    width, height = size
    first = seed * 10_000_000
    return [f"{base_url}/img/{first + i}-{width}x{height}.jpg" for i in range(n)]


def _similarity(case: SampleCase) -> float:
    """A stand-in for LAION's CLIP similarity column, derived from the row's content."""
    digest = hashlib.sha256(f"{case.url}\n{case.text}".encode()).digest()
    return round(0.2 + 0.2 * int.from_bytes(digest[:4], "big") / 2**32, 4)


def write_pairs_parquet(
    cases: Sequence[SampleCase],
    path: str,
    *,
    url_column: str = "URL",
    text_column: str = "TEXT",
    rows_per_group: int | None = None,
) -> None:
    """Writes ``cases`` as a LAION-style Parquet file.

    Columns: ``url_column``, ``text_column`` (LAION's ``URL``/``TEXT`` by default;
    pass ``url``/``caption`` for img2dataset's naming), ``WIDTH`` and ``HEIGHT``
    (read from ``/img/<seed>-<w>x<h>`` URLs, null otherwise) and ``similarity``.

    Args:
        cases: rows, in order.
        path: local file to write.
        url_column: name of the URL column.
        text_column: name of the caption column.
        rows_per_group: rows per Parquet row group (the unit of parallel reading);
            ``None`` writes pyarrow's default.
    """
    sizes = [_IMG_PATH.search(case.url) for case in cases]
    table = pa.table(
        {
            url_column: pa.array([case.url for case in cases], pa.string()),
            text_column: pa.array([case.text for case in cases], pa.string()),
            "WIDTH": pa.array([int(m[2]) if m else None for m in sizes], pa.int64()),
            "HEIGHT": pa.array([int(m[3]) if m else None for m in sizes], pa.int64()),
            "similarity": pa.array([_similarity(case) for case in cases], pa.float64()),
        }
    )
    pq.write_table(table, path, row_group_size=rows_per_group)
