"""Failure budgets: how much of a step may fail, or fall back, before the run counts as broken.

A dead letter is data, but a run where a step fails for most records is a broken
run. Each funnel step may turn at most ``dead_letters`` of the records it took in
into dead letters, and let at most ``fallback`` of them through on a fallback
(e.g. a caption that kept its alt text because no rewrite passed its checks).
``steps`` overrides both for one step: ``{"fetch": {"dead_letters": 0.8}}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from curation.config import ConfigError


@dataclass(frozen=True)
class StepBudget:
    """The most a step may lose to failures and to fallbacks, as fractions of its input."""

    dead_letters: float | None = None
    fallback: float | None = None

    def __post_init__(self) -> None:
        _check_fraction("dead_letters", self.dead_letters)
        _check_fraction("fallback", self.fallback)


def _check_fraction(name: str, value: float | None) -> None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise ConfigError(f"budget {name} must be a fraction in [0, 1], got {value}")


@dataclass(frozen=True)
class FailureBudgets:
    """Attributes:
    dead_letters: default maximum fraction of a step's input that may become dead letters.
    fallback: default maximum fraction of a step's input that may fall back.
    min_records: a step that took in fewer records is not judged (default 1: every
        step that saw a record; raise it for runs where a handful of inputs says little).
    steps: per-step overrides, by funnel step name.
    """

    dead_letters: float = 0.5
    fallback: float = 0.5
    min_records: int = 1
    steps: Mapping[str, StepBudget] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_fraction("dead_letters", self.dead_letters)
        _check_fraction("fallback", self.fallback)
        if self.min_records < 0:
            raise ConfigError(f"budgets.min_records must be >= 0, got {self.min_records}")
        steps = {}
        for name, budget in dict(self.steps).items():
            if isinstance(budget, Mapping):
                unknown = set(budget) - {"dead_letters", "fallback"}
                if unknown:
                    raise ConfigError(f"unknown config key 'budgets.steps.{name}.{sorted(unknown)[0]}'")
                budget = StepBudget(**budget)
            steps[name] = budget
        object.__setattr__(self, "steps", steps)

    def limit(self, step: str, kind: str) -> float:
        override = getattr(self.steps.get(step, StepBudget()), kind)
        return getattr(self, kind) if override is None else override


@dataclass(frozen=True)
class BudgetViolation:
    """A step over its budget: ``kind`` is ``dead_letters`` or ``fallback``."""

    step: str
    kind: str
    fraction: float
    limit: float
    count: int
    inputs: int
    top_reason: str

    def message(self) -> str:
        what = "failed (dead letters)" if self.kind == "dead_letters" else "fell back"
        return (
            f"step {self.step}: {self.count} of {self.inputs} records {what} ({self.fraction:.0%}, "
            f"budget {self.limit:.0%}), most often {self.top_reason}"
        )


def over_budget(funnel: Sequence[Mapping[str, Any]], budgets: FailureBudgets) -> list[BudgetViolation]:
    """The funnel steps over their budgets, in funnel order.

    Args:
        funnel: manifest funnel rows (``step``, ``in``, ``dropped``, and optionally
            ``dead_letters``: reason -> count, ``fallback``: reason -> count).
    """
    found = []
    for row in funnel:
        inputs = row["in"]
        if inputs < max(budgets.min_records, 1):
            continue
        for kind in ("dead_letters", "fallback"):
            reasons = row.get(kind) or {}
            count = sum(reasons.values())
            limit = budgets.limit(row["step"], kind)
            if count and count / inputs > limit:
                top = max(sorted(reasons), key=lambda reason: reasons[reason])
                found.append(BudgetViolation(row["step"], kind, count / inputs, limit, count, inputs, top))
    return found
