"""What the coverage and invented-entity checks change in `curate captions`' outcomes, on SmolLM2 rewrites.

    python bench/bench_caption_checks.py [--limit 300] [--data ../shared/data] [--cache FILE]
                                         [--batch-size 16] [--threads 1]

Alt texts: those of the demo's pairs (``curate demo``'s pairs and captions jobs,
the rows that reach the rewrite) and up to ``--limit`` ``alt`` attributes of
the HTML pages in ``extraction-dev.warc.gz`` (warcio + lxml; whitespace
collapsed, deduplicated case-insensitively, at most 3 per page; kept when the
pipeline's caption filter keeps them, with 3 to 40 words, and not a file name).
A WARC pair's metadata is its page title and its image URL, as a LAION row's
extra columns would be.

Each alt text is rewritten by the generator of ``pipelines/configs/captions-demo.yaml``
(SmolLM2-135M-Instruct, text-only prompt, its ``max_new_tokens`` and seed)
through ``synth.captions.rewrite_pairs``, the code ``curate captions`` runs, with
its retry policy, twice: judged by the checks before this change (coverage and
invented-entity checks off) and by the defaults. Generations are cached by
request (prompt and seed), so both runs see the same text for the same
request and only the retries that differ are generated again; ``--cache``
keeps them on disk between runs. Prints, for both: the share of pairs accepted
at the first try, accepted after a retry and fallen back to the alt text; per
failing reason, its share of all attempts and of the fallbacks' last failures;
how the new checks' scores spread over the first attempts that passed the old
checks, with those near the coverage threshold; and samples of each outcome.
On two busy cores a first run of the default takes about half an hour (one
torch thread, 16 requests per forward pass); a rerun over the cache, seconds.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import random
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urljoin

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curation.config import load_config  # noqa: E402
from curation.models.generator import GenerationRequest, GenerationResult, load_cached_generator  # noqa: E402
from curation.records import CaptionPair  # noqa: E402
from filters.caption import CaptionFilter  # noqa: E402
from filters.caption_checks import (  # noqa: E402
    CaptionCheckSettings,
    CaptionCoverageCheck,
    coverage,
    default_checks,
    invented_entities,
    metadata_text,
    pair_language,
    run_checks,
    synthetic_caption,
    words,
)
from pipelines.captions import CaptionsConfig  # noqa: E402
from sampledata.pairs import make_pairs_cases  # noqa: E402
from synth.captions import Outcome, PromptTemplate, rewrite_pairs  # noqa: E402

CONFIG = ROOT / "pipelines" / "configs" / "captions-demo.yaml"
MAX_ALT_WORDS = 40
PER_PAGE = 3
CHUNK = 64
_FILENAME = re.compile(r"\.(?:jpe?g|png|gif|webp|svg|bmp|tiff?)\b|^(?:img|dsc|dcim|pxl|screenshot)[\s_-]*\d", re.I)
OUTCOMES = ("accepted", "retried", "fallback")
OUTCOME_LABELS = {
    "accepted": "accepted at the first try",
    "retried": "accepted after a retry",
    "fallback": "fallback to the alt text",
}


def demo_alt_texts() -> list[str]:
    """The alt texts of the demo's pairs that reach the rewrite (``curate demo``: pairs job, captions job)."""
    cases = make_pairs_cases("http://127.0.0.1:1") + make_pairs_cases("http://127.0.0.1:1", n_good=6, seed=3)
    return list(dict.fromkeys(case.text for case in cases if case.expect == "ok"))


def warc_alt_texts(path: Path, limit: int) -> list[tuple[str, str, str]]:
    """Up to ``limit`` non-trivial ``(alt, image URL, page title)`` from the HTML pages of a WARC, in a
    fixed shuffled order."""
    import lxml.html
    from warcio.archiveiterator import ArchiveIterator

    caption_filter = CaptionFilter()
    seen: set[str] = set()
    found = []
    with open(path, "rb") as handle:
        for record in ArchiveIterator(handle):
            content_type = record.http_headers.get_header("Content-Type", "") if record.http_headers else ""
            if record.rec_type != "response" or "html" not in content_type:
                continue
            page_url = record.rec_headers.get_header("WARC-Target-URI")
            try:
                page = lxml.html.fromstring(record.content_stream().read())
            except (ValueError, lxml.etree.ParserError):
                continue
            title = " ".join((page.findtext(".//title") or "").split())
            taken = 0
            for image in page.iter("img"):
                alt = " ".join((image.get("alt") or "").split())
                if taken == PER_PAGE or alt.casefold() in seen or not 3 <= len(words(alt)) <= MAX_ALT_WORDS:
                    continue
                pair = CaptionPair(id="", source="", url="", text=alt)
                if _FILENAME.search(alt) or not caption_filter(pair).keep:
                    continue
                seen.add(alt.casefold())
                src = next((image.get(a) for a in ("data-src", "data-lazy-src", "src") if image.get(a)), "")
                found.append((alt, "" if src.startswith("data:") else urljoin(page_url, src), title))
                taken += 1
    random.Random(0).shuffle(found)
    return found[:limit]


class CachedGenerate:
    """A generator's ``generate`` that answers each distinct request once (and keeps answers on disk);
    the generator is loaded on the first request not answered yet."""

    def __init__(self, spec, path: Path | None):
        self._spec = spec
        self._path = path
        self._answers: dict[str, GenerationResult] = {}
        self.generated = 0
        self.used: set[str] = set()
        if path is not None and path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                row = json.loads(line)
                self._answers[row["key"]] = GenerationResult(**row["result"])

    @staticmethod
    def _key(request: GenerationRequest) -> str:
        return json.dumps([request.system, request.prompt, request.seed])

    def __call__(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        todo = {self._key(r): r for r in requests if self._key(r) not in self._answers}
        if todo:
            results = load_cached_generator(self._spec).generate(list(todo.values()))
            self.generated += len(results)
            for key, result in zip(todo, results):
                self._answers[key] = result
            if self._path is not None:
                self._path.parent.mkdir(parents=True, exist_ok=True)
                with self._path.open("a", encoding="utf-8") as handle:
                    for key, result in zip(todo, results):
                        handle.write(json.dumps({"key": key, "result": dataclasses.asdict(result)}) + "\n")
        self.used |= {self._key(r) for r in requests}
        return [self._answers[self._key(r)] for r in requests]


def outcome_kind(outcome: Outcome) -> str:
    if outcome.action == "accept":
        return "retried" if outcome.failures else "accepted"
    return "fallback"


def run(pairs, generate, template, settings: CaptionCheckSettings, config: CaptionsConfig, label: str):
    """``rewrite_pairs`` over all pairs in chunks, judged by ``settings`` (CLIP margin off, as in the
    rewrite step); every attempt's caption and verdict is recorded."""
    checks = default_checks(dataclasses.replace(settings, clip_margin=None))
    attempts: dict[str, list[tuple[str, str | None]]] = collections.defaultdict(list)

    def judge(pair):
        verdict = run_checks(pair, checks)
        attempts[pair.id].append((synthetic_caption(pair), verdict[1]))
        return verdict

    results = []
    start = time.perf_counter()
    for first in range(0, len(pairs), CHUNK):
        results += rewrite_pairs(pairs[first:first + CHUNK], generate, template, judge, config.rewrite.policy,
                                 config.rewrite.seed)
        print(f"  {label}: {len(results)}/{len(pairs)} pairs, {generate.generated} generated, "
              f"{time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return [(pair, outcome, attempts[pair.id]) for pair, outcome in results]


def pct(n: int, total: int) -> str:
    return f"{100 * n / max(total, 1):5.1f}% ({n})"


def report(pairs, before, after) -> None:
    n = len(pairs)
    print(f"\n## Outcomes of {n} pairs (same generations; coverage and invented-entity checks off vs on)\n")
    print("| outcome | before | after |")
    print("|---|---:|---:|")
    kinds = {label: collections.Counter(outcome_kind(o) for _, o, _ in runs) for label, runs in
             (("before", before), ("after", after))}
    for kind in OUTCOMES:
        print(f"| {OUTCOME_LABELS[kind]} | {pct(kinds['before'][kind], n)} | {pct(kinds['after'][kind], n)} |")
    for source in ("demo", "warc"):
        cells = []
        for runs in (before, after):
            mine = [outcome for pair, outcome, _ in runs if pair.source == source]
            cells.append(pct(sum(outcome_kind(o) == "fallback" for o in mine), len(mine)))
        print(f"| fallback, {source} alt texts only | {cells[0]} | {cells[1]} |")

    print("\n## Failing reasons: share of all attempts, and of all pairs by the last failure of a fallback\n")
    counts = {}
    for label, runs in (("before", before), ("after", after)):
        tried = [reason for _, _, made in runs for _, reason in made]
        last = [o.failures[-1] for _, o, _ in runs if o.action != "accept" and o.failures]
        counts[label] = (collections.Counter(r for r in tried if r), len(tried), collections.Counter(last))
    reasons = sorted(set(counts["before"][0]) | set(counts["after"][0]) | set(counts["after"][2]))
    print(f"| reason | attempts before (of {counts['before'][1]}) | attempts after (of {counts['after'][1]}) "
          f"| fallbacks before (of {n} pairs) | fallbacks after (of {n} pairs) |")
    print("|---|---:|---:|---:|---:|")
    for reason in reasons:
        print(f"| {reason} | {pct(counts['before'][0][reason], counts['before'][1])} "
              f"| {pct(counts['after'][0][reason], counts['after'][1])} "
              f"| {pct(counts['before'][2][reason], n)} | {pct(counts['after'][2][reason], n)} |")


def spread(pairs, before) -> None:
    """How coverage and invented entities spread over first attempts that passed the old checks."""
    by_id = {pair.id: pair for pair in pairs}
    check = CaptionCoverageCheck()
    shares, invented, band = [], collections.Counter(), []
    for pair, _, made in before:
        caption, reason = made[0]
        if reason is not None:
            continue
        original = by_id[pair.id]
        lang = pair_language(original.text, caption, check.language, check.min_language_score)
        shares.append(coverage(original.text, caption, lang).share)
        if 0.6 <= shares[-1] < 0.8:
            band.append((shares[-1], original, caption))
        found = invented_entities(caption, original.text + "\n" + metadata_text(original))
        invented[min(sum(map(len, found.values())), 3)] += 1
    print(f"\n## First attempts that passed the old checks ({len(shares)}): their scores on the new ones\n")
    print("| coverage below | 0.3 | 0.4 | 0.5 | 0.6 | 0.7 | 0.8 | 1.0 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    cells = [pct(sum(s < t for s in shares), len(shares)) for t in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0)]
    print("| captions | " + " | ".join(cells) + " |")
    print("\n| invented entities | 0 | 1 | 2 | 3 or more |")
    print("|---|---:|---:|---:|---:|")
    print("| captions | " + " | ".join(pct(invented[k], len(shares)) for k in range(4)) + " |")
    print(f"\nThose with coverage in [0.6, 0.8), around the default {check.min_coverage}:\n")
    for share, pair, caption in sorted(band, key=lambda item: (item[0], item[1].id)):
        print(f"- {share:.2f} alt: {pair.text!r}\n  caption: {caption!r}\n  {explain(pair, caption)}")


def explain(pair: CaptionPair, caption: str) -> str:
    lang = pair_language(pair.text, caption)
    kept = coverage(pair.text, caption, lang)
    invented = invented_entities(caption, pair.text + "\n" + metadata_text(pair))
    found = {kind: items for kind, items in invented.items() if items}
    return f"coverage {kept.share:.2f} (lost: {', '.join(kept.missing) or '-'}); invented: {found or '-'}"


def samples(pairs, before, after, per_kind: int = 3) -> None:
    by_id = {pair.id: pair for pair in pairs}
    rng = random.Random(1)
    print("\n## Samples (after)\n")
    for kind in OUTCOMES:
        chosen = [item for item in after if outcome_kind(item[1]) == kind]
        print(f"### {OUTCOME_LABELS[kind]} ({len(chosen)})\n")
        for pair, outcome, made in rng.sample(chosen, min(per_kind, len(chosen))):
            print(f"- alt: {pair.text!r}")
            for caption, reason in made:
                print(f"  - [{reason or 'accepted'}] {caption!r}")
                print(f"    {explain(by_id[pair.id], caption)}")
        print()
    newly = [(b, a) for b, a in zip(before, after) if b[1].action == "accept" and a[1].action != "accept"]
    print(f"### accepted before, fallback after ({len(newly)})\n")
    for (pair, outcome, _), (_, after_outcome, _) in rng.sample(newly, min(per_kind, len(newly))):
        print(f"- alt: {pair.text!r}")
        print(f"  - accepted before: {outcome.caption!r}")
        print(f"    after: {', '.join(after_outcome.failures)}; {explain(by_id[pair.id], outcome.caption)}")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=300, help="most WARC alt texts (default 300)")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--batch-size", type=int, default=16,
                        help="requests per forward pass (default 16; a request's text does not depend on it)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on 2 busy cores more threads run slower)")
    parser.add_argument("--cache", type=Path, default=ROOT / "bench-out" / "caption_checks_generations.jsonl",
                        help="generations kept between runs (a JSON line per request)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    config = load_config(CaptionsConfig, str(CONFIG))
    generator_spec = dataclasses.replace(config.generator, batch_size=args.batch_size)
    config = dataclasses.replace(config, generator=generator_spec)
    demo = demo_alt_texts()
    warc = warc_alt_texts(args.data / "extraction-dev.warc.gz", args.limit)
    pairs = [CaptionPair(id=f"demo-{i}", source="demo", url="", text=alt) for i, alt in enumerate(demo)]
    pairs += [CaptionPair(id=f"warc-{i}", source="warc", url=url, text=alt, meta={"page_title": title})
              for i, (alt, url, title) in enumerate(warc)]
    print(f"# Caption checks on SmolLM2 rewrites\n\n{len(demo)} demo alt texts + {len(warc)} WARC alt texts; "
          f"generator {config.generator.model}, prompt {config.rewrite.text_only_prompt}, "
          f"max_new_tokens {config.generator.settings.max_new_tokens}, temperature "
          f"{config.generator.settings.temperature}, {config.rewrite.policy.max_attempts} attempts, "
          f"fallback {config.rewrite.policy.fallback}")

    generate = CachedGenerate(config.generator, args.cache)
    template = PromptTemplate.load(config.rewrite.text_only_prompt)
    start = time.perf_counter()
    old = CaptionCheckSettings(coverage=None, invented=None)
    before = run(pairs, generate, template, old, config, "before")
    after = run(pairs, generate, template, CaptionCheckSettings(), config, "after")
    print(f"\n{len(generate.used)} distinct generations, {generate.generated} of them made this run "
          f"({time.perf_counter() - start:.0f} s), the rest read from {args.cache}")
    report(pairs, before, after)
    spread(pairs, before)
    samples(pairs, before, after)


if __name__ == "__main__":
    main()
