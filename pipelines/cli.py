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
from typing import TYPE_CHECKING, Any, Sequence

import yaml
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from curation import __version__
from curation.config import ConfigError, load_config, to_mapping
from curation.models.clip import RandomWeightsRefused
from manifests.manifest import canonical_json, load_manifest, verify_manifest, why_empty
from manifests.mixture import MixtureError, StageSpec, format_stage, resolve_stage
from pipelines import console
from pipelines.executor import BudgetExceeded, run_recipe
from pipelines.io import read_stage_funnel
from pipelines.recipe import RecipeError, plan_run
from pipelines.registry import PIPELINE_MODULES, PipelineCommand, pipeline_commands

if TYPE_CHECKING:
    from manifests.report import Storage

RUNNER_HELP = (
    "Any other --flag is a Beam pipeline option, e.g. --runner=DirectRunner "
    "--direct_running_mode=multi_processing --direct_num_workers=4, "
    "--runner=PortableRunner --job_endpoint=localhost:8099, or "
    "--runner=DataflowRunner --project=P --region=R --temp_location=gs://B/tmp."
)


def _add_pipeline(commands: Any, command: PipelineCommand) -> None:
    parser = commands.add_parser(
        command.name, help=command.help, description=command.description + " " + RUNNER_HELP, allow_abbrev=False
    )
    parser.add_argument("--input", nargs="+" if command.many_inputs else None,
                        help="input glob (local, gs://, s3://); not needed with --resume-from")
    parser.add_argument("--output", required=True, help="output directory (local, gs://, s3://)")
    parser.add_argument("--config", help="YAML config file (local, gs://, s3://); unknown keys are errors")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one config key, e.g. --set shards.max_samples=5000 (repeatable); "
        "KEY=null switches a filter off",
    )
    parser.add_argument(
        "--allow-network", dest="allow_networks", action="append", default=[], metavar="CIDR",
        help="let the fetcher reach this otherwise-forbidden network (repeatable; "
        "config key fetch.allow_networks), e.g. 127.0.0.1/32 for a local test server",
    )
    parser.add_argument(
        "--stop-after", metavar="STAGE",
        help="write this stage's records as Parquet under OUTPUT/stages/STAGE/ and stop; "
        "an unknown stage is refused with the list of this pipeline's stages",
    )
    parser.add_argument(
        "--resume-from", metavar="STAGE",
        help="start from the stage tables an earlier run wrote under OUTPUT/stages/STAGE/ instead of --input",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress line (warnings still show once each, and are summarised)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as YAML and exit")
    parser.add_argument("--no-report", action="store_true", help="do not write OUTPUT/report.html at the end of the run")
    groups: dict[str, Any] = {}
    for flag in command.flags:
        target = parser
        if flag.group:
            if flag.group not in groups:
                groups[flag.group] = parser.add_mutually_exclusive_group()
            target = groups[flag.group]
        key = f" (config key {flag.key})" if flag.key else ""
        if flag.metavar:
            target.add_argument(flag.flag, metavar=flag.metavar, type=flag.value_type, help=flag.help + key)
        else:
            target.add_argument(flag.flag, action="store_true", help=flag.help + key)


def build_parser(pipelines: Sequence[str] = PIPELINE_MODULES) -> argparse.ArgumentParser:
    """The ``curate`` parser, with a subcommand for each pipeline of ``pipelines`` (every one by
    default) and for each of the other commands."""
    parser = argparse.ArgumentParser(
        prog="curate",
        description="Multimodal pre-training data curation: Beam pipelines to webdataset shards + manifests.",
        allow_abbrev=False,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for command in pipeline_commands(pipelines):
        _add_pipeline(commands, command)

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

    mix = commands.add_parser(
        "mix",
        help="resolve a stage mixture (YAML: sources by manifest, weights, minimum shares) into a stage manifest",
        description="Read a stage spec (sources by dataset manifest, weights by tokens or samples, a minimum "
        "share per source, the sequence length, a cap on repeats), resolve it against the sources' manifests "
        "and write OUTPUT/stage.json, which manifests.reader.mixture_dataset reads: the samples each source "
        "gives one epoch, the tokens and share that realises, the repeat factor each weight implies. Warns "
        "when a source repeats past the cap; exit status 2 naming the source when a weight cannot be met.",
        allow_abbrev=False,
    )
    mix.add_argument("spec", help="stage spec, YAML (local, gs://, s3://)")
    mix.add_argument("--output", required=True, help="output directory for stage.json")
    mix.add_argument("--no-report", action="store_true", help="do not write OUTPUT/report.html")

    report = commands.add_parser(
        "report",
        help="write the HTML report of a run's output (written at the end of every run unless --no-report)",
        description="Write one static HTML page, readable offline, about the output of a run (DIR/manifest.json) "
        "or of `curate mix` (DIR/stage.json): the funnel with every drop reason, samples and tokens per shard "
        "and per source, score histograms, a gallery of kept and of rejected samples, the models (random "
        "weights flagged) and the resolved config.",
        allow_abbrev=False,
    )
    report.add_argument("dir", help="output directory of a run (local, gs://, s3://)")
    report.add_argument("--output", metavar="FILE", help="where to write the page (default: DIR/report.html)")

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
        help="run `curate pairs`, `interleaved`, `captions`, `documents`, `video` and `text` on generated sample data, "
        "then `curate mix` over their outputs; no network",
        description="Generate images and a LAION-style parquet (good pairs plus broken ones: 404s, a slow "
        "server, corrupt and truncated files, a pixel bomb, an oversized body, a redirect to a "
        "forbidden address, junk captions, duplicates), serve them on 127.0.0.1 and run the pairs "
        "pipeline into OUTPUT/pairs/; then generate a WARC (pages in several layouts with their image "
        "records, boilerplate, duplicate pages, a logo-like picture on many pages, a truncated gzip "
        "member) and run the interleaved pipeline into OUTPUT/interleaved/. Both use a tiny "
        "random-weight CLIP. Then rewrite a few alt texts with SmolLM2 into OUTPUT/captions/, and "
        "transcribe generated PDFs and scans (with an encrypted, a truncated and a non-PDF file) into "
        "OUTPUT/documents/, QA pairs by a rule-based stand-in; then cut, sample and describe generated "
        "videos (a rotated phone video, a copy, a long lecture routed to long/, truncated, garbled, "
        "random and audio-only files) into OUTPUT/video/, by the same stand-in; pack a generated text "
        "corpus (all-MiniLM-L6-v2 embeddings) into OUTPUT/text/; and mix the six outputs into the stage "
        "manifest OUTPUT/mix/stage.json. Each prints its funnel. No network beyond loopback.",
    )
    demo.add_argument("--output", default="demo-out", help="output directory (default: demo-out)")
    demo.add_argument("--quiet", action="store_true", help="no progress line")
    return parser


def resolve_config(command: PipelineCommand, args: argparse.Namespace) -> Any:
    """The config of a pipeline run: the file, then ``--set`` overrides, then the dedicated flags."""
    if command.check is not None:
        command.check(args)
    overrides = list(args.overrides)
    for flag in command.flags:
        overrides += flag.overrides(getattr(args, flag.dest))
    config = load_config(command.config, args.config, overrides, opener=FileSystems.open)
    if not args.allow_networks:
        return config
    if not hasattr(config, "fetch"):
        raise ConfigError(f"curate {command.name} fetches nothing: --allow-network does not apply")
    fetch = dataclasses.replace(config.fetch, allow_networks=tuple(config.fetch.allow_networks) + tuple(args.allow_networks))
    return dataclasses.replace(config, fetch=fetch)


def _funnel_rows(title: str, steps: list[dict]) -> list[str]:
    lines = [f"{title:<16}{'in':>8}{'out':>8}  dropped"]
    for step in steps:
        dropped = ", ".join(f"{k}={v}" for k, v in sorted(step["dropped"].items())) or "-"
        fallback = step.get("fallback", {})
        if fallback:
            dropped += "; fallback " + ", ".join(f"{k}={v}" for k, v in sorted(fallback.items()))
        lines.append(f"{step['step']:<16}{step['in']:>8}{step['out']:>8}  {dropped}")
    return lines


def _is_funnel(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(row, dict) and "step" in row for row in value)


def format_funnel(manifest: dict) -> str:
    """The manifest's totals and funnel (and item funnels, when it has some) as a readable table."""
    lines = _funnel_rows("step", manifest["funnel"])
    totals = manifest["totals"]
    lines.append(
        f"shards={totals['shards']} samples={totals['samples']} bytes={totals['bytes']} "
        f"text_tokens={totals['text_tokens']} visual_tokens={totals['visual_tokens']} "
        f"dead_letters={manifest['dead_letters']}"
    )
    for key, value in sorted(manifest.get("extra", {}).items()):
        if _is_funnel(value):
            lines.extend(_funnel_rows(key.removesuffix("_funnel").replace("_", " ") + " step", value))
    lines.extend(f"{m['role']} {m['name']}: {m['note']}" for m in manifest.get("models", []) if m.get("note"))
    lines.extend(f"WARNING: {w}" for w in manifest.get("warnings", []))
    return "\n".join(lines)


def _run_pipeline(command: PipelineCommand, args: argparse.Namespace, beam_args: list[str]) -> int:
    if not args.input and not args.resume_from and not args.print_config:
        raise ConfigError(f"curate {command.name} needs --input (or --resume-from a stage under --output)")
    config = resolve_config(command, args)
    if args.print_config:
        print(yaml.safe_dump(to_mapping(config), sort_keys=False), end="")
        return 0
    recipe = command.recipe(config)
    plan_run(recipe, args.stop_after, args.resume_from)  # refuses bad stage options before anything runs
    if command.before_run is not None:
        command.before_run(config)
    manifest_path = FileSystems.join(args.output, "manifest.json")
    with console.session(quiet=args.quiet):
        try:
            inputs = ",".join(args.input) if command.many_inputs and args.input else args.input
            ran = run_recipe(recipe, inputs, args.output, beam_args, args.stop_after, args.resume_from)
        except BudgetExceeded as error:
            _report(args, manifest_path)
            print(f"curate: run failed: {error}", file=sys.stderr)
            return 1
        if ran:
            _report(args, manifest_path)
    if not ran:
        print("dry run: the job was translated, not run")
    return 0


def _report(args: argparse.Namespace, manifest_path: str) -> None:
    """The funnel (of the manifest, or of the stage a run stopped at), the warnings summary and
    one line per output."""
    if args.stop_after:
        stage = FileSystems.join(args.output, "stages", args.stop_after)
        print("\n".join(_funnel_rows("step", read_stage_funnel(stage)["funnel"])))
        outputs = {"stage tables": stage, "rejects": FileSystems.join(stage, "rejects")}
    else:
        manifest = load_manifest(manifest_path, opener=FileSystems.open)
        print(format_funnel(manifest))
        if not manifest["shards"]:
            print(f"curate: WARNING: wrote no samples: {why_empty(manifest)}", file=sys.stderr)
        outputs = {
            "shards": FileSystems.join(args.output, "shards"), "rejects": FileSystems.join(args.output, "rejects"),
            "manifest": manifest_path,
        }
        if not args.no_report:
            outputs["report"] = _write_report(args.output)
    for line in console.summary_lines():
        print(line, file=sys.stderr)
    for name, path in outputs.items():
        print(f"{name}: {path}")


def beam_storage() -> Storage:
    """The report's file access through Beam's filesystems (local, ``gs://``, ``s3://``)."""
    from manifests.report import Storage

    return Storage(
        open=lambda path: FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED),
        create=lambda path: FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED),
        glob=lambda pattern: sorted(m.path for m in FileSystems.match([pattern])[0].metadata_list),
        join=FileSystems.join,
    )


def _write_report(directory: str, path: str | None = None) -> str:
    """:func:`manifests.report.write_report` through Beam's filesystems; the report's
    module (and matplotlib) is imported only when a report is written."""
    from manifests.report import write_report

    return write_report(directory, path, storage=beam_storage())


def _run_report(args: argparse.Namespace) -> int:
    try:
        path = _write_report(args.dir, args.output)
    except FileNotFoundError as error:
        print(f"curate: error: {error}", file=sys.stderr)
        return 2
    print(f"report: {path}")
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


def _run_mix(args: argparse.Namespace) -> int:
    spec = load_config(StageSpec, args.spec, opener=FileSystems.open)
    output = FileSystems.join(args.output, "stage.json")
    stage = resolve_stage(spec, args.spec, output, opener=FileSystems.open, package_version=__version__)
    stage["config"] = json.loads(canonical_json(to_mapping(spec)))
    with FileSystems.create(output) as handle:
        handle.write((json.dumps(stage, indent=2, sort_keys=True) + "\n").encode())
    print(format_stage(stage))
    for warning in stage["warnings"]:
        print(f"curate: WARNING: {warning}", file=sys.stderr)
    print(f"stage manifest: {output}")
    if not args.no_report:
        print(f"report: {_write_report(args.output)}")
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from pipelines.demo import run_demo

    with console.session(quiet=args.quiet):
        for name, manifest in run_demo(args.output).items():
            folder = FileSystems.join(args.output, name)
            if manifest.get("kind") == "stage":
                print(f"\n== {name}: {FileSystems.join(folder, 'stage.json')}")
            else:
                print(f"\n== {name}: {FileSystems.join(folder, 'manifest.json')}")
                print(format_funnel(manifest))
            print(f"report: {_write_report(folder)}")
        for line in console.summary_lines():
            print(line, file=sys.stderr)
    return 0


def _pipelines_for(argv: Sequence[str]) -> tuple[str, ...]:
    """The pipelines whose modules a command line needs: a pipeline's command only its own (so
    ``curate pairs`` imports no other pipeline, nor its libraries), any other every one
    (``curate --help`` lists them all)."""
    return (argv[0],) if argv and argv[0] in PIPELINE_MODULES else PIPELINE_MODULES


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    pipelines = _pipelines_for(argv)
    parser = build_parser(pipelines)
    args, beam_args = parser.parse_known_args(argv)
    commands = {command.name: command for command in pipeline_commands(pipelines)}
    if args.command not in commands and beam_args:
        parser.error(f"unrecognized arguments: {' '.join(beam_args)}")
    try:
        if args.command in commands:
            return _run_pipeline(commands[args.command], args, beam_args)
        if args.command == "train-quality":
            return _run_train_quality(args)
        if args.command == "manifest":
            return _run_manifest(args)
        if args.command == "report":
            return _run_report(args)
        if args.command == "mix":
            return _run_mix(args)
        return _run_demo(args)
    except (ConfigError, RecipeError, RandomWeightsRefused, MixtureError) as error:
        print(f"curate: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # the job failed: one line, non-zero
        message = str(error).strip().splitlines()
        print(f"curate: job failed: {type(error).__name__}: {message[-1] if message else ''}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
