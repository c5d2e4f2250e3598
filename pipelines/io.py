"""Beam I/O shared by the pipelines: Parquet rows in; shards, rejects and manifest out.

All paths go through ``apache_beam.io.filesystems.FileSystems``, so local,
``gs://`` and ``s3://`` outputs work the same way.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Iterable, Sequence

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.pvalue import AsList, AsSingleton

import curation
from curation.ids import content_id
from curation.readers import iter_parquet_rows, parquet_row_groups
from curation.records import Reject, to_row
from curation.budgets import FailureBudgets, over_budget
from manifests.dataset_card import dataset_card, sample_schema, unify
from manifests.manifest import build_funnel, build_manifest, dump_manifest
from manifests.shards import ShardInfo, ShardSettings
from pipelines.write_shards import WriteShards


def _row_groups(path: str) -> Iterable[Any]:
    try:
        with FileSystems.open(path) as handle:
            groups = parquet_row_groups(handle)
    except Exception as error:  # an unreadable file is one dead letter, the job goes on
        yield Reject(
            id=content_id(path), source=path, step="read", reason="unreadable_file",
            dead_letter=True, detail=repr(error)[:500],
        )
        return
    for group in range(groups):
        yield (path, group)


def _read_group(
    item: Any, to_record: Callable[[dict[str, Any], str], Any]
) -> Iterable[Any]:
    if isinstance(item, Reject):
        yield item
        return
    path, group = item
    name = path.rsplit("/", 1)[-1]
    try:
        with FileSystems.open(path) as handle:
            for index, row in iter_parquet_rows(handle, group):
                yield to_record(row, f"{name}#{index}")
    except Exception as error:
        yield Reject(
            id=content_id(path, str(group)), source=f"{name}@rowgroup{group}", step="read",
            reason="unreadable_row_group", dead_letter=True, detail=repr(error)[:500],
        )


class MatchPaths(beam.PTransform):
    """The paths matching a glob on any Beam filesystem; a glob that matches nothing
    fails the job, because it is almost always a typo."""

    def __init__(self, pattern: str):
        super().__init__()
        self._pattern = pattern

    def expand(self, pipeline: beam.Pipeline) -> beam.PCollection:
        return (
            pipeline
            | "MatchFiles" >> fileio.MatchFiles(self._pattern, fileio.EmptyMatchTreatment.DISALLOW)
            | "Paths" >> beam.Map(lambda metadata: metadata.path)
        )


class ReadFiles(beam.PTransform):
    """Files matching a glob, spread over workers, each read by ``read_one(path, *args)`` (which
    yields records and read-step :class:`Reject` rows), one file per task."""

    def __init__(self, pattern: str, read_one: Callable[..., Iterable[Any]], *args: Any):
        super().__init__()
        self._pattern = pattern
        self._read_one = read_one
        self._args = args

    def expand(self, pipeline: beam.Pipeline) -> beam.PCollection:
        return (
            pipeline
            | "Match" >> MatchPaths(self._pattern)
            | "SpreadFiles" >> beam.Reshuffle()
            | "ReadFiles" >> beam.FlatMap(self._read_one, *self._args)
        )


class ReadParquetRecords(beam.PTransform):
    """Reads every row of every Parquet file matching a glob, in parallel by row group.

    Each row becomes ``to_record(row, source)`` (a record or a read-step
    :class:`Reject`); an unreadable file or row group becomes one dead letter.
    """

    def __init__(self, pattern: str, to_record: Callable[[dict[str, Any], str], Any]):
        super().__init__()
        self._pattern = pattern
        self._to_record = to_record

    def expand(self, pipeline: beam.Pipeline) -> beam.PCollection:
        return (
            pipeline
            | "Match" >> MatchPaths(self._pattern)
            | "RowGroups" >> beam.FlatMap(_row_groups)
            | "SpreadRowGroups" >> beam.Reshuffle()
            | "ReadRowGroups" >> beam.FlatMap(_read_group, self._to_record)
        )


def split_rejects(records: beam.PCollection, label: str = "SplitRejects") -> tuple[beam.PCollection, beam.PCollection]:
    """Splits a mixed stream into ``(records, rejects)``."""
    parts = records | label >> beam.Partition(lambda r, _: int(isinstance(r, Reject)), 2)
    return parts[0], parts[1]


class WriteRejects(beam.PTransform):
    """Writes every reject (dropped or dead letter) as Parquet under ``DIR/rejects/``."""

    def __init__(self, output_dir: str):
        super().__init__()
        self._prefix = FileSystems.join(output_dir, "rejects", "rejects")

    def expand(self, rejects: beam.PCollection) -> beam.PCollection:
        return (
            rejects
            | "RejectRows" >> beam.Map(to_row)
            | "WriteRejectsParquet"
            >> beam.io.WriteToParquet(
                self._prefix, schema=Reject.SCHEMA, file_name_suffix=".parquet"
            )
        )


@dataclasses.dataclass(frozen=True)
class ManifestHeader:
    """What the manifest says about the run itself.

    Attributes:
        models: ``(funnel step, models entry)`` of each model the run used.
        steps: the funnel steps, in order.
        budgets: the failure budgets the funnel is held to.
        item_funnels: ``(extra key, item steps)`` of each item funnel (or source funnel).
        notes: facts a reader of the manifest needs (``extra.notes``), e.g. that no
            generator ran, so a dataset has no QA pairs.
        extra: further facts for the manifest's ``extra`` (e.g. the lineage of the input).
    """

    dataset: str
    config: dict[str, Any]
    models: tuple[tuple[str, dict[str, Any]], ...]
    steps: tuple[str, ...]
    budgets: FailureBudgets = FailureBudgets()
    item_funnels: tuple[tuple[str, tuple[str, ...]], ...] = ()
    notes: tuple[str, ...] = ()
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


class CountFunnel(beam.PTransform):
    """Counts inputs, rejects by ``(step, reason)`` (dead letters apart) and fallback marks.

    Input: ``{"inputs": every input, "rejects": Rejects, "marks": (step, reason) per fallback}``.
    Output: a singleton ``{"inputs": n, "dropped": {(step, reason): n}, "dead": {(step, reason): n},
    "fallback": {(step, reason): n}, "dead_letters": n}``.
    """

    def expand(self, pcolls: dict[str, beam.PCollection]) -> beam.PCollection:
        inputs = pcolls["inputs"] | "CountInputs" >> beam.combiners.Count.Globally()
        reasons = (
            pcolls["rejects"]
            | "ReasonKey" >> beam.Map(lambda r: ((r.step, r.reason, r.dead_letter), 1))
            | "CountReasons" >> beam.CombinePerKey(sum)
            | "ReasonsToList" >> beam.combiners.ToList()
        )
        marks = (
            pcolls["marks"]
            | "MarkKey" >> beam.Map(lambda mark: (tuple(mark), 1))
            | "CountMarks" >> beam.CombinePerKey(sum)
            | "MarksToList" >> beam.combiners.ToList()
        )
        return (
            inputs.pipeline
            | "FunnelSeed" >> beam.Create([None])
            | "AssembleFunnel" >> beam.Map(_funnel_counts, AsSingleton(inputs), AsSingleton(reasons), AsSingleton(marks))
        )


def _funnel_counts(_: Any, inputs: int, reasons: list, marks: list) -> dict[str, Any]:
    dropped, dead = _split_dead(reasons)
    return {
        "inputs": inputs, "dropped": dropped, "dead": dead, "fallback": dict(marks),
        "dead_letters": sum(dead.values()),
    }


class CountItemFunnel(beam.PTransform):
    """One item funnel's counts as a singleton: ``(extra key, items in, {(item step, reason): n},
    {(item step, reason): dead letters})``. Events are ``(step, reason)`` or ``(step, reason, dead_letter)``."""

    def __init__(self, key: str):
        super().__init__()
        self._key = key

    def expand(self, pcolls: dict[str, beam.PCollection]) -> beam.PCollection:
        counts = (
            pcolls["events"]
            | "EventKey" >> beam.Map(lambda event: ((event[0], event[1], len(event) > 2 and bool(event[2])), 1))
            | "CountEvents" >> beam.CombinePerKey(sum)
            | "EventsToList" >> beam.combiners.ToList()
        )
        return (
            pcolls["in"].pipeline
            | "ItemFunnelSeed" >> beam.Create([None])
            | "AssembleItemFunnel" >> beam.Map(
                lambda _, n, found, key: (key, n, *_split_dead(found)), AsSingleton(pcolls["in"]),
                AsSingleton(counts), self._key,
            )
        )


def _split_dead(counts: list) -> tuple[dict, dict]:
    """``((step, reason, dead_letter), n)`` pairs -> (all drops, dead letters), each by ``(step, reason)``."""
    dropped: dict[tuple[str, str], int] = {}
    dead: dict[tuple[str, str], int] = {}
    for (step, reason, dead_letter), count in counts:
        dropped[(step, reason)] = dropped.get((step, reason), 0) + count
        if dead_letter:
            dead[(step, reason)] = dead.get((step, reason), 0) + count
    return dropped, dead


def _model_entry(entry: dict[str, Any], written: tuple[int, int] | None) -> dict[str, Any]:
    """A model's manifest entry; for a model whose output goes into the samples, its note says in
    how many of the written samples it is, and never describes outputs that were not written."""
    if written is None:
        return entry
    carried, samples = written
    if carried == 0:
        outcome = f"no output of this model was written: none of the {samples} samples carries one"
    else:
        outcome = f"its output is in {carried} of the {samples} samples"
    return {**entry, "note": "; ".join(part for part in (outcome, entry.get("note")) if part)}


def _write_manifest(
    _: Any,
    shards: Sequence[ShardInfo],
    counts: dict[str, Any],
    item_counts: Sequence[tuple[str, int, dict, dict]],
    header: ManifestHeader,
    path: str,
    packed_records: int | None = None,
    model_outputs: dict[str, tuple[int, int]] | None = None,
    packed_report: dict[str, Any] | None = None,
    sample_schema: Any = None,
) -> str:
    funnel = build_funnel(header.steps, counts["inputs"], counts["dropped"], counts["dead"], counts["fallback"])
    item_steps = dict(header.item_funnels)
    item_funnels = {
        key: [step.to_dict() for step in build_funnel(item_steps[key], n, found, dead)]
        for key, n, found, dead in sorted(item_counts, key=lambda counts: counts[0])
    }
    rows = [step.to_dict() for step in funnel] + [row for rows in item_funnels.values() for row in rows]
    over = [violation.message() for violation in over_budget(rows, header.budgets)]
    item_dead = sum(sum(dead.values()) for _, _, _, dead in item_counts)
    extra = {
        **header.extra, **(packed_report or {}), **item_funnels,
        **({"notes": list(header.notes)} if header.notes else {}),
    }
    manifest = build_manifest(
        dataset=header.dataset,
        config=header.config,
        models=[_model_entry(entry, (model_outputs or {}).get(step)) for step, entry in header.models],
        shards=sorted(shards, key=lambda s: s.path),
        funnel=funnel,
        dead_letters=counts["dead_letters"] + item_dead,
        package_version=curation.__version__,
        packed_records=packed_records,
        extra=extra or None,
        budget_exceeded=over,
    )
    if sample_schema is not None:
        card = FileSystems.join(FileSystems.split(path)[0], "README.md")
        with FileSystems.create(card) as handle:
            handle.write(dataset_card(manifest, sample_schema).encode())
    with FileSystems.create(path + ".inprogress") as handle:
        handle.write(dump_manifest(manifest))
    FileSystems.rename([path + ".inprogress"], [path])
    return path


class SampleSchema(beam.CombineFn):
    """The schema that holds every sample's fields and JSON (:mod:`manifests.dataset_card`)."""

    def create_accumulator(self) -> Any:
        return "null"

    def add_input(self, schema: Any, sample: Any) -> Any:
        return unify(schema, sample_schema(sample))

    def merge_accumulators(self, schemas: Iterable[Any]) -> Any:
        merged: Any = "null"
        for schema in schemas:
            merged = unify(merged, schema)
        return merged

    def extract_output(self, schema: Any) -> Any:
        return schema


STAGE_FUNNEL = "funnel.json"


def write_stage_funnel(counts: dict[str, Any], steps: tuple[str, ...], budgets: FailureBudgets, path: str) -> str:
    """The funnel of a run stopped at a stage, with its dead letters and budget verdict, as JSON."""
    funnel = build_funnel(steps, counts["inputs"], counts["dropped"], counts["dead"], counts["fallback"])
    rows = [step.to_dict() for step in funnel]
    report = {
        "funnel": rows, "dead_letters": counts["dead_letters"],
        "budget_exceeded": [violation.message() for violation in over_budget(rows, budgets)],
    }
    with FileSystems.create(path + ".inprogress") as handle:
        handle.write(json.dumps(report, indent=2, sort_keys=True).encode() + b"\n")
    FileSystems.rename([path + ".inprogress"], [path])
    return path


def read_stage_funnel(directory: str) -> dict[str, Any]:
    """What :func:`write_stage_funnel` wrote for the stage in ``directory``."""
    with FileSystems.open(FileSystems.join(directory, STAGE_FUNNEL)) as handle:
        return json.loads(handle.read())


class WriteManifest(beam.PTransform):
    """Writes ``DIR/manifest.json`` once the shards and the funnel counts are known.

    Input: ``{"shards": ShardInfos, "counts": the CountFunnel summary, "items": CountItemFunnel
    singletons (flattened)}``, ``"sample_schema"`` (a singleton, :class:`SampleSchema`: the dataset
    card ``README.md`` is written beside the manifest), plus ``"packed_records"`` (a singleton count) when each sample
    packs several records, ``"packed_report"`` (a singleton dict merged into ``extra``) when the
    recipe reports on its packing, and ``"model_outputs"`` (a singleton ``{model step: (samples
    carrying its output, samples)}``) for models whose output goes into the samples.
    """

    def __init__(self, output_dir: str, header: ManifestHeader):
        super().__init__()
        self._path = FileSystems.join(output_dir, "manifest.json")
        self._header = header

    def expand(self, pcolls: dict[str, beam.PCollection]) -> beam.PCollection:
        optional = {
            name: AsSingleton(pcolls[name])
            for name in ("packed_records", "model_outputs", "packed_report", "sample_schema") if name in pcolls
        }
        return (
            pcolls["shards"].pipeline
            | "ManifestSeed" >> beam.Create([None])
            | "WriteManifestJson"
            >> beam.Map(
                _write_manifest,
                AsList(pcolls["shards"]),
                AsSingleton(pcolls["counts"]),
                AsList(pcolls["items"]),
                self._header,
                self._path,
                **optional,
            )
        )


class WriteDataset(beam.PTransform):
    """Everything a run leaves behind: shards, rejects, the funnel and the manifest.

    Input: ``{"samples": Samples, "inputs": every input (counted), "rejects": Rejects,
    "marks": fallback marks}``, optional ``"item_rejects"`` (written, but counted in their item
    funnel rather than the record funnel), optional ``"packed_records"``, ``"packed_report"`` and
    ``"model_outputs"`` singletons (see
    :class:`WriteManifest`), and per item funnel named ``KEY`` in the header
    ``"KEY/in"`` (a singleton count) and ``"KEY/events"`` (``(item step, reason)`` per drop).
    Output: the manifest path.
    """

    def __init__(self, output_dir: str, header: ManifestHeader, shards: ShardSettings):
        super().__init__()
        self._output_dir = output_dir
        self._header = header
        self._shards = shards

    def expand(self, pcolls: dict[str, beam.PCollection]) -> beam.PCollection:
        pipeline = pcolls["inputs"].pipeline
        shards = pcolls["samples"] | "WriteShards" >> WriteShards(
            self._output_dir, self._header.dataset, self._shards.max_samples, self._shards.max_bytes
        )
        written = [pcolls["rejects"], *([pcolls["item_rejects"]] if "item_rejects" in pcolls else [])]
        _ = written | "AllRejectRows" >> beam.Flatten() | "WriteRejects" >> WriteRejects(self._output_dir)
        counts = {name: pcolls[name] for name in ("inputs", "rejects", "marks")} | "CountFunnel" >> CountFunnel()
        items = [
            {"in": pcolls[f"{key}/in"], "events": pcolls[f"{key}/events"]} | f"ItemFunnel_{key}" >> CountItemFunnel(key)
            for key, _ in self._header.item_funnels
        ]
        items = items | "AllItemFunnels" >> beam.Flatten() if items else pipeline | "NoItemFunnels" >> beam.Create([])
        optional = {
            name: pcolls[name] for name in ("packed_records", "model_outputs", "packed_report") if name in pcolls
        }
        optional["sample_schema"] = pcolls["samples"] | "SampleSchema" >> beam.CombineGlobally(SampleSchema())
        return {"shards": shards, "counts": counts, "items": items, **optional} | "WriteManifest" >> WriteManifest(
            self._output_dir, self._header
        )
