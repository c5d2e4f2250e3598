"""The `curate` command line: help, config errors, weight refusal, Dataflow translation."""

import pytest
import yaml

from pipelines.cli import build_parser, main


@pytest.mark.parametrize("argv", [[], ["pairs"], ["interleaved"], ["captions"], ["text"], ["train-quality"], ["manifest"], ["manifest", "verify"], ["manifest", "show"], ["demo"], ["report"]])
def test_every_command_has_help(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([*argv, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: curate" in out and len(out.splitlines()) > 3


def test_print_config_applies_file_overrides_and_flags(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("shards:\n  max_samples: 5\n")
    code = main([
        "pairs", "--input", "x", "--output", "y", "--config", str(config),
        "--set", "filters.image.min_side=150", "--allow-network", "127.0.0.1/32",
        "--clip-model", "ViT-B-16", "--clip-pretrained", "/models/clip.pt", "--print-config",
    ])
    assert code == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["shards"]["max_samples"] == 5
    assert resolved["filters"]["image"]["min_side"] == 150
    assert resolved["fetch"]["allow_networks"] == ["127.0.0.1/32"]
    assert resolved["clip"] == {**resolved["clip"], "model": "ViT-B-16", "pretrained": "/models/clip.pt"}


def test_unknown_config_key_is_named(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("fetch:\n  timeout: 3\n")
    assert main(["pairs", "--input", "x", "--output", "y", "--config", str(config)]) == 2
    assert "fetch.timeout" in capsys.readouterr().err


def test_random_clip_weights_are_refused_unless_asked(tmp_path, capsys):
    code = main(["pairs", "--input", str(tmp_path / "none-*.parquet"), "--output", str(tmp_path / "o"),
                 "--clip-model", "ViT-B-32"])
    assert code == 2
    assert "--allow-random-weights" in capsys.readouterr().err


def test_a_failed_job_exits_nonzero_with_one_line(tmp_path, capsys):
    code = main(["pairs", "--input", str(tmp_path / "nothing-*.parquet"), "--output", str(tmp_path / "o"),
                 "--clip-model", "curation-tiny", "--runner=DirectRunner"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("curate: job failed") == 1


CLIP_FLAGS = ["--clip-model", "ViT-B-32", "--clip-pretrained", "gs://made-up-bucket/clip/vit-b-32.pt"]


@pytest.mark.parametrize(
    "command, flags",
    [
        ("pairs", CLIP_FLAGS),
        ("interleaved", CLIP_FLAGS),
        ("text", ["--seq-len", "4096"]),
        ("captions", ["--generator-endpoint", "http://127.0.0.1:9/v1", "--generator-name", "qwen2-vl"]),
    ],
)
def test_translates_for_dataflow_offline(command, flags, monkeypatch, capsys):
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # no probe of a GCE metadata server
    code = main([
        command, "--input", "gs://made-up-bucket/input/*", "--output", "gs://made-up-bucket/out", *flags,
        "--runner=DataflowRunner", "--dry_run=True", "--no_auth", "--project=made-up-project", "--region=us-central1",
        "--temp_location=gs://made-up-bucket/tmp",
    ])
    assert code == 0, capsys.readouterr().err
    assert "translated, not run" in capsys.readouterr().out


def test_the_suite_cannot_leave_loopback():
    import socket

    from loopback_guard import check_address, guarded_connect

    assert socket.socket.connect is guarded_connect, "the suite-wide guard is installed"
    with socket.socket() as sock:  # the check alone: nothing connects, even if it were broken
        with pytest.raises(PermissionError):
            check_address(sock, ("10.0.0.1", 80))
        assert check_address(sock, ("127.0.0.2", 80)) is None


def test_input_is_needed_unless_resuming(tmp_path, capsys):
    assert main(["text", "--output", str(tmp_path)]) == 2
    assert "needs --input" in capsys.readouterr().err
    code = main(["text", "--output", str(tmp_path), "--resume-from", "deduplicated"])
    assert code == 1, "no stage tables there: the job fails, but the usage was right"


@pytest.fixture(scope="module")
def document_files(tmp_path_factory):
    from sampledata.documents import write_document_inputs

    directory = tmp_path_factory.mktemp("report-documents")
    write_document_inputs(str(directory))
    return directory


def test_a_run_ends_with_its_report_and_curate_report_rewrites_it(document_files, tmp_path, capsys):
    from report_page import assert_report_loads

    out = tmp_path / "out"
    code = main(["documents", "--input", str(document_files / "*"), "--output", str(out), "--set", "documents.dpi=100",
                 "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert f"report: {out / 'report.html'}" in capsys.readouterr().out.splitlines()
    load = assert_report_loads(out / "report.html", tmp_path / "chromium")
    assert "encrypted (dead letter)" in load.dom and "near_duplicate" in load.dom, "the run's drop reasons"
    assert load.dom.count('<article class="card document">') == 5 and load.dom.count('<article class="card reject">') == 5
    again = tmp_path / "again.html"
    assert main(["report", str(out), "--output", str(again)]) == 0
    assert capsys.readouterr().out == f"report: {again}\n"
    assert again.read_bytes() == (out / "report.html").read_bytes()


def test_no_report_writes_none(document_files, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["documents", "--input", str(document_files / "scan.png"), "--output", str(out), "--no-report"]) == 0
    assert (out / "manifest.json").exists() and not (out / "report.html").exists()
    assert "report:" not in capsys.readouterr().out


def test_report_of_a_folder_without_a_manifest_is_an_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"curate: error: {tmp_path} holds neither manifest.json nor stage.json: not the output of a run\n"
