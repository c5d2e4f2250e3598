"""Hostile images against curation.images (issue 17): decodes bounded in time and memory by
estimates from the header, and a per-process budget of decode memory.

Every input is made here. Memory is measured in a child process (ru_maxrss), so a decode
that would hold a gigabyte shows up as one; time bounds leave a wide margin.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from curation.images import DecodeBudget, ImageRejected, ImageSettings, decode_cost, normalize_image

ROOT = Path(__file__).resolve().parents[2]


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def progressive_jpeg(side: int, scans: int) -> bytes:
    """A flat progressive JPEG whose last (refinement) scan is repeated until it has ``scans`` scans."""
    data = encode(Image.new("RGB", (side, side), (120, 130, 140)), "JPEG", progressive=True, quality=90)
    last_scan = data[data.rindex(b"\xff\xda") : -2]
    return data[:-2] + last_scan * (scans - data.count(b"\xff\xda")) + b"\xff\xd9"


def rejection(data: bytes, settings: ImageSettings = ImageSettings()) -> ImageRejected:
    with pytest.raises(ImageRejected) as caught:
        normalize_image(data, settings)
    return caught.value


# A child process: reads image files, normalises each, reports the outcome and its peak memory.
CHILD = """
import json, resource, sys, threading
sys.path.insert(0, {root!r})
from curation.images import ImageRejected, ImageSettings, normalize_image
paths, settings, threads = json.loads(sys.argv[1])
settings = ImageSettings(**settings)
datas = [open(path, "rb").read() for path in paths]
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
outcomes = [None] * len(datas)
def run(i):
    try:
        outcomes[i] = normalize_image(datas[i], settings).format
    except ImageRejected as error:
        outcomes[i] = error.reason
if threads:
    workers = [threading.Thread(target=run, args=(i,)) for i in range(len(datas))]
    [w.start() for w in workers]
    [w.join() for w in workers]
else:
    [run(i) for i in range(len(datas))]
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"outcomes": outcomes, "peak_mib": (peak - base) / 1024}}))
"""


def measure(paths, settings: dict | None = None, threads: bool = False) -> dict:
    args = json.dumps([[str(p) for p in paths], settings or {}, threads])
    done = subprocess.run(
        [sys.executable, "-c", CHILD.format(root=str(ROOT)), args],
        capture_output=True, text=True, timeout=300, check=True,
    )
    return json.loads(done.stdout)


# --------------------------------------------------------------------------- time


def test_progressive_jpeg_with_many_refinement_scans_is_refused_before_decoding():
    data = progressive_jpeg(2000, 1500)  # ~45 kB; decoding it takes 6-30 s of CPU
    assert len(data) < 100_000
    start = time.monotonic()
    rejected = rejection(data)
    assert rejected.reason == "decode_timeout"
    assert time.monotonic() - start < 3.0
    assert "2000x2000" in rejected.detail


def test_the_reviewed_progressive_jpeg_is_refused_at_once():
    data = progressive_jpeg(8000, 1500)  # the review's file: 90 s of CPU, accepted
    start = time.monotonic()
    assert rejection(data).reason == "decode_timeout"
    assert rejection(data, ImageSettings(reencode="jpeg", max_side=512)).reason == "decode_timeout"
    assert time.monotonic() - start < 5.0


def test_ordinary_progressive_jpegs_are_decoded():
    data = encode(Image.new("RGB", (3000, 2000), (10, 200, 30)), "JPEG", progressive=True)
    assert normalize_image(data).format == "jpeg"
    assert normalize_image(data, ImageSettings(reencode="webp", max_side=600)).width == 600


def test_scans_in_an_exif_thumbnail_are_not_counted():
    thumbnail = progressive_jpeg(64, 40)  # 40 SOS markers inside an APP15 segment of the header
    body = encode(Image.new("RGB", (1000, 1000), (5, 5, 5)), "JPEG")
    data = body[:2] + b"\xff\xef" + (len(thumbnail) + 2).to_bytes(2, "big") + thumbnail + body[2:]
    image = Image.open(io.BytesIO(data))
    _, seconds = decode_cost(image, data)
    assert seconds < 1_000_000 / 2.5e7 + 0.01  # one scan: no progressive work counted


def test_decode_time_limit_is_a_setting():
    data = encode(Image.new("RGB", (2000, 2000), (1, 2, 3)), "JPEG", progressive=True)
    assert rejection(data, ImageSettings(max_decode_seconds=0.01)).reason == "decode_timeout"
    assert normalize_image(data, ImageSettings(max_decode_seconds=5)).width == 2000


# --------------------------------------------------------------------------- memory


@pytest.fixture(scope="module")
def costly_images(tmp_path_factory):
    """8000x8000 images under the 64M pixel cap whose decode held 1.0-1.4 GB each."""
    directory = tmp_path_factory.mktemp("costly")
    side = 8000
    files = {
        "gray16.png": lambda: encode(Image.new("I;16", (side, side), 300), "PNG"),
        "int32.tif": lambda: encode(
            Image.fromarray(np.zeros((side, side), np.int32), "I"), "TIFF", compression="tiff_adobe_deflate"
        ),
        "rgba.webp": lambda: encode(Image.new("RGBA", (side, side), (9, 9, 9, 9)), "WEBP", method=0),
        "rgb.webp": lambda: encode(Image.new("RGB", (side, side), (9, 9, 9)), "WEBP", method=0),
    }
    paths = []
    for name, make in files.items():
        data = make()
        assert len(data) < 400_000
        (directory / name).write_bytes(data)
        paths.append(directory / name)
    return paths


def test_costly_decodes_are_refused_and_hold_little_memory(costly_images):
    report = measure(costly_images)
    assert report["outcomes"] == ["decode_memory"] * len(costly_images)
    assert report["peak_mib"] < 200  # each one decoded held 1.0-1.4 GB


def test_decode_memory_limit_is_a_setting():
    data = encode(Image.new("I;16", (2000, 2000), 300), "PNG")
    assert rejection(data, ImageSettings(max_decode_bytes=20 * 2**20)).reason == "decode_memory"
    assert normalize_image(data).width == 2000


@pytest.mark.parametrize(
    "name, make, reencode",
    [
        ("gray16.png", lambda: encode(Image.new("I;16", (3000, 3000), 300), "PNG"), "keep"),
        ("rgba.webp", lambda: encode(Image.new("RGBA", (3000, 3000), (9,) * 4), "WEBP", method=0), "keep"),
        ("rgba.png", lambda: encode(Image.new("RGBA", (3000, 3000), (9, 9, 9, 9)), "PNG"), "jpeg"),
        ("prog.jpg", lambda: encode(Image.new("RGB", (4000, 3000), (9,) * 3), "JPEG", progressive=True), "jpeg"),
    ],
)
def test_the_estimate_bounds_the_measured_memory(tmp_path, name, make, reencode):
    data = make()
    path = tmp_path / name
    path.write_bytes(data)
    report = measure([path], {"reencode": reencode})
    assert report["outcomes"] == ["jpeg"]
    estimate, _ = decode_cost(Image.open(io.BytesIO(data)), data)
    assert report["peak_mib"] * 2**20 <= estimate


def test_concurrent_decodes_share_the_worker_budget(tmp_path):
    paths = []
    for i in range(4):
        paths.append(tmp_path / f"{i}.png")
        paths[-1].write_bytes(encode(Image.new("RGBA", (3000, 3000), (i, 9, 9, 9)), "PNG"))
    estimate, _ = decode_cost(Image.open(paths[0]), paths[0].read_bytes())
    budget = {"reencode": "jpeg", "max_decode_bytes": estimate, "worker_decode_bytes": int(estimate * 1.5)}
    report = measure(paths, budget, threads=True)
    assert report["outcomes"] == ["jpeg"] * 4
    assert report["peak_mib"] * 2**20 < 2.2 * estimate  # four at once would hold ~4 estimates


def test_decode_budget_makes_holders_wait():
    budget = DecodeBudget(100)
    inside, most = [0], [0]
    lock = threading.Lock()

    def hold():
        with budget.hold(60):
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            time.sleep(0.05)
            with lock:
                inside[0] -= 1

    workers = [threading.Thread(target=hold) for _ in range(4)]
    [w.start() for w in workers]
    [w.join(10) for w in workers]
    assert most[0] == 1
    assert budget.in_use == 0
    with budget.hold(1_000):  # more than the whole budget waits for all of it, never forever
        assert budget.in_use == 100


def test_budget_settings_are_validated():
    with pytest.raises(ValueError):
        ImageSettings(max_decode_bytes=0)
    with pytest.raises(ValueError):
        ImageSettings(max_decode_seconds=-1)
    with pytest.raises(ValueError):
        ImageSettings(max_decode_bytes=2**31, worker_decode_bytes=2**30)
