"""The dataset manifest: what a trainer needs to know about a set of shards.

A manifest is one JSON object per dataset, written next to its ``shards/``
folder. It records the resolved config (and its hash), the models used, every
shard with its sha256, size, sample count and token counts, the totals, the
dead-letter count and the funnel: for each pipeline step, how many records
went in, how many came out, and why the others were dropped.

:func:`validate_manifest` checks a manifest's internal consistency;
:func:`verify_manifest` also re-reads every shard. Both report problems as a
list of human-readable strings (empty means all is well).

Paths: shard paths are stored relative to the manifest's folder. Manifests and
shards may live under URLs (``gs://bucket/x/manifest.json``); local paths are
opened directly and other schemes through ``fsspec`` when it is installed
(``gcsfs``/``s3fs`` provide ``gs://``/``s3://``), or through any ``opener``
callable the caller passes (``path -> binary file object``).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import posixpath
import re
import tarfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, BinaryIO
from urllib.parse import urlparse
from urllib.request import url2pathname

from manifests.shards import ShardInfo

FORMAT_VERSION = 1
RANDOM_INIT = "random-init"
REQUIRED_KEYS = (
    "format_version",
    "dataset",
    "created_at",
    "package_version",
    "config",
    "config_sha256",
    "models",
    "shards",
    "totals",
    "dead_letters",
    "funnel",
    "warnings",
)
SHARD_COUNTS = ("bytes", "samples", "text_tokens", "visual_tokens")
TOTAL_KEYS = ("shards", *SHARD_COUNTS)
MODEL_KEYS = ("name", "role", "weights")

Opener = Callable[[str], BinaryIO]

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_WDS_MEMBER = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")  # webdataset's key.ext split
_CHUNK = 1 << 20


@dataclass
class FunnelStep:
    """One pipeline step's record counts.

    Attributes:
        step: the step name.
        in_: records that entered the step (serialised as ``"in"``).
        out: records that left it.
        dropped: reason -> records dropped for that reason.
        dead_letters: reason -> records of ``dropped`` that failed rather than were
            judged (serialised only when there are some).
        fallback: reason -> records let out on a fallback, counted in ``out``
            (serialised only when there are some).
    """

    step: str
    in_: int
    out: int
    dropped: dict[str, int] = field(default_factory=dict)
    dead_letters: dict[str, int] = field(default_factory=dict)
    fallback: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        row = {"step": self.step, "in": self.in_, "out": self.out, "dropped": dict(sorted(self.dropped.items()))}
        for key in ("dead_letters", "fallback"):
            if getattr(self, key):
                row[key] = dict(sorted(getattr(self, key).items()))
        return row

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> FunnelStep:
        return cls(
            step=row["step"], in_=row["in"], out=row["out"], dropped=dict(row["dropped"]),
            dead_letters=dict(row.get("dead_letters", {})), fallback=dict(row.get("fallback", {})),
        )


def build_funnel(
    steps: Sequence[str],
    inputs: int,
    dropped: Mapping[tuple[str, str], int],
    dead_letters: Mapping[tuple[str, str], int] | None = None,
    fallback: Mapping[tuple[str, str], int] | None = None,
) -> list[FunnelStep]:
    """Builds the funnel by walking ``steps`` in order.

    Step ``i`` takes in what step ``i - 1`` let out (the first takes
    ``inputs``) and lets out its input minus what it dropped.

    Args:
        steps: the step names, in pipeline order.
        inputs: the number of records that entered the first step.
        dropped: (step, reason) -> count, e.g. from Beam's ``dropped.*`` counters.
        dead_letters: (step, reason) -> how many of those drops were failures.
        fallback: (step, reason) -> records a step let out on a fallback.

    Raises:
        ValueError: on a repeated step name, a negative count, a (step, reason)
            whose step is not in ``steps``, a step that drops more than it got,
            more dead letters than drops for a reason, or more fallbacks than out.
    """
    if len(set(steps)) != len(steps):
        raise ValueError(f"repeated step names in {list(steps)}")
    if inputs < 0:
        raise ValueError(f"negative input count {inputs}")
    per_step = _per_step(steps, dropped, "drop")
    dead = _per_step(steps, dead_letters or {}, "dead letter")
    fell_back = _per_step(steps, fallback or {}, "fallback")
    funnel = []
    count_in = inputs
    for step in steps:
        out = count_in - sum(per_step[step].values())
        if out < 0:
            raise ValueError(f"step {step!r} drops {count_in - out} records but only {count_in} entered it")
        for reason, count in dead[step].items():
            if count > per_step[step].get(reason, 0):
                raise ValueError(f"step {step!r} has {count} dead letters for {reason!r} but fewer drops")
        if sum(fell_back[step].values()) > out:
            raise ValueError(f"step {step!r} lets {out} records out but counts more fallbacks")
        funnel.append(FunnelStep(step, count_in, out, per_step[step], dead[step], fell_back[step]))
        count_in = out
    return funnel


def _per_step(steps: Sequence[str], counts: Mapping[tuple[str, str], int], what: str) -> dict[str, dict[str, int]]:
    per_step: dict[str, dict[str, int]] = {step: {} for step in steps}
    for (step, reason), count in counts.items():
        if step not in per_step:
            raise ValueError(f"{what} reason {reason!r} names unknown step {step!r}")
        if count < 0:
            raise ValueError(f"negative {what} count {count} for {step}/{reason}")
        per_step[step][reason] = count
    return per_step


def canonical_json(value: Any) -> bytes:
    """JSON with sorted keys and compact separators: the form ``config_sha256`` hashes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def config_sha256(config: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(config)).hexdigest()


def model_warnings(models: Sequence[Mapping[str, Any]]) -> list[str]:
    """The warnings a manifest must carry about its models (random-init weights)."""
    return [f"model {m.get('name')} uses random-init weights" for m in models if m.get("weights") == RANDOM_INIT]


def build_manifest(
    *,
    dataset: str,
    config: Mapping[str, Any],
    models: Sequence[Mapping[str, Any]],
    shards: Sequence[ShardInfo],
    funnel: Sequence[FunnelStep],
    dead_letters: int,
    package_version: str,
    created_at: str | None = None,
    extra: Mapping[str, Any] | None = None,
    packed_records: int | None = None,
    budget_exceeded: Sequence[str] = (),
) -> dict[str, Any]:
    """Builds a manifest and checks it with :func:`validate_manifest`.

    Args:
        dataset: the dataset name.
        config: the resolved pipeline config (JSON-serialisable).
        models: one mapping per model used, with at least ``name``, ``role``
            and ``weights`` (a path, or ``"random-init"``).
        shards: the written shards; stored sorted by path.
        funnel: the funnel, e.g. from :func:`build_funnel`; its last step's
            ``out`` must equal the number of samples in the shards, or
            ``packed_records`` when given.
        dead_letters: the number of records that failed (unreadable, unfetchable...).
        package_version: the version of this package that wrote the dataset.
        created_at: ISO-8601 UTC timestamp; now when omitted.
        extra: any further JSON-serialisable facts, stored under ``"extra"``.
        packed_records: for datasets whose samples pack several records (e.g.
            documents packed into training sequences), the number of records the
            shards hold; the funnel counts records, the totals count samples.
        budget_exceeded: one line per step over its failure budget; stored under
            ``"budget_exceeded"`` and among the warnings, so that a trainer can
            refuse a broken run's shards.

    Raises:
        ValueError: when the result would not be a valid manifest.
    """
    shard_rows = sorted((asdict(s) for s in shards), key=lambda row: row["path"])
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "dataset": dataset,
        "created_at": created_at or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "package_version": package_version,
        "config": json.loads(canonical_json(config)),
        "config_sha256": config_sha256(config),
        "models": [json.loads(canonical_json(m)) for m in models],
        "shards": shard_rows,
        "totals": {"shards": len(shard_rows), **{k: sum(row[k] for row in shard_rows) for k in SHARD_COUNTS}},
        "dead_letters": dead_letters,
        "funnel": [step.to_dict() for step in funnel],
        "warnings": model_warnings(models) + [f"failure budget exceeded: {line}" for line in budget_exceeded],
    }
    if budget_exceeded:
        manifest["budget_exceeded"] = list(budget_exceeded)
    if extra is not None:
        manifest["extra"] = json.loads(canonical_json(extra))
    if packed_records is not None:
        manifest["packed_records"] = packed_records
    problems = validate_manifest(manifest)
    if problems:
        raise ValueError("invalid manifest: " + "; ".join(problems))
    return manifest


def validate_manifest(manifest: Mapping[str, Any]) -> list[str]:
    """Checks a manifest's structure and internal arithmetic (not the shard files).

    Returns:
        Human-readable problems; empty when the manifest is valid.
    """
    if not isinstance(manifest, Mapping):
        return ["manifest is not a JSON object"]
    problems = []
    missing = [key for key in REQUIRED_KEYS if key not in manifest]
    if missing:
        problems.append(f"missing keys: {', '.join(missing)}")
    if "format_version" in manifest and not _is_int(manifest["format_version"], FORMAT_VERSION):
        problems.append(f"unknown format_version {manifest['format_version']!r} (this reader knows {FORMAT_VERSION})")
    for key in ("dataset", "package_version"):
        if key in manifest and not (isinstance(manifest[key], str) and manifest[key]):
            problems.append(f"{key} must be a non-empty string")
    if "created_at" in manifest and not _is_utc_timestamp(manifest["created_at"]):
        problems.append(f"created_at {manifest['created_at']!r} is not an ISO-8601 UTC timestamp")
    if "dead_letters" in manifest and not _is_count(manifest["dead_letters"]):
        problems.append("dead_letters must be a non-negative integer")
    problems += _check_config(manifest)
    problems += _check_models(manifest)
    problems += _check_shards_and_totals(manifest)
    problems += _check_funnel(manifest)
    return problems


def verify_manifest(manifest_path: str, opener: Opener | None = None) -> list[str]:
    """Validates a manifest and re-reads every shard it lists.

    Each shard is streamed once: its sha256 and size are recomputed and its
    distinct sample keys counted, and all three are compared with the
    manifest. Every problem found is reported, each naming its shard; a run that
    exceeded its failure budget is a problem too (its shards are not to be trained on).

    Args:
        manifest_path: local path or URL of the manifest.
        opener: ``path -> binary file object``; :func:`default_opener` when omitted.

    Returns:
        Human-readable problems; empty when the dataset is intact.
    """
    opener = opener or default_opener
    try:
        manifest = load_manifest(manifest_path, opener)
    except (OSError, ValueError) as exc:
        return [f"cannot read manifest {manifest_path}: {exc}"]
    problems = validate_manifest(manifest)
    problems += [f"the run exceeded its failure budget: {line}" for line in manifest.get("budget_exceeded", [])]
    shards = manifest.get("shards")
    for entry in shards if isinstance(shards, list) else []:
        if isinstance(entry, Mapping) and isinstance(entry.get("path"), str) and entry["path"]:
            problems += _verify_shard(resolve_path(manifest_path, entry["path"]), entry, opener)
    return problems


def load_manifest(path: str, opener: Opener | None = None) -> dict[str, Any]:
    """Reads a manifest; raises ``ValueError`` when it is not a JSON object."""
    with (opener or default_opener)(path) as fileobj:
        manifest = json.loads(fileobj.read())
    if not isinstance(manifest, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return manifest


def dump_manifest(manifest: Mapping[str, Any]) -> bytes:
    """Serialises a manifest: indented JSON, sorted keys, trailing newline."""
    return (json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n").encode()


def default_opener(path: str) -> BinaryIO:
    """Opens a local path, a ``file://`` URL, or (through fsspec) any other URL for reading.

    Raises:
        RuntimeError: for a URL scheme other than ``file`` when fsspec is not installed.
    """
    if path.startswith("file://"):
        return open(url2pathname(urlparse(path).path), "rb")
    if not _SCHEME.match(path):
        return open(path, "rb")
    try:
        import fsspec
    except ImportError as exc:
        raise RuntimeError(
            f"cannot open {path}: URLs need fsspec (and gcsfs for gs://, s3fs for s3://), or pass an opener"
        ) from exc
    return fsspec.open(path, "rb").open()


def is_url(path: str) -> bool:
    """Whether ``path`` is a URL (``scheme://...``) rather than a local path."""
    return bool(_SCHEME.match(path))


def resolve_path(manifest_path: str, path: str) -> str:
    """Resolves a shard path recorded in a manifest against the manifest's location.

    Absolute paths and URLs are returned as they are. Relative ones are joined
    to the manifest's folder: with ``os.path`` for a local manifest, with
    POSIX rules for a URL (``gs://b/x/manifest.json`` + ``shards/a.tar`` ->
    ``gs://b/x/shards/a.tar``).
    """
    if _SCHEME.match(path) or path.startswith("/"):
        return path
    if _SCHEME.match(manifest_path):
        scheme, rest = manifest_path.split("://", 1)
        return f"{scheme}://{posixpath.normpath(posixpath.join(posixpath.dirname(rest), path))}"
    return os.path.join(os.path.dirname(manifest_path), path)


def _is_int(value: Any, expected: int) -> bool:
    return type(value) is int and value == expected


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _is_utc_timestamp(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parsed = datetime.datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    except ValueError:
        return False
    return parsed.utcoffset() == datetime.timedelta(0)


def _check_config(manifest: Mapping[str, Any]) -> list[str]:
    if "config" not in manifest:
        return []
    config = manifest["config"]
    if not isinstance(config, Mapping):
        return ["config must be a JSON object"]
    if "config_sha256" in manifest and manifest["config_sha256"] != config_sha256(config):
        return [f"config_sha256 {manifest['config_sha256']!r} does not match the config ({config_sha256(config)})"]
    return []


def _check_models(manifest: Mapping[str, Any]) -> list[str]:
    models, warnings = manifest.get("models", []), manifest.get("warnings", [])
    problems = []
    if not isinstance(models, list):
        return ["models must be a list"]
    if not (isinstance(warnings, list) and all(isinstance(w, str) for w in warnings)):
        problems.append("warnings must be a list of strings")
        warnings = []
    for i, model in enumerate(models):
        if not isinstance(model, Mapping):
            problems.append(f"models[{i}] is not a JSON object")
            continue
        absent = [key for key in MODEL_KEYS if not isinstance(model.get(key), str) or not model[key]]
        if absent:
            problems.append(f"models[{i}] lacks non-empty string {', '.join(absent)}")
        for warning in model_warnings([model]):
            if warning not in warnings:
                problems.append(f"warnings lack {warning!r}")
    return problems


def _check_shards_and_totals(manifest: Mapping[str, Any]) -> list[str]:
    shards = manifest.get("shards", [])
    if not isinstance(shards, list):
        return ["shards must be a list"]
    problems = []
    paths = []
    sums: dict[str, int | None] = dict.fromkeys(SHARD_COUNTS, 0)
    for i, entry in enumerate(shards):
        if not isinstance(entry, Mapping):
            problems.append(f"shards[{i}] is not a JSON object")
            sums = dict.fromkeys(SHARD_COUNTS)
            continue
        path = entry.get("path")
        label = f"shard {path}" if isinstance(path, str) and path else f"shards[{i}]"
        if label.startswith("shards["):
            problems.append(f"{label} has no path")
        else:
            paths.append(path)
        if not (isinstance(entry.get("sha256"), str) and _SHA256.match(entry["sha256"])):
            problems.append(f"{label}: sha256 is not 64 lowercase hex digits")
        for key in SHARD_COUNTS:
            if _is_count(entry.get(key)):
                if sums[key] is not None:
                    sums[key] += entry[key]
            else:
                problems.append(f"{label}: {key} must be a non-negative integer")
                sums[key] = None
    if len(set(paths)) != len(paths):
        problems.append("shard paths repeat: " + ", ".join(sorted({p for p in paths if paths.count(p) > 1})))
    if paths != sorted(paths):
        problems.append("shards are not sorted by path")
    totals = manifest.get("totals")
    if "totals" not in manifest:
        return problems
    if not isinstance(totals, Mapping):
        return [*problems, "totals must be a JSON object"]
    expected = {"shards": len(shards), **sums}
    for key in TOTAL_KEYS:
        if not _is_count(totals.get(key)):
            problems.append(f"totals.{key} must be a non-negative integer")
        elif expected[key] is not None and totals[key] != expected[key]:
            problems.append(f"totals.{key} is {totals[key]} but the shards add up to {expected[key]}")
    return problems


def _check_step_failures(label: str, step: Mapping[str, Any], dropped: Mapping[str, int], out: int | None) -> list[str]:
    """A step's dead letters are some of its drops; its fallbacks are some of its out."""
    problems = []
    for key in ("dead_letters", "fallback"):
        counts = step.get(key, {})
        if not (isinstance(counts, Mapping) and all(_is_count(n) for n in counts.values())):
            problems.append(f"{label}: {key} must map reasons to non-negative integers")
    dead, fallback = step.get("dead_letters", {}), step.get("fallback", {})
    if isinstance(dead, Mapping) and any(n > dropped.get(reason, 0) for reason, n in dead.items() if _is_count(n)):
        problems.append(f"{label}: more dead letters than drops for a reason")
    if isinstance(fallback, Mapping) and out is not None and sum(n for n in fallback.values() if _is_count(n)) > out:
        problems.append(f"{label}: more fallbacks ({sum(fallback.values())}) than records out ({out})")
    return problems


def _check_funnel(manifest: Mapping[str, Any]) -> list[str]:
    if "funnel" not in manifest:
        return []
    funnel = manifest["funnel"]
    if not isinstance(funnel, list):
        return ["funnel must be a list"]
    if not funnel:
        return ["funnel is empty"]
    problems = []
    names = []
    previous_out = None
    for i, step in enumerate(funnel):
        if not isinstance(step, Mapping):
            problems.append(f"funnel[{i}] is not a JSON object")
            previous_out = None
            continue
        name = step.get("step")
        label = f"funnel step {name!r}"
        names.append(name)
        if not (isinstance(name, str) and name):
            problems.append(f"funnel[{i}] has no step name")
        dropped = step.get("dropped")
        drops_ok = isinstance(dropped, Mapping) and all(
            isinstance(reason, str) and _is_count(count) for reason, count in dropped.items()
        )
        if not drops_ok:
            problems.append(f"{label}: dropped must map reasons to non-negative integers")
        count_in, count_out = step.get("in"), step.get("out")
        counts_ok = _is_count(count_in) and _is_count(count_out)
        if not counts_ok:
            problems.append(f"{label}: in and out must be non-negative integers")
        elif drops_ok and count_in != count_out + sum(dropped.values()):
            problems.append(f"{label}: in ({count_in}) != out ({count_out}) + dropped ({sum(dropped.values())})")
        problems += _check_step_failures(label, step, dropped if drops_ok else {}, count_out if counts_ok else None)
        if counts_ok and previous_out is not None and count_in != previous_out:
            problems.append(f"{label}: in ({count_in}) != previous step's out ({previous_out})")
        previous_out = count_out if counts_ok else None
    hashable = [n for n in names if isinstance(n, str)]
    if len(set(hashable)) != len(hashable):
        problems.append("funnel step names repeat")
    totals = manifest.get("totals")
    if "packed_records" in manifest:
        label, samples = "packed_records", manifest["packed_records"]
    else:
        label, samples = "totals.samples", totals.get("samples") if isinstance(totals, Mapping) else None
    if previous_out is not None and _is_count(samples) and previous_out != samples:
        problems.append(f"last funnel step's out ({previous_out}) != {label} ({samples})")
    return problems


def _verify_shard(url: str, entry: Mapping[str, Any], opener: Opener) -> list[str]:
    label = f"shard {entry['path']}"
    try:
        fileobj = opener(url)
    except Exception as exc:  # any filesystem's error: the shard is reported, the others still checked
        return [f"{label}: cannot open {url}: {exc}"]
    problems = []
    with fileobj:
        reader = _HashingReader(fileobj)
        try:
            keys = _tar_keys(reader)
        except (tarfile.TarError, EOFError, OSError) as exc:
            problems.append(f"{label}: unreadable tar: {exc}")
            keys = None
        try:
            reader.drain()
        except OSError as exc:
            problems.append(f"{label}: read failed: {exc}")
    if reader.count != entry.get("bytes"):
        problems.append(f"{label}: {reader.count} bytes but the manifest says {entry.get('bytes')}")
    if reader.digest.hexdigest() != entry.get("sha256"):
        problems.append(f"{label}: sha256 {reader.digest.hexdigest()} does not match the manifest")
    if keys is not None and len(keys) != entry.get("samples"):
        problems.append(f"{label}: {len(keys)} samples but the manifest says {entry.get('samples')}")
    return problems


def _tar_keys(fileobj: Any) -> set[str]:
    """Distinct webdataset sample keys of the regular members of a tar stream."""
    keys = set()
    with tarfile.open(fileobj=fileobj, mode="r|") as tar:
        for member in tar:
            match = _WDS_MEMBER.match(member.name)
            if member.isreg() and match:
                keys.add(match.group(1))
    return keys


class _HashingReader:
    """A read-only stream that hashes and counts the bytes read through it."""

    def __init__(self, source: BinaryIO):
        self._source = source
        self.digest = hashlib.sha256()
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self.digest.update(data)
        self.count += len(data)
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass


def why_empty(manifest: Mapping[str, Any]) -> str:
    """Where a run that wrote no samples lost its records: the inputs, and the step and reason
    that dropped the most of them (from the manifest's funnel)."""
    funnel = manifest.get("funnel") or []
    if not funnel:
        return "its funnel is empty"
    drops = [(count, row["step"], reason) for row in funnel for reason, count in row.get("dropped", {}).items()]
    if not drops:
        return f"the run read {funnel[0].get('in', 0)} records and dropped none"
    count, step, reason = max(drops, key=lambda drop: (drop[0], drop[1], drop[2]))
    return f"the run read {funnel[0].get('in', 0)} records and kept none; most were dropped at {step}: {reason} ({count})"
