"""Near-dedup as Beam transforms on planted chains, stars and cliques, on two runners.

The rule under test (``pipelines/dedup.py``): visit the records in id order; a record is kept
unless it is a verified near duplicate of an already *kept* record, and a dropped record names
the smallest kept record it is a near duplicate of. So every reject names a kept record, and in
a chain ``a ~ b ~ c`` (``a`` and ``c`` not similar) ``a`` and ``c`` both stay.

Texts are concatenations of 30-word blocks of fresh words, so which texts are similar is planted:
two windows of 8 blocks that overlap in 7 have Jaccard about 0.78 (similar at 0.7), in 6 about
0.6 (not similar). Each test first checks that the signatures see exactly the planted graph.
"""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from curation.minhash import MinHashSettings, band_keys, estimated_jaccard, signature
from curation.records import ImageData, TextDoc
from filters.image_dedup import ImageDedupSettings
from pipelines.dedup import NearDedup
from pipelines.transforms import REJECTS
from shard_samples import MULTIPROCESS

RUNNERS = {"direct": ["--runner=DirectRunner"], "multiprocess": MULTIPROCESS}
SETTINGS = MinHashSettings(bands=64, rows=4, threshold=0.7)  # 256 values: estimates within about 0.03
BLOCK = 30


class Blocks:
    """Blocks of ``BLOCK`` fresh words, no word in two blocks."""

    def __init__(self, seed: int):
        self._rng = np.random.default_rng(seed)
        self._next = 0

    def take(self, count: int) -> list[list[str]]:
        blocks = []
        for _ in range(count):
            blocks.append([f"w{self._next + i}x{int(self._rng.integers(10**6))}" for i in range(BLOCK)])
            self._next += BLOCK
        return blocks


def text(blocks: list[list[str]]) -> str:
    return " ".join(word for block in blocks for word in block)


def chain(blocks: Blocks, ids: list[str]) -> dict[str, str]:
    """Windows of 8 blocks sliding by one: neighbours in ``ids`` are similar, nothing else."""
    line = blocks.take(len(ids) + 7)
    return {doc_id: text(line[i : i + 8]) for i, doc_id in enumerate(ids)}


def star(blocks: Blocks, center: str, leaves: list[str]) -> dict[str, str]:
    """Leaves each replace a different block of the center: similar to it, not to each other."""
    core = blocks.take(8)
    found = {center: text(core)}
    for k, (leaf, fresh) in enumerate(zip(leaves, blocks.take(len(leaves)))):
        found[leaf] = text(core[:k] + [fresh] + core[k + 1 :])
    return found


def clique(blocks: Blocks, ids: list[str]) -> dict[str, str]:
    """16 blocks, each copy with another one block replaced: every pair similar."""
    core = blocks.take(16)
    fresh = blocks.take(len(ids))
    return {doc_id: text(core[:k] + [fresh[k]] + core[k + 1 :]) for k, doc_id in enumerate(ids)}


def planted_corpus() -> tuple[dict[str, str], set[frozenset[str]]]:
    """Texts by id and the planted similar pairs."""
    blocks = Blocks(seed=11)
    corpus: dict[str, str] = {}
    edges: set[frozenset[str]] = set()

    def path(ids: list[str]) -> None:
        corpus.update(chain(blocks, ids))
        edges.update(frozenset(pair) for pair in zip(ids, ids[1:]))

    path(["c1-a", "c1-b", "c1-c"])  # a ~ b ~ c in id order: a and c stay
    path(["c2-a", "c2-b", "c2-c", "c2-d", "c2-e", "c2-f"])  # alternate along the chain
    path(["c3-d", "c3-a", "c3-e", "c3-b", "c3-f", "c3-c"])  # the smaller ids in the middle of each pair
    path(["c4-e", "c4-c", "c4-a", "c4-b", "c4-d"])  # smallest id in the middle
    for center, leaves in (("s1-a", ["s1-b", "s1-c", "s1-d", "s1-e"]), ("s2-c", ["s2-a", "s2-b", "s2-d", "s2-e", "s2-f"])):
        corpus.update(star(blocks, center, leaves))
        edges.update(frozenset((center, leaf)) for leaf in leaves)
    ids = ["q1-a", "q1-b", "q1-c", "q1-d", "q1-e"]
    corpus.update(clique(blocks, ids))
    edges.update(frozenset(pair) for pair in combinations(ids, 2))
    corpus["q1-f"] = corpus["q1-c"]  # an exact copy joins the clique
    edges.update(frozenset(("q1-f", other)) for other in ids)
    corpus.update({f"u-{i}": text(blocks.take(8)) for i in range(3)})  # unique texts
    return corpus, edges


# The greedy rule on the planted graph, by hand.
EXPECTED_KEPT = {
    "c1-a", "c1-c",  # c1-b ~ c1-a dropped; c1-c's only near duplicate is c1-b
    "c2-a", "c2-c", "c2-e",  # every other link of the chain
    "c3-a", "c3-b", "c3-c",  # d ~ a, e ~ a and b, f ~ b and c: dropped
    "c4-a", "c4-d", "c4-e",  # e - c - a - b - d: c and b ~ a dropped, so e and d stay
    "s1-a",  # the center has the smallest id: every leaf goes
    "s2-a", "s2-b", "s2-d", "s2-e", "s2-f",  # the center s2-c ~ s2-a goes, the leaves stay
    "q1-a",
    "u-0", "u-1", "u-2",
}


def similar_pairs(corpus: dict[str, str], settings: MinHashSettings) -> set[frozenset[str]]:
    """Pairs that share a band key and whose signatures verify: the graph near-dedup sees."""
    sigs = {doc_id: signature(t, settings) for doc_id, t in corpus.items()}
    keys = {doc_id: set(band_keys(sig, settings)) for doc_id, sig in sigs.items()}
    return {
        frozenset((x, y))
        for x, y in combinations(sorted(corpus), 2)
        if keys[x] & keys[y] and estimated_jaccard(sigs[x], sigs[y]) >= settings.threshold
    }


def reference(ids: list[str], edges: set[frozenset[str]]) -> dict[str, str]:
    """The rule, sequentially: each id to the kept id standing for it (itself when kept)."""
    keeper: dict[str, str] = {}
    for x in sorted(ids):
        kept_neighbours = [y for y in keeper if keeper[y] == y and frozenset((x, y)) in edges]
        keeper[x] = min(kept_neighbours, default=x)
    return keeper


def run_near_dedup(corpus: dict[str, str], args: list[str], out: Path) -> tuple[set[str], dict[str, tuple]]:
    """(kept ids, {rejected id: (step, reason, detail)}) of NearDedup over ``corpus``."""
    docs = [TextDoc(id=doc_id, source="test", url=f"https://example.org/{doc_id}", text=t) for doc_id, t in corpus.items()]
    with beam.Pipeline(options=PipelineOptions(args)) as pipeline:
        outputs = pipeline | beam.Create(docs) | NearDedup(SETTINGS, step="near_dedup")
        kept = outputs.kept | "KeptRows" >> beam.Map(lambda d: json.dumps(["kept", d.id]))
        rejects = outputs[REJECTS] | "RejectRows" >> beam.Map(
            lambda r: json.dumps(["reject", r.id, r.step, r.reason, r.detail])
        )
        _ = (kept, rejects) | beam.Flatten() | beam.io.WriteToText(str(out / "rows"))
    rows = [json.loads(line) for path in sorted(out.glob("rows*")) for line in path.read_text().splitlines()]
    kept_ids = [row[1] for row in rows if row[0] == "kept"]
    rejected = {row[1]: tuple(row[2:]) for row in rows if row[0] == "reject"}
    assert len(kept_ids) == len(set(kept_ids)) and len(kept_ids) + len(rejected) == len(rows) == len(corpus)
    return set(kept_ids), rejected


@pytest.fixture(scope="module")
def planted():
    corpus, edges = planted_corpus()
    assert similar_pairs(corpus, SETTINGS) == edges, "the signatures see exactly the planted graph"
    keeper = reference(list(corpus), edges)
    assert {x for x, k in keeper.items() if x == k} == EXPECTED_KEPT
    return corpus, edges, keeper


@pytest.mark.parametrize("runner", RUNNERS)
def test_every_reject_names_a_kept_similar_record(planted, runner, tmp_path):
    corpus, edges, keeper = planted
    kept, rejected = run_near_dedup(corpus, RUNNERS[runner], tmp_path)
    assert kept == EXPECTED_KEPT
    for doc_id, (step, reason, detail) in rejected.items():
        assert (step, reason) == ("near_dedup", "near_duplicate")
        named = detail.removeprefix("kept ")
        assert named in kept, f"{doc_id} names {named!r}, which was not kept"
        assert frozenset((doc_id, named)) in edges, f"{doc_id} names {named!r}, not a near duplicate of it"
        assert named == keeper[doc_id], "the smallest kept near duplicate"


def random_windows(seed: int, docs: int = 90) -> dict[str, str]:
    """Windows of 8 blocks at random places on three lines of 30 blocks, under random ids:
    chains, stars, cliques and exact copies as they fall."""
    rng = np.random.default_rng(seed)
    blocks = Blocks(seed)
    lines = [blocks.take(30) for _ in range(3)]
    corpus = {}
    for _ in range(docs):
        line, start = lines[int(rng.integers(3))], int(rng.integers(23))
        corpus[f"{int(rng.integers(2**40)):010x}"] = text(line[start : start + 8])
    return corpus


def test_rounds_only_move_work_and_random_corpora_follow_the_rule(tmp_path):
    """Every number of parallel rounds gives the rule exactly (the rest is settled in id order)."""
    corpus = random_windows(5)
    keeper = reference(list(corpus), similar_pairs(corpus, SETTINGS))
    kept_ids = {x for x, k in keeper.items() if x == k}
    assert 10 < len(kept_ids) < len(corpus) - 20
    docs = [TextDoc(id=doc_id, source="test", url="", text=t) for doc_id, t in corpus.items()]
    with beam.Pipeline(options=PipelineOptions(RUNNERS["direct"])) as pipeline:
        records = pipeline | beam.Create(docs)
        for rounds in (0, 1, 3):
            outputs = records | f"Dedup{rounds}" >> NearDedup(SETTINGS, step="near_dedup", rounds=rounds)
            kept = outputs.kept | f"Kept{rounds}" >> beam.Map(lambda d: json.dumps([d.id, d.id]))
            rejects = outputs[REJECTS] | f"Rejects{rounds}" >> beam.Map(
                lambda r: json.dumps([r.id, r.detail.removeprefix("kept ")])
            )
            _ = (
                (kept, rejects)
                | f"All{rounds}" >> beam.Flatten()
                | f"Write{rounds}" >> beam.io.WriteToText(str(tmp_path / f"r{rounds}"))
            )
    for rounds in (0, 1, 3):
        rows = [json.loads(line) for path in tmp_path.glob(f"r{rounds}-*") for line in path.read_text().splitlines()]
        assert dict(rows) == keeper and len(rows) == len(corpus), rounds


def test_rounds_are_checked():
    with pytest.raises(ValueError):
        NearDedup(SETTINGS, step="near_dedup", rounds=-1)


# --------------------------------------------------------------------------- images


def flipped(base: int, bits: range | list[int] = ()) -> str:
    value = base
    for bit in bits:
        value ^= 1 << bit
    return f"{value:016x}"


A, B, C = 0x0F0F_3C3C_5A5A_9999, 0xF0F0_C3C3_A5A5_6666, 0x3333_5555_0F0F_00FF  # 32 or more bits apart

# sha256 (its order decides) -> pHash, for max_distance 4.
PLANTED_IMAGES = {
    # a chain: each 4 bits from the next, 8 or more from the others
    "a1": flipped(A), "a2": flipped(A, range(0, 4)), "a3": flipped(A, range(0, 8)), "a4": flipped(A, range(0, 12)),
    "a5": flipped(A, range(0, 16)),
    # a star whose center b2 is a near copy of b1; the leaves are 6 bits from each other
    "b1": flipped(B, range(20, 23)), "b2": flipped(B), "b3": flipped(B, range(23, 26)), "b4": flipped(B, range(26, 29)),
    # a clique: all within 4 bits of each other
    "c1": flipped(C, [40]), "c2": flipped(C, [41]), "c3": flipped(C, [40, 41, 42]), "c4": flipped(C, [43]),
}
IMAGE_EXPECTED = {  # sha256 -> the canonical image it becomes
    "a1": "a1", "a2": "a1", "a3": "a3", "a4": "a3", "a5": "a5",
    "b1": "b1", "b2": "b1", "b3": "b3", "b4": "b4",
    "c1": "c1", "c2": "c1", "c3": "c1", "c4": "c1",
}


def run_image_dedup(images: dict[str, str], args: list[str], out: Path) -> dict[str, str]:
    """{url: sha256 of the image the page gets} from DedupImages, each image on one page."""
    from pipelines.interleaved import DedupImages

    resolved = [
        (f"https://img.example/{sha}.png", [f"page-{sha}"], ImageData(sha, phash, 8, 8, "png", sha.encode()))
        for sha, phash in images.items()
    ]
    with beam.Pipeline(options=PipelineOptions(args)) as pipeline:
        _ = (
            pipeline
            | beam.Create(resolved)
            | DedupImages(ImageDedupSettings(max_distance=4, max_pages=10))
            | beam.Map(lambda kv: json.dumps([kv[1][0], getattr(kv[1][1], "sha256", None), kv[0]]))
            | beam.io.WriteToText(str(out / "rows"))
        )
    rows = [json.loads(line) for path in sorted(out.glob("rows*")) for line in path.read_text().splitlines()]
    assert len(rows) == len(images) and all(page == f"page-{url.rsplit('/', 1)[1][:-4]}" for url, _, page in rows)
    return {url.rsplit("/", 1)[1][: -len(".png")]: sha for url, sha, _ in rows}


@pytest.mark.parametrize("runner", RUNNERS)
def test_every_perceptual_copy_becomes_a_kept_near_copy(runner, tmp_path):
    distance = {(x, y): bin(int(PLANTED_IMAGES[x], 16) ^ int(PLANTED_IMAGES[y], 16)).count("1")
                for x in PLANTED_IMAGES for y in PLANTED_IMAGES}
    edges = {frozenset((x, y)) for (x, y), d in distance.items() if x != y and d <= 4}
    assert reference(list(PLANTED_IMAGES), edges) == IMAGE_EXPECTED
    became = run_image_dedup(PLANTED_IMAGES, RUNNERS[runner], tmp_path)
    assert became == IMAGE_EXPECTED
    kept = {sha for sha, canonical in became.items() if sha == canonical}
    for sha, canonical in became.items():
        assert canonical in kept and distance[sha, canonical] <= 4
