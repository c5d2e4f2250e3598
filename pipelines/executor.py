"""The executor: turns any :class:`pipelines.recipe.Recipe` into Beam transforms and runs it.

For every step it derives the same things: rejects on their own output (one bad
record is one reject, never a failed job), Beam metrics (``kept.<step>``,
``dropped.<step>.<reason>``) and the console's progress line, fallback marks,
the stage tables a run writes and reads, and at the end the shards, the
rejects, the manifest (funnel, item funnels, model entries) and the failure
budgets. A run over budget still writes all of that, then raises
:class:`BudgetExceeded` naming the step.
"""

from __future__ import annotations

import dataclasses
import gc
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pvalue import AsSingleton, TaggedOutput

from curation.records import Reject, reject
from manifests.manifest import load_manifest
from pipelines import console
from pipelines.dedup import NearDedup
from pipelines.io import (
    STAGE_FUNNEL, CountFunnel, ManifestHeader, WriteDataset, WriteRejects, read_stage_funnel, split_rejects,
    write_stage_funnel,
)
from pipelines.recipe import (
    Checkpoint,
    Corpus,
    Dedup,
    FanOut,
    Filter,
    Map,
    Model,
    Packed,
    Read,
    Recipe,
    Route,
    RunPlan,
    Samples,
    Step,
    StepOutput,
    plan_run,
)
from pipelines.stages import RecordTables, clear_outputs, clear_stages, stage_directory
from pipelines.transforms import METRICS_NAMESPACE, REJECTS, ResolveCorpusQuantile, ToSamples

MARKS = "marks"
ROUTED = "routed"


class BudgetExceeded(RuntimeError):
    """A run whose step failed or fell back for more records than its budget allows.

    The manifest, rejects and shards were written; the message names the step,
    the fraction and the most common reason.
    """


# --------------------------------------------------------------------------- per-record steps


def _outcome(step: Step, record: Any, fn: Callable[[Any], Any], error_reason: str) -> Any:
    """``fn(record)``; an exception becomes a dead letter of the step instead of a failed bundle."""
    try:
        return fn(record)
    except Exception as error:  # one bad record is one dead letter
        return reject(record, step.name, error_reason, dead_letter=True, detail=repr(error)[:500])


def _judged(filt: Any, record: Any, step: str) -> Any:
    verdict = filt(record)
    return record if verdict.keep else reject(record, step, verdict.reason)


class _RecordFn(beam.DoFn):
    """Applies a Map step's function, or a Filter step's preparation and judgment, to each
    record (or ``(key, record)`` pair inside a fan-out); results that are rejects go to
    ``rejects``. Stateful functions are set up once per worker; ``threads > 1`` maps
    batches on a thread pool."""

    def __init__(self, step: Map | Filter, keyed: bool, batched: bool):
        self._step = step
        self._keyed = keyed
        self._batched = batched

    def setup(self) -> None:
        console.ensure_installed()
        self._pool = None
        if isinstance(self._step, Map):
            if hasattr(self._step.fn, "setup"):
                self._step.fn.setup()
            if self._step.threads > 1:
                self._pool = ThreadPoolExecutor(self._step.threads, thread_name_prefix=self._step.name)

    def teardown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
        if isinstance(self._step, Map) and hasattr(self._step.fn, "teardown"):
            self._step.fn.teardown()

    def _apply(self, record: Any) -> Any:
        step = self._step
        with console.step_context(step.name):
            if isinstance(step, Map):
                return _outcome(step, record, step.fn, "map_error")
            if step.prepare is not None:
                record = _outcome(step, record, step.prepare, "map_error")
                if isinstance(record, Reject):
                    return record
            return _outcome(step, record, lambda r: _judged(self._resolved, r, step.name), "filter_error")

    def process(self, element: Any, resolved: Any = None) -> Iterable[Any]:
        self._resolved = resolved or getattr(self._step, "filter", None)
        elements = element if self._batched else [element]
        keys = [item[0] for item in elements] if self._keyed else [None] * len(elements)
        records = [item[1] for item in elements] if self._keyed else elements
        results = self._pool.map(self._apply, records) if self._pool else map(self._apply, records)
        for key, result in zip(keys, results):
            if isinstance(result, Reject):
                yield TaggedOutput(REJECTS, result)
            else:
                yield (key, result) if self._keyed else result


def _per_record(records: beam.PCollection, step: Map | Filter, keyed: bool, label: str,
                resolved: beam.PCollection | None = None) -> tuple[beam.PCollection, beam.PCollection]:
    batched = isinstance(step, Map) and step.batch_size > 1
    if batched:
        # a fixed size: the thread pool gets full batches from the start, and Beam's batch-size
        # estimator (a regression per batch, tuned for model inference) is skipped
        records = records | f"{label}/Batch" >> beam.BatchElements(
            min_batch_size=step.batch_size, max_batch_size=step.batch_size
        )
    side = [AsSingleton(resolved)] if resolved is not None else []
    outputs = records | f"{label}/Apply" >> beam.ParDo(_RecordFn(step, keyed, batched), *side).with_outputs(
        REJECTS, main="kept"
    )
    return outputs.kept, outputs[REJECTS]


def _filter(records: beam.PCollection, step: Filter, keyed: bool, label: str):
    resolved = None
    if getattr(step.filter, "needs_corpus_quantile", False):
        prepared = records
        values = prepared | f"{label}/Values" >> beam.Map(lambda e: e[1]) if keyed else prepared
        resolved = values | f"{label}/Quantile" >> ResolveCorpusQuantile(step.filter)
    return _per_record(records, step, keyed, label, resolved)


# --------------------------------------------------------------------------- models


def _model(records: beam.PCollection, step: Model, keyed: bool, label: str, plan: RunPlan,
           output_dir: str, recipe: Recipe) -> tuple[beam.PCollection | None, list[beam.PCollection]]:
    """Inference, ``then``, the model's stage and its judge; ``(None, rejects)`` when the run stops at the stage."""
    from pipelines.models import RunModel  # imports the model libraries only when a model runs

    rejects = []
    if keyed or step.stage is None or plan.resume_from != step.stage:
        scored = records | f"{label}/Infer" >> RunModel(step.handler, step=step.name, keyed=keyed)
        records = scored.kept
        rejects.append(scored.rejects)
        if step.then is not None:
            then = Map(name=step.name, fn=step.then)
            records, then_rejects = _per_record(records, then, keyed, f"{label}/Then")
            rejects.append(then_rejects)
        if step.stage and step.stage in plan.stages_written:
            _ = records | f"{label}/WriteStage" >> _tables(recipe).write(stage_directory(output_dir, step.stage))
        if step.stage and step.stage == plan.stop_after:
            return None, rejects
    if step.judge is not None:
        judge = Filter(name=step.name, filter=step.judge)
        records, judge_rejects = _filter(records, judge, keyed, f"{label}/Judge")
        rejects.append(judge_rejects)
    return records, rejects


def _tables(recipe: Recipe) -> Any:
    return recipe.tables or RecordTables(recipe.record_type)


# --------------------------------------------------------------------------- dedup, fan-out


def _keep_one(item: tuple[Any, Iterable[Any]], step: Dedup) -> Iterable[Any]:
    kept, others = step.choose(list(item[1]))
    yield kept
    for other in others:
        detail = step.detail(kept) if step.detail else ""
        yield TaggedOutput(REJECTS, reject(other, step.name, step.reason, detail=detail))


def _dedup(records: beam.PCollection, step: Dedup, label: str):
    if step.minhash is not None:
        outputs = records | f"{label}/NearDedup" >> NearDedup(step.minhash, step=step.name)
    else:
        outputs = (
            records
            | f"{label}/Key" >> beam.Map(lambda r, key: (key(r), r), step.key)
            | f"{label}/Group" >> beam.GroupByKey()
            | f"{label}/KeepOne" >> beam.FlatMap(_keep_one, step).with_outputs(REJECTS, main="kept")
        )
    return outputs.kept, outputs[REJECTS]


ITEMS = "items"
ITEM_REJECTS = "item_rejects"


def _explode(record: Any, step: FanOut) -> Iterable[Any]:
    """``(parent id, parent)`` on the main output, ``(parent id, (index, item))`` on ``items``,
    the items ``explode`` rejected on ``item_rejects``; a failed explode rejects the parent."""
    try:
        parent, items = step.explode(record)
    except Exception as error:  # a file that cannot be opened is one dead letter, not a failed bundle
        reason = getattr(error, "reason", "explode_error")
        yield TaggedOutput(REJECTS, reject(record, step.name, reason, dead_letter=True,
                                           detail=str(getattr(error, "detail", "") or repr(error))[:500]))
        return
    yield (parent.id, parent)
    for index, item in enumerate(items):
        if isinstance(item, Reject):
            yield TaggedOutput(ITEM_REJECTS, item)
        else:
            yield TaggedOutput(ITEMS, (parent.id, (index, item)))


def _exploded(records: beam.PCollection, step: FanOut, label: str):
    return records | f"{label}/Explode" >> beam.FlatMap(_explode, step).with_outputs(
        REJECTS, ITEMS, ITEM_REJECTS, main="parents"
    )


def _reject_event(rejected: Reject) -> tuple[str, str, bool]:
    return rejected.step, rejected.reason, rejected.dead_letter


def _gather(item: tuple[str, dict[str, list]], step: FanOut) -> Iterable[Any]:
    _, joined = item
    kept = [item for _, item in sorted(joined["items"], key=lambda pair: pair[0])]
    for parent in joined["parent"]:
        result = _outcome(step, parent, lambda p: step.gather(p, kept), "gather_error")
        yield TaggedOutput(REJECTS, result) if isinstance(result, Reject) else result


def _fan_out(records: beam.PCollection, step: FanOut, label: str, plan: RunPlan, output_dir: str, recipe: Recipe):
    """A fan-out that gathers: ``(StepOutput, item rejects)``."""
    exploded = _exploded(records, step, label)
    # items travel as (parent id, (index, item)); item steps see (key, item) pairs
    items = exploded[ITEMS] | f"{label}/KeyItems" >> beam.Map(lambda kv: ((kv[0], kv[1][0]), kv[1][1]))
    items_in = (exploded[ITEMS], exploded[ITEM_REJECTS]) | f"{label}/AllItems" >> beam.Flatten() | (
        f"{label}/CountItems" >> beam.combiners.Count.Globally()
    )
    item_rejects = [exploded[ITEM_REJECTS]]
    for inner in step.steps:
        inner_label = f"{label}/{inner.name}"
        if isinstance(inner, Model):
            items, rejects = _model(items, inner, True, inner_label, plan, output_dir, recipe)
            item_rejects.extend(rejects)
        else:
            items, rejects = (_filter if isinstance(inner, Filter) else _per_record)(items, inner, True, inner_label)
            item_rejects.append(rejects)
        items = items | f"{inner_label}/Tally" >> beam.ParDo(_Tally(inner, keyed=True))
    by_parent = items | f"{label}/ByParent" >> beam.Map(lambda kv: (kv[0][0], (kv[0][1], kv[1])))
    gathered = (
        {"parent": exploded.parents, "items": by_parent}
        | f"{label}/Join" >> beam.CoGroupByKey()
        | f"{label}/Gather" >> beam.FlatMap(_gather, step).with_outputs(REJECTS, main="kept")
    )
    all_item_rejects = item_rejects | f"{label}/ItemRejects" >> beam.Flatten()
    events = all_item_rejects | f"{label}/ItemEvents" >> beam.Map(_reject_event)
    parent_rejects = (gathered[REJECTS], exploded[REJECTS]) | f"{label}/ParentRejects" >> beam.Flatten()
    return StepOutput(gathered.kept, parent_rejects, events, items_in), all_item_rejects


class _RouteFn(beam.DoFn):
    """Keeps the records ``step.choose`` sends nowhere; the others go to ``routed`` as
    ``(destination, record)``, and to ``rejects`` as ``routed_<destination>`` for the funnel."""

    def __init__(self, step: Route):
        self._step = step

    def process(self, record: Any) -> Iterable[Any]:
        with console.step_context(self._step.name):
            to = _outcome(self._step, record, self._step.choose, "route_error")
        if isinstance(to, Reject):
            yield TaggedOutput(REJECTS, to)
        elif to is None:
            yield record
        elif to not in self._step.destinations:
            yield TaggedOutput(REJECTS, reject(record, self._step.name, "route_error", dead_letter=True,
                                               detail=f"no destination {to!r} among {self._step.destinations}"))
        else:
            yield TaggedOutput(ROUTED, (to, record))
            yield TaggedOutput(REJECTS, reject(record, self._step.name, f"routed_{to}",
                                               detail=f"written whole to {to}/"))


# --------------------------------------------------------------------------- counting


class _Tally(beam.DoFn):
    """Passes kept records through, counting them in metrics and progress; a kept record
    that fell back also leaves a ``(step, reason)`` mark on ``marks``."""

    def __init__(self, step: Step, keyed: bool = False):
        self._step = step
        self._keyed = keyed

    def setup(self) -> None:
        console.ensure_installed()
        self._kept = Metrics.counter(METRICS_NAMESPACE, f"kept.{self._step.name}")

    def process(self, element: Any) -> Iterable[Any]:
        self._kept.inc()
        console.progress().record(self._step.name, kept=True)
        fallback = self._step.fallback
        if fallback is not None:
            reason = fallback(element[1] if self._keyed else element)
            if reason:
                yield TaggedOutput(MARKS, (self._step.name, reason))
        yield element


class _TallyRejects(beam.DoFn):
    """Counts rejects (``dropped.<step>.<reason>``) and refuses a reject named by a funnel step
    its step did not declare: a recipe bug, caught on the first record."""

    def __init__(self, funnel: tuple[str, ...]):
        self._funnel = funnel

    def setup(self) -> None:
        console.ensure_installed()

    def process(self, rejected: Reject) -> Iterable[Reject]:
        if rejected.step not in self._funnel:
            raise ValueError(f"a reject names step {rejected.step!r}, which is not among {self._funnel}")
        Metrics.counter(METRICS_NAMESPACE, f"dropped.{rejected.step}.{rejected.reason}").inc()
        console.progress().record(rejected.step, kept=False)
        yield rejected


# --------------------------------------------------------------------------- the run


@dataclasses.dataclass
class _Collected:
    rejects: list = dataclasses.field(default_factory=list)
    item_rejects: list = dataclasses.field(default_factory=list)
    marks: list = dataclasses.field(default_factory=list)
    item_funnels: list = dataclasses.field(default_factory=list)
    names: list = dataclasses.field(default_factory=list)  # the record funnel's steps so far
    routed: list = dataclasses.field(default_factory=list)  # (destination, record) pairs


def _start(pipeline: beam.Pipeline, recipe: Recipe, input_glob: str, output_dir: str, plan: RunPlan):
    """The records a run starts from, every input counted, and the read's side collections."""
    read: Read = recipe.steps[0]
    sides: dict[str, beam.PCollection] = {}
    if plan.resume_from is not None:
        inputs = pipeline | "Resume" >> _tables(recipe).read(stage_directory(output_dir, plan.resume_from))
    else:
        source = pipeline | "read" >> read.source(input_glob)
        if read.sides:
            sides = {name: source[name] for name in read.sides}
            source = source["records"]
        inputs = source
    records, rejects = split_rejects(inputs, "SplitReadRejects")
    return inputs, records, rejects, sides


def build(pipeline: beam.Pipeline, recipe: Recipe, input_glob: str, output_dir: str, plan: RunPlan) -> None:
    """Adds ``recipe`` to ``pipeline`` as ``plan`` says (see :func:`pipelines.recipe.plan_run`)."""
    inputs, records, read_rejects, sides = _start(pipeline, recipe, input_glob, output_dir, plan)
    collected = _Collected(names=list(plan.funnel[:1] if plan.resume_from else recipe.steps[0].funnel))
    collected.rejects.append(read_rejects | "read/TallyRejects" >> beam.ParDo(_TallyRejects(recipe.steps[0].funnel)))
    records = records | "read/Tally" >> beam.ParDo(_Tally(recipe.steps[0]))
    for step in plan.steps:
        label = step.name
        rejects: list[beam.PCollection] = []
        if isinstance(step, Checkpoint):
            if step.name in plan.stages_written:
                _ = records | f"stage_{label}/Write" >> _tables(recipe).write(stage_directory(output_dir, label))
            if step.name == plan.stop_after:
                _write_stop_outputs(pipeline, recipe, inputs, collected, output_dir, step.name)
                return
            continue
        if isinstance(step, Map):
            records, rejected = _per_record(records, step, False, label)
            rejects.append(rejected)
        elif isinstance(step, Filter):
            records, rejected = _filter(records, step, False, label)
            rejects.append(rejected)
        elif isinstance(step, Model):
            records, model_rejects = _model(records, step, False, label, plan, output_dir, recipe)
            rejects.extend(model_rejects)
            if records is None:  # stopped at the model's stage
                stopped = rejects | f"{label}/Rejects" >> beam.Flatten()
                collected.rejects.append(stopped | f"{label}/TallyRejects" >> beam.ParDo(_TallyRejects(step.funnel)))
                collected.names.extend(step.funnel)
                _write_stop_outputs(pipeline, recipe, inputs, collected, output_dir, step.stage)
                return
        elif isinstance(step, Dedup):
            records, rejected = _dedup(records, step, label)
            rejects.append(rejected)
        elif isinstance(step, Route):
            chosen = records | f"{label}/Choose" >> beam.ParDo(_RouteFn(step)).with_outputs(REJECTS, ROUTED, main="kept")
            records = chosen.kept
            rejects.append(chosen[REJECTS])
            collected.routed.append(chosen[ROUTED])
        elif isinstance(step, FanOut) and step.splits:
            inputs, records = _split(pipeline, records, step, inputs, collected)
            continue
        elif isinstance(step, FanOut):
            output, item_rejects = _fan_out(records, step, label, plan, output_dir, recipe)
            collected.item_rejects.append(item_rejects)
            collected.item_funnels.append((step.funnel_key, step.item_funnel, output))
            records = output.kept
            rejects.append(output.rejects)
        elif isinstance(step, Corpus):
            given = {"records": records, **{name: sides[name] for name in step.sides}} if step.sides else records
            output = given | label >> step.transform
            if step.funnel_key:
                collected.item_funnels.append((step.funnel_key, step.item_steps, output))
            records = output.kept
            rejects.append(output.rejects)
        else:
            raise TypeError(f"unknown step kind {type(step).__name__}")
        tallied = records | f"{label}/Tally" >> beam.ParDo(_Tally(step)).with_outputs(MARKS, main="kept")
        records = tallied.kept
        collected.marks.append(tallied[MARKS])
        step_rejects = rejects | f"{label}/Rejects" >> beam.Flatten() if rejects else (
            pipeline | f"{label}/NoRejects" >> beam.Create([])
        )
        collected.rejects.append(step_rejects | f"{label}/TallyRejects" >> beam.ParDo(_TallyRejects(step.funnel)))
        collected.names.extend(step.funnel)
    _write_outputs(pipeline, recipe, plan, records, inputs, collected, output_dir, input_glob)


def _split(pipeline: beam.Pipeline, records, step: FanOut, inputs, collected: _Collected):
    """Items become the records: what was counted so far closes as the source funnel (read ...
    this step) under ``step.funnel_key``; the record funnel starts again at ``step.item_step``.
    Returns the new inputs (every item, rejected ones included) and records."""
    label = step.name
    exploded = _exploded(records, step, label)
    _ = exploded.parents | f"{label}/Tally" >> beam.ParDo(_Tally(step))
    parent_rejects = exploded[REJECTS] | f"{label}/TallyRejects" >> beam.ParDo(_TallyRejects(step.funnel))
    source_rejects = [*collected.rejects, parent_rejects] | f"{label}/SourceRejects" >> beam.Flatten()
    source = StepOutput(
        kept=None, rejects=source_rejects, items_in=inputs | f"{label}/CountSources" >> beam.combiners.Count.Globally(),
        item_events=source_rejects | f"{label}/SourceEvents" >> beam.Map(_reject_event),
    )
    collected.item_funnels.append((step.funnel_key, (*collected.names, step.name), source))
    collected.item_rejects.append(source_rejects)
    collected.rejects = [exploded[ITEM_REJECTS] | f"{label}/TallyItemRejects" >> beam.ParDo(_TallyRejects((step.item_step,)))]
    collected.marks = []
    items = exploded[ITEMS] | f"{label}/Items" >> beam.Map(lambda kv: kv[1][1])
    new_inputs = (items, exploded[ITEM_REJECTS]) | f"{label}/AllItems" >> beam.Flatten()
    return new_inputs, items


class _SumPairs(beam.CombineFn):
    """Sums ``(a, b)`` pairs element-wise."""

    def create_accumulator(self) -> tuple[int, int]:
        return (0, 0)

    def add_input(self, total: tuple[int, int], pair: tuple[int, int]) -> tuple[int, int]:
        return (total[0] + pair[0], total[1] + pair[1])

    def merge_accumulators(self, totals: Iterable[tuple[int, int]]) -> tuple[int, int]:
        found = list(totals)
        return (sum(t[0] for t in found), sum(t[1] for t in found))

    def extract_output(self, total: tuple[int, int]) -> tuple[int, int]:
        return total


class CountCarried(beam.PTransform):
    """A singleton ``{model step: (records carrying its output, records)}`` over the records written."""

    def __init__(self, carriers: list[tuple[str, Callable[[Any], bool]]]):
        super().__init__()
        self._carriers = carriers

    def expand(self, records: beam.PCollection) -> beam.PCollection:
        carriers = self._carriers
        return (
            records
            | "Carried" >> beam.FlatMap(lambda r: [(step, (int(bool(carried(r))), 1)) for step, carried in carriers])
            | "SumPerModel" >> beam.CombinePerKey(_SumPairs())
            | "AsDict" >> beam.combiners.ToDict()
            | "EveryModel" >> beam.Map(lambda found: {step: tuple(found.get(step, (0, 0))) for step, _ in carriers})
        )


def _write_stop_outputs(pipeline, recipe: Recipe, inputs, collected: _Collected, output_dir: str, stage: str):
    """A run stopped at a stage still writes its rejects (``stages/STAGE/rejects/``, kept with the
    stage, since a resumed run writes ``rejects/`` anew) and the funnel so far with its budget
    verdict (``stages/STAGE/funnel.json``)."""
    directory = stage_directory(output_dir, stage)
    rejects = collected.rejects | "AllRejects" >> beam.Flatten()
    _ = [rejects, *collected.item_rejects] | "AllRejectRows" >> beam.Flatten() | "WriteRejects" >> WriteRejects(directory)
    marks = collected.marks | "AllMarks" >> beam.Flatten() if collected.marks else pipeline | "NoMarks" >> beam.Create([])
    counts = {"inputs": inputs, "rejects": rejects, "marks": marks} | "CountFunnel" >> CountFunnel()
    path = FileSystems.join(directory, STAGE_FUNNEL)
    _ = counts | "WriteStageFunnel" >> beam.Map(write_stage_funnel, tuple(collected.names), recipe.budgets, path)


def _document_starts(sample: Any) -> int:
    """The records a packed sample begins (the piece at its token 0), so a record split over
    several sequences counts once, and two records with the same content id count twice."""
    return sum(1 for piece in json.loads(sample.fields["json"])["pieces"] if piece["start_token"] == 0)


def _write_outputs(pipeline, recipe: Recipe, plan: RunPlan, records, inputs, collected: _Collected, output_dir: str,
                   input_glob: str | None):
    output = recipe.output
    outputs: dict[str, beam.PCollection] = {"inputs": inputs}
    if isinstance(output, Samples):
        outputs["samples"] = records | "ToSamples" >> beam.ParDo(ToSamples(output.tokens, output.to_sample))
    elif isinstance(output, Packed):
        outputs["samples"] = records | "Pack" >> output.transform
        outputs["packed_records"] = (
            outputs["samples"]
            | "PackedRecords" >> beam.Map(output.records or _document_starts)
            | "CountPacked" >> beam.CombineGlobally(sum)
        )
        if output.report is not None:
            outputs["packed_report"] = outputs["samples"] | "PackedReport" >> output.report
    carriers = [(step, carried) for step, carried in recipe.carriers() if step in plan.funnel]
    if carriers:
        outputs["model_outputs"] = records | "ModelOutputs" >> CountCarried(carriers)
    outputs["rejects"] = collected.rejects | "AllRejects" >> beam.Flatten()
    if collected.item_rejects:
        outputs["item_rejects"] = collected.item_rejects | "AllItemRejects" >> beam.Flatten()
    outputs["marks"] = collected.marks | "AllMarks" >> beam.Flatten() if collected.marks else (
        pipeline | "NoMarks" >> beam.Create([])
    )
    funnel_steps = {*plan.funnel, *(name for _, steps, _ in collected.item_funnels for name in steps)}
    header = ManifestHeader(
        dataset=recipe.dataset,
        config=recipe.config_mapping(),
        models=tuple((step, dict(entry)) for step, entry in recipe.models() if step in funnel_steps),
        steps=plan.funnel,
        budgets=recipe.budgets,
        item_funnels=tuple((key, steps) for key, steps, _ in collected.item_funnels),
        notes=recipe.notes,
        extra=dict(recipe.extra(input_glob)) if recipe.extra else {},
    )
    item_pcolls = {}
    for key, _, output in collected.item_funnels:
        item_pcolls[f"{key}/in"] = output.items_in
        item_pcolls[f"{key}/events"] = output.item_events
    _ = {**outputs, **item_pcolls} | "WriteDataset" >> WriteDataset(output_dir, header, recipe.shards)
    if collected.routed:
        _write_routed(pipeline, recipe, header, collected.routed, output_dir)


def _write_routed(pipeline, recipe: Recipe, header: ManifestHeader, routed: list, output_dir: str):
    """Each destination's records as a dataset of its own (``OUTPUT/<destination>/``): its samples
    made as the main output's are, its manifest's funnel one step (the route) that keeps them all."""
    every = routed | "AllRouted" >> beam.Flatten()
    for step in (s for s in recipe.steps if isinstance(s, Route)):
        for destination in step.destinations:
            label = f"routed_{destination}"
            records = every | f"{label}/Select" >> beam.FlatMap(lambda pair, d: [pair[1]] if pair[0] == d else [], destination)
            outputs = {
                "inputs": records,
                "samples": records | f"{label}/ToSamples" >> beam.ParDo(ToSamples(recipe.output.tokens, recipe.output.to_sample)),
                "rejects": pipeline | f"{label}/NoRejects" >> beam.Create([]),
                "marks": pipeline | f"{label}/NoMarks" >> beam.Create([]),
            }
            routed_header = dataclasses.replace(
                header, dataset=f"{recipe.dataset}_{destination}", steps=(step.name,), item_funnels=(),
                notes=(*header.notes, f"the records step {step.name!r} routed to {destination}/ from the run in ../"),
            )
            _ = outputs | f"{label}/WriteDataset" >> WriteDataset(
                FileSystems.join(output_dir, destination), routed_header, recipe.shards)


def run_recipe(
    recipe: Recipe,
    input_glob: str,
    output_dir: str,
    beam_args: list[str],
    stop_after: str | None = None,
    resume_from: str | None = None,
) -> bool:
    """Builds and runs ``recipe``; stage options as in :func:`pipelines.recipe.plan_run`.

    Returns:
        False when the runner only translated the job (``--dry_run=True``), True when it ran.

    Raises:
        ConfigError: for stage options the recipe cannot honour (before anything runs).
        BudgetExceeded: after the outputs are written, when a step is over its failure budget.
    """
    plan = plan_run(recipe, stop_after, resume_from)
    options = PipelineOptions(beam_args)
    dry_run = bool(options.get_all_options().get("dry_run"))
    if not dry_run:
        clear_stages(output_dir, plan.stages_written)
        if plan.stop_after is None:
            clear_outputs(output_dir, recipe.destinations)
    console.ensure_installed()
    try:
        with beam.Pipeline(options=options) as pipeline:
            build(pipeline, recipe, input_glob, output_dir, plan)
            # the modules and the pipeline live through the run: the collector's passes skip them
            # (a full collection first would cost a test process a third of a second a run)
            gc.freeze()
    finally:
        gc.unfreeze()
    console.progress().finish()
    if dry_run:
        return False
    console.absorb_result(pipeline.result)
    if plan.stop_after is None:
        verdict = load_manifest(FileSystems.join(output_dir, "manifest.json"), opener=FileSystems.open)
    else:
        verdict = read_stage_funnel(stage_directory(output_dir, plan.stop_after))
    if verdict.get("budget_exceeded"):
        raise BudgetExceeded(verdict["budget_exceeded"][0])
    if recipe.finish is not None and plan.stop_after is None:
        recipe.finish(input_glob, output_dir)
    return True


def runner(make_recipe: Callable[[Any], Recipe]) -> Callable[..., bool]:
    """A pipeline module's ``run(input_glob, output_dir, config, beam_args, stop_after=None,
    resume_from=None)``: its recipe made from the config, run by :func:`run_recipe`."""

    def run(input_glob: str, output_dir: str, config: Any, beam_args: list[str],
            stop_after: str | None = None, resume_from: str | None = None) -> bool:
        return run_recipe(make_recipe(config), input_glob, output_dir, beam_args, stop_after, resume_from)

    return run
