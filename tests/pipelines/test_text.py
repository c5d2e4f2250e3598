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
from curation.ids import content_id
from manifests.manifest import load_manifest, verify_manifest
from pipelines import text
from pipelines.cli import main
from sampledata.text import BOILERPLATE, make_text_corpus
from shard_samples import MULTIPROCESS, PORTABLE, hugging_face_rows

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


def packing_cost(packed: list[tuple[dict, str]], seq_len: int, sep_tokens: int = 1) -> dict:
    """What the manifest's ``extra.packing`` should say, recomputed from the shards."""
    tokens = sum(info["text_tokens"] for info, _ in packed)
    firsts = [p for info, _ in packed for p in info["pieces"] if p["start_token"] == 0]
    split = [p for p in firsts if p["end_token"] < p["doc_tokens"]]
    similarities = [s for info, _ in packed for s in info["adjacent_similarity"]]
    return {
        "method": "best_fit", "seq_len": seq_len, "sequences": len(packed), "tokens": tokens,
        "padding_tokens": len(packed) * seq_len - tokens, "fill": pytest.approx(tokens / (len(packed) * seq_len)),
        "documents": len(firsts), "documents_split": len(split),
        "short_documents_split": sum(p["doc_tokens"] + sep_tokens <= seq_len for p in split),
        "adjacent_pairs": len(similarities), "adjacent_similarity": pytest.approx(sum(similarities) / len(similarities)),
    }


def test_manifest_reports_the_cost_of_packing(runs, corpus):
    out = runs["multiprocess"]
    manifest = load_manifest(str(out / "manifest.json"))
    packed = sequences(out)
    report = manifest["extra"]["packing"]
    assert report == packing_cost(packed, SEQ_LEN)
    assert report["documents"] == manifest["packed_records"]
    assert report["short_documents_split"] == 0 and report["padding_tokens"] > 0
    assert all(len(info["adjacent_similarity"]) == len(info["pieces"]) - 1 for info, _ in packed)
    topic_of_url = {d["url"]: corpus.topic.get(d["id"]) for d in corpus.docs}
    same, other = [], []
    for info, _ in packed:
        topics = [topic_of_url[p["url"]] for p in info["pieces"]]
        for a, b, similarity in zip(topics, topics[1:], info["adjacent_similarity"]):
            (same if a == b else other).append(similarity)
    assert same and min(same) > -1 and max(same) < 1
    assert not other or sum(same) / len(same) > sum(other) / len(other)


def test_cutting_at_sequence_boundaries_fills_every_sequence(tmp_path, corpus):
    inputs = tmp_path / "in.jsonl"
    kept = [d for d in corpus.docs if d["id"] in corpus.topic][:40]
    inputs.write_text("".join(json.dumps({"text": d["text"], "url": d["url"]}) + "\n" for d in kept))
    seq_len = 256
    config = load_config(text.TextConfig, text=TEST_CONFIG, overrides=[
        "packing.cut_at_boundaries=true", f"packing.seq_len={seq_len}", "packing.sep_tokens=0"])
    out = tmp_path / "out"
    text.run(str(inputs), str(out), config, ["--runner=DirectRunner"])
    packed = sequences(out)
    report = load_manifest(str(out / "manifest.json"))["extra"]["packing"]
    assert report == {**packing_cost(packed, seq_len, sep_tokens=0), "method": "cut_at_boundaries"}
    assert sorted(info["text_tokens"] for info, _ in packed)[1:] == [seq_len] * (len(packed) - 1)
    assert report["padding_tokens"] < seq_len and report["documents_split"] > 0
    spans: dict[str, list[tuple[int, int, int]]] = {}
    for info, _ in packed:
        for p in info["pieces"]:
            spans.setdefault(p["id"], []).append((p["start_token"], p["end_token"], p["doc_tokens"]))
    assert len(spans) == report["documents"]
    for pieces in spans.values():
        pieces.sort()
        assert pieces[0][0] == 0 and pieces[-1][1] == pieces[-1][2]
        assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:]))


def test_every_piece_names_its_corpus_id_and_url(runs, corpus):
    by_corpus_id = {doc["id"]: doc for doc in corpus.docs}
    pieces = [piece for info, _ in sequences(runs["multiprocess"]) for piece in info["pieces"]]
    assert pieces and len({piece["corpus_id"] for piece in pieces if piece["start_token"] == 0}) == len(
        [piece for piece in pieces if piece["start_token"] == 0])
    for piece in pieces:
        doc = by_corpus_id[piece["corpus_id"]]
        assert piece["id"] == content_id(doc["text"]) and piece["url"] == doc.get("url", "")


def test_hugging_face_datasets_reads_every_sequence_whole(runs, tmp_path):
    rows = hugging_face_rows(runs["multiprocess"], tmp_path)
    assert {key for row in rows for key in row} == {"txt", "json", "__key__", "__url__"}
    assert all(row["json"]["pieces"] and row["txt"] for row in rows)
