import hashlib
import io
import struct
import zlib

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageDraw

from curation.images import ImageRejected, ImageSettings, hamming, normalize_image, perceptual_hash


def natural(width: int, height: int, seed: int = 0) -> Image.Image:
    """A photo-like RGB image: a smooth colour field, a few discs, mild noise."""
    rng = np.random.default_rng(seed)
    field = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    image = Image.fromarray(field).resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(5):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        side = int(rng.integers(width // 8, width // 3))
        draw.ellipse([x, y, x + side, y + side], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    noisy = np.asarray(image, dtype=np.float64) + rng.normal(0, 5, (height, width, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` RGB but holds one tiny IDAT chunk."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def rejection(data: bytes, settings: ImageSettings = ImageSettings()) -> ImageRejected:
    with pytest.raises(ImageRejected) as caught:
        normalize_image(data, settings)
    return caught.value


def test_upright_rgb_jpeg_is_kept_byte_for_byte():
    data = encode(natural(120, 80), "JPEG")
    image = normalize_image(data)
    assert image.data == data
    assert image.sha256 == hashlib.sha256(data).hexdigest()
    assert (image.width, image.height, image.format) == (120, 80, "jpeg")
    assert len(image.phash) == 16 and int(image.phash, 16) >= 0


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_other_formats_are_stored_as_jpeg_so_a_dataset_has_one_image_field(fmt):
    data = encode(natural(120, 80), fmt)
    image = normalize_image(data)
    assert image.format == "jpeg" and decode(image.data).format == "JPEG"
    assert image.sha256 == hashlib.sha256(image.data).hexdigest() != hashlib.sha256(data).hexdigest()
    assert (image.width, image.height) == (120, 80)


def test_grayscale_jpeg_is_kept():
    data = encode(natural(100, 60).convert("L"), "JPEG")
    image = normalize_image(data)
    assert (image.data, image.format, image.width, image.height) == (data, "jpeg", 100, 60)


def test_mpo_camera_jpeg_is_kept_as_jpeg():
    data = encode(natural(96, 64), "MPO", save_all=True, append_images=[natural(96, 64, seed=1)])
    image = normalize_image(data)
    assert (image.data, image.format, image.width, image.height) == (data, "jpeg", 96, 64)


def test_animated_gif_keeps_its_first_frame_as_jpeg():
    frames = [Image.new("RGB", (64, 48), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    image = normalize_image(data)
    assert (image.format, image.width, image.height) == ("jpeg", 64, 48)
    red, green, blue = decode(image.data).getpixel((32, 24))
    assert red > 200 and green < 50 and blue < 50


def test_animated_png_is_reencoded():
    frames = [natural(64, 48, seed=s) for s in (1, 2)]
    data = encode(frames[0], "PNG", save_all=True, append_images=frames[1:])
    image = normalize_image(data)
    assert image.format == "jpeg" and image.data != data


def test_palette_png_is_reencoded_to_rgb_jpeg():
    data = encode(natural(80, 60).convert("P", palette=Image.Palette.ADAPTIVE), "PNG")
    image = normalize_image(data)
    assert image.format == "jpeg"
    assert decode(image.data).mode == "RGB"


def test_cmyk_jpeg_is_converted_to_rgb():
    data = encode(Image.new("CMYK", (64, 64), (0, 255, 255, 0)), "JPEG")  # pure red in CMYK
    image = normalize_image(data)
    assert image.format == "jpeg"
    stored = decode(image.data)
    assert stored.mode == "RGB"
    red, green, blue = stored.getpixel((32, 32))
    assert red > 200 and green < 60 and blue < 60


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_flattened_onto_white(mode):
    source = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    source.paste((0, 0, 0, 0), (0, 0, 32, 64))  # left half fully transparent black
    data = encode(source.convert(mode), "PNG")
    stored = decode(normalize_image(data).data)
    assert min(stored.getpixel((8, 32))) > 240
    assert max(stored.getpixel((56, 32))) < 15


def test_palette_transparency_is_flattened_onto_white():
    source = Image.new("P", (64, 64), 1)
    source.putpalette([0, 0, 0, 0, 0, 0])
    source.paste(0, (0, 0, 32, 64))
    data = encode(source, "PNG", transparency=0)
    stored = decode(normalize_image(data).data)
    assert min(stored.getpixel((8, 32))) > 240
    assert max(stored.getpixel((56, 32))) < 15


def test_sixteen_bit_grayscale_is_scaled_not_clipped():
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (16, 1))
    data = encode(Image.fromarray(ramp), "PNG")
    stored = np.asarray(decode(normalize_image(data).data).convert("L"), dtype=np.int64)
    assert abs(stored[8, 32] - 128) < 12
    assert stored[8, 2] < 20 and stored[8, 61] > 235


def test_exif_orientation_6_is_applied_and_reencoded():
    source = Image.new("RGB", (120, 80), (0, 0, 255))
    source.paste((255, 0, 0), (0, 0, 30, 20))  # red marks the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # the viewer rotates 90 degrees clockwise
    data = encode(source, "JPEG", exif=exif.tobytes(), quality=95)
    image = normalize_image(data)
    assert image.data != data
    assert (image.width, image.height, image.format) == (80, 120, "jpeg")
    stored = decode(image.data)
    assert stored.size == (80, 120)
    assert stored.getpixel((75, 5))[0] > 200  # the red corner is now top-right
    assert stored.getpixel((5, 5))[2] > 200
    assert 0x0112 not in stored.getexif()


def test_reencoding_strips_metadata():
    exif = Image.Exif()
    exif[0x010E] = "a description"
    data = encode(natural(64, 64), "JPEG", exif=exif.tobytes())
    stored = decode(normalize_image(data, ImageSettings(reencode="jpeg")).data)
    assert len(stored.getexif()) == 0
    assert "exif" not in stored.info and "icc_profile" not in stored.info


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_files_are_rejected(fmt):
    data = encode(natural(300, 200), fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    assert rejection(data[: len(data) // 2]).reason == "truncated_image"


def test_truncated_jpeg_is_caught_when_kept():
    data = encode(natural(1200, 900), "JPEG", quality=95)
    assert rejection(data[: len(data) * 3 // 4]).reason == "truncated_image"


def test_random_bytes_are_corrupt():
    rejected = rejection(np.random.default_rng(7).bytes(4096))
    assert rejected.reason == "corrupt_image"
    assert rejected.detail


def test_broken_pixel_data_is_corrupt():
    data = bytearray(encode(natural(64, 64), "PNG"))
    idat = data.index(b"IDAT")
    data[idat + 20 : idat + 40] = b"\xff" * 20  # garbles the deflate stream, breaks the CRC
    assert rejection(bytes(data)).reason in ("corrupt_image", "truncated_image")


def test_empty_bytes():
    assert rejection(b"").reason == "empty_image"


def test_header_declaring_a_huge_image_is_a_bomb_even_without_pillows_own_limit(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    rejected = rejection(png_header_only(100_000, 100_000))
    assert rejected.reason == "decompression_bomb"
    assert "100000x100000" in rejected.detail


def test_pixel_cap_is_checked_before_any_decoding():
    # Decoding this file would fail as truncated; the header check comes first.
    data = png_header_only(3000, 3000)
    assert rejection(data, ImageSettings(max_pixels=1_000_000)).reason == "decompression_bomb"
    assert rejection(data, ImageSettings(max_pixels=10_000_000)).reason == "truncated_image"


def test_small_file_with_huge_dimensions_is_a_bomb():
    data = encode(Image.new("1", (8200, 8200)), "PNG")  # 67M pixels in a few kB
    assert len(data) < 20_000
    assert rejection(data).reason == "decompression_bomb"


def test_pixel_cap_is_per_call():
    data = encode(natural(200, 200), "PNG")
    assert rejection(data, ImageSettings(max_pixels=39_999)).reason == "decompression_bomb"
    assert normalize_image(data, ImageSettings(max_pixels=40_000)).width == 200


def test_formats_outside_the_allowed_list_are_unsupported():
    rejected = rejection(encode(natural(64, 48), "PPM"))
    assert rejected.reason == "unsupported_format"
    assert "PPM" in rejected.detail
    bmp = encode(natural(64, 48), "BMP")
    assert rejection(bmp, ImageSettings(allowed_formats=("jpeg", "png"))).reason == "unsupported_format"
    assert normalize_image(bmp).format == "jpeg"


def test_tiff_input_is_reencoded():
    image = normalize_image(encode(natural(64, 48), "TIFF"))
    assert (image.format, image.width, image.height) == ("jpeg", 64, 48)


def test_keep_downscales_images_larger_than_max_side():
    data = encode(natural(1600, 1200), "JPEG")
    image = normalize_image(data, ImageSettings(max_side=400))
    assert (image.width, image.height, image.format) == (400, 300, "jpeg")
    assert decode(image.data).size == (400, 300)
    small = encode(natural(300, 200), "JPEG")
    assert normalize_image(small, ImageSettings(max_side=400)).data == small


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_webp_reencode_downscales_portrait_images(fmt):
    data = encode(natural(500, 1000), fmt)
    image = normalize_image(data, ImageSettings(reencode="webp", max_side=250))
    assert (image.width, image.height, image.format) == (125, 250, "webp")
    assert decode(image.data).format == "WEBP"


def test_reencode_never_upscales():
    image = normalize_image(encode(natural(120, 90), "PNG"), ImageSettings(reencode="jpeg", max_side=1000))
    assert (image.width, image.height) == (120, 90)


@pytest.mark.parametrize("reencode", ["jpeg", "webp"])
def test_reencoding_is_deterministic(reencode):
    data = encode(natural(640, 480), "JPEG")
    settings = ImageSettings(reencode=reencode, max_side=320, quality=80)
    first, second = normalize_image(data, settings), normalize_image(data, settings)
    assert first.data == second.data and first.sha256 == second.sha256
    assert first.sha256 == hashlib.sha256(first.data).hexdigest()


def test_phash_is_stable_under_reencoding_and_resizing():
    original = natural(800, 600, seed=3)
    data = encode(original, "PNG")
    kept = normalize_image(data)
    small = normalize_image(data, ImageSettings(reencode="jpeg", max_side=200, quality=60))
    webp = normalize_image(data, ImageSettings(reencode="webp", quality=50))
    assert hamming(kept.phash, small.phash) <= 6
    assert hamming(kept.phash, webp.phash) <= 6
    others = [normalize_image(encode(natural(800, 600, seed=s), "PNG")).phash for s in (4, 5, 6)]
    assert all(hamming(kept.phash, other) >= 16 for other in others)


def test_phash_matches_imagehash_on_small_images():
    image = natural(100, 80, seed=9)
    assert perceptual_hash(image) == str(imagehash.phash(image))
    assert perceptual_hash(image.convert("P")) == str(imagehash.phash(image.convert("P")))


def test_phash_of_a_large_image_stays_close_to_imagehash():
    image = natural(1600, 1200, seed=9)
    assert hamming(perceptual_hash(image), str(imagehash.phash(image))) <= 4


def test_hamming():
    assert hamming("0000000000000000", "0000000000000000") == 0
    assert hamming("ffffffffffffffff", "0000000000000000") == 64
    assert hamming("8000000000000001", "0000000000000000") == 2
    with pytest.raises(ValueError):
        hamming("ff", "fff")


def test_settings_are_validated():
    with pytest.raises(ValueError, match="reencode"):
        ImageSettings(reencode="png")
    with pytest.raises(ValueError, match="nosuchformat"):
        ImageSettings(allowed_formats=("jpeg", "nosuchformat"))
    with pytest.raises(ValueError, match="max_side"):
        ImageSettings(max_side=0)
