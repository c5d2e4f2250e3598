"""The filter contract: score a record, then keep it or drop it with a named reason.

A filter never mutates anything but the record's ``stats``; Beam wiring (metrics,
rejects output, funnel) lives in ``pipelines.transforms``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Generic, Mapping, TypeVar

R = TypeVar("R")


@dataclass(frozen=True)
class Verdict:
    """The outcome of one filter on one record."""

    keep: bool
    reason: str | None
    score: Any


class Filter(abc.ABC, Generic[R]):
    """Base class of every filter.

    Subclasses set ``name`` and implement :meth:`score` (pure: record -> score)
    and :meth:`keep` (pure: score -> (keep, reason)). ``reason`` is ``None`` when
    the record is kept and a short snake_case name when it is dropped.
    """

    name: str = "filter"

    @abc.abstractmethod
    def score(self, record: R) -> Any:
        """Measures the record; a number or a mapping of numbers."""

    @abc.abstractmethod
    def keep(self, score: Any) -> tuple[bool, str | None]:
        """Decides on a score: ``(True, None)`` or ``(False, reason)``."""

    def __call__(self, record: R) -> Verdict:
        """Scores the record, writes the score into ``record.stats`` and judges it."""
        score = self.score(record)
        record.stats.update(_as_stats(self.name, score))
        kept, reason = self.keep(score)
        return Verdict(kept, reason, score)


def _as_stats(name: str, score: Any) -> dict[str, float]:
    if isinstance(score, Mapping):
        return {
            f"{name}.{key}": float(value)
            for key, value in score.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
        }
    if isinstance(score, (int, float)) and not isinstance(score, bool):
        return {name: float(score)}
    return {}
