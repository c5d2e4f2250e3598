"""``curate demo``: the pipelines on generated data, with no network beyond loopback.

1. ``curate pairs`` on a LAION-style parquet whose images a loopback HTTP server serves;
2. ``curate interleaved`` on a generated WARC (pages, their image records and planted bad cases);
3. ``curate captions`` on a few of those pairs, alt texts rewritten by SmolLM2 (real weights);
4. ``curate documents`` on generated PDFs and scans (text layer or PP-OCRv4, real weights), QA
   pairs by a rule-based stand-in on loopback;
5. ``curate video`` on generated videos (and broken files), frames described, summarised and
   questioned by the same stand-in, several frames per request;
6. ``curate text`` on a generated corpus (planted duplicates and junk), embedded by
   all-MiniLM-L6-v2 (real weights) and packed into sequences;
7. ``curate mix`` over those outputs (``configs/stage-demo.yaml``): the stage manifest the
   resumable reader reads, under ``mix/stage.json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

from apache_beam.io.filesystems import FileSystems

from curation.config import load_config
from manifests.manifest import load_manifest
from manifests.mixture import StageSpec, format_stage, resolve_stage
from pipelines import captions, documents, interleaved, pairs, text, video
from pipelines.registry import check_clip_weights
from sampledata.pairs import ImageServer, make_pairs_cases, write_pairs_parquet
from sampledata.documents import write_document_inputs
from sampledata.videos import write_video_inputs
from sampledata.llm_server import LLMServer
from sampledata.text import make_text_corpus
from sampledata.warc import make_warc_corpus

CONFIGS = Path(__file__).parent / "configs"


def _fresh(output_dir: str) -> None:
    for stale in ("shards", "rejects", "input", "stages", "long"):
        shutil.rmtree(os.path.join(output_dir, stale), ignore_errors=True)


def run_demo(output_dir: str, beam_args: list[str] | None = None) -> dict[str, dict]:
    """Runs the demos under ``output_dir/{pairs,interleaved,captions,documents,video,text}``, then
    mixes their outputs into ``output_dir/mix/stage.json``; returns the manifests, the stage last."""
    manifests = {
        "pairs": run_pairs_demo(os.path.join(output_dir, "pairs"), beam_args),
        "interleaved": run_interleaved_demo(os.path.join(output_dir, "interleaved"), beam_args),
        "captions": run_captions_demo(os.path.join(output_dir, "captions"), beam_args),
        "documents": run_documents_demo(os.path.join(output_dir, "documents"), beam_args),
        "video": run_video_demo(os.path.join(output_dir, "video"), beam_args),
        "text": run_text_demo(os.path.join(output_dir, "text"), beam_args),
    }
    manifests["mix"] = run_mix_demo(os.path.join(output_dir, "mix"))
    return manifests


def run_pairs_demo(output_dir: str, beam_args: list[str] | None = None) -> dict:
    """Generates sample data, serves it on 127.0.0.1, runs ``curate pairs`` and returns the manifest."""
    _fresh(output_dir)
    input_path = os.path.join(output_dir, "input", "pairs.parquet")
    os.makedirs(os.path.dirname(input_path), exist_ok=True)
    config = load_config(pairs.PairsConfig, str(CONFIGS / "pairs-demo.yaml"))
    check_clip_weights(config)
    with ImageServer(slow_seconds=3.0) as server:
        cases = make_pairs_cases(server.base_url)
        write_pairs_parquet(cases, input_path)
        print(f"demo: {len(cases)} pairs served from {server.base_url}, input {input_path}")
        pairs.run(input_path, output_dir, config, beam_args or ["--runner=DirectRunner"])
        if server.forbidden_hits:
            raise RuntimeError("the fetcher contacted the forbidden host")
    return load_manifest(FileSystems.join(output_dir, "manifest.json"), opener=FileSystems.open)


def run_interleaved_demo(output_dir: str, beam_args: list[str] | None = None) -> dict:
    """Writes a generated WARC, runs ``curate interleaved`` on it and returns the manifest."""
    _fresh(output_dir)
    input_path = os.path.join(output_dir, "input", "pages.warc.gz")
    os.makedirs(os.path.dirname(input_path), exist_ok=True)
    corpus = make_warc_corpus()
    with open(input_path, "wb") as handle:
        handle.write(corpus.data)
    config = load_config(interleaved.InterleavedConfig, str(CONFIGS / "interleaved-demo.yaml"))
    check_clip_weights(config)
    print(f"demo: {len(corpus.pages)} pages and {len(corpus.images)} images in {input_path}")
    interleaved.run(input_path, output_dir, config, beam_args or ["--runner=DirectRunner"])
    return load_manifest(FileSystems.join(output_dir, "manifest.json"), opener=FileSystems.open)


def run_captions_demo(output_dir: str, beam_args: list[str] | None = None) -> dict:
    """Serves a few generated pairs on 127.0.0.1, rewrites their alt texts with SmolLM2, returns the manifest."""
    _fresh(output_dir)
    input_path = os.path.join(output_dir, "input", "pairs.parquet")
    os.makedirs(os.path.dirname(input_path), exist_ok=True)
    config = load_config(captions.CaptionsConfig, str(CONFIGS / "captions-demo.yaml"))
    with ImageServer(slow_seconds=3.0) as server:
        cases = [case for case in make_pairs_cases(server.base_url, n_good=6, seed=3) if case.expect in
                 ("ok", "http_404", "caption_too_short")]
        write_pairs_parquet(cases, input_path)
        print(f"demo: {len(cases)} pairs, alt texts rewritten by {config.generator.model} (text-only)")
        captions.run(input_path, output_dir, config, beam_args or ["--runner=DirectRunner"])
    return load_manifest(FileSystems.join(output_dir, "manifest.json"), opener=FileSystems.open)


def run_documents_demo(output_dir: str, beam_args: list[str] | None = None) -> dict:
    """Writes PDFs and scans (with an encrypted, a truncated and a non-PDF file), transcribes them
    (text layer or PP-OCRv4) and writes QA pairs through a rule-based stand-in served on 127.0.0.1."""
    _fresh(output_dir)
    input_dir = os.path.join(output_dir, "input")
    cases = write_document_inputs(input_dir)
    config = load_config(documents.DocumentsConfig, str(CONFIGS / "documents-demo.yaml"))
    return _with_stand_in(documents, config, os.path.join(input_dir, "*"), output_dir, beam_args,
                          f"{len(cases)} document files in {input_dir}; QA pairs")


def run_video_demo(output_dir: str, beam_args: list[str] | None = None) -> dict:
    """Writes videos (scene cuts, a rotated phone video, a copy, a long lecture, broken files), and runs
    ``curate video`` with a rule-based stand-in on 127.0.0.1 describing the frames, two per request."""
    _fresh(output_dir)
    input_dir = os.path.join(output_dir, "input")
    cases = write_video_inputs(input_dir)
    config = load_config(video.VideoConfig, str(CONFIGS / "video-demo.yaml"))
    return _with_stand_in(video, config, os.path.join(input_dir, "*.mp4"), output_dir, beam_args,
                          f"{len(cases)} video files in {input_dir}; frames described")


def run_text_demo(output_dir: str, beam_args: list[str] | None = None) -> dict:
    """Writes the generated text corpus as JSONL, runs ``curate text`` on it and returns the manifest."""
    _fresh(output_dir)
    input_path = os.path.join(output_dir, "input", "corpus.jsonl")
    os.makedirs(os.path.dirname(input_path), exist_ok=True)
    corpus = make_text_corpus(per_topic=25, seed=7)
    with open(input_path, "wb") as handle:
        handle.write(corpus.jsonl())
    config = load_config(text.TextConfig, str(CONFIGS / "text-demo.yaml"))
    print(f"demo: {len(corpus.docs)} documents in {input_path}, embedded by {config.embedder.model}")
    text.run(input_path, output_dir, config, beam_args or ["--runner=DirectRunner"])
    return load_manifest(FileSystems.join(output_dir, "manifest.json"), opener=FileSystems.open)


def run_mix_demo(output_dir: str) -> dict:
    """Resolves ``configs/stage-demo.yaml`` against the demo's outputs into ``output_dir/stage.json``."""
    spec_path = os.path.join(output_dir, "stage.yaml")
    os.makedirs(output_dir, exist_ok=True)
    shutil.copyfile(CONFIGS / "stage-demo.yaml", spec_path)  # its sources are relative to it
    stage = resolve_stage(load_config(StageSpec, spec_path), spec_path, os.path.join(output_dir, "stage.json"))
    with open(os.path.join(output_dir, "stage.json"), "w") as handle:
        json.dump(stage, handle, indent=2, sort_keys=True)
    print(format_stage(stage))
    return stage


def _with_stand_in(pipeline: Any, config: Any, input_glob: str, output_dir: str, beam_args: list[str] | None,
                   what: str) -> dict:
    """Runs ``pipeline`` with its generator pointed at a rule-based stand-in served on 127.0.0.1."""
    with LLMServer() as server:
        config = dataclasses.replace(config, generator=dataclasses.replace(config.generator, endpoint=server.base_url))
        print(f"demo: {what} by a rule-based stand-in on {server.base_url} "
              "(use --generator-model or --generator-endpoint for a real model)")
        pipeline.run(input_glob, output_dir, config, beam_args or ["--runner=DirectRunner"])
    return load_manifest(FileSystems.join(output_dir, "manifest.json"), opener=FileSystems.open)
