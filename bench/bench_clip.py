"""CLIP image-embedding throughput on this machine, against its matmul roofline.

    .venv/bin/python bench/bench_clip.py [--images 128] [--single-images 16] [--bf16-images 64]

Measures the peak GEMM rate for fp32 and bf16 (best of several large GEMMs, all
threads), then ViT-B-32 image embedding through ``ClipModel.embed_images`` (open_clip
preprocessing included): one image per call in fp32, batches of 64 in fp32, and
batches of 64 in bf16 (autocast). The architecture is the real ViT-B-32; the weights
are random because none can be downloaded here, which does not change the cost.
FLOPs per image are counted with ``torch.utils.flop_counter.FlopCounterMode``.
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import open_clip
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curation.models.clip import ClipModel, ClipSpec, cpu_has_bf16_units, resolve_precision  # noqa: E402

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=128, help="images for the batched fp32 row")
    parser.add_argument("--single-images", type=int, default=16, help="images for the one-per-call row")
    parser.add_argument("--bf16-images", type=int, default=BATCH, help="images for the batched bf16 row")
    args = parser.parse_args()

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


if __name__ == "__main__":
    main()
