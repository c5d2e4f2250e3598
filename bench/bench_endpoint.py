"""Captions/s of `EndpointGenerator` against a loopback OpenAI-compatible server, by concurrency.

    python bench/bench_endpoint.py [--requests 64] [--delay 0.2] [--concurrency 8 16]

The server (`sampledata.llm_server.LLMServer`) answers every request after
a fixed ``--delay``, standing in for a model's latency, so throughput measures
how well the client overlaps requests: the same ``--requests`` alt-text
rewrites go through the path the pipeline uses (``load_generator`` then
``generate``) at concurrency 1 and at each ``--concurrency``. The ratio
compares a rate with N times the concurrency-1 rate; the target is >= 0.8.
Each row starts a fresh server and generator, so connection setup is included.
"""

from __future__ import annotations

import argparse
import time

from curation.models.generator import GenerationRequest, GeneratorSpec, load_generator
from sampledata.llm_server import LLMServer

TARGET_RATIO = 0.8


def _requests(n: int) -> list[GenerationRequest]:
    return [
        GenerationRequest(f'Rewrite this alt text as a detailed caption: "photo {i} of a red bicycle"', seed=i)
        for i in range(n)
    ]


def _run(delay: float, concurrency: int, requests: list[GenerationRequest]) -> tuple[float, int, int]:
    """Captions per second, how many came back ok, and the server's most requests in flight."""
    with LLMServer(delay=delay) as server:
        spec = GeneratorSpec(
            backend="endpoint", model="sample-llm", endpoint=server.base_url, concurrency=concurrency
        )
        generator = load_generator(spec)
        try:
            start = time.perf_counter()
            results = generator.generate(requests)
            elapsed = time.perf_counter() - start
        finally:
            generator.close()
        return len(requests) / elapsed, sum(result.ok for result in results), server.max_in_flight


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--delay", type=float, default=0.2, help="seconds the server takes per request")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 16])
    args = parser.parse_args()
    requests = _requests(args.requests)
    rows = [(concurrency, *_run(args.delay, concurrency, requests)) for concurrency in [1, *args.concurrency]]
    single = rows[0][1]
    print(f"\n{args.requests} requests, server delay {args.delay} s, target ratio >= {TARGET_RATIO}\n")
    print("| concurrency | captions/s | ok | server max in flight | rate / (N x concurrency-1 rate) |")
    print("|---|---|---|---|---|")
    for concurrency, rate, ok, max_in_flight in rows:
        print(f"| {concurrency} | {rate:.2f} | {ok}/{args.requests} | {max_in_flight} | "
              f"{rate / (concurrency * single):.2f} |")


if __name__ == "__main__":
    main()
