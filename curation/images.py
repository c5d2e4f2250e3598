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
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, ImageOps

from curation.ids import sha256_hex
from curation.records import ImageData

REENCODE_POLICIES = ("keep", "jpeg", "webp")
_KEEP_FORMATS = {"JPEG": "jpeg", "MPO": "jpeg", "PNG": "png", "WEBP": "webp"}
_KEEP_MODES = ("1", "L", "RGB")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_WHITE = (255, 255, 255)

_HASH_SIDE = 32  # pHash: DCT of a 32x32 grayscale, 8x8 low frequencies kept
_HASH_BITS_SIDE = 8
_HASH_REDUCE_GAP = 4  # images are box-reduced to >= 4x the hash side before LANCZOS
_RESIZE_REDUCING_GAP = 3.0


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
        reencode: ``keep`` stores the original bytes of an upright, opaque,
            RGB/grayscale, single-frame JPEG/PNG/WebP within ``max_side`` and
            re-encodes every other image as JPEG; ``jpeg`` and ``webp`` always
            re-encode to that format.
        max_side: when re-encoding, downscale (LANCZOS) so the long side is at
            most this; with ``keep``, a larger image is re-encoded to fit.
        quality: encoder quality (1-100) for JPEG and WebP output.
        allowed_formats: Pillow formats, lowercase, accepted as input; others
            are rejected as ``unsupported_format`` without being decoded.
    """

    max_pixels: int = 64_000_000
    reencode: str = "keep"
    max_side: int | None = None
    quality: int = 90
    allowed_formats: tuple[str, ...] = ("jpeg", "png", "webp", "gif", "bmp", "tiff")

    def __post_init__(self) -> None:
        if self.reencode not in REENCODE_POLICIES:
            raise ValueError(f"image reencode must be one of {REENCODE_POLICIES}, got {self.reencode!r}")
        if self.max_pixels <= 0:
            raise ValueError(f"image max_pixels must be positive, got {self.max_pixels}")
        if self.max_side is not None and self.max_side <= 0:
            raise ValueError(f"image max_side must be positive, got {self.max_side}")
        if not 1 <= self.quality <= 100:
            raise ValueError(f"image quality must be within 1..100, got {self.quality}")
        _pillow_formats(tuple(self.allowed_formats))


class ImageRejected(Exception):
    """An image that cannot be stored.

    Attributes:
        reason: ``corrupt_image``, ``truncated_image``, ``decompression_bomb``,
            ``unsupported_format`` or ``empty_image``.
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
            decompression bomb, truncated or otherwise undecodable.
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
    gray = image.convert("L").resize((_HASH_SIDE, _HASH_SIDE), Image.Resampling.LANCZOS)
    pixels = np.asarray(gray, dtype=np.float64)
    basis = _dct_basis()
    low = basis @ pixels @ basis.T
    bits = low > np.median(low)
    return np.packbits(bits.ravel()).tobytes().hex()


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
        image.load()  # PNG and TIFF may keep EXIF after the pixels; JPEG has it in the header.
    orientation = _orientation(image)
    swapped = orientation in (5, 6, 7, 8)
    width, height = image.size[::-1] if swapped else image.size
    target = _fit(width, height, settings.max_side)

    if _can_keep(image, orientation, target == (width, height), settings):
        if is_jpeg:
            image.draft("L", (_HASH_SIDE * _HASH_REDUCE_GAP,) * 2)
        image.load()
        return ImageData(
            sha256=sha256_hex(data),
            phash=perceptual_hash(image),
            width=width,
            height=height,
            format=_KEEP_FORMATS[image.format],
            data=data,
        )

    if is_jpeg and target != (width, height):
        image.draft("RGB", target[::-1] if swapped else target)
    image.load()
    if orientation != 1:
        ImageOps.exif_transpose(image, in_place=True)
    rgb = _to_rgb(image)
    if rgb.size != target:
        rgb = rgb.resize(target, Image.Resampling.LANCZOS, reducing_gap=_RESIZE_REDUCING_GAP)
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
