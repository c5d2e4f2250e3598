"""Main-content extraction fidelity: ``curation.html_extract`` next to trafilatura.

    python bench/bench_extraction.py [--data ../shared/data] [--show-misses N]

Reads ``extraction-dev.warc.gz`` (HTML pages as crawled) and its labels
``extraction-dev.json`` (per URL, snippets the extraction must keep, ``with``,
and must drop, ``without``), and scores each extractor as trafilatura scores
itself: both sides whitespace-normalised, a ``with`` snippet found is a true
positive (else a false negative), a ``without`` snippet found is a false
positive (else a true negative). Our extraction is the text segments joined
with newlines. Prints a markdown table with accuracy, precision, recall, F1
and the time spent extracting.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curation.html_extract import extract_document  # noqa: E402
from curation.warc import WarcResponse, decode_html, iter_warc  # noqa: E402

TARGET_ACCURACY = 0.913  # trafilatura 2.x default on this set, per shared/data/README.md
_SPACE = re.compile(r"\s+")


def _normalize(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def load(data_dir: Path) -> tuple[dict[str, str], dict[str, dict[str, list[str]]]]:
    """Decoded HTML per URL, and the labels per URL."""
    labels = json.loads((data_dir / "extraction-dev.json").read_text())
    pages = {}
    with open(data_dir / "extraction-dev.warc.gz", "rb") as f:
        for item in iter_warc(f, "extraction-dev.warc.gz"):
            if isinstance(item, WarcResponse) and item.url in labels:
                pages[item.url] = decode_html(item.body, item.charset)
    return pages, labels


def ours(html: str, url: str) -> str:
    return "\n".join(s.text for s in extract_document(html, url) if s.kind == "text")


def trafilatura_extractor(fast: bool) -> Callable[[str, str], str]:
    import trafilatura

    def run(html: str, url: str) -> str:
        return trafilatura.extract(html, url=url, fast=fast) or ""

    return run


def score(
    extract: Callable[[str, str], str], pages: dict[str, str], labels: dict[str, dict[str, list[str]]]
) -> tuple[dict[str, float], list[tuple[str, str, str]]]:
    """Counts and metrics for one extractor, and its misses as (url, kind, snippet)."""
    tp = fp = tn = fn = 0
    misses = []
    start = time.perf_counter()
    for url, html in pages.items():
        text = _normalize(extract(html, url))
        for snippet in labels[url].get("with", []):
            if _normalize(snippet) in text:
                tp += 1
            else:
                fn += 1
                misses.append((url, "missed", snippet))
        for snippet in labels[url].get("without", []):
            if _normalize(snippet) in text:
                fp += 1
                misses.append((url, "kept", snippet))
            else:
                tn += 1
    seconds = time.perf_counter() - start
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "accuracy": (tp + tn) / max(tp + tn + fp + fn, 1),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "seconds": seconds,
    }, misses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--show-misses", type=int, default=0, help="print this many of our misses")
    parser.add_argument("--ours-only", action="store_true", help="skip trafilatura (for tuning)")
    args = parser.parse_args()

    pages, labels = load(args.data)
    print(f"{len(pages)} pages with labels read from the WARC ({len(labels)} labelled URLs)\n")
    extractors: dict[str, Callable[[str, str], str]] = {"curation.html_extract": ours}
    if not args.ours_only:
        extractors["trafilatura extract(fast=True)"] = trafilatura_extractor(fast=True)
        extractors["trafilatura extract() default"] = trafilatura_extractor(fast=False)
    print("| extractor | accuracy | precision | recall | F1 | seconds |")
    print("|---|---|---|---|---|---|")
    results = {}
    for name, extract in extractors.items():
        metrics, misses = score(extract, pages, labels)
        results[name] = (metrics, misses)
        print(
            f"| {name} | {metrics['accuracy']:.3f} | {metrics['precision']:.3f} | {metrics['recall']:.3f} "
            f"| {metrics['f1']:.3f} | {metrics['seconds']:.1f} |"
        )
    accuracy = results["curation.html_extract"][0]["accuracy"]
    verdict = "meets" if accuracy >= TARGET_ACCURACY else "misses"
    print(f"\nours {verdict} the target accuracy >= {TARGET_ACCURACY} (trafilatura default, README)")
    for url, kind, snippet in results["curation.html_extract"][1][: args.show_misses]:
        print(f"{kind:7s} {snippet[:70]!r:74s} {url}")


if __name__ == "__main__":
    main()
