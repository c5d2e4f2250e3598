"""Stage tables: the records of a named stage as Parquet under ``DIR/stages/STAGE/``.

A run writes a stage with ``--stop-after STAGE`` (to look at it, or to resume
later), and on every run for a stage the recipe marks ``always`` (a resumable
point after expensive work); ``--resume-from STAGE`` reads it back instead of the
input. A record type's Arrow schema is the table's schema, so every record type
can be staged.
"""

from __future__ import annotations


import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from curation.records import from_row, to_row


def stage_directory(output_dir: str, stage: str) -> str:
    return FileSystems.join(output_dir, "stages", stage)


def clear_stages(output_dir: str, stages: tuple[str, ...]) -> None:
    """Deletes stage tables an earlier run left, so a later resume never reads two runs' files."""
    for stage in stages:
        directory = stage_directory(output_dir, stage)
        if FileSystems.exists(directory):
            FileSystems.delete([directory])


def clear_outputs(output_dir: str, destinations: tuple[str, ...] = ()) -> None:
    """Deletes the shards, rejects and manifest an earlier run into the same directory left (and the
    datasets it routed records to), before a run writes them again (a resumed run must not leave
    the first run's shards beside its own)."""
    for path in (FileSystems.join(output_dir, name) for name in ("shards", "rejects", "manifest.json", *destinations)):
        if FileSystems.exists(path):
            FileSystems.delete([path])


class RecordTables:
    """A stage as one Parquet table of ``record_type`` rows (``records-*.parquet``)."""

    def __init__(self, record_type: type):
        self._type = record_type

    def write(self, directory: str) -> beam.PTransform:
        record_type = self._type
        return beam.Map(to_row) | beam.io.WriteToParquet(
            FileSystems.join(directory, "records"), schema=record_type.SCHEMA, file_name_suffix=".parquet"
        )

    def read(self, directory: str) -> beam.PTransform:
        record_type = self._type
        return beam.io.ReadFromParquet(FileSystems.join(directory, "records") + "*.parquet") | beam.Map(
            lambda row: from_row(record_type, row)
        )
