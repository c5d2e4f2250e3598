"""Image normalisation: safe decode, EXIF orientation, RGB, optional re-encode, pHash.

:func:`normalize_image` turns fetched bytes into :class:`curation.records.ImageData`
or raises :class:`ImageRejected` with a snake_case reason. Decoding is guarded:
the pixel count is checked from the header before any pixel is decoded, and a
truncated file is an error (``ImageFile.LOAD_TRUNCATED_IMAGES`` is left off).

Speed matters (this runs once per fetched image): a JPEG that is kept as it is
is decoded at a reduced DCT scale (down to 1/8, at least 128 px) for its hash
(the whole entropy-coded stream is still read, so truncation is still caught),
and a JPEG to be downscaled is decoded at the smallest DCT scale that is still
at least the target size.

Decoding is also bounded in memory and time, by estimates made from the header
before any pixel is decoded: the bytes the decode and the conversions after it
hold (pixels x bytes per sample x channels, the decoder's own buffers, a
progressive JPEG's coefficient buffer), and the decode time a progressive JPEG
costs (every scan is a pass over all of its coefficients, so its work grows
with pixels x scans). Above ``ImageSettings.max_decode_bytes`` an image is
``decode_memory``, above ``max_decode_seconds`` ``decode_timeout``. Every
decode holds its estimate from a budget shared by the whole process (one per
worker), ``worker_decode_bytes``, so many fetch threads decoding at once wait
for each other instead of adding up.
"""

from __future__ import annotations

import functools
import io
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from PIL import ExifTags, Image, ImageOps

from curation.ids import sha256_hex
from curation.records import ImageData

REENCODE_POLICIES = ("keep", "jpeg", "webp")
_KEEP_FORMATS = ("JPEG", "MPO")
_KEEP_MODES = ("1", "L", "RGB")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_WHITE = (255, 255, 255)

_HASH_SIDE = 32  # pHash: DCT of a 32x32 grayscale, 8x8 low frequencies kept
_HASH_BITS_SIDE = 8
_HASH_REDUCE_GAP = 4  # images are box-reduced to >= 4x the hash side before LANCZOS
_RESIZE_REDUCING_GAP = 3.0

# Decode cost model, bytes held per decoded pixel (measured with ru_maxrss, Pillow 12).
_NARROW_MODES = ("1", "L", "P")  # Pillow stores 1 byte a pixel; I;16* 2; every other mode 4
_WIDE_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")  # scaled to 8 bits through an int64 array
_WIDE_EXTRA_BYTES = 17
_WEBP_EXTRA_BYTES = 12  # libwebp's own RGBA canvas and its copy, before Pillow's image
_ALPHA_EXTRA_BYTES = 9  # flattening onto white: an RGBA copy and the RGB result
_CONVERT_EXTRA_BYTES = 5  # any other mode converted to RGB (some through an 8-bit copy)
_FIXED_BYTES = 8 * 2**20  # the hash, the encoder, Python objects
_COEFFICIENT_BYTES = 2  # a buffered JPEG keeps every DCT coefficient at full size, 16 bits each
# Decode time model: a progressive JPEG scan is a pass over every coefficient, about 1e9
# pixel-scans a second on a 2024 server core; the estimate assumes a core 4x slower.
_SCAN_PIXELS_PER_SECOND = 2.5e8
_PIXELS_PER_SECOND = 2.5e7  # any other decode, generously


@functools.lru_cache(maxsize=None)
def _pillow_formats(allowed: tuple[str, ...]) -> tuple[str, ...]:
    """Pillow format ids for lowercase names (``jpeg`` also opens MPO camera JPEGs)."""
    Image.init()
    unknown = [name for name in allowed if name.upper() not in Image.ID]
    if unknown:
        raise ValueError(f"image formats {unknown} are not ones Pillow can decode")
    return tuple(name.upper() for name in allowed)


@dataclass(frozen=True)
class ImageSettings:
    """How images are decoded and stored.

    Attributes:
        max_pixels: the largest width*height decoded, checked from the header
            before any pixel is decoded; larger images are ``decompression_bomb``.
            Pillow's own hard limit (2 x ``Image.MAX_IMAGE_PIXELS``) also
            applies, so caps above it take effect only if that is raised.
        reencode: ``keep`` stores the original bytes of an upright,
            RGB/grayscale JPEG within ``max_side`` and re-encodes every other
            image as JPEG; ``jpeg`` and ``webp`` always re-encode to that
            format. Either way a run stores one image format, so every sample
            of a dataset has the same image field (``jpg`` or ``webp``).
        max_side: when re-encoding, downscale (LANCZOS) so the long side is at
            most this; with ``keep``, a larger image is re-encoded to fit.
        quality: encoder quality (1-100) for JPEG and WebP output.
        allowed_formats: Pillow formats, lowercase, accepted as input; others
            are rejected as ``unsupported_format`` without being decoded.
        max_decode_bytes: the most memory one image's decode and conversion
            may hold, estimated from the header before decoding (JPEGs at the
            reduced scale they are decoded at); above it ``decode_memory``.
        max_decode_seconds: the longest decode, estimated from the header
            (a progressive JPEG costs pixels x scans); above it
            ``decode_timeout``. A refusal by estimate: no decode is started
            that would take longer, and none is interrupted.
        worker_decode_bytes: the most memory all decodes of this process hold
            at once; a decode waits until its estimate fits. One budget per
            process and value, shared by every thread (the fetch pool).
    """

    max_pixels: int = 64_000_000
    reencode: str = "keep"
    max_side: int | None = None
    quality: int = 90
    allowed_formats: tuple[str, ...] = ("jpeg", "png", "webp", "gif", "bmp", "tiff")
    max_decode_bytes: int = 512 * 2**20
    max_decode_seconds: float = 10.0
    worker_decode_bytes: int = 2**30

    def __post_init__(self) -> None:
        if self.reencode not in REENCODE_POLICIES:
            raise ValueError(f"image reencode must be one of {REENCODE_POLICIES}, got {self.reencode!r}")
        if self.max_pixels <= 0:
            raise ValueError(f"image max_pixels must be positive, got {self.max_pixels}")
        if self.max_side is not None and self.max_side <= 0:
            raise ValueError(f"image max_side must be positive, got {self.max_side}")
        if not 1 <= self.quality <= 100:
            raise ValueError(f"image quality must be within 1..100, got {self.quality}")
        if min(self.max_decode_bytes, self.max_decode_seconds, self.worker_decode_bytes) <= 0:
            raise ValueError(
                "image max_decode_bytes, max_decode_seconds and worker_decode_bytes must be positive"
            )
        if self.max_decode_bytes > self.worker_decode_bytes:
            raise ValueError("image max_decode_bytes must not exceed worker_decode_bytes")
        _pillow_formats(tuple(self.allowed_formats))


class ImageRejected(Exception):
    """An image that cannot be stored.

    Attributes:
        reason: ``corrupt_image``, ``truncated_image``, ``decompression_bomb``,
            ``decode_memory``, ``decode_timeout``, ``unsupported_format`` or
            ``empty_image``.
        detail: what was wrong, for the dead-letter row.
    """

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


def normalize_image(data: bytes, settings: ImageSettings = ImageSettings()) -> ImageData:
    """Decodes, checks and (per ``settings``) re-encodes one image.

    The image is fully decoded (so truncated or corrupt files are caught),
    turned upright by its EXIF orientation and converted to RGB with any alpha
    flattened onto white; animated images keep their first frame. Re-encoded
    output is deterministic (same input bytes, same output bytes) and carries
    no metadata.

    Returns:
        The stored image: its bytes, their sha256, the stored format, the
        width and height after orientation and resizing, and the pHash of the
        stored pixels.

    Raises:
        ImageRejected: when the bytes are empty, of a format not allowed, a
            decompression bomb, too costly to decode (``decode_memory``,
            ``decode_timeout``), truncated or otherwise undecodable.
    """
    if not data:
        raise ImageRejected("empty_image", "no bytes")
    image = _open(data, settings)
    try:
        return _normalize(image, data, settings)
    except ImageRejected:
        raise
    except Exception as error:  # Pillow raises many types on malformed input.
        raise _decode_error(error) from error
    finally:
        image.close()


def perceptual_hash(image: Image.Image) -> str:
    """64-bit DCT perceptual hash (pHash) as 16 hex characters.

    The algorithm of ``imagehash.phash`` (grayscale, LANCZOS to 32x32, 2-D
    DCT-II, the 8x8 lowest frequencies compared with their median, bits
    row-major, most significant first); an image 256 px or more on a side is
    first box-reduced by an integer factor to no less than 128 px, which keeps
    the hash within a few bits of ``imagehash.phash`` at a fraction of the cost.
    """
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB" if image.mode in _ALPHA_MODES else "L")
    limit = _HASH_SIDE * _HASH_REDUCE_GAP
    factors = (max(1, image.width // limit), max(1, image.height // limit))
    if factors != (1, 1):
        image = image.reduce(factors)
    if image.mode != "L":
        image = image.convert("L")
    gray = image.resize((_HASH_SIDE, _HASH_SIDE), Image.Resampling.LANCZOS)
    pixels = np.frombuffer(gray.tobytes(), dtype=np.uint8).reshape(_HASH_SIDE, _HASH_SIDE)
    basis = _dct_basis()
    low = (basis @ pixels @ basis.T).ravel()
    middle = np.sort(low)[len(low) // 2 - 1 : len(low) // 2 + 1]
    bits = low > (middle[0] + middle[1]) / 2  # the median of an even count, as np.median takes it
    return np.packbits(bits).tobytes().hex()


def hamming(a_hex: str, b_hex: str) -> int:
    """Number of differing bits between two hex hashes of the same length."""
    if len(a_hex) != len(b_hex):
        raise ValueError(f"hashes differ in length: {len(a_hex)} and {len(b_hex)} hex digits")
    return (int(a_hex, 16) ^ int(b_hex, 16)).bit_count()


@functools.lru_cache(maxsize=None)
def _dct_basis() -> np.ndarray:
    """Rows k < 8 of the unnormalised DCT-II matrix: cos(pi * k * (2n + 1) / 2N)."""
    k = np.arange(_HASH_BITS_SIDE)[:, None]
    n = np.arange(_HASH_SIDE)[None, :]
    return np.cos(np.pi * k * (2 * n + 1) / (2 * _HASH_SIDE))


def _open(data: bytes, settings: ImageSettings) -> Image.Image:
    """Opens ``data`` (header only) if its format is allowed and its pixel count within the cap."""
    try:
        image = Image.open(io.BytesIO(data), formats=_pillow_formats(tuple(settings.allowed_formats)))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageRejected("decompression_bomb", str(error)) from error
    except Image.UnidentifiedImageError as error:
        other = _identify(data)
        if other is not None:
            raise ImageRejected("unsupported_format", f"{other} is not in {settings.allowed_formats}") from error
        raise ImageRejected("corrupt_image", "not a recognisable image") from error
    except Exception as error:  # malformed headers raise arbitrary types.
        raise _decode_error(error) from error
    width, height = image.size
    if width <= 0 or height <= 0:
        image.close()
        raise ImageRejected("empty_image", f"{width}x{height} pixels")
    if width * height > settings.max_pixels:
        image.close()
        raise ImageRejected(
            "decompression_bomb", f"{width}x{height} = {width * height} pixels > {settings.max_pixels}"
        )
    return image


def _identify(data: bytes) -> str | None:
    """The Pillow format of ``data`` among all formats, or None (header only, never decoded)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.format
    except Exception:  # anything unidentifiable is simply not an image.
        return None


def _normalize(image: Image.Image, data: bytes, settings: ImageSettings) -> ImageData:
    is_jpeg = image.format in ("JPEG", "MPO")
    if not is_jpeg:
        with _decode_budget(image, data, settings, converts=True):
            image.load()  # PNG and TIFF may keep EXIF after the pixels; JPEG has it in the header.
            return _store(image, data, settings, _plan(image, settings))
    plan = _plan(image, settings)  # a JPEG's orientation is in its header
    full_size = image.size
    if plan.keep:
        image.draft("L", (_HASH_SIDE * _HASH_REDUCE_GAP,) * 2)
    elif plan.target != plan.size:
        image.draft("RGB", plan.target[::-1] if plan.swapped else plan.target)
    with _decode_budget(image, data, settings, converts=not plan.keep, full_size=full_size):
        image.load()
        return _store(image, data, settings, plan)


@dataclass(frozen=True)
class _Plan:
    orientation: int
    swapped: bool
    size: tuple[int, int]  # width, height after orientation
    target: tuple[int, int]
    keep: bool


def _plan(image: Image.Image, settings: ImageSettings) -> _Plan:
    orientation = _orientation(image)
    swapped = orientation in (5, 6, 7, 8)
    size = image.size[::-1] if swapped else image.size
    target = _fit(*size, settings.max_side)
    return _Plan(orientation, swapped, size, target, _can_keep(image, orientation, target == size, settings))


def _store(image: Image.Image, data: bytes, settings: ImageSettings, plan: _Plan) -> ImageData:
    if plan.keep:
        image.load()
        return ImageData(
            sha256=sha256_hex(data),
            phash=perceptual_hash(image),
            width=plan.size[0],
            height=plan.size[1],
            format="jpeg",
            data=data,
        )
    image.load()
    if plan.orientation != 1:
        ImageOps.exif_transpose(image, in_place=True)
    rgb = _to_rgb(image)
    if rgb.size != plan.target:
        rgb = rgb.resize(plan.target, Image.Resampling.LANCZOS, reducing_gap=_RESIZE_REDUCING_GAP)
    stored_format = "webp" if settings.reencode == "webp" else "jpeg"
    encoded = _encode(rgb, stored_format, settings.quality)
    return ImageData(
        sha256=sha256_hex(encoded),
        phash=perceptual_hash(rgb),
        width=rgb.width,
        height=rgb.height,
        format=stored_format,
        data=encoded,
    )


def decode_cost(
    image: Image.Image, data: bytes, converts: bool = True, full_size: tuple[int, int] | None = None
) -> tuple[int, float]:
    """Estimated bytes held and seconds taken to decode ``image`` (opened, not loaded) and
    convert it to RGB, from its header only. Only the first frame of an animated or
    multi-page image is ever decoded, so frames add nothing.

    Args:
        image: the opened image, at the (draft) size it will be decoded at.
        data: its bytes (a JPEG's scans are counted in them).
        converts: whether the pixels are converted to RGB after decoding.
        full_size: a JPEG's size before a draft reduced it.
    """
    width, height = image.size
    pixels = width * height
    mode = image.mode
    per_pixel = 1 if mode in _NARROW_MODES else 2 if mode.startswith("I;16") else 4
    if image.format == "WEBP":
        per_pixel += _WEBP_EXTRA_BYTES
    if converts:
        if mode in _WIDE_MODES:
            per_pixel += _WIDE_EXTRA_BYTES
        elif mode in _ALPHA_MODES or "transparency" in image.info:
            per_pixel += _ALPHA_EXTRA_BYTES
        elif mode != "RGB":
            per_pixel += _CONVERT_EXTRA_BYTES
    memory = pixels * per_pixel + _FIXED_BYTES
    seconds = pixels / _PIXELS_PER_SECOND
    if image.format in ("JPEG", "MPO"):
        full_width, full_height = full_size or image.size
        scans = _jpeg_scans(data, len(getattr(image, "layer", None) or image.getbands()),
                            bool(image.info.get("progressive")))
        if scans > 1:  # a progressive or multi-scan JPEG buffers all its coefficients
            memory += _coefficients(image, full_width, full_height) * _COEFFICIENT_BYTES
            seconds += full_width * full_height * scans / _SCAN_PIXELS_PER_SECOND
    return memory, seconds


def _jpeg_scans(data: bytes, components: int, progressive: bool) -> int:
    """The scans (SOS markers) of a JPEG, counted from its first: the header's segments
    (an EXIF thumbnail, say) are skipped by their lengths, and 0xFF in entropy-coded data
    is always followed by 0x00 or a restart marker, so ``FF DA`` there is a real SOS.

    A sequential JPEG whose first scan holds all its ``components`` (nearly every photo) is
    one scan without searching the rest: libjpeg decides from that first scan that the file
    has no others, and stops at any further SOS (appended pictures of an MPO, say).
    """
    position = 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker == 0xDA:
            if not progressive and position + 4 < len(data) and data[position + 4] >= components:
                return 1
            return max(1, data.count(b"\xff\xda", position))
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return max(1, data.count(b"\xff\xda"))


def _coefficients(image: Image.Image, width: int, height: int) -> int:
    """DCT coefficients of a JPEG at full size, from its components' sampling factors."""
    layers = getattr(image, "layer", None) or [("", 1, 1, 0)] * len(image.getbands())
    h_max = max(layer[1] for layer in layers) or 1
    v_max = max(layer[2] for layer in layers) or 1
    return sum(
        -(-width * layer[1] // h_max) * -(-height * layer[2] // v_max) for layer in layers
    )


@contextmanager
def _decode_budget(
    image: Image.Image, data: bytes, settings: ImageSettings, converts: bool,
    full_size: tuple[int, int] | None = None,
) -> Iterator[None]:
    """Refuses a decode above the per-image limits, then holds its estimate from the worker's budget."""
    memory, seconds = decode_cost(image, data, converts, full_size)
    size = "x".join(map(str, full_size or image.size))
    what = f"{size} {image.mode} {image.format}"
    if seconds > settings.max_decode_seconds:
        limit = settings.max_decode_seconds
        raise ImageRejected("decode_timeout", f"{what}: about {seconds:.0f}s to decode > {limit}s")
    if memory > settings.max_decode_bytes:
        limit = settings.max_decode_bytes
        raise ImageRejected("decode_memory", f"{what}: about {memory} bytes to decode > {limit}")
    with _worker_budget(settings.worker_decode_bytes).hold(memory):
        yield


class DecodeBudget:
    """Bytes of decode memory shared by the threads of a process; each decode holds its estimate."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._free = capacity
        self._changed = threading.Condition()

    @property
    def in_use(self) -> int:
        with self._changed:
            return self.capacity - self._free

    @contextmanager
    def hold(self, amount: int) -> Iterator[None]:
        """Waits until ``amount`` bytes (at most the whole budget) are free and holds them."""
        amount = min(max(0, amount), self.capacity)
        with self._changed:
            self._changed.wait_for(lambda: self._free >= amount)
            self._free -= amount
        try:
            yield
        finally:
            with self._changed:
                self._free += amount
                self._changed.notify_all()


_budgets_lock = threading.Lock()
_budgets: dict[int, DecodeBudget] = {}


def _worker_budget(capacity: int) -> DecodeBudget:
    """This process's budget of ``capacity`` bytes (one per distinct setting)."""
    with _budgets_lock:
        return _budgets.setdefault(capacity, DecodeBudget(capacity))


def image_data(image: Image.Image, stored_format: str = "png", quality: int = 90) -> ImageData:
    """A decoded image (a rendered page, a frame) encoded for a shard: ``png`` keeps text sharp,
    ``jpeg``/``webp`` at ``quality`` are smaller."""
    rgb = _to_rgb(image)
    encoded = _encode(rgb, stored_format, quality)
    return ImageData(
        sha256=sha256_hex(encoded), phash=perceptual_hash(rgb), width=rgb.width, height=rgb.height,
        format=stored_format, data=encoded,
    )


def _orientation(image: Image.Image) -> int:
    """EXIF orientation 1..8; 1 (upright) when absent or unreadable."""
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # malformed EXIF does not make the pixels unusable.
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _fit(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """The size with the long side at most ``max_side``, aspect kept (never upscaled)."""
    long_side = max(width, height)
    if max_side is None or long_side <= max_side:
        return width, height
    scale = max_side / long_side
    return max(1, round(width * scale)), max(1, round(height * scale))


def _can_keep(image: Image.Image, orientation: int, fits: bool, settings: ImageSettings) -> bool:
    """Whether the original bytes can be stored: see ``ImageSettings.reencode``.

    An MPO (a camera JPEG with extra pictures appended) is kept: every JPEG
    reader shows its first picture, unlike an animated PNG or WebP.
    """
    return (
        settings.reencode == "keep"
        and image.format in _KEEP_FORMATS
        and orientation == 1
        and fits
        and image.mode in _KEEP_MODES
        and "transparency" not in image.info
        and not (image.format != "MPO" and getattr(image, "is_animated", False))
    )


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB pixels: alpha flattened onto white, 16/32-bit grayscale scaled to 8 bits."""
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, _WHITE)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    if image.mode == "RGB":
        image.info = {}  # the encoder must not pick up EXIF/ICC from the source
        return image
    if image.mode == "I" or image.mode.startswith("I;16"):
        wide = np.asarray(image).astype(np.int64)
        return Image.fromarray((np.clip(wide, 0, 65535) >> 8).astype(np.uint8), "L").convert("RGB")
    rgb = image.convert("RGB")
    rgb.info = {}
    return rgb


def _encode(image: Image.Image, stored_format: str, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=stored_format.upper(), quality=quality)
    return buffer.getvalue()


def _decode_error(error: Exception) -> ImageRejected:
    """Maps a Pillow decode failure to a reject reason."""
    message = f"{type(error).__name__}: {error}"
    if isinstance(error, EOFError) or "truncated" in str(error).lower():
        return ImageRejected("truncated_image", message)
    if isinstance(error, ValueError) and "too large" in str(error).lower():
        return ImageRejected("decompression_bomb", message)
    return ImageRejected("corrupt_image", message)
