"""A console people can read: third-party warnings once, a progress line, a summary at the end.

Three things, all process-wide:

* **Repeated warnings are counted, not printed.** :func:`install` (the launching process) and
  :func:`ensure_installed` (each worker process, from ``DoFn.setup``) put one filter in front of
  Python's ``warnings`` and of every ``logging`` handler. A third-party record (warcio, PIL,
  numpy, Beam, transformers, torch, urllib3, ...: anything not logged from this project's
  packages) at WARNING or ERROR is shown the first time its *template* occurs (its text with
  URLs, paths, hex ids and numbers normalised away) and only counted after that, against the
  pipeline step that was running (:func:`step_context`). :func:`summary_lines` lists what was
  held back. This project's own records pass through untouched.
* **A progress line** (:class:`Progress`): ``read 1,204 in · extract 1,100 of 1,204 kept |
  312 rec/s | 0:41``, rewritten on stderr at most every ~2 s, only on a TTY (or with
  ``CURATION_PROGRESS=1``) and never with ``--quiet``.
* **Quiet** (``install(quiet=True)``, for CI): no progress line. The first occurrence of each
  warning is still shown (one line each, as it happens), so a quiet log still names them.

How the noise reaches the console, and where this module intercepts it:

* warcio reports a ``WARC-Target-URI`` with spaces with ``logging.getLogger("warcio.recordloader")
  .warning("Replacing spaces in invalid WARC-Target-URI: " + uri)``: one record per URL, the URL
  already formatted into the message (hence the normalisation). It also writes a few other
  complaints straight to ``sys.stderr`` (truncated records, digest problems); those bypass
  logging and warnings and are not intercepted here.
* numpy's ``RankWarning`` ("Polyfit may be poorly conditioned", from the batch-size estimator
  of Beam's ``BatchElements``) is a Python warning, printed by ``warnings.showwarning``.
* Beam's ``DirectRunner`` with ``--direct_running_mode=multi_processing`` starts workers as
  ``python -m apache_beam.runners.worker.sdk_worker_main`` subprocesses. Each worker's root
  logger gets an ``FnApiLogRecordHandler`` that ships every record over gRPC to the launcher,
  where ``local_job_service.BeamFnLoggingServicer`` logs it again as
  ``"Worker: %s" % str(log_entry)`` (the whole ``LogEntry`` protobuf on one line: severity,
  timestamp, message, instruction and transform ids, location, thread) on the
  ``apache_beam.runners.portability.local_job_service`` logger (the FnApiRunner's own
  ``BasicLoggingService`` does the same on the root logger). Workers inherit the launcher's
  stderr, so a worker's ``warnings`` print there directly. Hence two filters: the worker's (run
  :func:`ensure_installed` in ``DoFn.setup``: the worker's ``FnApiLogRecordHandler`` exists by
  then) keeps repeats from being forwarded at all and sends its first warnings through logging
  rather than its raw stderr; the launcher's parses forwarded entries back into a short record
  (``WARNING:warcio.recordloader (worker, read):Replacing spaces ...``) and dedupes them across
  workers. Messages a worker logs at import time, before any ``DoFn.setup`` (Beam's "Failed to
  import GCSFileSystem"), still print once per worker.

A worker prefixes each warning it lets through with ``[curation step=<step>] ``, which the
launcher strips again, so a forwarded warning counts against the step that raised it.

Counts across processes: each process counts its own. With ``count_in_metrics`` (the default),
every third-party warning counted inside a Beam bundle also increments the Beam counter
``curation:warnings.<step>``; :func:`absorb_result` (or :func:`summary_lines` given the
``PipelineResult``) reads them back and adds, per step, the occurrences counted in other
(worker) processes: to the step's line when the launcher saw one template for that step (the
forwarded first occurrence), else as a line with a count and no text.

:func:`install` sets ``CURATION_CONSOLE`` (and ``CURATION_QUIET``) in ``os.environ``, so worker
processes started afterwards know to install and whether to be quiet; :func:`ensure_installed`
does nothing where they are absent (tests that run pipelines without the CLI, remote runners).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

ENV_CONSOLE = "CURATION_CONSOLE"  # the launcher's pid: set by install(), inherited by workers
ENV_QUIET = "CURATION_QUIET"  # "1": no progress line
ENV_PROGRESS = "CURATION_PROGRESS"  # "1": progress lines without a TTY (one per line); "0": none
PROGRESS_INTERVAL_S = 2.0
NO_STEP = "(no step)"
WORKER_START_UP = "(worker start-up)"  # forwarded worker records outside any transform: once per worker
FIRST_PARTY = ("curation", "pipelines", "filters", "synth", "manifests", "sampledata")
_ROOT = Path(__file__).resolve().parent.parent
_FIRST_PARTY_DIRS = tuple(str(_ROOT / package) + os.sep for package in FIRST_PARTY)
_MARK = "_curation_console"  # a record's memoised verdict: one record passes several handlers
_TEMPLATE_SHOWN_CHARS = 120

_FORWARDING_LOGGER = "apache_beam.runners.portability.local_job_service"
# A worker prefixes the warnings it lets through with its step, which the launcher reads back.
_STEP_TAG = "[curation step={}] "
_STEP_TAG_PATTERN = re.compile(r"^\[curation step=([^\]]*)\] ")

# A URL runs to the end of the message, or to a quote, bracket or ": " / ", " / "; " / " (":
# warcio's URIs contain spaces, so stopping at the first space would keep a per-URL tail.
_URL = re.compile(r"""\b[a-zA-Z][a-zA-Z0-9+.-]*://.*?(?=$|\n|["'<>)\]]|[:;,]\s|\s\()""")
_PATH = re.compile(r"(?<![\w.:/~])(?:/[\w.+@~-]+){2,}/?")
_HEX = re.compile(r"\b0x[0-9a-fA-F]+\b|\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_SPACES = re.compile(r"\s+")


def message_template(text: str) -> str:
    """``text`` with URLs, absolute paths, hex ids and numbers replaced by ``<url>``, ``<path>``,
    ``<hex>`` and ``<n>``, whitespace collapsed: what repeats of one warning have in common."""
    text = _URL.sub("<url>", text)
    text = _PATH.sub("<path>", text)
    text = _HEX.sub("<hex>", text)
    text = _NUMBER.sub("<n>", text)
    return _SPACES.sub(" ", text).strip()


# -- the step that is running -------------------------------------------------------------

_thread = threading.local()


def set_step(name: str | None) -> str | None:
    """Makes ``name`` this thread's current step (``None``: none); returns the previous one.

    The cheapest way for a DoFn: ``set_step(self.step)`` at the top of ``process``.
    """
    previous = getattr(_thread, "step", None)
    _thread.step = name
    return previous


@contextlib.contextmanager
def step_context(name: str) -> Iterator[None]:
    """Within the block, warnings on this thread are counted against step ``name``."""
    previous = set_step(name)
    try:
        yield
    finally:
        set_step(previous)


def current_step() -> str:
    """This thread's step: the one set by :func:`set_step` / :func:`step_context`; else the
    top-level label of the Beam transform running on this thread (``"extract"`` for
    ``"extract/Judge"``); else :data:`NO_STEP`."""
    step = getattr(_thread, "step", None)
    if step:
        return step
    transform = _beam_transform()
    return _step_of_transform(transform) if transform else NO_STEP


def _beam_transform() -> str | None:
    """The id of the Beam transform running on this thread, when one is (as Beam's own log
    handler finds it)."""
    module = sys.modules.get("apache_beam.runners.worker.statesampler")
    if module is None:
        return None
    try:
        tracker = module.get_current_tracker()
        state = tracker.current_state() if tracker else None
        return getattr(getattr(state, "name_context", None), "transform_id", None) or None
    except Exception:  # a console helper never breaks a record
        return None


def _step_of_transform(transform_id: str) -> str:
    return transform_id.split("/", 1)[0] or NO_STEP


# -- process state -------------------------------------------------------------------------


class _State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.role: str | None = None  # "launcher", "worker" or None (not installed)
        self.quiet = False
        self.count_in_metrics = True
        self.shown: dict[str, str] = {}  # template -> the step it was shown (or held) under
        self.counts: Counter[tuple[str, str]] = Counter()
        self.in_metrics: Counter[str] = Counter()  # per step: also counted in this process's Beam metrics
        self.forwarded: Counter[str] = Counter()  # per step: counted here from a worker's forwarded record
        self.elsewhere: Counter[str] = Counter()  # per step: counted only by other processes (from results)
        self.accounted: Counter[str] = Counter()  # per step: in_metrics + forwarded already set against a result
        self.absorbed: list[Any] = []  # the results already read
        self.handler: logging.Handler | None = None
        self.original_showwarning: Callable[..., Any] | None = None
        self.env_set: list[str] = []
        self.progress: Progress | None = None


_state = _State()


def _observe(template: str, step: str, forwarded: bool = False) -> bool:
    """Counts one third-party warning; True when it is to be shown (its first occurrence)."""
    with _state.lock:
        _state.counts[(step, template)] += 1
        first = template not in _state.shown
        if first:
            _state.shown[template] = step
        if forwarded:
            _state.forwarded[step] += 1
    if _state.count_in_metrics and not forwarded:
        _count_in_metrics(step)
    return first


def _count_in_metrics(step: str) -> None:
    try:
        from apache_beam.metrics import Metrics
        from apache_beam.metrics.execution import MetricsEnvironment

        if MetricsEnvironment.current_container() is None:
            return  # not inside a bundle: nothing would record it
        Metrics.counter(_metrics_namespace(), f"warnings.{step}").inc()
    except Exception:
        return
    with _state.lock:
        _state.in_metrics[step] += 1


def _metrics_namespace() -> str:
    from pipelines.transforms import METRICS_NAMESPACE

    return METRICS_NAMESPACE


def warning_counts() -> dict[tuple[str, str], int]:
    """Third-party warnings counted in this process so far: ``{(step, template): n}``, shown
    occurrences included."""
    with _state.lock:
        return dict(_state.counts)


def _is_first_party_path(path: str) -> bool:
    return bool(path) and os.path.abspath(path).startswith(_FIRST_PARTY_DIRS)


def _is_first_party_logger(name: str) -> bool:
    return name.split(".", 1)[0] in FIRST_PARTY


# -- logging -------------------------------------------------------------------------------


class _ConsoleFilter(logging.Filter):
    """Lets a third-party record through the first time its template occurs; counts the rest."""

    def filter(self, record: logging.LogRecord) -> bool:
        verdict = getattr(record, _MARK, None)
        if verdict is None:
            try:
                verdict = _judge(record)
            except Exception:  # never lose a record to a console bug
                verdict = True
            setattr(record, _MARK, verdict)
        return verdict


_FILTER = _ConsoleFilter()


def _judge(record: logging.LogRecord) -> bool:
    entry = _forwarded_entry(record)
    if entry is not None:
        return _judge_forwarded(record, entry)
    if not logging.WARNING <= record.levelno < logging.CRITICAL or _is_first_party_logger(record.name):
        return True
    step = current_step()
    show = _observe(message_template(record.getMessage()), step)
    if show and _state.role == "worker":
        tag = _STEP_TAG.format(step)
        record.msg = (tag.replace("%", "%%") if record.args else tag) + str(record.msg)
    return show


def _forwarded_entry(record: logging.LogRecord) -> str | None:
    """The text of a Beam ``LogEntry`` a worker sent and the launcher logged again, if it is one."""
    if record.name == _FORWARDING_LOGGER and record.msg == "Worker: %s" and record.args:
        return str(record.args[0] if isinstance(record.args, tuple) else record.args)
    if record.funcName == "Logging" and record.pathname.endswith("worker_handlers.py") and not record.args:
        return str(record.msg)
    return None


def _parse_log_entry(text: str) -> dict[str, str] | None:
    try:
        from apache_beam.portability.api import beam_fn_api_pb2
        from google.protobuf import text_format

        entry = text_format.Parse(text, beam_fn_api_pb2.LogEntry(), allow_unknown_field=True)
    except Exception:
        return None
    return {
        "message": entry.message,
        "trace": entry.trace,
        "location": entry.log_location,
        "transform": entry.transform_id,
    }


def _module_of(path: str) -> str:
    for marker in ("site-packages", "dist-packages"):
        _, found, rest = path.partition(f"{os.sep}{marker}{os.sep}")
        if found:
            return rest.removesuffix(".py").removesuffix(f"{os.sep}__init__").replace(os.sep, ".")
    return Path(path).stem or "worker"


def _judge_forwarded(record: logging.LogRecord, text: str) -> bool:
    """Rewrites a forwarded worker record to a short one; dedupes it when it is third-party."""
    entry = _parse_log_entry(text)
    if entry is None:
        return True
    path, _, line = entry["location"].rpartition(":")
    message = entry["message"]
    tagged = _STEP_TAG_PATTERN.match(message)
    if tagged:
        step, message = tagged.group(1), message[tagged.end() :]
    else:
        step = _step_of_transform(entry["transform"]) if entry["transform"] else WORKER_START_UP
    record.name = f"{_module_of(path)} (worker, {step})" if tagged else f"{_module_of(path)} (worker)"
    record.msg = message + (f"\n{entry['trace'].rstrip()}" if entry["trace"] else "")
    record.args = ()
    record.pathname, record.lineno = path, int(line) if line.isdigit() else 0
    record.filename, record.module = os.path.basename(path), Path(path).stem
    if not logging.WARNING <= record.levelno < logging.CRITICAL or _is_first_party_path(path):
        return True
    return _observe(message_template(message), step, forwarded=True)


class _ConsoleHandler(logging.StreamHandler):
    """A stderr handler that writes to whatever ``sys.stderr`` is now and clears the progress line first."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter(logging.BASIC_FORMAT))

    @property
    def stream(self) -> TextIO:  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        if _state.progress is not None:
            _state.progress.clear_line()
        super().emit(record)


def _all_handlers() -> list[logging.Handler]:
    loggers = [logging.getLogger()] + [
        logger for logger in list(logging.Logger.manager.loggerDict.values()) if isinstance(logger, logging.Logger)
    ]
    return [handler for logger in loggers for handler in logger.handlers]


def _attach_filter() -> None:
    """Puts the filter on every handler of every logger that exists now (transformers, for one,
    has its own handler and does not propagate)."""
    for handler in _all_handlers():
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)


def _prints_to_console(handler: logging.Handler) -> bool:
    return isinstance(handler, _ConsoleHandler) or (
        type(handler) is logging.StreamHandler and handler.stream in (sys.stderr, sys.__stderr__)
    )


# -- warnings ------------------------------------------------------------------------------


def _showwarning(message, category, filename, lineno, file=None, line=None) -> None:
    original = _state.original_showwarning or warnings._showwarning_orig  # type: ignore[attr-defined]
    if _is_first_party_path(filename):
        original(message, category, filename, lineno, file, line)
        return
    text = f"{category.__name__}: {message}"
    step = current_step()
    if not _observe(message_template(text), step):
        return
    if _state.role == "worker":
        # Through logging, so the launcher shows it once for all workers (and not on raw stderr).
        logger = logging.getLogger("py.warnings")
        tagged = _STEP_TAG.format(step) + text
        record = logger.makeRecord(logger.name, logging.WARNING, filename, lineno, tagged, (), None)
        setattr(record, _MARK, True)
        logger.handle(record)
        return
    if _state.progress is not None:
        _state.progress.clear_line()
    original(message, category, filename, lineno, file, line)


setattr(_showwarning, _MARK, True)


# -- install -------------------------------------------------------------------------------


def install(quiet: bool | None = None, count_in_metrics: bool = True) -> None:
    """Sets up the console in the launching process, before the pipeline is built; idempotent.

    Filters third-party warnings and log records (see the module docstring), adds a stderr log
    handler when no root handler prints to stderr (so the first occurrence of each warning is
    seen), and sets ``CURATION_CONSOLE`` / ``CURATION_QUIET`` so that worker processes started
    later install too (:func:`ensure_installed`). Undo with :func:`uninstall`.

    Args:
        quiet: no progress line. ``None`` keeps what an earlier call (the CLI's ``--quiet``) decided.
        count_in_metrics: also count warnings in the Beam counters ``curation:warnings.<step>``,
            so that :func:`summary_lines` can read worker processes' counts from the result.
    """
    if quiet is None:
        quiet = _state.quiet or os.environ.get(ENV_QUIET) == "1"
    _install("launcher", quiet, count_in_metrics)
    for name, value in ((ENV_CONSOLE, str(os.getpid())), (ENV_QUIET, "1" if quiet else "0")):
        if os.environ.get(name) != value:
            os.environ[name] = value
            if name not in _state.env_set:
                _state.env_set.append(name)
    root = logging.getLogger()
    with _state.lock:
        if _state.handler is None and not any(_prints_to_console(h) for h in root.handlers):
            _state.handler = _ConsoleHandler()
            _state.handler.addFilter(_FILTER)
            root.addHandler(_state.handler)


def ensure_installed() -> None:
    """Sets up the console in a worker process, if the launcher installed it; call it from
    ``DoFn.setup`` (cheap, idempotent). Adds no handler: a Beam worker's records go to the
    launcher, whose console prints them."""
    launcher = os.environ.get(ENV_CONSOLE)
    if not launcher:
        return
    role = "launcher" if launcher == str(os.getpid()) else "worker"
    _install(role, os.environ.get(ENV_QUIET) == "1", _state.count_in_metrics)


def _install(role: str, quiet: bool, count_in_metrics: bool) -> None:
    with _state.lock:
        if _state.role != "launcher":
            _state.role = role
        _state.quiet = quiet
        _state.count_in_metrics = count_in_metrics
        if not getattr(warnings.showwarning, _MARK, False):
            _state.original_showwarning = warnings.showwarning
            warnings.showwarning = _showwarning
        _attach_filter()


def uninstall() -> None:
    """Undoes :func:`install` in this process and forgets all counts and the quiet setting (for
    tests and for a CLI that runs several commands in one process)."""
    with _state.lock:
        if getattr(warnings.showwarning, _MARK, False) and _state.original_showwarning is not None:
            warnings.showwarning = _state.original_showwarning
        for handler in _all_handlers():
            if _FILTER in handler.filters:
                handler.removeFilter(_FILTER)
        if _state.handler is not None:
            logging.getLogger().removeHandler(_state.handler)
        if _state.progress is not None:
            _state.progress.finish()
        for name in _state.env_set:
            os.environ.pop(name, None)
        _state.__init__()  # type: ignore[misc]


@contextlib.contextmanager
def session(quiet: bool | None = None) -> Iterator[None]:
    """``install(quiet)`` for the block, :func:`uninstall` after it (print the summary inside)."""
    install(quiet)
    try:
        yield
    finally:
        uninstall()


# -- progress ------------------------------------------------------------------------------


class Progress:
    """Records in and kept per step, as one status line on stderr rewritten at most every
    ``interval`` seconds.

    :meth:`record` is cheap (a lock, two additions, a clock read) and is meant to be called
    once per record per step. The line is drawn only when enabled: never when quiet; else with
    ``CURATION_PROGRESS=1`` (one plain line per update, for logs), not with
    ``CURATION_PROGRESS=0``, else only when the stream is a TTY (rewritten in place).

    Each process has its own (:func:`progress`) and counts only the records it processed. With
    ``--direct_running_mode=multi_processing`` every worker draws its own line, prefixed
    ``worker <pid>:``, on the terminal they share, so the line shows one worker at a time; the
    funnel at the end has the totals.

    Args:
        interval: seconds between two lines, at least.
        clock: monotonic seconds (injectable for tests).
        stream: where to write; ``None``: ``sys.stderr`` at the time of writing.
        enabled: force on or off; ``None``: decided from the environment at first use.
        prefix: written before the line.
    """

    def __init__(
        self,
        interval: float = PROGRESS_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        prefix: str = "",
    ) -> None:
        self.interval = interval
        self._clock = clock
        self._stream = stream
        self._enabled = enabled
        self._prefix = prefix
        self._lock = threading.Lock()
        self._steps: dict[str, list[int]] = {}  # step -> [in, kept], in first-seen order
        self._start: float | None = None
        self._last = 0.0
        self._drawn = False  # a status line is on the terminal now, not ended by a newline
        self.lines_written = 0

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr

    @property
    def enabled(self) -> bool:
        """Whether lines are drawn (asked at most once per interval, so ``--quiet`` set late counts)."""
        return self._enabled if self._enabled is not None else _progress_wanted(self.stream)

    def _tty(self) -> bool:
        try:
            return self.stream.isatty()
        except (AttributeError, ValueError):
            return False

    def record(self, step: str, kept: bool = True) -> None:
        """Counts one record into ``step`` (and out of it when ``kept``); redraws when due."""
        with self._lock:
            counts = self._steps.get(step)
            if counts is None:
                counts = self._steps[step] = [0, 0]
            counts[0] += 1
            if kept:
                counts[1] += 1
            now = self._clock()
            if self._start is None:
                self._start = self._last = now
                return
            if now - self._last < self.interval:
                return
            self._last = now
            if not self.enabled:
                return
            line = self.line(now)
            self._draw(line)

    def line(self, now: float | None = None) -> str:
        """The status line: per step records in (or kept of in), the rate into the first
        step, the time since the first record."""
        now = self._clock() if now is None else now
        parts = [
            f"{step} {seen:,} in" if kept == seen else f"{step} {kept:,} of {seen:,} kept"
            for step, (seen, kept) in self._steps.items()
        ]
        elapsed = max(now - (self._start if self._start is not None else now), 0.0)
        first = next(iter(self._steps.values()), [0, 0])[0]
        rate = first / elapsed if elapsed > 0 else 0.0
        return f"{self._prefix}{' · '.join(parts)} | {rate:,.0f} rec/s | {format_elapsed(elapsed)}"

    def _draw(self, line: str) -> None:
        stream = self.stream
        try:
            if self._tty():
                width = shutil.get_terminal_size((120, 24)).columns - 1
                stream.write(f"\r{line[:width]}\x1b[K")
                self._drawn = True
            else:
                stream.write(line + "\n")
            stream.flush()
            self.lines_written += 1
        except (OSError, ValueError):
            self._enabled = False

    def clear_line(self) -> None:
        """Erases the status line (before something else is printed); the next update redraws it."""
        if not self._drawn:
            return
        self._drawn = False
        try:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def finish(self) -> None:
        """Clears the status line at the end of a run, so what follows starts on a clean line."""
        self.clear_line()


def _progress_wanted(stream: TextIO) -> bool:
    if _state.quiet or os.environ.get(ENV_QUIET) == "1":
        return False
    forced = os.environ.get(ENV_PROGRESS)
    if forced in ("0", "1"):
        return forced == "1"
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def progress() -> Progress:
    """This process's :class:`Progress` (created at first use)."""
    reporter = _state.progress
    if reporter is None:
        with _state.lock:
            if _state.progress is None:
                launcher = os.environ.get(ENV_CONSOLE)
                prefix = f"worker {os.getpid()}: " if launcher and launcher != str(os.getpid()) else ""
                _state.progress = Progress(prefix=prefix)
            reporter = _state.progress
    return reporter


def format_elapsed(seconds: float) -> str:
    """``0:41``, ``12:05``, ``1:02:03``."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


# -- the end of a run ----------------------------------------------------------------------


def _shorten(template: str) -> str:
    if len(template) <= _TEMPLATE_SHOWN_CHARS:
        return template
    return template[: _TEMPLATE_SHOWN_CHARS - 1] + "…"


def absorb_result(result: Any) -> None:
    """Reads, from a finished pipeline's ``curation:warnings.<step>`` counters, the warnings that
    other (worker) processes counted, for :func:`summary_lines`. Once per result (a second call
    with the same result does nothing); several pipelines run one after another in one process
    add up."""
    with _state.lock:
        if any(seen is result for seen in _state.absorbed):
            return
        _state.absorbed.append(result)
    totals = _metric_warning_totals(result)
    with _state.lock:
        for step in set(totals) | set(_state.in_metrics) | set(_state.forwarded):
            local = _state.in_metrics[step] + _state.forwarded[step]
            new_here = local - _state.accounted[step]  # counted here during this run
            _state.accounted[step] = local
            others = totals.get(step, 0) - new_here
            if others > 0:
                _state.elsewhere[step] += others


def summary_lines(result: Any = None) -> list[str]:
    """One line per held-back warning template, for the end of a run::

        warnings: read: "Replacing spaces in invalid WARC-Target-URI: <url>" x54 (shown once)

    Warnings that worker processes counted (see :func:`absorb_result`, which a ``result``
    given here goes through first) are added to their step's line when the step has one
    template here, else put on a line of their own. Messages of Beam's worker harness outside
    any transform (one per worker at start-up, such as "No semi_persistent_directory found")
    are shown once and left out.
    """
    if result is not None:
        absorb_result(result)
    with _state.lock:
        counts = dict(_state.counts)
        shown_under = dict(_state.shown)
        elsewhere = dict(_state.elsewhere)
    templates_per_step = Counter(step for step, _ in counts)
    lines = []
    for (step, template), n in counts.items():
        if step == WORKER_START_UP:
            continue
        more = elsewhere.pop(step, 0) if templates_per_step[step] == 1 else 0
        shown_here = shown_under.get(template) == step
        if n + more > 1 or not shown_here:
            how = "shown once" if shown_here else f"shown under {shown_under.get(template, NO_STEP)}"
            if more:
                how += f"; {more:,} of them counted in worker processes"
            lines.append(f'warnings: {step}: "{_shorten(template)}" x{n + more:,} ({how})')
    for step, others in elsewhere.items():
        lines.append(
            f"warnings: {step}: x{others:,} third-party warnings counted in worker processes "
            "(the first of each was shown by its worker)"
        )
    return lines


def _metric_warning_totals(result: Any) -> dict[str, int]:
    """``{step: n}`` from the ``curation:warnings.<step>`` counters of a finished pipeline."""
    try:
        from apache_beam.metrics.metric import MetricsFilter

        counters = result.metrics().query(MetricsFilter().with_namespace(_metrics_namespace()))["counters"]
    except Exception:
        return {}
    totals: Counter[str] = Counter()
    for counter in counters:
        name = counter.key.metric.name
        if not name.startswith("warnings."):
            continue
        try:
            value = counter.committed
        except Exception:
            value = None
        totals[name[len("warnings.") :]] += int(value if value is not None else counter.attempted or 0)
    return dict(totals)
