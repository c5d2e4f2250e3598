"""Beam I/O shared by the pipelines: Parquet rows in; shards, rejects and manifest out.

All paths go through ``apache_beam.io.filesystems.FileSystems``, so local,
``gs://`` and ``s3://`` outputs work the same way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from typing import Any, Callable, Iterable, Sequence

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.pvalue import AsList, AsSingleton

import curation
from curation.ids import content_id
from curation.readers import iter_parquet_rows, parquet_row_groups
from curation.records import Reject, to_row
from manifests.manifest import build_funnel, build_manifest, dump_manifest
from manifests.shards import Sample, ShardInfo, ShardSettings, plan_shards, shard_name, write_shard
from pipelines.transforms import CountFunnel


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


def _write_partition(
    item: tuple[int, Iterable[Sample]], output_dir: str, prefix: str, max_samples: int, max_bytes: int
) -> Iterable[ShardInfo]:
    partition, samples = item
    ordered = sorted(samples, key=lambda s: s.key)
    for index, group in enumerate(plan_shards(ordered, max_samples, max_bytes)):
        relative = shard_name(prefix, partition, index)
        final = FileSystems.join(output_dir, relative)
        temporary = final + ".inprogress"
        with FileSystems.create(temporary) as handle:
            info = write_shard(group, handle, relative)
        FileSystems.rename([temporary], [final])
        yield info


def partition_of(key: str, partitions: int) -> int:
    """Deterministic shard partition of a sample key."""
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) % partitions


class WriteShards(beam.PTransform):
    """Writes samples as webdataset tars; returns one :class:`ShardInfo` per shard.

    Samples are spread over ``partitions`` by a hash of their key, sorted by key
    inside each partition and rolled into shards by count and bytes, so the same
    samples always give the same shard names and bytes, on any runner.
    """

    def __init__(self, output_dir: str, prefix: str, partitions: int, max_samples: int, max_bytes: int):
        super().__init__()
        self._args = (output_dir, prefix, max_samples, max_bytes)
        self._partitions = partitions

    def expand(self, samples: beam.PCollection) -> beam.PCollection:
        output_dir, prefix, max_samples, max_bytes = self._args
        return (
            samples
            | "KeyByPartition" >> beam.Map(lambda s, n: (partition_of(s.key, n), s), self._partitions)
            | "GroupPartitions" >> beam.GroupByKey()
            | "WriteTars" >> beam.FlatMap(_write_partition, output_dir, prefix, max_samples, max_bytes)
        )


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
    """What the manifest says about the run itself."""

    dataset: str
    config: dict[str, Any]
    models: tuple[dict[str, str], ...]
    steps: tuple[str, ...]


def _write_manifest(
    _: Any,
    shards: Sequence[ShardInfo],
    counts: dict[str, Any],
    header: ManifestHeader,
    path: str,
    packed_records: int | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    funnel = build_funnel(header.steps, counts["inputs"], counts["dropped"])
    manifest = build_manifest(
        dataset=header.dataset,
        config=header.config,
        models=list(header.models),
        shards=sorted(shards, key=lambda s: s.path),
        funnel=funnel,
        dead_letters=counts["dead_letters"],
        package_version=curation.__version__,
        packed_records=packed_records,
        extra=extra,
    )
    with FileSystems.create(path + ".inprogress") as handle:
        handle.write(dump_manifest(manifest))
    FileSystems.rename([path + ".inprogress"], [path])
    print(f"wrote {path}", file=sys.stderr)
    return path


class WriteManifest(beam.PTransform):
    """Writes ``DIR/manifest.json`` once the shards and the funnel counts are known.

    Input: ``{"shards": ShardInfos, "counts": the CountFunnel summary}``, plus
    ``"packed_records"`` (a singleton count) when each sample packs several records,
    and ``"extra"`` (a singleton dict stored under the manifest's ``extra``).
    """

    def __init__(self, output_dir: str, header: ManifestHeader):
        super().__init__()
        self._path = FileSystems.join(output_dir, "manifest.json")
        self._header = header

    def expand(self, pcolls: dict[str, beam.PCollection]) -> beam.PCollection:
        optional = {name: AsSingleton(pcolls[name]) for name in ("packed_records", "extra") if name in pcolls}
        return (
            pcolls["shards"].pipeline
            | "ManifestSeed" >> beam.Create([None])
            | "WriteManifestJson"
            >> beam.Map(
                _write_manifest,
                AsList(pcolls["shards"]),
                AsSingleton(pcolls["counts"]),
                self._header,
                self._path,
                **optional,
            )
        )



class WriteDataset(beam.PTransform):
    """Everything a pipeline leaves behind: shards, rejects, the funnel and the manifest.

    Input: ``{"samples": Samples, "inputs": every input (counted), "rejects": Rejects}``,
    plus optional ``"packed_records"`` and ``"extra"`` singletons (see :class:`WriteManifest`).
    Output: the manifest path.
    """

    def __init__(self, output_dir: str, header: ManifestHeader, shards: ShardSettings):
        super().__init__()
        self._output_dir = output_dir
        self._header = header
        self._shards = shards

    def expand(self, pcolls: dict[str, beam.PCollection]) -> beam.PCollection:
        shards = pcolls["samples"] | "WriteShards" >> WriteShards(
            self._output_dir, self._header.dataset, self._shards.partitions, self._shards.max_samples,
            self._shards.max_bytes,
        )
        _ = pcolls["rejects"] | "WriteRejects" >> WriteRejects(self._output_dir)
        counts = {"inputs": pcolls["inputs"], "rejects": pcolls["rejects"]} | "CountFunnel" >> CountFunnel()
        optional = {name: pcolls[name] for name in ("packed_records", "extra") if name in pcolls}
        return {"shards": shards, "counts": counts, **optional} | "WriteManifest" >> WriteManifest(
            self._output_dir, self._header
        )
