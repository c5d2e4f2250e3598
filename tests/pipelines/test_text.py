"""End to end: `curate text` on a generated corpus with planted duplicates, on two runners."""

import gzip
import json
import tarfile
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import zstandard

from curation.config import load_config
from manifests.manifest import load_manifest, verify_manifest
from pipelines import text
from pipelines.cli import main
from sampledata.text import BOILERPLATE, make_text_corpus
from shard_samples import MULTIPROCESS, PORTABLE

SEQ_LEN = 1024
TEST_CONFIG = f"""
dataset: text-test
packing:
  seq_len: {SEQ_LEN}
  knn: 5
  max_partition_docs: 30
shards:
  max_samples: 5
embedder:
  batch_size: 16
"""
RUNNERS = {"multiprocess": MULTIPROCESS, "portable": PORTABLE}


@pytest.fixture(scope="module")
def corpus():
    return make_text_corpus(per_topic=12, seed=5)


@pytest.fixture(scope="module")
def corpus_files(corpus, tmp_path_factory):
    directory = tmp_path_factory.mktemp("text-input")
    lines = corpus.jsonl().splitlines(keepends=True)
    third = len(lines) // 3
    (directory / "part-0.jsonl").write_bytes(b"".join(lines[:third]) + b"{not json\n")
    (directory / "part-1.jsonl.gz").write_bytes(gzip.compress(b"".join(lines[third : 2 * third])))
    (directory / "part-2.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(b"".join(lines[2 * third :])))
    return str(directory / "part-*")


@pytest.fixture(scope="module")
def runs(corpus_files, job_service, tmp_path_factory):
    config = load_config(text.TextConfig, text=TEST_CONFIG)
    outputs = {}
    for name, args in RUNNERS.items():
        out = tmp_path_factory.mktemp(name)
        if name == "portable":
            args = [*args, f"--job_endpoint={job_service}"]
        text.run(corpus_files, str(out), config, args)
        outputs[name] = out
    return outputs


def sequences(out: Path) -> list[tuple[dict, str]]:
    found = []
    for path in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(path) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        for name in sorted(members):
            if name.endswith(".json"):
                found.append((json.loads(members[name]), members[name[: -len("json")] + "txt"].decode()))
    return found


def test_both_runners_write_identical_shards(runs):
    first, second = ({p.name: p.read_bytes() for p in (runs[n] / "shards").glob("*.tar")} for n in RUNNERS)
    assert first and first == second


def test_dedup_at_three_granularities_and_filters(runs, corpus):
    out = runs["multiprocess"]
    rejects = pq.read_table(out / "rejects").to_pylist()
    by_url = {r["url"].rsplit("/", 1)[-1]: (r["step"], r["reason"]) for r in rejects if r["url"]}
    for copy in corpus.exact_copies:
        assert by_url[copy] == ("exact_dedup", "duplicate")
    for original, copy in corpus.near_copies:
        dropped = [doc for doc in (original, copy) if doc in by_url]
        assert len(dropped) == 1 and by_url[dropped[0]] == ("near_dedup", "near_duplicate"), (original, copy)
    for a, b in corpus.far_pairs:
        assert a not in by_url and b not in by_url
    for doc, step in corpus.bad.items():
        assert by_url[doc][0] == step, doc
    assert Counter(r["reason"] for r in rejects)["invalid_json"] == 1

    packed = sequences(out)
    joined = "\n".join(txt for _, txt in packed)
    assert joined.count(BOILERPLATE) == 1


def test_every_kept_document_packed_once_within_budget(runs, corpus):
    out = runs["multiprocess"]
    manifest = load_manifest(str(out / "manifest.json"))
    packed = sequences(out)
    doc_ids = [d for info, _ in packed for d in info["documents"]]
    assert len(doc_ids) == len(set(doc_ids)) == manifest["packed_records"]
    assert all(info["text_tokens"] <= SEQ_LEN for info, _ in packed)
    assert len(packed) == manifest["totals"]["samples"] and len(packed) > 5
    funnel = manifest["funnel"]
    assert funnel[-1]["out"] == manifest["packed_records"]
    rejects = pq.read_table(out / "rejects").num_rows
    assert funnel[0]["in"] == len(corpus.docs) + 1 == manifest["packed_records"] + rejects
    assert verify_manifest(str(out / "manifest.json")) == []
    assert manifest["models"][0]["role"] == "embedder" and "random-init" not in manifest["models"][0]["weights"]


def test_similar_documents_share_sequences(runs, corpus):
    topic_of_url = {d["url"]: corpus.topic.get(d["id"]) for d in corpus.docs}
    same = total = 0
    for info, _ in sequences(runs["multiprocess"]):
        topics = [topic_of_url[p["url"]] for p in info["pieces"]]
        for a, b in zip(topics, topics[1:]):
            same += a == b
            total += 1
    assert total >= 10
    assert same / total >= 0.75, f"adjacent same-topic rate {same / total:.2f}; random packing gives about 0.25"


def test_train_quality_cli_writes_a_model(tmp_path, corpus):
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps({"text": d["text"]}) + "\n" for d in corpus.docs[:30]))
    bad = tmp_path / "bad.txt"
    bad.write_text("\n\n".join("click here buy now cheap cheap offer " * 5 for _ in range(30)))
    model = tmp_path / "quality.npz"
    assert main(["train-quality", "--positive", str(good), "--negative", str(bad), "--output", str(model)]) == 0
    from filters.quality_model import QualityModelFilter

    filt = QualityModelFilter(model_path=str(model)).load_model()
    assert filt.classifier.predict_proba([corpus.docs[40]["text"]])[0] > 0.5
    assert filt.classifier.predict_proba(["buy now cheap offer click here " * 10])[0] < 0.5


def _advert(i: int) -> str:
    products = ["garden chairs", "winter boots", "phone cases", "coffee makers", "desk lamps", "running shoes"]
    product, other = products[i % len(products)], products[(i + 2) % len(products)]
    return (
        f"Get {10 + i % 40}% off all {product} this week only. Order today and we ship your {product} for free. "
        f"Our {product} deals end on Sunday, so add them to your cart now. Customers who bought {product} also "
        f"loved our {other}. Sign up for the newsletter and save another {5 + i % 10}% on your first order. "
        f"Use the code SAVE{i} at checkout, then pay in four parts with no fees. Hurry, stock is limited."
    )


def test_a_trained_quality_model_judges_inside_curate_text(tmp_path, corpus):
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps({"text": d["text"]}) + "\n" for d in corpus.docs[:40]))
    bad = tmp_path / "bad.txt"
    bad.write_text("\n\n".join(_advert(i) for i in range(40)))
    model = tmp_path / "quality.npz"
    assert main(["train-quality", "--positive", str(good), "--negative", str(bad), "--output", str(model)]) == 0
    inputs = tmp_path / "in.jsonl"
    held_out = [d for d in corpus.docs[40:] if d["url"].rsplit("/", 1)[-1] not in corpus.bad][:20]
    adverts = [{"text": _advert(100 + i), "url": f"https://shop.example/ad{i}"} for i in range(8)]
    inputs.write_text("".join(json.dumps({"text": d["text"], "url": d["url"]}) + "\n" for d in held_out + adverts))
    config = load_config(text.TextConfig, text=TEST_CONFIG, overrides=[f"filters.quality_model.model_path={model}"])
    out = tmp_path / "out"
    text.run(str(inputs), str(out), config, ["--runner=DirectRunner"])
    funnel = {row["step"]: row for row in load_manifest(str(out / "manifest.json"))["funnel"]}
    assert funnel["quality_model"]["dropped"] == {"low_quality_score": 8}, "every advert, and only the adverts"
    rejects = pq.read_table(out / "rejects").to_pylist()
    judged = {r["url"] for r in rejects if r["step"] == "quality_model"}
    assert judged == {d["url"] for d in adverts}
    assert all(dict(r["stats"])["quality_model"] < 0.5 for r in rejects if r["step"] == "quality_model")
