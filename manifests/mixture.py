"""Stage mixtures: a YAML stage spec resolved against its sources' manifests into a stage manifest.

A training stage reads several datasets in set proportions. The spec names
each source's dataset manifest and weight; :func:`resolve_stage` turns it into
the stage manifest :func:`manifests.reader.mixture_dataset` reads: how many
samples of each source one epoch draws, what that realises in tokens and
shares, and the repeat factor each weight implies.

A spec (``curate mix STAGE.yaml``)::

    name: multimodal-8k
    weight_by: tokens          # or samples: what the weights and total count
    sequence_length: 8192      # the trainer's sequence, for the sequences-per-epoch estimate
    total: null                # tokens (or samples) per epoch; null: the most that uses
                               # the scarcest source (relative to its share) exactly once
    max_repeats: 4.0           # a source drawn more often than this per epoch is warned about
    sources:
      - name: captions
        manifest: ../captions/manifest.json   # relative to the spec's folder, absolute, or a URL
        weight: 3
        min_share: 0.0         # the least share this source gets, whatever the weights

Shares are the weights normalised to 1, raised to each source's ``min_share``
(the others shrink in proportion). A weight cannot be met, and resolving
fails naming the source, when its manifest holds no samples, when the minimum
shares add up past 1, or when its share of the total is less than one of its
samples.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from manifests.manifest import default_opener, is_url, resolve_path, validate_manifest

WEIGHT_UNITS = ("tokens", "samples")


@dataclass(frozen=True)
class SourceSpec:
    """One source of a stage: a dataset manifest, its weight and the least share it gets."""

    name: str
    manifest: str
    weight: float = 1.0
    min_share: float = 0.0

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a source needs a name")
        if not self.weight > 0:
            raise ValueError(f"source {self.name!r}: weight must be positive (drop the source to leave it out)")
        if not 0 <= self.min_share <= 1:
            raise ValueError(f"source {self.name!r}: min_share must be within [0, 1]")


@dataclass(frozen=True)
class StageSpec:
    """A stage mixture, as ``curate mix`` reads it from YAML (see the module docstring)."""

    sources: tuple[SourceSpec, ...]
    name: str = "stage"
    weight_by: str = "tokens"
    sequence_length: int = 8192
    total: int | None = None
    max_repeats: float = 4.0

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError("a stage needs at least one source")
        names = [source.name for source in self.sources]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"source names repeat: {repeated}")
        if self.weight_by not in WEIGHT_UNITS:
            raise ValueError(f"weight_by must be one of {WEIGHT_UNITS}, got {self.weight_by!r}")
        if self.sequence_length <= 0:
            raise ValueError("sequence_length must be positive")
        if self.total is not None and self.total <= 0:
            raise ValueError("total must be positive (or null for the natural size)")
        if not self.max_repeats > 0:
            raise ValueError("max_repeats must be positive")


class MixtureError(ValueError):
    """A stage spec whose weights its sources cannot meet; the message names the source."""


@dataclass(frozen=True)
class _Available:
    samples: int
    tokens: int
    sha256: str
    path: str


def mixture_shares(weights: Sequence[float], min_shares: Sequence[float], names: Sequence[str]) -> list[float]:
    """The weights normalised to sum to 1, each raised to its minimum share, the others scaled down.

    Raises:
        MixtureError: when the minimum shares add up past 1.
    """
    if sum(min_shares) > 1 + 1e-9:
        raise MixtureError(
            "the minimum shares add up to {:.3f} > 1: {}".format(
                sum(min_shares), ", ".join(f"{n}={m}" for n, m in zip(names, min_shares) if m)
            )
        )
    pinned: set[int] = set()
    while True:
        free = 1.0 - sum(min_shares[i] for i in pinned)
        rest = sum(w for i, w in enumerate(weights) if i not in pinned)
        shares = [min_shares[i] if i in pinned else free * w / rest for i, w in enumerate(weights)]
        below = {i for i, share in enumerate(shares) if i not in pinned and share < min_shares[i]}
        if not below:
            return shares
        pinned |= below
        if len(pinned) == len(weights):  # every source at its floor; the floors leave some over
            scale = 1.0 / sum(min_shares)
            return [m * scale for m in min_shares]


def resolve_stage(
    spec: StageSpec,
    spec_path: str,
    output_path: str,
    *,
    opener: Callable[[str], BinaryIO] = default_opener,
    package_version: str = "",
    created_at: str | None = None,
) -> dict[str, Any]:
    """Resolves a stage spec against its sources' manifests into a stage manifest.

    Args:
        spec: the stage spec.
        spec_path: where the spec lives; relative source manifests resolve against it.
        output_path: where the stage manifest will be written; local source paths are
            stored relative to it, so the two can move together.
        opener: opens a manifest for reading (``FileSystems.open`` for Beam filesystems).
        package_version: recorded in the stage manifest.
        created_at: ISO-8601 UTC timestamp; now when omitted.

    Returns:
        The stage manifest: ``kind``, ``format_version``, ``name``, the spec's settings,
        ``sources`` (per source: ``manifest``, ``manifest_sha256``, ``weight``,
        ``min_share``, ``share`` (realised, in ``weight_by`` units), ``samples_available``,
        ``tokens_available``, ``samples_per_epoch``, ``tokens_per_epoch`` (expected: draws x
        the source's mean tokens per sample), ``repeat_factor``), ``totals`` and ``warnings``.

    Raises:
        MixtureError: when a source cannot be read or a weight cannot be met (naming the source).
    """
    from manifests.reader import STAGE_FORMAT_VERSION, STAGE_KIND  # the reader imports torch: not at import time

    names = [source.name for source in spec.sources]
    available = [_available(source, resolve_path(spec_path, source.manifest), opener) for source in spec.sources]
    shares = mixture_shares([s.weight for s in spec.sources], [s.min_share for s in spec.sources], names)
    amounts = [a.tokens if spec.weight_by == "tokens" else a.samples for a in available]
    for source, found, amount in zip(spec.sources, available, amounts):
        if not amount:
            raise MixtureError(
                f"source {source.name!r}: manifest {found.path} counts no tokens, so a weight by tokens cannot be met"
            )
    total = spec.total if spec.total is not None else min(amount / share for amount, share in zip(amounts, shares))
    rows, warnings = [], []
    for source, found, share, amount in zip(spec.sources, available, shares, amounts):
        per_sample = amount / found.samples  # tokens (or 1) per sample
        wanted = share * total / per_sample
        if wanted < 0.5:
            raise MixtureError(
                f"source {source.name!r}: its share {share:.4f} of {total:.0f} {spec.weight_by} is "
                f"{share * total:.1f} {spec.weight_by}, less than one of its samples ({per_sample:.1f}); "
                "raise the stage's total or this source's weight"
            )
        draws = max(1, round(wanted))
        repeats = draws / found.samples
        if repeats > spec.max_repeats:
            warnings.append(
                f"source {source.name!r} repeats {repeats:.2f}x per epoch, past max_repeats={spec.max_repeats:g}"
            )
        mean_tokens = found.tokens / found.samples
        if mean_tokens > spec.sequence_length:
            warnings.append(
                f"source {source.name!r}: its samples average {mean_tokens:.0f} tokens, more than the "
                f"sequence length {spec.sequence_length}"
            )
        rows.append({
            "name": source.name,
            "manifest": _relative(found.path, output_path),
            "manifest_sha256": found.sha256,
            "weight": source.weight,
            "min_share": source.min_share,
            "target_share": share,
            "samples_available": found.samples,
            "tokens_available": found.tokens,
            "samples_per_epoch": draws,
            "tokens_per_epoch": round(draws * mean_tokens),
            "repeat_factor": repeats,
        })
    realised = [row["tokens_per_epoch"] if spec.weight_by == "tokens" else row["samples_per_epoch"] for row in rows]
    for row, value in zip(rows, realised):
        row["share"] = value / sum(realised)
    tokens = sum(row["tokens_per_epoch"] for row in rows)
    return {
        "kind": STAGE_KIND,
        "format_version": STAGE_FORMAT_VERSION,
        "name": spec.name,
        "created_at": created_at or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "package_version": package_version,
        "weight_by": spec.weight_by,
        "sequence_length": spec.sequence_length,
        "max_repeats": spec.max_repeats,
        "sources": rows,
        "totals": {
            "samples_per_epoch": sum(row["samples_per_epoch"] for row in rows),
            "tokens_per_epoch": tokens,
            "sequences_per_epoch": -(-tokens // spec.sequence_length),
        },
        "warnings": warnings,
    }


def format_stage(stage: Mapping[str, Any]) -> str:
    """A stage manifest's sources and totals as a readable table."""
    lines = [f"{'source':<20}{'weight':>8}{'share':>8}{'samples':>10}{'tokens':>14}{'repeats':>9}"]
    for row in stage["sources"]:
        lines.append(
            f"{row['name']:<20}{row['weight']:>8g}{row['share']:>8.3f}{row['samples_per_epoch']:>10}"
            f"{row['tokens_per_epoch']:>14}{row['repeat_factor']:>9.2f}"
        )
    totals = stage["totals"]
    lines.append(
        f"stage {stage['name']}: samples_per_epoch={totals['samples_per_epoch']} "
        f"tokens_per_epoch={totals['tokens_per_epoch']} sequences_per_epoch={totals['sequences_per_epoch']} "
        f"(sequence_length={stage['sequence_length']}, weights by {stage['weight_by']})"
    )
    lines.extend(f"WARNING: {warning}" for warning in stage["warnings"])
    return "\n".join(lines)


def _available(source: SourceSpec, path: str, opener: Callable[[str], BinaryIO]) -> _Available:
    from manifests.reader import STAGE_KIND

    try:
        with opener(path) as handle:
            data = handle.read()
        manifest = json.loads(data)
    except (OSError, ValueError) as error:
        raise MixtureError(f"source {source.name!r}: cannot read manifest {path}: {error}") from error
    if not isinstance(manifest, dict) or manifest.get("kind") == STAGE_KIND:
        raise MixtureError(f"source {source.name!r}: {path} is not a dataset manifest")
    problems = validate_manifest(manifest)
    if problems:
        raise MixtureError(f"source {source.name!r}: invalid manifest {path}: " + "; ".join(problems))
    totals = manifest["totals"]
    if not totals["samples"]:
        raise MixtureError(f"source {source.name!r}: manifest {path} holds no samples, so its weight cannot be met")
    return _Available(
        samples=totals["samples"],
        tokens=totals["text_tokens"] + totals["visual_tokens"],
        sha256=hashlib.sha256(data).hexdigest(),
        path=path,
    )


def _relative(path: str, output_path: str) -> str:
    """``path`` relative to the stage manifest's folder when both are local, else as it is."""
    if is_url(path) or is_url(output_path):
        return path
    return os.path.relpath(os.path.abspath(path), os.path.dirname(os.path.abspath(output_path)))
