"""Recipes: a pipeline declared as an ordered list of typed steps.

A recipe names its record type, its steps in the order records meet them, and
how kept records become shard samples. Nothing in it is wired by hand: the
executor (:mod:`pipelines.executor`) turns any recipe into Beam transforms and
derives the funnel, rejects and dead letters, metrics and progress, failure
budgets, the ``--stop-after``/``--resume-from`` stage tables and the manifest's
model entries from the declaration alone.

Step kinds:

* :class:`Read` - the source: input paths to records (and read-step rejects).
* :class:`Map` - record to record or reject, optionally on a thread pool.
* :class:`Filter` - a :class:`filters.base.Filter` (score into ``stats``, keep or
  drop with a named reason), optionally after a preparing map.
* :class:`Model` - a Beam ``ModelHandler`` whose batches only infer; ``then``
  interprets each output, ``judge`` filters on the scores.
* :class:`Dedup` - one record per key (keep rule) or per MinHash LSH cluster.
* :class:`Checkpoint` - a named stage: records written as Parquet tables.
* :class:`FanOut` - the items inside a record (pages of a PDF, frames of a video)
  through item steps of their own, with their own funnel, then gathered back.
* :class:`Corpus` - a step that must see the whole corpus at once (joins,
  corpus-wide groupings); its transform returns a :class:`StepOutput`.
* :class:`Route` - records bound elsewhere (a video too long for its sequence budget,
  to the long-context stage) leave the samples whole and become a dataset of their own.

Every step has a unique ``name``: its funnel step. A step that rejects records
under further funnel steps (a fetch that also decodes) lists them in ``also``.
A step whose kept records may carry a fallback (a caption that kept its alt
text) says how to see it with ``fallback``; fallbacks are counted in the funnel
and held to a budget.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, NamedTuple, Sequence

from curation.budgets import FailureBudgets
from curation.config import ConfigError, to_mapping
from curation.minhash import MinHashSettings


class RecipeError(ValueError):
    """A recipe that cannot be run: unknown, repeated or misplaced steps or stages."""


@dataclass(frozen=True, kw_only=True)
class Step:
    """What every step has.

    Attributes:
        name: the funnel step name; unique within a recipe.
        also: further funnel steps, in order after ``name``, whose rejects this step emits.
        fallback: ``record -> reason or None`` for kept records that fell back
            (kept, but not what the step exists to make).
    """

    name: str
    also: tuple[str, ...] = ()
    fallback: Callable[[Any], str | None] | None = None

    @property
    def funnel(self) -> tuple[str, ...]:
        return (self.name, *self.also)


@dataclass(frozen=True, kw_only=True)
class Read(Step):
    """The source. ``source(input_glob)`` is a PTransform applied to the pipeline that
    yields records and read-step :class:`curation.records.Reject` rows, or, when the
    step declares ``sides``, a dict with ``"records"`` and one collection per side name
    (collections later steps read, e.g. image payloads found next to the pages)."""

    name: str = "read"
    source: Callable[[str], Any]
    sides: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Map(Step):
    """``fn(record) -> record | Reject``. ``fn`` may hold worker state: when it has
    ``setup()``/``teardown()`` they run once per worker. With ``threads > 1`` records
    are handed to a thread pool ``batch_size`` at a time (I/O-bound steps: fetching)."""

    fn: Callable[[Any], Any]
    threads: int = 1
    batch_size: int = 1


@dataclass(frozen=True, kw_only=True)
class Filter(Step):
    """A :class:`filters.base.Filter`; ``prepare`` (record -> record | Reject) runs first
    in the same funnel step. A filter with ``needs_corpus_quantile`` has its threshold
    resolved from the corpus' scores in ``stats[filter.name]`` before judging."""

    filter: Any
    prepare: Callable[[Any], Any] | None = None


@dataclass(frozen=True, kw_only=True)
class Model(Step):
    """A model over batches: ``handler`` is a Beam ``ModelHandler`` that loads once per
    worker and only infers; a failed batch becomes ``batch_error`` dead letters.

    Attributes:
        handler: the model handler.
        entry: the manifest's ``models`` entry (name, role, weights, ...).
        then: ``output -> record | Reject``: what an output means (decisions, retries).
        stage: a stage after inference (and ``then``), before ``judge``, so a resumed
            run can judge again with other thresholds without running the model.
        stage_always: write the stage on every run, not only with ``--stop-after`` it.
        judge: a :class:`Filter` step's filter applied last, in this funnel step.
        carried: for a model whose output goes into the samples (a rewritten caption, QA
            pairs), ``record -> bool``: whether a written record carries it; the manifest's
            entry then says in how many samples it is.
    """

    handler: Any
    entry: Mapping[str, Any]
    then: Callable[[Any], Any] | None = None
    stage: str | None = None
    stage_always: bool = False
    judge: Any = None
    carried: Callable[[Any], bool] | None = None


def model_entry(spec: Any, role: str, **details: Any) -> dict[str, Any]:
    """A model's manifest entry: its name, role and weights (a path, a tag or ``random-init``)."""
    return {"name": spec.model, "role": role, "weights": spec.weights_source(), **details}


@dataclass(frozen=True, kw_only=True)
class Dedup(Step):
    """One record per ``key``: ``choose(copies) -> (kept, others)``; the others are
    rejected with ``reason`` and ``detail(kept)``. With ``minhash`` instead of ``key``,
    near-duplicates by MinHash LSH are dropped (``near_duplicate``, detail ``kept <id>``, a
    kept record: the rule of :class:`pipelines.dedup.NearDedup`)."""

    key: Callable[[Any], Any] | None = None
    choose: Callable[[list], tuple[Any, list]] | None = None
    reason: str = "duplicate"
    detail: Callable[[Any], str] | None = None
    minhash: MinHashSettings | None = None

    def __post_init__(self) -> None:
        if (self.key is None) == (self.minhash is None):
            raise RecipeError(f"dedup step {self.name!r} needs exactly one of key and minhash")


def keep_first(order: Callable[[Any], Any]) -> Callable[[list], tuple[Any, list]]:
    """A :class:`Dedup` keep rule: the copy that sorts first by ``order`` stays."""

    def choose(copies: list) -> tuple[Any, list]:
        first, *rest = sorted(copies, key=order)
        return first, rest

    return choose


@dataclass(frozen=True, kw_only=True)
class Checkpoint(Step):
    """A named stage. ``always``: written on every run that passes it (a resumable point
    after expensive work); otherwise written only with ``--stop-after`` it."""

    always: bool = False

    @property
    def funnel(self) -> tuple[str, ...]:
        return ()


@dataclass(frozen=True, kw_only=True)
class FanOut(Step):
    """The items inside a record (the pages of a PDF, the frames of a video).

    Two forms. With ``gather``, the items go through ``steps`` of their own, with their
    own funnel, and are gathered back into their record. Without it (a *split*), the
    items become the records from here on: the record funnel counts items, and what
    came before (read and this step) becomes the source funnel under ``funnel_key``.

    An ``explode`` that raises rejects the record under this step's ``name``, with the
    exception's ``reason`` attribute when it has one (``explode_error`` otherwise), as
    a dead letter; the job goes on.

    Attributes:
        explode: ``record -> (record, [items])``; items are records of their own kind
            (``id``, ``source``, ``stats``), in order; an item may be a ``Reject`` of
            ``item_step`` (a page that failed to render, one past a page cap).
        item_step: the item funnel step that counts what ``explode`` itself rejected; for
            a split, the first step of the record funnel.
        steps: the item steps (Map, Filter, Model); none for a split.
        gather: ``(record, [kept items in order]) -> record | Reject``; None for a split.
        funnel_key: where the item funnel (or, for a split, the source funnel) goes in
            the manifest's ``extra``.
    """

    explode: Callable[[Any], tuple[Any, list]]
    item_step: str
    funnel_key: str
    steps: tuple[Step, ...] = ()
    gather: Callable[[Any, list], Any] | None = None

    @property
    def splits(self) -> bool:
        return self.gather is None

    @property
    def item_funnel(self) -> tuple[str, ...]:
        return (self.item_step, *(name for inner in self.steps for name in inner.funnel))


class StepOutput(NamedTuple):
    """What a :class:`Corpus` transform returns.

    ``item_events`` are ``(item step, reason)`` per dropped item and ``items_in``
    a singleton count, when the step has an item funnel.
    """

    kept: Any
    rejects: Any
    item_events: Any = None
    items_in: Any = None


@dataclass(frozen=True, kw_only=True)
class Corpus(Step):
    """A step that needs the whole corpus: ``transform`` is a PTransform taking the
    records (or, with ``sides``, a dict of ``"records"`` and those side collections)
    and returning a :class:`StepOutput`. ``item_steps``/``funnel_key`` declare its item
    funnel, when it has one; ``models`` the :class:`Model` steps its transform runs on
    items (each named by one of ``item_steps``), so the manifest lists their models."""

    transform: Any
    sides: tuple[str, ...] = ()
    item_steps: tuple[str, ...] = ()
    funnel_key: str | None = None
    models: tuple[Model, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Route(Step):
    """Sends records elsewhere, whole: a record for which ``choose`` names one of
    ``destinations`` leaves the samples and is written, as a sample of its own, to the
    dataset ``OUTPUT/<destination>/`` (shards and a manifest); the record funnel counts it
    at this step with reason ``routed_<destination>`` (and its rejects table says which)."""

    choose: Callable[[Any], str | None]
    destinations: tuple[str, ...]

    def __post_init__(self) -> None:
        for destination in self.destinations:
            if not re.fullmatch(r"[a-z][a-z0-9_]*", destination) or destination in ("shards", "rejects", "stages"):
                raise RecipeError(f"route {self.name!r}: destination {destination!r} is not a free snake_case name")


@dataclass(frozen=True)
class Samples:
    """Kept records to shard samples, one each: ``to_sample(record, tokenizer, resolution)``."""

    to_sample: Callable[[Any, Any, str], Any]
    tokens: Any


@dataclass(frozen=True)
class Packed:
    """Kept records to samples that pack several records each: ``transform`` is a
    PTransform from kept records to samples. ``records(sample)`` counts the records a sample
    holds that no other sample counts; by default the sample's ``json`` lists its ``"pieces"``
    (each with ``start_token``: a record is counted where its piece starting at token 0 is).
    ``report``, when set, is a PTransform from the samples to a singleton dict merged into the
    manifest's ``extra`` (what packing cost, say)."""

    transform: Any
    records: Callable[[Any], int] | None = None
    report: Any = None


@dataclass(frozen=True)
class Recipe:
    """A pipeline: its record type, steps and output, with the config it was made from.

    The config supplies ``dataset``, ``shards`` and ``budgets``. ``tables`` writes and
    reads the stages (``write(directory)``/``read(directory)`` PTransforms); by default
    the record type's rows as Parquet (:class:`pipelines.stages.RecordTables`).
    ``switched_off`` says, per stage the config left out, what would switch it on.
    ``notes`` go to the manifest's ``extra.notes`` (e.g. that no generator wrote QA pairs).
    ``extra(input)`` adds facts about a run's input to the manifest's ``extra`` (the lineage of
    the datasets it reads), computed when the job is built (``input`` is None when a resumed run
    was given none); ``finish(input, output)`` runs in the launching process after a complete run
    within its budgets (writing a file derived from the outputs, e.g. a stage manifest over them).
    """

    record_type: type
    steps: tuple[Step, ...]
    output: Samples | Packed
    config: Any
    tables: Any = None
    switched_off: Mapping[str, str] = dataclasses.field(default_factory=dict)
    notes: tuple[str, ...] = ()
    extra: Callable[[str], Mapping[str, Any]] | None = None
    finish: Callable[[str, str], None] | None = None

    def __post_init__(self) -> None:
        check_recipe(self)

    @property
    def dataset(self) -> str:
        return self.config.dataset

    @property
    def shards(self) -> Any:
        return self.config.shards

    @property
    def budgets(self) -> FailureBudgets:
        return self.config.budgets

    def config_mapping(self) -> dict[str, Any]:
        return to_mapping(self.config)

    @property
    def funnel(self) -> tuple[str, ...]:
        """Every step name, item steps included, in order (the names are unique)."""
        names = []
        for step in self.steps:
            names.extend(step.funnel)
            if isinstance(step, FanOut):
                names.extend(step.item_funnel)
        return tuple(names)

    @property
    def stages(self) -> tuple[str, ...]:
        """The stage names, in order."""
        return tuple(stage for _, stage in _stage_positions(self.steps))

    def carriers(self) -> list[tuple[str, Callable[[Any], bool]]]:
        """``(step, carried)`` of the models whose output goes into the samples."""
        return [(step.name, step.carried) for step in self.steps if isinstance(step, Model) and step.carried]

    @property
    def destinations(self) -> tuple[str, ...]:
        """The datasets beside ``shards/`` that :class:`Route` steps write, in order."""
        return tuple(d for step in self.steps if isinstance(step, Route) for d in step.destinations)

    def models(self) -> list[tuple[str, Mapping[str, Any]]]:
        """``(step, manifest entry)`` of every model the recipe runs."""
        found = []
        for step in self.steps:
            for inner in (step, *getattr(step, "steps", ()), *getattr(step, "models", ())):
                if isinstance(inner, Model):
                    found.append((inner.name, inner.entry))
        return found


def _stage_positions(steps: Sequence[Step]) -> list[tuple[int, str]]:
    """``(index of the step, stage)``: a checkpoint's own index, or a model's stage at its index."""
    found = []
    for index, step in enumerate(steps):
        if isinstance(step, Checkpoint):
            found.append((index, step.name))
        elif isinstance(step, Model) and step.stage:
            found.append((index, step.stage))
    return found


def check_recipe(recipe: Recipe) -> None:
    """Refuses a recipe that cannot run; raises :class:`RecipeError` before any data is read."""
    steps = recipe.steps
    if not steps or not isinstance(steps[0], Read):
        raise RecipeError(f"recipe {recipe.dataset!r} must start with a Read step")
    if any(isinstance(step, Read) for step in steps[1:]):
        raise RecipeError(f"recipe {recipe.dataset!r} has a Read step after the first step")
    splits = [i for i, step in enumerate(steps) if isinstance(step, FanOut) and step.splits]
    if len(splits) > 1:
        raise RecipeError(f"recipe {recipe.dataset!r} splits its records twice")
    if splits and _stage_positions(steps[: splits[0]]):
        raise RecipeError(f"recipe {recipe.dataset!r} has a stage before its split: stages hold {recipe.record_type.__name__}")
    _check_unique(recipe.funnel, "step")
    _check_unique(recipe.stages, "stage")
    sides = set(steps[0].sides)
    for step in steps[1:]:
        missing = [side for side in getattr(step, "sides", ()) if side not in sides]
        if missing:
            raise RecipeError(f"step {step.name!r} reads side collection {missing[0]!r} that no Read step makes")
        if isinstance(step, Filter) and step.prepare and getattr(step.filter, "needs_corpus_quantile", False):
            raise RecipeError(f"filter step {step.name!r}: a corpus-quantile filter takes no prepare")
        if isinstance(step, Route) and not isinstance(recipe.output, Samples):
            raise RecipeError(f"route {step.name!r}: routed records are written one sample each, so the output is Samples")
        if isinstance(step, FanOut):
            if any(not isinstance(inner, (Map, Filter, Model)) for inner in step.steps):
                raise RecipeError(f"fan-out {step.name!r}: item steps are Map, Filter or Model steps")
            if any(inner.fallback or getattr(inner, "stage", None) for inner in (step, *step.steps)):
                raise RecipeError(f"fan-out {step.name!r}: item steps and the fan-out itself have no fallbacks or stages")
            if step.splits and step.steps:
                raise RecipeError(f"fan-out {step.name!r} splits records into items: the steps after it are theirs")


def _check_unique(names: Sequence[str], kind: str) -> None:
    seen = set()
    for name in names:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name or ""):
            raise RecipeError(f"{kind} name {name!r} is not a snake_case word")
        if name in seen:
            raise RecipeError(f"{kind} name {name!r} is used twice")
        seen.add(name)


@dataclass(frozen=True)
class RunPlan:
    """What one run does: the steps after its start, the stages it writes, its funnel."""

    resume_from: str | None
    stop_after: str | None
    steps: tuple[Step, ...]
    stages_written: tuple[str, ...]
    funnel: tuple[str, ...]


def resumable_stages(recipe: Recipe) -> tuple[str, ...]:
    """Stages a run can start from: those after which no step needs a side collection of the read."""
    positions = _stage_positions(recipe.steps)
    last_side_reader = max(
        (i for i, step in enumerate(recipe.steps) if getattr(step, "sides", ()) and i > 0), default=0
    )
    return tuple(stage for index, stage in positions if index >= last_side_reader)


def plan_run(recipe: Recipe, stop_after: str | None = None, resume_from: str | None = None) -> RunPlan:
    """Resolves ``--stop-after``/``--resume-from`` against the recipe.

    Raises:
        ConfigError: for a stage the recipe does not have, one that cannot be resumed
            from, or a stop that comes before the resume.
    """
    unknown = sorted(set(recipe.budgets.steps) - set(recipe.funnel) - set(_corpus_item_steps(recipe)))
    if unknown:
        raise ConfigError(f"config key 'budgets.steps.{unknown[0]}' names no step of this pipeline "
                          f"(its steps: {', '.join(recipe.funnel)})")
    stages = recipe.stages
    for option, stage in (("--stop-after", stop_after), ("--resume-from", resume_from)):
        if stage in recipe.switched_off:
            raise ConfigError(f"{option} {stage}: that stage is switched off; it needs {recipe.switched_off[stage]}")
    if stop_after is not None and stop_after not in stages:
        raise ConfigError(f"--stop-after takes one of {', '.join(stages) or '(no stages)'}, got {stop_after!r}")
    resumable = resumable_stages(recipe)
    if resume_from is not None and resume_from not in resumable:
        raise ConfigError(f"--resume-from takes one of {', '.join(resumable) or '(no stages)'}, got {resume_from!r}")
    if stop_after and resume_from and stages.index(stop_after) <= stages.index(resume_from):
        raise ConfigError(f"--stop-after {stop_after} comes before --resume-from {resume_from}")
    positions = dict((stage, index) for index, stage in _stage_positions(recipe.steps))
    start = 1
    if resume_from is not None:
        start = positions[resume_from] + (0 if isinstance(recipe.steps[positions[resume_from]], Model) else 1)
    end = positions[stop_after] + 1 if stop_after else len(recipe.steps)
    steps = recipe.steps[start:end]
    written = []
    for step in steps:
        if isinstance(step, Checkpoint) and (step.always or step.name == stop_after):
            written.append(step.name)
        elif isinstance(step, Model) and step.stage and step.stage != resume_from:
            if step.stage_always or step.stage == stop_after:
                written.append(step.stage)
    funnel = ("read", *(name for step in steps for name in step.funnel))
    if resume_from is None:
        funnel = recipe.steps[0].funnel + funnel[1:]
        split = next((s for s in steps if isinstance(s, FanOut) and s.splits), None)
        if split is not None:  # the record funnel counts the items from the split on
            after = steps[steps.index(split) + 1 :]
            funnel = (split.item_step, *(name for step in after for name in step.funnel))
    return RunPlan(resume_from, stop_after, steps, tuple(written), funnel)


def _corpus_item_steps(recipe: Recipe) -> tuple[str, ...]:
    return tuple(name for step in recipe.steps if isinstance(step, Corpus) for name in step.item_steps)


def without(steps: Sequence[Step | None]) -> tuple[Step, ...]:
    """The steps a config switched on: ``None`` entries (switched off) left out."""
    return tuple(step for step in steps if step is not None)
