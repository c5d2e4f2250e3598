"""Main-content extraction fidelity: ``curation.html_extract`` next to trafilatura.

    python bench/bench_extraction.py [--data ../shared/data] [--show-misses N]

Reads ``extraction-dev.warc.gz`` (HTML pages as crawled) and its labels
``extraction-dev.json`` (per URL, snippets the extraction must keep, ``with``,
and must drop, ``without``), and scores each extractor as trafilatura scores
itself: both sides whitespace-normalised, a ``with`` snippet found is a true
positive (else a false negative), a ``without`` snippet found is a false
positive (else a true negative). Our extraction is the text segments joined
with newlines. Prints a markdown table with accuracy, precision, recall and F1.

Then a speed table in pages per second per core (CPU seconds of this single
process, so other load on the machine does not count): ours over the whole
read path, WARC file to documents (``iter_warc``, ``decode_html``,
``extract_document`` with images), next to trafilatura's text-only
``extract`` of the same pages (``fast=True`` and default) given the already
decoded HTML, as timed while scoring it above; and the ratio of ours to each.
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
TARGET_SPEEDUP = 2.0  # ours over trafilatura's default text-only extraction, pages/s per core
OURS = "curation.html_extract"
TRAFILATURA_FAST = "trafilatura extract(fast=True)"
TRAFILATURA_DEFAULT = "trafilatura extract() default"
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
    """Metrics for one extractor (and ``cpu_seconds`` spent in it), and its misses as (url, kind, snippet)."""
    tp = fp = tn = fn = 0
    misses = []
    cpu_seconds = 0.0
    for url, html in pages.items():
        start = time.process_time()
        extracted = extract(html, url)
        cpu_seconds += time.process_time() - start
        text = _normalize(extracted)
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
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "accuracy": (tp + tn) / max(tp + tn + fp + fn, 1),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "cpu_seconds": cpu_seconds,
    }, misses


def warc_to_documents(warc: Path) -> tuple[int, float]:
    """Pages turned into documents and CPU seconds for the whole read path of one WARC file."""
    start = time.process_time()
    pages = 0
    with open(warc, "rb") as f:
        for item in iter_warc(f, warc.name):
            if isinstance(item, WarcResponse):
                extract_document(decode_html(item.body, item.charset), item.url)
                pages += 1
    return pages, time.process_time() - start


def speed_table(warc: Path, results: dict[str, dict[str, float]], page_count: int) -> float:
    """Prints pages/s per core of ours (WARC to documents) next to the extract-only runs scored above.

    Returns:
        ours (WARC to documents) over trafilatura's default, in pages/s per core; 0.0 when
        trafilatura did not run.
    """
    pages, seconds = warc_to_documents(warc)
    ours = pages / seconds
    rows = [(f"{OURS}: WARC -> documents (read, decode, extract)", pages, seconds)]
    rows += [(f"{name}: extract of decoded HTML", page_count, m["cpu_seconds"]) for name, m in results.items()]
    print("\n| path | pages | CPU seconds | pages/s per core | ours (WARC -> documents) / this |")
    print("|---|---|---|---|---|")
    for label, count, cpu_seconds in rows:
        rate = count / cpu_seconds
        print(f"| {label} | {count} | {cpu_seconds:.1f} | {rate:.1f} | {ours / rate:.2f} |")
    default = results.get(TRAFILATURA_DEFAULT)
    return ours * default["cpu_seconds"] / page_count if default else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--show-misses", type=int, default=0, help="print this many of our misses")
    parser.add_argument("--ours-only", action="store_true", help="skip trafilatura (for tuning)")
    args = parser.parse_args()

    pages, labels = load(args.data)
    print(f"{len(pages)} pages with labels read from the WARC ({len(labels)} labelled URLs)\n")
    extractors: dict[str, Callable[[str, str], str]] = {OURS: ours}
    if not args.ours_only:
        extractors[TRAFILATURA_FAST] = trafilatura_extractor(fast=True)
        extractors[TRAFILATURA_DEFAULT] = trafilatura_extractor(fast=False)
    print("| extractor | accuracy | precision | recall | F1 |")
    print("|---|---|---|---|---|")
    results, our_misses = {}, []
    for name, extract in extractors.items():
        results[name], misses = score(extract, pages, labels)
        if name == OURS:
            our_misses = misses
        m = results[name]
        print(f"| {name} | {m['accuracy']:.3f} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} |")
    speedup = speed_table(args.data / "extraction-dev.warc.gz", results, len(pages))

    accuracy = results[OURS]["accuracy"]
    target = max(TARGET_ACCURACY, results.get(TRAFILATURA_DEFAULT, {}).get("accuracy", 0.0))
    print(f"\nours {'meets' if accuracy >= target else 'misses'} the target accuracy >= {target:.3f} "
          "(trafilatura default: README, or this run when higher)")
    if speedup:
        print(f"ours {'meets' if speedup >= TARGET_SPEEDUP else 'misses'} the target speed >= {TARGET_SPEEDUP:.0f}x "
              f"trafilatura default per core ({speedup:.2f}x)")
    for url, kind, snippet in our_misses[: args.show_misses]:
        print(f"{kind:7s} {snippet[:70]!r:74s} {url}")


if __name__ == "__main__":
    main()
