"""The console: third-party warnings shown once and counted, the progress line, quiet, the summary."""

import io
import logging
import os
import subprocess
import sys
import warnings

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.internal.cloudpickle import cloudpickle
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability.api import beam_fn_api_pb2
from apache_beam.runners.portability import local_job_service
from apache_beam.runners.portability.fn_api_runner import worker_handlers
from warcio.archiveiterator import ArchiveIterator
from warcio.warcwriter import WARCWriter

from pipelines import console
from shard_samples import MULTIPROCESS

WARCIO_MESSAGE = "Replacing spaces in invalid WARC-Target-URI"
WARCIO_TEMPLATE = f"{WARCIO_MESSAGE}: <url>"


def warc_with_spaces(uris: list[str]) -> bytes:
    """An uncompressed WARC of resource records whose WARC-Target-URI is written as given."""
    buffer = io.BytesIO()
    writer = WARCWriter(buffer, gzip=False)
    for uri in uris:
        record = writer.create_warc_record(
            uri, "resource", payload=io.BytesIO(b"<p>hello</p>"), warc_content_type="text/html"
        )
        writer.write_record(record)
    return buffer.getvalue()


def read_uris(data: bytes) -> list[str]:
    """Reads a WARC with warcio, which logs its complaint about each URI with spaces."""
    return [record.rec_headers.get_header("WARC-Target-URI") for record in ArchiveIterator(io.BytesIO(data))]


@pytest.fixture
def installed(monkeypatch):
    monkeypatch.delenv(console.ENV_PROGRESS, raising=False)
    console.install()
    yield
    console.uninstall()


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class TtyBuffer(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_templates_drop_what_varies_per_record():
    template = console.message_template
    assert template(f"{WARCIO_MESSAGE}: http://a.example/x y z.html") == WARCIO_TEMPLATE
    assert template(f"{WARCIO_MESSAGE}: https://b.example/q?id=7 &x") == WARCIO_TEMPLATE
    assert template("fetch https://a.example/x: timeout after 3.5 s") == "fetch <url>: timeout after <n> s"
    assert template("Image /tmp/d81/img_0042.jpg truncated (12 bytes)") == "Image <path> truncated (<n> bytes)"
    assert template("object at 0x7f3a2b1c id 3f9a2c4b8e") == "object at <hex> id <hex>"
    assert template("Polyfit may be poorly conditioned") == "Polyfit may be poorly conditioned"


def test_real_warcio_warning_is_shown_once_and_counted(installed, capfd):
    uris = [f"http://example.com/page {i}.html" for i in range(7)]
    with console.step_context("read"):
        assert read_uris(warc_with_spaces(uris)) == [u.replace(" ", "%20") for u in uris]
    err = capfd.readouterr().err
    assert err.count(WARCIO_MESSAGE) == 1
    assert "http://example.com/page 0.html" in err  # the first one, as warcio wrote it
    assert console.warning_counts() == {("read", WARCIO_TEMPLATE): 7}
    assert console.summary_lines() == [f'warnings: read: "{WARCIO_TEMPLATE}" x7 (shown once)']


def test_a_different_message_still_shows_and_own_messages_pass(installed, capfd):
    with console.step_context("read"):
        read_uris(warc_with_spaces(["http://example.com/a b", "http://example.com/c d"]))
    with console.step_context("decode"):
        for size in (5000, 6000, 7000):
            logging.getLogger("PIL.Image").warning("Image size (%d pixels) exceeds limit", size)
        for _ in range(3):
            logging.getLogger("curation.fetch").warning("our own warning")
    err = capfd.readouterr().err
    assert err.count(WARCIO_MESSAGE) == 1
    assert err.count("exceeds limit") == 1 and "Image size (5000 pixels)" in err
    assert err.count("our own warning") == 3  # this project's records are never held back
    counts = console.warning_counts()
    assert counts[("decode", "Image size (<n> pixels) exceeds limit")] == 3
    assert not any(template == "our own warning" for _, template in counts)
    assert sorted(console.summary_lines()) == [
        'warnings: decode: "Image size (<n> pixels) exceeds limit" x3 (shown once)',
        f'warnings: read: "{WARCIO_TEMPLATE}" x2 (shown once)',
    ]


def test_numpy_rank_warning_shown_once(installed, recwarn):
    # recwarn's catch_warnings replaced showwarning: install again inside it.
    warnings.simplefilter("always")  # Python's own once-per-location would hide the repeats
    console.install()
    with console.step_context("batch"):
        for _ in range(10):
            np.polyfit([1.0, 1.0, 1.0], [1.0, 2.0, 3.0], 1)  # rank-deficient: numpy's RankWarning
    assert [str(w.message) for w in recwarn] == ["Polyfit may be poorly conditioned"]
    assert console.warning_counts() == {("batch", "RankWarning: Polyfit may be poorly conditioned"): 10}


def test_quiet_shows_no_progress_line(monkeypatch, capfd):
    monkeypatch.setenv(console.ENV_PROGRESS, "1")  # forced on: quiet must still win
    console.install(quiet=True)
    console.install()  # a later plain install (the executor's, after the CLI's --quiet) keeps it
    try:
        clock, out = FakeClock(), io.StringIO()
        reporter = console.Progress(clock=clock, stream=out)
        for _ in range(5):
            reporter.record("read", kept=True)
            clock.now += 3
        assert out.getvalue() == "" and reporter.lines_written == 0
        assert console.progress().enabled is False
        # Warnings are still shown once: a quiet CI log names them.
        with console.step_context("read"):
            read_uris(warc_with_spaces(["http://example.com/a b", "http://example.com/c d"]))
        assert capfd.readouterr().err.count(WARCIO_MESSAGE) == 1
        assert console.summary_lines() == [f'warnings: read: "{WARCIO_TEMPLATE}" x2 (shown once)']
    finally:
        console.uninstall()
    # Not quiet, same environment: the line is drawn.
    clock, out = FakeClock(), io.StringIO()
    reporter = console.Progress(clock=clock, stream=out)
    for _ in range(5):
        reporter.record("read", kept=True)
        clock.now += 3
    assert reporter.lines_written == 4 and out.getvalue().count("\n") == 4


def test_progress_draws_at_most_one_line_per_interval():
    clock, out = FakeClock(), io.StringIO()
    reporter = console.Progress(interval=2.0, clock=clock, stream=out, enabled=True)
    for step_time in (0.0, 0.5, 1.9):
        clock.now = 100.0 + step_time
        reporter.record("read", kept=True)
    assert out.getvalue() == ""
    clock.now = 102.0
    for i in range(5):
        reporter.record("extract", kept=i % 2 == 0)  # 3 of 5 kept
    assert out.getvalue().splitlines() == ["read 3 in · extract 1 in | 2 rec/s | 0:02"]
    for step_time in (2.1, 3.0, 3.99):
        clock.now = 100.0 + step_time
        reporter.record("read", kept=True)
    assert reporter.lines_written == 1
    clock.now = 165.0
    reporter.record("read", kept=True)
    assert out.getvalue().splitlines()[1] == "read 7 in · extract 3 of 5 kept | 0 rec/s | 1:05"
    assert reporter.lines_written == 2


def test_progress_is_off_without_a_tty_and_rewrites_in_place_on_one(monkeypatch):
    monkeypatch.delenv(console.ENV_PROGRESS, raising=False)
    monkeypatch.delenv(console.ENV_QUIET, raising=False)
    clock = FakeClock()
    plain = console.Progress(clock=clock, stream=io.StringIO())
    tty = TtyBuffer()
    live = console.Progress(clock=clock, stream=tty)
    for _ in range(3):
        plain.record("read")
        live.record("read")
        clock.now += 2.5
    assert plain.lines_written == 0 and plain.stream.getvalue() == ""
    assert tty.getvalue() == "\rread 2 in | 1 rec/s | 0:02\x1b[K\rread 3 in | 1 rec/s | 0:05\x1b[K"
    live.finish()
    assert tty.getvalue().endswith("\r\x1b[K")


def worker_log_entries(n: int) -> beam_fn_api_pb2.LogEntry.List:
    """What a worker's FnApiLogRecordHandler sends for warcio's warning on ``n`` records."""
    location = "/venv/lib/python3.11/site-packages/warcio/recordloader.py:264"
    return beam_fn_api_pb2.LogEntry.List(
        log_entries=[
            beam_fn_api_pb2.LogEntry(
                severity=beam_fn_api_pb2.LogEntry.Severity.WARN,
                message=f"{WARCIO_MESSAGE}: http://example.com/page {i}.html",
                instruction_id="bundle_3",
                transform_id="read/Parse",
                log_location=location,
                thread="Thread-12",
            )
            for i in range(n)
        ]
    )


def test_worker_records_beam_forwards_are_short_and_shown_once(installed, capfd):
    # The job service's logging servicer (multi_processing) and the FnApiRunner's own.
    local_job_service.BeamFnLoggingServicer().Logging(iter([worker_log_entries(4)]))
    list(worker_handlers.BasicLoggingService().Logging(iter([worker_log_entries(3)])))
    err = capfd.readouterr().err
    assert err.count(WARCIO_MESSAGE) == 1, err
    assert "WARNING:warcio.recordloader (worker):" in err
    assert "severity" not in err and "bundle_3" not in err
    assert console.warning_counts() == {("read", WARCIO_TEMPLATE): 7}


class WarcioPerRecord(beam.DoFn):
    """Reads a one-record WARC whose URI has a space: warcio logs its warning once per record."""

    def __init__(self, fit: bool = False) -> None:
        self.fit = fit

    def setup(self) -> None:
        console.ensure_installed()

    def process(self, index: int):
        with console.step_context("read"):
            yield from read_uris(warc_with_spaces([f"http://example.com/page {index}.html"]))
        if self.fit:
            with console.step_context("fit"):
                np.polyfit([1.0, 1.0, 1.0], [1.0, 2.0, 3.0], 1)  # numpy's RankWarning, a Python warning


def run_warcio_pipeline(argv: list[str], n: int, fit: bool = False):
    pipeline = beam.Pipeline(options=PipelineOptions(argv))
    _ = pipeline | "Create" >> beam.Create(range(n)) | "read" >> beam.ParDo(WarcioPerRecord(fit))
    result = pipeline.run()
    result.wait_until_finish()
    return result


def warnings_counter(result) -> int:
    counters = result.metrics().query(MetricsFilter().with_namespace("curation").with_name("warnings.read"))
    return sum(c.committed for c in counters["counters"])


def test_beam_pipeline_prints_the_warning_once(installed, capfd):
    result = run_warcio_pipeline(["--runner=DirectRunner"], 50)
    err = capfd.readouterr().err
    assert err.count(WARCIO_MESSAGE) == 1, err
    assert console.warning_counts() == {("read", WARCIO_TEMPLATE): 50}
    assert warnings_counter(result) == 50
    # Counted in this process and in its metrics: nothing is put down to worker processes.
    assert console.summary_lines(result) == [f'warnings: read: "{WARCIO_TEMPLATE}" x50 (shown once)']
    assert console.summary_lines(result) == [f'warnings: read: "{WARCIO_TEMPLATE}" x50 (shown once)']  # read once
    # A second pipeline in the same process (as in the demo) adds up, still shown once.
    again = run_warcio_pipeline(["--runner=DirectRunner"], 20)
    assert WARCIO_MESSAGE not in capfd.readouterr().err
    assert console.summary_lines(again) == [f'warnings: read: "{WARCIO_TEMPLATE}" x70 (shown once)']


@pytest.fixture
def by_value():
    """Workers cannot import this test module: its DoFn travels by value."""
    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)
    yield
    cloudpickle.unregister_pickle_by_value(module)


def test_multiprocess_workers_forward_the_warning_once(installed, by_value, capfd):
    result = run_warcio_pipeline(MULTIPROCESS, 50, fit=True)
    err = capfd.readouterr().err
    assert err.count(WARCIO_MESSAGE) == 1, err
    assert "warcio.recordloader (worker, read):Replacing spaces" in err  # the forwarded record, short
    assert "severity: WARN" not in err and "timestamp {" not in err
    # A worker's Python warning goes to the launcher through logging: once for all workers.
    assert err.count("Polyfit may be poorly conditioned") == 1, err
    assert warnings_counter(result) == 50  # counted in the workers
    # The forwarded first occurrences (one per worker) counted here, the rest in the workers.
    [line] = [line for line in console.summary_lines(result) if line.startswith("warnings: read:")]
    assert line.startswith(f'warnings: read: "{WARCIO_TEMPLATE}" x50 (shown once; '), line
    assert line.endswith(" of them counted in worker processes)"), line
    assert not any("start-up" in line or "semi_persistent" in line for line in console.summary_lines(result))


def test_random_weights_announced_once_per_launch(monkeypatch, capfd):
    from curation.models.clip import RANDOM_WEIGHTS_ANNOUNCED_ENV, TINY_CONFIG_NAME, ClipSpec, announce_random_weights

    monkeypatch.setenv(RANDOM_WEIGHTS_ANNOUNCED_ENV, "")  # restored (unset) after the test
    spec = ClipSpec(model=TINY_CONFIG_NAME)
    for _ in range(3):  # the CLI's check before each pipeline of the demo
        announce_random_weights(spec)
    assert capfd.readouterr().err.count("RANDOM weights") == 1
    # A worker process started afterwards inherits the mark: its model load says nothing.
    load_in_worker = (
        "from curation.models.clip import ClipSpec, _announce_random_weights_on_load as a; "
        f"a(ClipSpec(model={TINY_CONFIG_NAME!r}))"
    )
    worker = subprocess.run([sys.executable, "-c", load_in_worker], capture_output=True, text=True, check=True)
    assert "RANDOM" not in worker.stderr
    unannounced = dict(os.environ, **{RANDOM_WEIGHTS_ANNOUNCED_ENV: ""})
    worker = subprocess.run(
        [sys.executable, "-c", load_in_worker], capture_output=True, text=True, check=True, env=unannounced
    )
    assert "RANDOM weights" in worker.stderr  # nobody announced it: the load does
