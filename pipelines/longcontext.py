"""``curate longcontext``: caption and document datasets -> synthetic long-context sequences.

The recipe: read (every sample of the datasets whose manifests ``--input`` names: one
image and its description, the ``txt`` a caption or a page's transcription) -> dedup (the
same image with the same description, from any dataset, is used once) [stage ``samples``:
resume from it to plan again with another budget, seed or repeats without reading the
shards again] -> image_quality (optional) -> budget (each sample's visual tokens, text
tokens and separator; a sample that alone exceeds the sequence budget is dropped). Then
the samples are planned into sequences of at most ``sequences.max_tokens``
(:mod:`synth.long_sequences`) and each sequence becomes one sample: its images in one
field as the input, their descriptions, in the same order, as the target.

Beside the synthetic dataset, the run writes ``OUTPUT/stage.json``: a stage manifest in
the form ``curate mix`` writes (read by :func:`manifests.reader.mixture_dataset`), each
source once per epoch, over the synthetic dataset and every
long video and long document dataset that the video and documents pipelines routed to
``long/`` next to the input manifests (or that ``long`` names). The synthetic dataset's
manifest records each of those manifests, with its sha256, under ``extra.lineage``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import tarfile
from dataclasses import dataclass
from typing import Any, Iterable

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from PIL import Image
from webdataset.tariterators import base_plus_ext

import curation
from curation.budgets import FailureBudgets
from curation.config import ConfigError
from curation.ids import content_id, sha256_hex
from curation.records import CaptionPair, ImageData, Reject, reject
from curation.tokens import TextTokenizer, TokenSettings, visual_tokens
from filters.image_quality import ImageQualityFilter
from manifests.manifest import resolve_path, validate_manifest
from manifests.mixture import SourceSpec, StageSpec, resolve_stage
from manifests.reader import STAGE_KIND
from manifests.samples import IMAGE_EXTENSIONS, IMAGES_FIELD, pack_images
from manifests.shards import Sample, ShardSettings
from pipelines.executor import runner
from pipelines.recipe import Checkpoint, Dedup, Filter, Map, Packed, Read, Recipe, keep_first, without
from pipelines.registry import Flag, PipelineCommand
from synth.long_sequences import plan_sequences

LONG = "long"
STAGE_FILE = "stage.json"


@dataclass(frozen=True)
class SequenceSettings:
    """How samples become long sequences.

    Attributes:
        max_tokens: the most tokens a sequence holds (visual + text, separators included).
        repeats: how many times each sample is used, each time in another sequence.
        seed: seeds the order of the samples in each pass.
        separator: the text between two descriptions in the target.
        sep_tokens: the tokens counted for the separator after each description.
    """

    max_tokens: int = 65536
    repeats: int = 1
    seed: int = 0
    separator: str = "\n\n"
    sep_tokens: int = 1

    def __post_init__(self) -> None:
        if self.max_tokens < 1 or self.repeats < 1 or self.sep_tokens < 0:
            raise ValueError("sequences.max_tokens and sequences.repeats must be >= 1, sequences.sep_tokens >= 0")


@dataclass(frozen=True)
class LongContextFilters:
    """Judgments on the source samples; off by default, since the pipelines that made them judged them."""

    image_quality: ImageQualityFilter | None = None


@dataclass(frozen=True)
class LongContextConfig:
    """Everything ``curate longcontext`` can be told; every key can be set in YAML or with ``--set``.

    Attributes:
        long: manifests (paths or globs) of further long datasets for the stage, besides the
            ``long/`` datasets found next to the input manifests.
    """

    dataset: str = "longcontext"
    sequences: SequenceSettings = SequenceSettings()
    filters: LongContextFilters = LongContextFilters()
    long: tuple[str, ...] = ()
    tokens: TokenSettings = TokenSettings()
    shards: ShardSettings = ShardSettings(max_samples=1000)
    budgets: FailureBudgets = FailureBudgets()


# --------------------------------------------------------------------------- the datasets


@dataclass(frozen=True)
class DatasetRef:
    """A dataset manifest as read in the launching process: where it is, its sha256, its
    dataset name, its shards (resolved) and its sample count."""

    path: str
    sha256: str
    dataset: str
    shards: tuple[str, ...]
    samples: int


def match_manifests(patterns: Iterable[str], what: str) -> list[str]:
    """The manifest paths matching ``patterns`` (comma-separated lists of paths or globs), sorted,
    once each; local paths made absolute. A pattern that matches nothing is a :class:`ConfigError`."""
    found = set()
    for pattern in (p.strip() for text in patterns for p in text.split(",") if p.strip()):
        matched = FileSystems.match([pattern])[0].metadata_list
        if not matched:
            raise ConfigError(f"{what} {pattern}: no such manifest")
        found.update(_absolute(m.path) for m in matched)
    return sorted(found)


def _absolute(path: str) -> str:
    return path if "://" in path else os.path.abspath(path)


def _open(path: str) -> Any:
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def load_dataset_ref(path: str) -> DatasetRef:
    """Reads and checks one dataset manifest.

    Raises:
        ConfigError: for a manifest that is invalid, a stage manifest, or one of a run that
            exceeded its failure budget (its shards are not to be trained on).
    """
    with _open(path) as handle:
        data = handle.read()
    try:
        manifest = json.loads(data)
    except ValueError as error:
        raise ConfigError(f"manifest {path}: not JSON: {error}") from error
    if isinstance(manifest, dict) and manifest.get("kind") == STAGE_KIND:
        raise ConfigError(f"manifest {path} is a stage manifest: give the manifests of its datasets")
    problems = validate_manifest(manifest)
    if not problems:
        problems = [f"its run exceeded its failure budget: {line}" for line in manifest.get("budget_exceeded", [])]
    if problems:
        raise ConfigError(f"manifest {path}: " + "; ".join(problems))
    shards = tuple(resolve_path(path, shard["path"]) for shard in manifest["shards"])
    return DatasetRef(path, sha256_hex(data), manifest["dataset"], shards, manifest["totals"]["samples"])


def input_datasets(input_patterns: str | None) -> list[DatasetRef]:
    """The datasets ``--input`` names (a comma-separated list of manifest paths or globs).

    Raises:
        ConfigError: without an input: a run resumed from the ``samples`` stage still needs its
            input manifests, for the lineage and the stage.
    """
    if not input_patterns:
        raise ConfigError("curate longcontext needs --input, also with --resume-from: the source manifests "
                          "are the manifest's lineage, and the long datasets beside them join the stage")
    return [load_dataset_ref(path) for path in match_manifests([input_patterns], "--input")]


def long_datasets(inputs: list[DatasetRef], config: LongContextConfig) -> list[DatasetRef]:
    """The routed ``long/`` datasets next to the input manifests, and those ``config.long`` names."""
    found = [
        path for path in (_sibling(ref.path, LONG, "manifest.json") for ref in inputs) if FileSystems.exists(path)
    ]
    paths = sorted(set(found) | set(match_manifests(config.long, "long")))
    return [load_dataset_ref(path) for path in paths]


def _sibling(path: str, *names: str) -> str:
    """``names`` joined onto the folder of ``path`` (an absolute path or a URL)."""
    return FileSystems.join(path.rsplit("/", 1)[0], *names)


def lineage(input_patterns: str | None, config: LongContextConfig) -> dict[str, Any]:
    """The manifest's ``extra``: every source manifest, its sha256, its dataset and its role
    (``input``: read into the sequences; ``long``: a long dataset beside them in the stage)."""
    inputs = input_datasets(input_patterns)
    rows = [(ref, "input") for ref in inputs] + [(ref, LONG) for ref in long_datasets(inputs, config)]
    return {"lineage": [{"path": ref.path, "sha256": ref.sha256, "dataset": ref.dataset, "role": role}
                        for ref, role in rows]}


# --------------------------------------------------------------------------- reading samples


class ReadDatasets(beam.PTransform):
    """Every sample of the datasets ``--input`` names, one shard per task: records, and a
    read-step :class:`Reject` for each sample that is not one image with its description."""

    def __init__(self, input_patterns: str):
        super().__init__()
        self._input = input_patterns

    def expand(self, pipeline: beam.Pipeline) -> beam.PCollection:
        shards = [(ref.dataset, url) for ref in input_datasets(self._input) for url in ref.shards]
        return (
            pipeline
            | "Shards" >> beam.Create(shards)
            | "SpreadShards" >> beam.Reshuffle()
            | "ReadShards" >> beam.FlatMap(read_shard)
        )


def read_shard(item: tuple[str, str]) -> Iterable[Any]:
    """The samples of one shard of dataset ``item[0]`` at ``item[1]`` as records or rejects; an
    unreadable shard is one dead letter (the samples read before the damage stay)."""
    dataset, url = item
    try:
        with _open(url) as handle:
            for key, fields in _tar_samples(handle):
                yield sample_record(dataset, url, key, fields)
    except (OSError, tarfile.TarError, EOFError) as error:
        yield Reject(id=content_id(url), source=dataset, step="read", reason="unreadable_shard", dead_letter=True,
                     detail=f"{url}: {error!r}"[:500])


def _tar_samples(handle: Any) -> Iterable[tuple[str, dict[str, bytes]]]:
    """``(key, {extension: bytes})`` of each sample of a webdataset tar stream, in order; each
    sample is yielded once complete, so those before a damaged member are kept."""
    key, fields = None, {}
    with tarfile.open(fileobj=handle, mode="r|") as tar:
        for member in tar:
            name, extension = base_plus_ext(member.name) if member.isreg() else (None, None)
            if name is None:
                continue
            if name != key and fields:
                yield key, fields
                fields = {}
            key = name
            fields[extension.lower()] = tar.extractfile(member).read()
    if fields:
        yield key, fields


def sample_record(dataset: str, shard: str, key: str, fields: dict[str, bytes]) -> CaptionPair | Reject:
    """A source sample as a :class:`CaptionPair`: its one image, and its ``txt`` as the description."""
    images = [ext for ext in fields if ext.rsplit(".", 1)[-1] in IMAGE_EXTENSIONS]
    text = fields.get("txt", b"").decode("utf-8", errors="replace")
    if len(images) != 1 or not text.strip():
        return Reject(id=key, source=dataset, step="read", reason="not_an_image_with_text",
                      detail=f"{shard}: fields {', '.join(sorted(fields))}")
    data = fields[images[0]]
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height, kind = image.width, image.height, (image.format or "").lower()
    except Exception as error:  # any decoder error: one dead letter
        return Reject(id=key, source=dataset, step="read", reason="undecodable_image", dead_letter=True,
                      detail=f"{shard}: {error!r}"[:500], text=text)
    image = ImageData(sha256=sha256_hex(data), phash="", width=width, height=height, format=kind, data=data)
    return CaptionPair(id=key, source=dataset, url="", text=text, image=image, meta={"shard": shard})


def sample_key(record: CaptionPair) -> str:
    """What makes a source sample the same sample: its image and its description."""
    return content_id(record.image.sha256, record.text)


# --------------------------------------------------------------------------- tokens and sequences


class SegmentTokens:
    """A Map step's function: a sample's tokens as a segment of a sequence, by the recipe's
    accounting (:func:`curation.tokens.visual_tokens` of its image, the tokenizer's count of its
    description), into ``meta["tokens"]``; a sample that with its separator alone exceeds
    ``max_tokens`` is dropped (``over_budget``)."""

    def __init__(self, tokens: TokenSettings, sequences: SequenceSettings):
        self._tokens = tokens
        self._sequences = sequences

    def setup(self) -> None:
        self._tokenizer = TextTokenizer.load(self._tokens.text_tokenizer)

    def __call__(self, record: CaptionPair) -> CaptionPair | Reject:
        visual = visual_tokens(record.image.width, record.image.height, self._tokens.image_resolution)
        text = self._tokenizer.count(record.text)
        cost = visual + text + self._sequences.sep_tokens
        if cost > self._sequences.max_tokens:
            return reject(record, "budget", "over_budget", detail=f"{cost} tokens over {self._sequences.max_tokens}")
        return dataclasses.replace(record, meta={**record.meta, "tokens": {"visual": visual, "text": text}})


def segment_cost(record: CaptionPair, sep_tokens: int) -> int:
    tokens = record.meta["tokens"]
    return tokens["visual"] + tokens["text"] + sep_tokens


def _placements(costs: dict[str, int], settings: SequenceSettings) -> Iterable[tuple[str, tuple[int, int, int]]]:
    """``(sample key, (sequence, position, use))`` for every place the plan gives a sample."""
    sequences = plan_sequences(costs, settings.max_tokens, settings.seed, settings.repeats)
    for index, sequence in enumerate(sequences):
        for position, use in enumerate(sequence):
            yield use.key, (index, position, use.use)


def _placed(item: tuple[str, dict[str, list]]) -> Iterable[tuple[int, tuple[int, int, CaptionPair]]]:
    _, joined = item
    for record in joined["record"]:
        for sequence, position, use in joined["place"]:
            yield sequence, (position, use, record)


def long_sequence_sample(segments: list[tuple[int, CaptionPair]], settings: SequenceSettings) -> Sample:
    """One long sequence as ``<key>.images.mp`` (its images, in order: the input), ``<key>.txt``
    (their descriptions in the same order, joined by the separator: the target) and ``<key>.json``:
    ``segments`` (per image, its index, source dataset, source sample ``id``, ``text``, tokens and
    ``use``), ``tokens`` (``{visual, text, total}``, separators in ``text``) and ``max_tokens``.

    Args:
        segments: ``(use, record)`` in sequence order, each record with its ``meta["tokens"]``.
        settings: the separator and the budget.
    """
    rows = [
        {"image": index, "source": record.source, "id": record.id, "text": record.text,
         "visual_tokens": record.meta["tokens"]["visual"], "text_tokens": record.meta["tokens"]["text"], "use": use}
        for index, (use, record) in enumerate(segments)
    ]
    visual = sum(row["visual_tokens"] for row in rows)
    text = sum(row["text_tokens"] + settings.sep_tokens for row in rows)
    key = content_id(*(f"{sample_key(record)}:{use}" for use, record in segments))
    info = {"id": key, "segments": rows, "tokens": {"visual": visual, "text": text, "total": visual + text},
            "max_tokens": settings.max_tokens}
    return Sample(
        key=key,
        fields={
            IMAGES_FIELD: pack_images([record.image.data for _, record in segments]),
            "txt": settings.separator.join(record.text for _, record in segments).encode("utf-8"),
            "json": json.dumps(info, sort_keys=True, ensure_ascii=False).encode("utf-8"),
        },
        text_tokens=text,
        visual_tokens=visual,
    )


def _sequence_sample(item: tuple[int, Iterable[tuple[int, int, CaptionPair]]], settings: SequenceSettings) -> Sample:
    _, placed = item
    return long_sequence_sample([(use, record) for _, use, record in sorted(placed, key=lambda p: p[0])], settings)


def first_uses(sample: Sample) -> int:
    """The source samples a sequence holds for their first use: each source sample counts once
    in the dataset, however often it is repeated."""
    return sum(1 for row in json.loads(sample.fields["json"])["segments"] if row["use"] == 0)


class PackLongSequences(beam.PTransform):
    """Kept samples -> long sequence samples: the plan is made on one worker from the samples'
    keys and costs only; the samples then join their places and gather by sequence."""

    def __init__(self, settings: SequenceSettings):
        super().__init__()
        self._settings = settings

    def expand(self, records: beam.PCollection) -> beam.PCollection:
        settings = self._settings
        keyed = records | "Key" >> beam.Map(lambda record: (sample_key(record), record))
        places = (
            keyed
            | "Cost" >> beam.Map(lambda kv: (kv[0], segment_cost(kv[1], settings.sep_tokens)))
            | "Costs" >> beam.combiners.ToDict()
            | "Plan" >> beam.FlatMap(_placements, settings)
        )
        return (
            {"record": keyed, "place": places}
            | "Join" >> beam.CoGroupByKey()
            | "Place" >> beam.FlatMap(_placed)
            | "BySequence" >> beam.GroupByKey()
            | "ToSample" >> beam.Map(_sequence_sample, settings)
        )


# --------------------------------------------------------------------------- the stage


def stage_spec(output_dir: str, input_patterns: str | None, config: LongContextConfig) -> StageSpec | None:
    """The stage over this run's dataset and the long datasets, each read once per epoch (weights
    by samples, each its sample count); datasets without samples are left out, and a stage without
    any is None."""
    own = load_dataset_ref(FileSystems.join(output_dir, "manifest.json"))
    sources, names = [], set()
    for ref in [own, *long_datasets(input_datasets(input_patterns), config)]:
        name, n = ref.dataset, 2
        while name in names:
            name, n = f"{ref.dataset}_{n}", n + 1
        names.add(name)
        if ref.samples:
            sources.append(SourceSpec(name=name, manifest=ref.path, weight=ref.samples))
    if not sources:
        return None
    return StageSpec(sources=tuple(sources), name=config.dataset, weight_by="samples",
                     sequence_length=config.sequences.max_tokens, max_repeats=1.0)


def write_stage(input_patterns: str | None, output_dir: str, config: LongContextConfig) -> None:
    """Writes ``OUTPUT/stage.json``, the stage manifest ``curate mix`` would resolve from
    :func:`stage_spec` (nothing when no dataset holds samples)."""
    spec = stage_spec(output_dir, input_patterns, config)
    if spec is None:
        return
    path = FileSystems.join(output_dir, STAGE_FILE)
    stage = resolve_stage(spec, path, path, opener=_open, package_version=curation.__version__)
    with FileSystems.create(path + ".inprogress") as handle:
        handle.write((json.dumps(stage, indent=2, sort_keys=True) + "\n").encode())
    FileSystems.rename([path + ".inprogress"], [path])


# --------------------------------------------------------------------------- the recipe


def recipe(config: LongContextConfig) -> Recipe:
    """The long-context recipe."""
    image_quality = config.filters.image_quality
    return Recipe(
        record_type=CaptionPair,
        steps=without([
            Read(source=ReadDatasets),
            Dedup(name="dedup", key=sample_key, choose=keep_first(lambda r: (r.source, r.meta["shard"], r.id)),
                  detail=lambda kept: f"same image and text as {kept.id} of {kept.source}"),
            Checkpoint(name="samples"),
            Filter(name="image_quality", filter=image_quality) if image_quality else None,
            Map(name="budget", fn=SegmentTokens(config.tokens, config.sequences)),
        ]),
        output=Packed(PackLongSequences(config.sequences), records=first_uses),
        config=config,
        extra=lambda input_patterns: lineage(input_patterns, config),
        finish=lambda input_patterns, output_dir: write_stage(input_patterns, output_dir, config),
    )


run = runner(recipe)


def check_input(args: Any) -> None:
    """``--input`` is needed on every run, resumed ones included (see :func:`input_datasets`)."""
    if not args.print_config:
        input_datasets(args.input and ",".join(args.input))


COMMAND = PipelineCommand(
    name="longcontext",
    help="caption and document datasets -> synthetic long-context sequences, and a stage with the long datasets",
    description="Read the samples of caption and document datasets (--input: their manifest.json files, paths or "
    "globs), each one image with its description (txt), and concatenate independent samples into sequences of at "
    "most --max-tokens (visual tokens by the image-size recipe + text tokens + a separator per description): the "
    "images, in one field, are the input and their descriptions, in the same order, the target. Deterministic for "
    "sequences.seed; each sample is used once (sequences.repeats times, each in another sequence); the same image "
    "with the same description is used once whichever datasets hold it; a sample over the budget alone is dropped. "
    "Writes OUTPUT/shards/*.tar (<key>.images.mp = msgpack list of the images, txt = the descriptions joined, "
    "json = segments and tokens), OUTPUT/manifest.json (extra.lineage: every source manifest with its sha256), "
    "OUTPUT/rejects/*.parquet and OUTPUT/stage.json: a stage manifest over the synthetic dataset and the long "
    "videos and documents routed to long/ next to the input manifests (and those the config key long names). "
    "Stage: samples (--resume-from samples still takes --input, for the lineage and the stage).",
    config=LongContextConfig,
    recipe=recipe,
    flags=(
        Flag("--max-tokens", "the most tokens one sequence holds", key="sequences.max_tokens", metavar="N",
             value_type=int),
        Flag("--repeats", "how many times each sample is used", key="sequences.repeats", metavar="N", value_type=int),
    ),
    check=check_input,
    many_inputs=True,
)
