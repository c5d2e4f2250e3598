"""End to end: `curate documents` on files and sources the tests make, through real OCR, TeX and a loopback LLM."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curation.config import load_config
from manifests.manifest import load_manifest, verify_manifest
from pipelines import documents
from pipelines.cli import main
from pipelines.executor import BudgetExceeded
from sampledata.documents import HARBOUR_REPORT, MUSEUM_NOTE, SCANNED_PAGE, write_document_inputs, write_render_sources
from sampledata.llm_server import LLMServer
from shard_samples import MULTIPROCESS, PORTABLE, hugging_face_rows, read_samples
from text_distance import cer_words

CONFIG = """
dataset: documents-test
documents:
  dpi: 100
shards:
  max_samples: 3
"""


def pages(out: Path) -> dict[tuple[str, int], tuple[dict, dict[str, bytes]]]:
    return {(info["file"], info["page"]): (info, files) for info, files in read_samples(out)}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("documents-input")
    return str(directory / "*"), write_document_inputs(str(directory))


@pytest.fixture(scope="module")
def config():
    return load_config(documents.DocumentsConfig, text=CONFIG)


@pytest.fixture(scope="module")
def direct_run(inputs, config, tmp_path_factory):
    out = tmp_path_factory.mktemp("documents-direct")
    documents.run(inputs[0], str(out), config, ["--runner=DirectRunner"])
    return out


def test_files_become_pages_and_bad_files_dead_letters(direct_run, inputs):
    _, cases = inputs
    manifest = load_manifest(str(direct_run / "manifest.json"))
    assert verify_manifest(str(direct_run / "manifest.json")) == []
    files = {row["step"]: row for row in manifest["extra"]["file_funnel"]}
    assert files["read"]["in"] == len(cases)
    assert files["open"]["dropped"] == {"corrupt_pdf": 1, "encrypted": 1, "not_a_document": 1}
    assert files["open"]["dead_letters"] == files["open"]["dropped"]
    assert manifest["funnel"][0] == {"step": "pages", "in": 7, "out": 7, "dropped": {}}
    dedup = {row["step"]: row for row in manifest["funnel"]}["text_dedup"]
    assert dedup["dropped"] == {"near_duplicate": 2}, "the copy's two pages"
    rejects = pq.read_table(direct_run / "rejects").to_pylist()
    by_source = {r["source"].split("#")[0]: r["reason"] for r in rejects}
    for case in cases:
        if case.expect != "pages":
            assert by_source[case.name] == case.expect
    found = pages(direct_run)
    assert sorted((name.replace("report-copy", "report"), page) for name, page in found) == [
        ("report.pdf", 0), ("report.pdf", 1), ("scan.png", 0), ("scans.tiff", 0), ("scans.tiff", 1)
    ], "each page of the two copies survives once"
    assert manifest["extra"]["notes"] == ["no generator was configured: the pages carry no QA pairs"]


def test_a_pdf_keeps_its_text_layer_and_scans_are_ocred(direct_run):
    found = pages(direct_run)
    report, files = found.get(("report.pdf", 0)) or found[("report-copy.pdf", 0)]
    assert report["route"] == "text_layer" and report["engine"] == "pdf_text_layer"
    assert all(sentence in files["txt"].decode() for sentence in HARBOUR_REPORT)
    assert files["png"][:8] == b"\x89PNG\r\n\x1a\n"
    scan, files = found[("scan.png", 0)]
    assert scan["route"] == "ocr" and scan["engine"] == "rapidocr_onnxruntime" and 0.6 < scan["confidence"] <= 1.0
    assert cer_words("\n".join(SCANNED_PAGE), files["txt"].decode()) < 0.02
    assert [line["text"] for line in scan["lines"]][:1] == [SCANNED_PAGE[0]]
    assert all(len(line["box"]) == 4 for line in scan["lines"])
    tiff, files = found[("scans.tiff", 0)]
    assert cer_words("\n".join(MUSEUM_NOTE), files["txt"].decode()) < 0.02
    assert found[("scans.tiff", 1)][0]["route"] == "ocr"


def test_route_ocr_records_the_agreement_with_the_text_layer(inputs, config, tmp_path):
    forced = dataclasses.replace(config, documents=dataclasses.replace(config.documents, route="ocr", dpi=150))
    only_report = str(Path(inputs[0]).parent / "report.pdf")
    documents.run(only_report, str(tmp_path), forced, ["--runner=DirectRunner"])
    report, files = pages(tmp_path)[("report.pdf", 0)]
    assert report["route"] == "ocr" and "text_layer" not in report["meta"]
    assert report["stats"]["ocr_agreement"] > 0.9
    assert "Cargo volume rose by 12 percent" in " ".join(files["txt"].decode().split())


def test_runners_write_identical_shards(inputs, config, direct_run, job_service, tmp_path):
    multi = tmp_path / "multi"
    portable = tmp_path / "portable"
    documents.run(inputs[0], str(multi), config, MULTIPROCESS)
    documents.run(inputs[0], str(portable), config, [*PORTABLE, f"--job_endpoint={job_service}"])
    reference = {p.name: p.read_bytes() for p in (direct_run / "shards").glob("*.tar")}
    assert reference
    for out in (multi, portable):
        assert {p.name: p.read_bytes() for p in (out / "shards").glob("*.tar")} == reference


@pytest.mark.parametrize("kind", ["render-text", "render-chart", "render-latex"])
def test_sources_render_into_pages_whose_target_is_the_source(kind, config, tmp_path):
    source = write_render_sources(str(tmp_path / "in"), kind)
    out = tmp_path / "out"
    documents.run(source, str(out), dataclasses.replace(config, kind=kind), ["--runner=DirectRunner"])
    manifest = load_manifest(str(out / "manifest.json"))
    found = [info for info, _ in read_samples(out)]
    rejects = pq.read_table(out / "rejects").to_pylist()
    if kind == "render-text":
        assert len(found) == 2 and all(info["route"].startswith("text:") for info in found)
    elif kind == "render-chart":
        assert sorted(info["route"] for info in found) == ["matplotlib:bar", "vega-lite"]
        assert [r["reason"] for r in rejects] == ["bad_chart_spec"]
    else:
        assert sorted(info["route"] for info in found) in (["pdflatex", "pdflatex"], ["matplotlib:table", "mathtext"])
        reasons = {r["reason"]: r["detail"] for r in rejects}
        assert set(reasons) == {"latex_error", "latex_refused"}
        if found[0]["route"] == "pdflatex":
            assert reasons["latex_error"].startswith("!")
    texts = [files["txt"].decode() for _, files in read_samples(out)]
    if kind == "render-chart":
        assert any("| pier 7 | 520 |" in re.sub(r" +", " ", text) for text in texts)
    assert manifest["funnel"][0]["step"] == "pages"


def test_qa_pairs_through_a_loopback_endpoint(inputs, config, tmp_path):
    only_report = str(Path(inputs[0]).parent / "report.pdf")
    with LLMServer() as server:
        code = main([
            "documents", "--input", only_report, "--output", str(tmp_path), "--generator-endpoint", server.base_url,
            "--generator-name", "rule-based-test-model", "--set", "documents.dpi=100", "--quiet",
            "--runner=DirectRunner",
        ])
        assert code == 0 and server.requests >= 2
    found = pages(tmp_path)
    report, _ = found[("report.pdf", 0)]
    assert 1 <= len(report["qa"]) <= 3
    assert all(pair["answer"] in " ".join(HARBOUR_REPORT) for pair in report["qa"])
    manifest = load_manifest(str(tmp_path / "manifest.json"))
    writer = manifest["models"][-1]
    assert writer["role"] == "qa_writer" and writer["prompt"] == "document_qa_v1"
    assert writer["note"].startswith("its output is in 2 of the 2 samples")
    assert "notes" not in manifest.get("extra", {})


def test_the_cli_explains_documents(capsys):
    with pytest.raises(SystemExit):
        main(["documents", "--help"])
    out = capsys.readouterr().out
    assert "--kind" in out and "--ocr-backend" in out and "render-latex" in out


def test_qa_through_a_tiny_random_local_model_falls_back_and_says_so(inputs, config, tmp_path, monkeypatch):
    from curation.models.hf_generator import TransformersGenerator
    from tiny_models import save_tiny_lm

    model_dir = tmp_path / "tiny-lm"
    save_tiny_lm(model_dir)
    loads = []
    real_load = TransformersGenerator.load.__func__
    monkeypatch.setattr(TransformersGenerator, "load", classmethod(lambda cls, *a, **k: loads.append(1) or real_load(cls, *a, **k)))
    only_report = str(Path(inputs[0]).parent / "report.pdf")
    tiny = load_config(documents.DocumentsConfig, text=CONFIG + f"""
generator:
  model: {model_dir}
  batch_size: 2
  settings:
    max_new_tokens: 16
""")
    out = tmp_path / "out"
    with pytest.raises(BudgetExceeded, match="step qa: 2 of 2 records fell back"):
        documents.run(only_report, str(out), tiny, ["--runner=DirectRunner"])
    assert loads == [1], "the model loads once per worker"
    manifest = load_manifest(str(out / "manifest.json"))
    qa = {row["step"]: row for row in manifest["funnel"]}["qa"]
    assert qa["fallback"] == {"no_qa": 2}, "random weights write no valid QA: the pages keep none"
    writer = manifest["models"][-1]
    assert writer["weights"] == f"path:{model_dir}" and writer["note"].startswith("no output of this model was written")
    for info, _ in read_samples(out):
        assert info["qa"] == [] and info["meta"]["qa"]["attempts"] == 2


def test_hugging_face_datasets_reads_every_page_whole(direct_run, tmp_path):
    rows = hugging_face_rows(direct_run, tmp_path)
    assert {key for row in rows for key in row} == {"png", "txt", "json", "__key__", "__url__"}
    assert {(row["json"]["file"], row["json"]["page"]) for row in rows} == set(pages(direct_run))
    assert all(row["png"].size == (row["json"]["image"]["width"], row["json"]["image"]["height"]) for row in rows)
