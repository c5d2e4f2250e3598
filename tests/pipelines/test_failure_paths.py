"""Every failure path made to happen: its reason in the funnel, its record in the rejects, and Beam's
metrics equal to the funnel."""

from __future__ import annotations

import gzip
import json
import tarfile
from collections import Counter
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference.base import ModelHandler
from apache_beam.options.pipeline_options import PipelineOptions

from curation.config import load_config
from manifests.manifest import load_manifest, validate_manifest
from manifests.reader import webdataset_from_manifest
from pipelines import text
from pipelines.executor import build
from pipelines.io import ReadParquetRecords
from pipelines.recipe import Filter, Model, Read, plan_run
from pipelines.transforms import METRICS_NAMESPACE
from test_executor import DIRECT, MinValue, Word, toy_recipe, words


def run_with_metrics(recipe, out: Path, input_glob: str = "unused") -> tuple[dict, dict[str, int]]:
    """Runs ``recipe`` and returns its manifest and Beam's ``kept.*``/``dropped.*`` counters."""
    pipeline = beam.Pipeline(options=PipelineOptions(DIRECT))
    build(pipeline, recipe, input_glob, str(out), plan_run(recipe))
    result = pipeline.run()
    result.wait_until_finish()
    counters = {}
    for counter in result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))["counters"]:
        counters[counter.key.metric.name] = counters.get(counter.key.metric.name, 0) + counter.committed
    return load_manifest(str(out / "manifest.json")), counters


def assert_metrics_match_funnel(manifest: dict, counters: dict[str, int], out: Path | None = None) -> None:
    """The funnel against counts made elsewhere: Beam's counters, and (given ``out``) the rejects
    table's rows and the shards' samples."""
    if out is not None:
        table = Counter((r["step"], r["reason"]) for r in rejects(out)) if (out / "rejects").exists() else Counter()
        assert table == Counter({(row["step"], reason): n for row in manifest["funnel"]
                                 for reason, n in row["dropped"].items()})
        samples = sum(1 for path in (out / "shards").glob("*.tar") for name in tarfile.open(path).getnames()
                      if name.endswith(".json"))
        assert samples == manifest["funnel"][-1]["out"] == manifest["totals"]["samples"]
    for row in manifest["funnel"]:
        assert counters.get(f"kept.{row['step']}", 0) == row["out"], row["step"]
        for reason, count in row["dropped"].items():
            assert counters.get(f"dropped.{row['step']}.{reason}", 0) == count, (row["step"], reason)
    dropped = {name: n for name, n in counters.items() if name.startswith("dropped.")}
    assert sum(dropped.values()) == sum(sum(row["dropped"].values()) for row in manifest["funnel"])


def rejects(out: Path) -> list[dict]:
    return pq.read_table(out / "rejects").to_pylist()


class Fussy(MinValue):
    """A filter that raises on some records, as a filter meeting data it was not written for does."""

    name = "fussy"

    def score(self, record: Word) -> float:
        if record.value % 10 == 7:
            raise ValueError(f"cannot score {record.text}")
        return float(record.value)


def test_a_filter_that_raises_is_a_dead_letter_per_record(tmp_path):
    manifest, counters = run_with_metrics(toy_recipe([Filter(name="fussy", filter=Fussy(0))]), tmp_path)
    row = {r["step"]: r for r in manifest["funnel"]}["fussy"]
    assert row["dropped"] == {"filter_error": 4} and row["dead_letters"] == {"filter_error": 4}
    found = [r for r in rejects(tmp_path) if r["step"] == "fussy"]
    assert sorted(r["id"] for r in found) == ["w007", "w017", "w027", "w037"]
    assert all("cannot score" in r["detail"] and r["dead_letter"] for r in found)
    assert_metrics_match_funnel(manifest, counters, tmp_path)


class Brittle(ModelHandler):
    """A model whose batch raises when it holds a poisoned record: the whole batch fails."""

    def load_model(self) -> object:
        return object.__new__(type("Loaded", (), {}))

    def batch_elements_kwargs(self):
        return {"min_batch_size": 5, "max_batch_size": 5}

    def run_inference(self, batch, model, inference_args=None):
        if any(record.value == 13 for record in batch):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return list(batch)


def test_a_model_batch_that_raises_becomes_dead_letters_and_the_run_goes_on(tmp_path):
    step = Model(name="brittle", handler=Brittle(), entry={"name": "brittle", "role": "toy", "weights": "none"})
    manifest, counters = run_with_metrics(toy_recipe([step]), tmp_path)
    row = {r["step"]: r for r in manifest["funnel"]}["brittle"]
    failed = row["dead_letters"]["batch_error"]
    assert row["dropped"] == {"batch_error": failed} and 1 <= failed <= 5, "only the poisoned batch"
    assert row["out"] == 40 - failed and manifest["totals"]["samples"] == 40 - failed
    found = [r for r in rejects(tmp_path) if r["step"] == "brittle"]
    assert "w013" in {r["id"] for r in found} and all("illegal memory access" in r["detail"] for r in found)
    assert_metrics_match_funnel(manifest, counters, tmp_path)


def _word_from_row(row: dict, source: str) -> Word:
    return Word(id=row["id"], source=source, text=row["text"], value=row["value"])


def _write_parquet(path: Path, rows: list[dict], row_group_size: int) -> None:
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=row_group_size)


def _corrupt_second_row_group(path: Path) -> None:
    """Overwrites the middle of row group 1's column data with garbage, leaving the footer intact."""
    meta = pq.ParquetFile(path).metadata.row_group(1)
    columns = [meta.column(i) for i in range(meta.num_columns)]
    start = min(c.dictionary_page_offset if c.has_dictionary_page else c.data_page_offset for c in columns)
    data = bytearray(path.read_bytes())
    data[start : start + 64] = b"\xff" * 64  # the first page header of the row group: unparsable
    path.write_bytes(bytes(data))


def test_unreadable_files_and_row_groups_are_read_step_dead_letters(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    rows = [{"id": f"r{i:02d}", "text": f"word{i}", "value": i} for i in range(30)]
    _write_parquet(inputs / "good.parquet", rows[:10], row_group_size=10)
    _write_parquet(inputs / "groups.parquet", rows[10:], row_group_size=10)
    _corrupt_second_row_group(inputs / "groups.parquet")
    (inputs / "garbage.parquet").write_bytes(b"PAR1 this is not a parquet file at all PAR1")
    recipe = toy_recipe([Filter(name="min_value", filter=MinValue(0))])
    recipe = type(recipe)(record_type=Word, steps=(Read(source=lambda glob: ReadParquetRecords(glob, _word_from_row)),
                                                     *recipe.steps[1:]), output=recipe.output, config=recipe.config)
    out = tmp_path / "out"
    manifest, counters = run_with_metrics(recipe, out, str(inputs / "*.parquet"))
    read = manifest["funnel"][0]
    assert read["dead_letters"] == {"unreadable_file": 1, "unreadable_row_group": 1}
    assert read["out"] == 20, "the good file and the intact row group of the other are read"
    sources = {r["source"]: r["reason"] for r in rejects(out)}
    assert any(s.endswith("garbage.parquet") and reason == "unreadable_file" for s, reason in sources.items())
    assert sources["groups.parquet@rowgroup1"] == "unreadable_row_group"
    assert_metrics_match_funnel(manifest, counters, out)


def test_a_gzip_jsonl_cut_short_keeps_the_rows_before_the_cut(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    lines = [json.dumps({"text": f"Document {i} says something about the harbour and its boats, item {i}."})
             for i in range(60)]
    whole = gzip.compress("\n".join(lines).encode() + b"\n")
    (inputs / "cut.jsonl.gz").write_bytes(whole[: len(whole) * 2 // 3])
    (inputs / "fine.jsonl").write_text("\n".join(lines[:5]) + "\n")
    off = [f"filters.{name}=null" for name in ("gopher_quality", "gopher_repetition", "c4", "fineweb_quality", "language")]
    config = load_config(text.TextConfig, overrides=[*off, "dedup.near=null", "dedup.paragraph_min_docs=null",
                                                     "dedup.exact=false", "packing.seq_len=64"])
    out = tmp_path / "out"
    text.run(str(inputs / "*"), str(out), config, DIRECT)
    manifest = load_manifest(str(out / "manifest.json"))
    read = manifest["funnel"][0]
    assert read["dead_letters"] == {"unreadable_file": 1}
    [cut] = [r for r in rejects(out) if r["reason"] == "unreadable_file"]
    assert "cut.jsonl.gz" in cut["source"] and cut["dead_letter"]
    assert 5 < read["out"] < 65, "the rows read before the cut are kept"
    assert manifest["packed_records"] == read["out"]


def test_a_run_that_keeps_nothing_says_so_and_the_reader_names_why(tmp_path):
    manifest, counters = run_with_metrics(toy_recipe([Filter(name="min_value", filter=MinValue(1000))]), tmp_path)
    assert validate_manifest(manifest) == [] and manifest["shards"] == [] and manifest["totals"]["samples"] == 0
    assert {r["step"]: r for r in manifest["funnel"]}["min_value"]["dropped"] == {"too_small": 40}
    assert len(rejects(tmp_path)) == 40
    assert_metrics_match_funnel(manifest, counters, tmp_path)
    with pytest.raises(ValueError, match=r"lists no shards: .*40 records.*min_value: too_small"):
        webdataset_from_manifest(str(tmp_path / "manifest.json"))
