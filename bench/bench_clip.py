"""CLIP throughput on this machine: image embedding against the matmul roofline, and page scoring.

    .venv/bin/python bench/bench_clip.py [--images 128] [--single-images 16] [--bf16-images 64]
    .venv/bin/python bench/bench_clip.py pages [--data ../shared/data] [--work DIR] [--max-pages 60]
        [--sets defaults all-languages] [--precision fp32] [--threads N]

Default mode: measures the peak GEMM rate for fp32 and bf16 (best of several large GEMMs,
all threads), then ViT-B-32 image embedding through ``ClipModel.embed_images`` (open_clip
preprocessing included): one image per call in fp32, batches of 64 in fp32, and
batches of 64 in bf16 (autocast). FLOPs per image are counted with
``torch.utils.flop_counter.FlopCounterMode``. Prints a markdown table.

``pages`` mode: the CLIP step of ``curate interleaved`` (``ClipPageHandler``) on real pages,
next to the computation it replaced (every image and every sentence of a batch, whole texts
through the tokenizer, the text tower over the full 77-token context), on the same batches.
The pages are the real pages of ``DATA/*.warc.gz`` taken through ``curate interleaved
--stop-after page_dedup`` (extraction, URL dedup, language, text quality, page dedup), then
through the images step in process: image references selected by the pipeline's URL filter and
per-page cap, an image on too many pages dropped, and each URL given a generated image, since
the WARC holds no image records and nothing can be fetched here. Two sets: the pipeline's
defaults (English pages), and every language (language filter off; the first ``--max-pages``
pages with images). Prints pages/s, what reached each tower, and whether page scores, moves
and segments are identical.

In both modes the architecture is the real ViT-B-32; the weights are random because none can
be downloaded here, which does not change the cost.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import open_clip
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curation.images import ImageSettings, normalize_image  # noqa: E402
from curation.models.clip import ClipModel, ClipSpec, cpu_has_bf16_units, resolve_precision  # noqa: E402
from curation.records import ImageData, InterleavedDoc, from_row  # noqa: E402
from curation.web_pages import attach_images, select_image_refs  # noqa: E402
from filters.clip_score import SCORE_KEY  # noqa: E402
from pipelines.interleaved import InterleavedConfig  # noqa: E402
from pipelines.models import SCORE_DECIMALS, ClipPageHandler, decode_for_model  # noqa: E402
from synth.reorder import clip_inputs, page_score, reorder  # noqa: E402

MODEL = "ViT-B-32"
BATCH = 64
TARGET = 0.70
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Best wall time of ``repeats`` calls, after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def gemm_peak(dtype: torch.dtype, max_seconds: float = 1.0) -> tuple[float, str]:
    """Best GFLOP/s of square GEMMs (``torch.matmul`` and ``F.linear``), 512 up to 2048.

    Each kernel moves to the next size only while one call of it stays under
    ``max_seconds / 8``, so a kernel that is slow in this precision on this CPU is
    still measured in bounded time. ``F.linear`` is included because on some CPUs it
    reaches a faster bf16 kernel than ``torch.matmul``; it is what the model's
    linear layers run.
    """
    kernels = {
        "matmul": lambda a, b: torch.matmul(a, b),
        "linear": lambda a, b: torch.nn.functional.linear(a, b),
    }
    best, where = 0.0, ""
    for name, kernel in kernels.items():
        for n in (512, 1024, 2048):
            a = torch.randn(n, n, dtype=dtype)
            b = torch.randn(n, n, dtype=dtype)
            seconds = best_time(lambda: kernel(a, b), repeats=3)
            if 2 * n**3 / seconds / 1e9 > best:
                best, where = 2 * n**3 / seconds / 1e9, f"{name} {n}x{n}"
            if seconds > max_seconds / 8:
                break
    return best, where


def images(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (256, 320, 3), dtype=np.uint8)) for _ in range(n)]


def gflop_per_image(model: ClipModel) -> tuple[float, float]:
    """GFLOP of one image forward: (full count, count seen through ``embed_images``).

    Under ``torch.inference_mode`` PyTorch runs attention through the fused
    ``_native_multi_head_attention`` kernel, whose QKV and output projections
    ``FlopCounterMode`` does not see, so the second number is low. The full count
    runs the same architecture with autograd on, where every matmul is visible.
    """
    image = images(1)[0]
    with FlopCounterMode(display=False) as seen:
        model.embed_images([image])
    reference = open_clip.create_model(model.spec.model).eval()
    with FlopCounterMode(display=False) as full:
        reference.encode_image(model.preprocess(image).unsqueeze(0))
    return full.get_total_flops() / 1e9, seen.get_total_flops() / 1e9


def throughput(model: ClipModel, batch: list[Image.Image], per_call: int, warmup: int) -> float:
    """Images/s of ``embed_images`` on chunks of ``per_call`` images, after one call on ``warmup`` images."""
    model.embed_images(batch[:warmup])
    start = time.perf_counter()
    for i in range(0, len(batch), per_call):
        model.embed_images(batch[i : i + per_call])
    return len(batch) / (time.perf_counter() - start)


def embedding(args: argparse.Namespace) -> None:
    """The default mode: image embedding against the matmul roofline."""
    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    peaks = {name: gemm_peak(dtype) for name, dtype in DTYPES.items()}
    fastest = max(peaks, key=lambda name: peaks[name][0])

    fp32 = ClipModel.load(ClipSpec(model=MODEL, allow_random_weights=True, precision="fp32", batch_size=BATCH))
    bf16 = ClipModel.load(ClipSpec(model=MODEL, allow_random_weights=True, precision="bf16", batch_size=BATCH))
    gflop, gflop_seen = gflop_per_image(fp32)
    pool = images(max(args.images, args.single_images, args.bf16_images))
    start = time.perf_counter()
    for image in pool[: args.single_images]:
        fp32.preprocess(image)
    preprocess_s = (time.perf_counter() - start) / args.single_images

    # Emulated bf16 is ~10x slower than fp32: a full-batch warm-up would cost a minute.
    bf16_warmup = BATCH if cpu_has_bf16_units() else 2
    rows = [
        ("(a) one image per call", "fp32", throughput(fp32, pool[: args.single_images], 1, 1), args.single_images),
        (f"(b) batched, batch {BATCH}", "fp32", throughput(fp32, pool[: args.images], BATCH, BATCH), args.images),
        (
            f"(c) batched, batch {BATCH}",
            "bf16",
            throughput(bf16, pool[: args.bf16_images], BATCH, bf16_warmup),
            args.bf16_images,
        ),
    ]

    flags = "amx_bf16/avx512_bf16 present" if cpu_has_bf16_units() else "no amx_bf16/avx512_bf16"
    print(f"## CLIP {MODEL} image embedding, CPU, {threads} threads (torch {torch.__version__})\n")
    print(
        f"Target: batched >= {TARGET:.0%} of the roofline of the fastest supported precision "
        f"({fastest}, {peaks[fastest][0]:.1f} GFLOP/s).\n"
    )
    print(
        f"Weights: RANDOM (real {MODEL} architecture, allow_random_weights=True; no pretrained "
        "weights are available offline). Cost does not depend on weight values.\n"
    )
    print("GEMM peak: " + ", ".join(f"{n} {p:.1f} GFLOP/s ({w})" for n, (p, w) in peaks.items()))
    print(f"precision='auto' on this CPU picks {resolve_precision('auto', 'cpu')} ({flags}).")
    print(
        f"FLOPs per image (FlopCounterMode): {gflop:.2f} GFLOP with every matmul visible (used below); "
        f"{gflop_seen:.2f} GFLOP seen through embed_images, where inference_mode's fused attention "
        "kernel hides the QKV/output projections from the counter."
    )
    print(f"open_clip preprocessing (PIL, 320x256 -> 224): {preprocess_s * 1e3:.1f} ms/image, included below.\n")
    print("| run | precision | images | images/s | GFLOP/s | % of matching peak | % of fastest peak |")
    print("|---|---|---|---|---|---|---|")
    for name, precision, rate, n in rows:
        achieved = rate * gflop
        print(
            f"| {name} | {precision} | {n} | {rate:.2f} | {achieved:.1f} | "
            f"{achieved / peaks[precision][0]:.0%} | {achieved / peaks[fastest][0]:.0%} |"
        )
    batched = rows[1] if fastest == "fp32" else rows[2]
    share = batched[2] * gflop / peaks[fastest][0]
    print(f"\nBatched {fastest}: {share:.0%} of roofline -> target {'MET' if share >= TARGET else 'NOT met'}.")


# --------------------------------------------------------------------------- pages mode


def stage_pages(data: Path, work: Path, all_languages: bool) -> list[InterleavedDoc]:
    """The pages of ``data/*.warc.gz`` after ``curate interleaved --stop-after page_dedup`` (run once per
    ``work`` directory), in id order."""
    output = work / ("all-languages" if all_languages else "defaults")
    stage = output / "stages" / "page_dedup"
    if not list(stage.glob("pages-*.parquet")):
        command = [
            sys.executable, "-m", "pipelines.cli", "interleaved", "--input", str(data / "*.warc.gz"),
            "--output", str(output), "--stop-after", "page_dedup", "--set", "score_clip=false", "--quiet", "--no-report",
        ]
        if all_languages:
            command += ["--set", "filters.language=null"]
        subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    table = pa.concat_tables([pq.read_table(path) for path in sorted(stage.glob("pages-*.parquet"))])
    return sorted((from_row(InterleavedDoc, row) for row in table.to_pylist()), key=lambda doc: doc.id)


def generated_image(url: str, settings: ImageSettings) -> ImageData:
    """A 320x240 image made from ``url`` alone (a gradient and noise), stored as the pipeline stores images."""
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(url.encode()).digest()[:8], "little"))
    gradient = np.linspace(0, 1, 320)[None, :, None] * rng.integers(0, 256, 3)[None, None, :]
    pixels = np.clip(gradient + rng.normal(0, 40, (240, 320, 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return normalize_image(buffer.getvalue(), settings)


def with_images(docs: list[InterleavedDoc], config: InterleavedConfig) -> list[InterleavedDoc]:
    """The images step without fetching: references selected as the pipeline selects them, an image on
    too many pages dropped, every other URL given its generated image; pages left without one dropped."""
    url_filter = config.filters.image_url
    selected = [select_image_refs(doc, url_filter.judge, config.pages.max_images_per_page)[0] for doc in docs]
    pages_per_url = Counter(url for doc in selected for url in {s.image_url for s in doc.segments if s.kind == "image"})
    outcomes = {
        url: ("image_dedup", "on_too_many_pages") if config.image_dedup.too_common(pages) else generated_image(url, config.image)
        for url, pages in pages_per_url.items()
    }
    pages = [attach_images(doc, outcomes)[0] for doc in selected]
    return [page for page in pages if page.images]


def full_matrix_pages(batch: list[InterleavedDoc], model: ClipModel, margin: float) -> list[InterleavedDoc]:
    """The CLIP page step as it was before (kept here only to compare with): every image and every
    sentence of the batch embedded, whole texts through the tokenizer and the text tower over the full
    context, then the same rounding, page score and reordering as ``ClipPageHandler``."""
    inputs = [clip_inputs(doc) for doc in batch]
    images = [image for _, row in inputs for image in row if image is not None]
    sentences = [sentence for layout, _ in inputs for sentence in layout.sentences]
    image_emb = model.embed_images([decode_for_model(image, model.image_size) for image in images])
    text_emb = model._embed(sentences, lambda chunk: model._tokenizer(list(chunk)), model._model.encode_text)
    out, image_at, text_at = [], 0, 0
    for doc, (layout, row) in zip(batch, inputs):
        sim = np.full((len(row), len(layout.sentences)), np.nan, dtype=np.float64)
        present = [i for i, image in enumerate(row) if image is not None]
        block = model.similarity(image_emb[image_at : image_at + len(present)],
                                 text_emb[text_at : text_at + len(layout.sentences)])
        sim[present] = np.round(block, SCORE_DECIMALS)
        image_at += len(present)
        text_at += len(layout.sentences)
        segments, moves = reorder(layout, sim, margin)
        score = page_score(sim)
        stats = {**doc.stats, SCORE_KEY: round(score, SCORE_DECIMALS) if score == score else score}
        meta = {**doc.meta, "image_moves": [move.to_dict() for move in moves]}
        out.append(dataclasses.replace(doc, segments=segments, stats=stats, meta=meta))
    return out


@dataclasses.dataclass
class Run:
    """One path over every batch: its outputs, time, and what reached each tower."""

    outputs: list[InterleavedDoc]
    wall_s: float
    cpu_s: float
    texts: int  # texts handed to the tokenizer (a text cut again counts again)
    chars: int  # characters handed to the tokenizer
    text_rows: int  # token rows through the text tower
    text_positions: int  # token positions the text tower ran (rows x sequence length)
    images: int


def run_path(step: Callable[[list[InterleavedDoc]], list[InterleavedDoc]], batches: list[list[InterleavedDoc]],
             model: ClipModel) -> Run:
    """Runs ``step`` on every batch (after one warm-up call on the first two pages) and counts what reached the towers."""
    step(batches[0][:2])
    counts = Counter()

    def count_text(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
        counts["rows"] += args[0].shape[0]
        counts["positions"] += args[0].numel()

    def count_images(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
        counts["images"] += args[0].shape[0]

    tokenizer = model._tokenizer
    hooks = [model._model.token_embedding.register_forward_hook(count_text),
             model._model.visual.register_forward_hook(count_images)]
    model._tokenizer = CountingTokenizer(tokenizer, counts)
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        outputs = [doc for batch in batches for doc in step(batch)]
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        model._tokenizer = tokenizer
        for hook in hooks:
            hook.remove()
    return Run(outputs, wall, cpu, counts["texts"], counts["chars"], counts["rows"], counts["positions"], counts["images"])


class CountingTokenizer:
    """A tokenizer that counts the texts and characters it is given into ``counts``."""

    def __init__(self, tokenizer: Callable[[list[str]], torch.Tensor], counts: Counter):
        self._tokenizer = tokenizer
        self._counts = counts

    def __call__(self, texts: list[str]) -> torch.Tensor:
        self._counts["texts"] += len(texts)
        self._counts["chars"] += sum(len(text) for text in texts)
        return self._tokenizer(texts)

    def __getattr__(self, name: str) -> object:
        return getattr(self._tokenizer, name)


def _placements(doc: InterleavedDoc) -> list[tuple[int, int, int]]:
    return [(move["image"], move["from_anchor"], move["to_anchor"]) for move in doc.meta["image_moves"]]


def compare(before: list[InterleavedDoc], after: list[InterleavedDoc]) -> dict[str, object]:
    """How many pages have identical scores, moves (which image from where to where; and with their
    similarities too) and segments, the largest score difference, and the move count."""
    scores = [(a.stats[SCORE_KEY], b.stats[SCORE_KEY]) for a, b in zip(before, after)]
    return {
        "scores": sum(x == y or (x != x and y != y) for x, y in scores),
        "max_diff": max((abs(x - y) for x, y in scores if x == x and y == y), default=0.0),
        "moves": sum(_placements(a) == _placements(b) for a, b in zip(before, after)),
        "move_scores": sum(a.meta["image_moves"] == b.meta["image_moves"] for a, b in zip(before, after)),
        "segments": sum(a.segments == b.segments for a, b in zip(before, after)),
        "moved": sum(len(a.meta["image_moves"]) for a in before),
    }


def pages(args: argparse.Namespace) -> None:
    """The ``pages`` mode: the CLIP page step before and after, on the same real pages."""
    torch.set_num_threads(args.threads)
    config = InterleavedConfig()
    spec = ClipSpec(model=MODEL, allow_random_weights=True, precision=args.precision, batch_size=BATCH)
    model = ClipModel.load(spec)
    handler = ClipPageHandler(spec, config.reorder_margin)
    per_batch = handler.batch_elements_kwargs()["max_batch_size"]
    print(f"## CLIP {MODEL} page scoring (curate interleaved's clip_score step), {args.precision}, "
          f"{args.threads} threads (torch {torch.__version__})\n")
    print(f"Weights: RANDOM (real {MODEL} architecture); batches of {per_batch} pages as RunInference forms them; "
          "image bytes generated per URL (the WARC has no image records, nothing can be fetched here).\n")
    rows = []
    sets = {"defaults": ("English (pipeline defaults)", False, None),
            "all-languages": ("every language (language filter off)", True, args.max_pages)}
    for name, all_languages, limit in (sets[key] for key in args.sets):
        docs = with_images(stage_pages(args.data, args.work, all_languages), config)[:limit]
        batches = [docs[i : i + per_batch] for i in range(0, len(docs), per_batch)]
        layouts = [clip_inputs(doc)[0] for doc in docs]
        sentences = sum(len(layout.sentences) for layout in layouts)
        distinct = len({sentence for layout in layouts for sentence in layout.sentences})
        before = run_path(lambda batch: full_matrix_pages(batch, model, config.reorder_margin), batches, model)
        after = run_path(lambda batch: list(handler.run_inference(batch, model)), batches, model)
        same = compare(before.outputs, after.outputs)
        rows.append((name, len(docs), sentences, distinct, before, after, same))

    print("| pages | path | pages/s | pages per CPU s | wall s | CPU s | texts tokenized | characters tokenized "
          "| text-tower rows | text-tower token positions | images embedded |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, n, sentences, distinct, before, after, _ in rows:
        for label, run in (("before: full matrix", before), ("after: ClipPageHandler", after)):
            print(f"| {name}, {n} pages | {label} | {n / run.wall_s:.3f} | {n / run.cpu_s:.3f} | {run.wall_s:.1f} "
                  f"| {run.cpu_s:.1f} | {run.texts} | {run.chars} | {run.text_rows} | {run.text_positions} "
                  f"| {run.images} |")
        print(f"| {name} | after vs before | {before.wall_s / after.wall_s:.2f}x | {before.cpu_s / after.cpu_s:.2f}x "
              f"| | | {after.texts / before.texts:.1%} | {after.chars / before.chars:.1%} "
              f"| {after.text_rows / before.text_rows:.1%} | {after.text_positions / before.text_positions:.1%} "
              f"| {after.images / before.images:.1%} |")
    print()
    for name, n, sentences, distinct, _, _, same in rows:
        print(f"- {name}: {sentences} sentences on the pages ({distinct} distinct); identical page scores "
              f"{same['scores']}/{n} (largest difference {same['max_diff']:.4f}), identical moves {same['moves']}/{n} "
              f"({same['moved']} moves before; with identical similarities {same['move_scores']}/{n}), "
              f"identical segments {same['segments']}/{n}.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=128, help="images for the batched fp32 row")
    parser.add_argument("--single-images", type=int, default=16, help="images for the one-per-call row")
    parser.add_argument("--bf16-images", type=int, default=BATCH, help="images for the batched bf16 row")
    modes = parser.add_subparsers(dest="mode")
    page_mode = modes.add_parser("pages", help="the CLIP page step on real pages, before and after")
    page_mode.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="folder of *.warc.gz")
    page_mode.add_argument("--work", type=Path, default=ROOT / "bench-out" / "clip-pages",
                           help="where the pipeline's stage tables are written (reused when present)")
    page_mode.add_argument("--max-pages", type=int, default=60, help="pages with images taken from the every-language set")
    page_mode.add_argument("--sets", nargs="+", choices=("defaults", "all-languages"), default=["defaults", "all-languages"],
                           help="which page sets to run")
    page_mode.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    page_mode.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    if args.mode == "pages":
        pages(args)
    else:
        embedding(args)


if __name__ == "__main__":
    main()
