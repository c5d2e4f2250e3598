"""The recipe executor on a toy record type: funnel, build-time checks, fan-out, stages, budgets."""

from __future__ import annotations

import dataclasses
import gc
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.ml.inference.base import ModelHandler

from curation.budgets import FailureBudgets
from curation.config import ConfigError, load_config
from curation.records import COMMON_FIELDS, reject
from curation.tokens import TokenSettings
from filters.base import Filter as BaseFilter
from manifests.manifest import load_manifest, validate_manifest
from manifests.shards import Sample, ShardSettings
from pipelines.executor import BudgetExceeded, run_recipe
from pipelines.recipe import (
    Checkpoint, Dedup, FanOut, Filter, Map, Model, Read, Recipe, RecipeError, Samples, keep_first, plan_run,
)

DIRECT = ["--runner=DirectRunner"]


@dataclass
class Word:
    """The toy record: a word and a number."""

    id: str
    source: str
    text: str
    value: int
    meta: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, float] = field(default_factory=dict)


Word.SCHEMA = pa.schema(COMMON_FIELDS[:2] + [("text", pa.string()), ("value", pa.int64())] + COMMON_FIELDS[2:])


@dataclass(frozen=True)
class ToyConfig:
    dataset: str = "toy"
    shards: ShardSettings = ShardSettings(max_samples=4)
    budgets: FailureBudgets = FailureBudgets()


class MinValue(BaseFilter):
    """Keeps words whose value is at least ``minimum``."""

    name = "min_value"

    def __init__(self, minimum: int):
        self.minimum = minimum

    def score(self, record: Word) -> float:
        return float(record.value)

    def keep(self, score: float) -> tuple[bool, str | None]:
        return (True, None) if score >= self.minimum else (False, "too_small")


class LengthModel(ModelHandler):
    """A 'model' whose batches only infer: stats["length"] from the text."""

    def load_model(self) -> object:
        return object.__new__(type("Loaded", (), {}))  # RunInference keeps a weak reference to it

    def run_inference(self, batch, model, inference_args=None):
        for record in batch:
            yield dataclasses.replace(record, stats={**record.stats, "length": float(len(record.text))})


def words(n: int = 40) -> list[Word]:
    found = []
    for i in range(n):
        text = ["alpha", "beta", "gamma", "delta"][i % 4] + str(i % 13)
        found.append(Word(id=f"w{i:03d}", source=f"input#{i}", text=text, value=i))
    return found


def word_sample(record: Word, tokenizer: Any, resolution: str) -> Sample:
    info = {"id": record.id, "text": record.text, "value": record.value, "stats": record.stats}
    return Sample(key=record.id, fields={"json": json.dumps(info, sort_keys=True).encode()})


def _double(record: Word) -> Word:
    return dataclasses.replace(record, value=record.value * 2)


def _fail_every_third(record: Word) -> Any:
    if record.value % 3 == 0:
        return reject(record, "parse", "unparsable", dead_letter=True)
    return record


def toy_recipe(steps: list, config: ToyConfig = ToyConfig(), records: list[Word] | None = None) -> Recipe:
    given = records if records is not None else words()
    read = Read(source=lambda _: beam.Create(given))
    return Recipe(record_type=Word, steps=(read, *steps), output=Samples(word_sample, TokenSettings("whitespace")),
                  config=config)


def standard_steps() -> list:
    return [
        Filter(name="min_value", filter=MinValue(4)),
        Map(name="parse", fn=_fail_every_third),
        Dedup(name="same_text", key=lambda w: w.text, choose=keep_first(lambda w: w.id),
              detail=lambda kept: f"same as {kept.id}"),
        Checkpoint(name="deduplicated"),
        Map(name="double", fn=_double),
        Model(name="length", handler=LengthModel(), entry={"name": "length", "role": "toy", "weights": "none"}),
    ]


def shard_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "shards").glob("*.tar"))}


def test_the_funnel_is_the_declaration_in_order_and_balances(tmp_path):
    recipe = toy_recipe(standard_steps())
    assert recipe.funnel == ("read", "min_value", "parse", "same_text", "double", "length")
    assert recipe.stages == ("deduplicated",)
    run_recipe(recipe, "unused", str(tmp_path), DIRECT)
    manifest = load_manifest(str(tmp_path / "manifest.json"))
    assert validate_manifest(manifest) == []
    funnel = {row["step"]: row for row in manifest["funnel"]}
    assert [row["step"] for row in manifest["funnel"]] == list(recipe.funnel)
    assert funnel["read"]["in"] == 40
    assert funnel["min_value"]["dropped"] == {"too_small": 4}
    # values 4..39: the multiples of three fail in parse, as dead letters
    assert funnel["parse"]["dropped"] == {"unparsable": 12} and funnel["parse"]["dead_letters"] == {"unparsable": 12}
    assert manifest["dead_letters"] == 12
    kept_values = [v for v in range(4, 40) if v % 3]
    texts = {["alpha", "beta", "gamma", "delta"][v % 4] + str(v % 13) for v in kept_values}
    assert funnel["same_text"]["out"] == len(texts)
    assert manifest["totals"]["samples"] == len(texts)
    assert manifest["models"] == [{"name": "length", "role": "toy", "weights": "none"}]
    for row in manifest["funnel"]:
        assert row["in"] == row["out"] + sum(row["dropped"].values())


def test_a_repeated_or_misnamed_step_fails_when_the_recipe_is_built():
    with pytest.raises(RecipeError, match="'parse' is used twice"):
        toy_recipe([Map(name="parse", fn=_double), Map(name="parse", fn=_double)])
    with pytest.raises(RecipeError, match="not a snake_case word"):
        toy_recipe([Map(name="bad name", fn=_double)])
    with pytest.raises(RecipeError, match="must start with a Read"):
        Recipe(record_type=Word, steps=(Map(name="x", fn=_double),), output=None, config=ToyConfig())
    with pytest.raises(RecipeError, match="side collection"):
        from pipelines.recipe import Corpus

        toy_recipe([Corpus(name="join", transform=None, sides=("payloads",))])


def test_a_reject_under_an_undeclared_step_fails_the_job(tmp_path):
    recipe = toy_recipe([Map(name="double", fn=lambda w: reject(w, "doubled", "oops"))])
    with pytest.raises(Exception, match="not among"):
        run_recipe(recipe, "unused", str(tmp_path), DIRECT)


FROZEN_WHILE_MAPPING: list[int] = []  # the in-process runner calls _note_frozen in this module


def _note_frozen(word: Word) -> Word:
    FROZEN_WHILE_MAPPING.append(gc.get_freeze_count())
    return word


def test_the_heap_before_a_run_is_frozen_during_it_and_thawed_after_it(tmp_path):
    FROZEN_WHILE_MAPPING.clear()
    run_recipe(toy_recipe([Map(name="note", fn=_note_frozen, threads=4, batch_size=8)]), "unused", str(tmp_path), DIRECT)
    assert len(FROZEN_WHILE_MAPPING) == 40 and min(FROZEN_WHILE_MAPPING) > 0
    assert gc.get_freeze_count() == 0
    failing = toy_recipe([Map(name="double", fn=lambda w: reject(w, "doubled", "oops"))])
    with pytest.raises(Exception, match="not among"):
        run_recipe(failing, "unused", str(tmp_path / "failed"), DIRECT)
    assert gc.get_freeze_count() == 0


def test_unknown_or_backwards_stage_options_are_usage_errors():
    recipe = toy_recipe(standard_steps())
    with pytest.raises(ConfigError, match="takes one of deduplicated"):
        plan_run(recipe, stop_after="nowhere")
    with pytest.raises(ConfigError, match="comes before"):
        plan_run(recipe, stop_after="deduplicated", resume_from="deduplicated")


def test_checkpoint_then_resume_reproduces_the_shards(tmp_path):
    recipe = toy_recipe(standard_steps())
    run_recipe(recipe, "unused", str(tmp_path / "whole"), DIRECT)
    run_recipe(recipe, "unused", str(tmp_path / "split"), DIRECT, stop_after="deduplicated")
    assert list((tmp_path / "split" / "stages" / "deduplicated").glob("records-*.parquet"))
    assert not (tmp_path / "split" / "manifest.json").exists()
    run_recipe(recipe, "unused", str(tmp_path / "split"), DIRECT, resume_from="deduplicated")
    assert shard_bytes(tmp_path / "whole") and shard_bytes(tmp_path / "whole") == shard_bytes(tmp_path / "split")
    funnel = load_manifest(str(tmp_path / "split" / "manifest.json"))["funnel"]
    assert [row["step"] for row in funnel] == ["read", "double", "length"]


def _letters(word: Word) -> tuple[Word, list[Word]]:
    items = [Word(id=f"{word.id}.{i}", source=word.id, text=c, value=ord(c)) for i, c in enumerate(word.text)]
    return word, items


def _no_digits(item: Word) -> Any:
    return reject(item, "letters_only", "digit") if item.text.isdigit() else item


def _spell(word: Word, letters: list[Word]) -> Any:
    if not letters:
        return reject(word, "letters", "no_letters_left")
    return dataclasses.replace(word, text="".join(item.text for item in letters))


def test_a_fan_out_has_its_own_funnel_that_balances(tmp_path):
    fan_out = FanOut(
        name="letters", item_step="letter", explode=_letters, gather=_spell, funnel_key="letter_funnel",
        steps=(Map(name="letters_only", fn=_no_digits), Filter(name="not_a", filter=MinValue(ord("b")))),
    )
    given = [*words(12), Word(id="w999", source="input#999", text="a1", value=99)]
    recipe = toy_recipe([fan_out], records=given)
    run_recipe(recipe, "unused", str(tmp_path), DIRECT)
    manifest = load_manifest(str(tmp_path / "manifest.json"))
    items = manifest["extra"]["letter_funnel"]
    assert [row["step"] for row in items] == ["letter", "letters_only", "not_a"]
    letters = sum(len(w.text) for w in given)
    assert items[0]["in"] == letters and items[0]["dropped"] == {}
    for row in items:
        assert row["in"] == row["out"] + sum(row["dropped"].values())
    digits = sum(c.isdigit() for w in given for c in w.text)
    assert items[1]["dropped"] == {"digit": digits}
    assert items[2]["dropped"] == {"too_small": sum(c == "a" for w in given for c in w.text)}
    page = {row["step"]: row for row in manifest["funnel"]}["letters"]
    assert page["dropped"] == {"no_letters_left": 1}, "'a1' loses every letter"
    spelled = sorted(json.loads(line)["text"] for line in _jsons(tmp_path))
    assert "lph" in spelled and all(not any(c.isdigit() or c == "a" for c in text) for text in spelled)


def _jsons(out: Path) -> list[str]:
    import tarfile

    found = []
    for path in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(path) as tar:
            found += [tar.extractfile(m).read().decode() for m in tar.getmembers() if m.name.endswith(".json")]
    return found


def _explode(record: Word) -> Word:
    raise RuntimeError(f"cannot parse {record.text}")


def test_a_step_that_fails_every_record_fails_the_run_after_writing_it(tmp_path):
    recipe = toy_recipe([Map(name="parse", fn=_explode)])
    with pytest.raises(BudgetExceeded, match=r"step parse: 40 of 40 records failed .*100%.*budget 50%.*map_error"):
        run_recipe(recipe, "unused", str(tmp_path), DIRECT)
    manifest = load_manifest(str(tmp_path / "manifest.json"))
    assert manifest["budget_exceeded"] and manifest["dead_letters"] == 40
    assert any("failure budget exceeded" in w for w in manifest["warnings"])
    assert list((tmp_path / "rejects").glob("*.parquet"))


def test_budgets_are_config_keys_per_step(tmp_path):
    lenient = load_config(ToyConfig, overrides=["budgets.steps={parse: {dead_letters: 1.0}}"])
    run_recipe(toy_recipe([Map(name="parse", fn=_explode)], lenient), "unused", str(tmp_path), DIRECT)
    assert load_manifest(str(tmp_path / "manifest.json")).get("budget_exceeded") is None
    with pytest.raises(ConfigError):
        load_config(ToyConfig, overrides=["budgets.dead_letters=1.5"])


def test_fallbacks_are_counted_and_held_to_their_budget(tmp_path):
    recipe = toy_recipe([Map(name="double", fn=_double, fallback=lambda w: "kept_original" if w.value < 60 else None)])
    with pytest.raises(BudgetExceeded, match="step double: 30 of 40 records fell back"):
        run_recipe(recipe, "unused", str(tmp_path), DIRECT)
    row = load_manifest(str(tmp_path / "manifest.json"))["funnel"][1]
    assert row == {"step": "double", "in": 40, "out": 40, "dropped": {}, "fallback": {"kept_original": 30}}


class Unreadable(Exception):
    reason = "unreadable_sentence"


def _words_of(sentence: Word) -> tuple[Word, list]:
    if sentence.text.startswith("!"):
        raise Unreadable("cannot split")
    items = []
    for i, token in enumerate(sentence.text.split()):
        item = Word(id=f"{sentence.id}-{i}", source=sentence.id, text=token, value=len(token))
        items.append(reject(item, "words", "over_word_cap") if i >= 3 else item)
    return sentence, items


def test_a_split_makes_items_the_records_and_keeps_a_source_funnel(tmp_path):
    sentences = [
        Word(id="s1", source="in#1", text="one two three four five", value=0),
        Word(id="s2", source="in#2", text="a bb ccc", value=0),
        Word(id="s3", source="in#3", text="!broken", value=0),
    ]
    split = FanOut(name="split", item_step="words", explode=_words_of, funnel_key="sentence_funnel")
    recipe = toy_recipe([split, Filter(name="min_value", filter=MinValue(2))], records=sentences)
    run_recipe(recipe, "unused", str(tmp_path), DIRECT)
    manifest = load_manifest(str(tmp_path / "manifest.json"))
    assert validate_manifest(manifest) == []
    assert manifest["funnel"] == [
        {"step": "words", "in": 8, "out": 6, "dropped": {"over_word_cap": 2}},
        {"step": "min_value", "in": 6, "out": 5, "dropped": {"too_small": 1}},
    ]
    assert manifest["extra"]["sentence_funnel"] == [
        {"step": "read", "in": 3, "out": 3, "dropped": {}},
        {"step": "split", "in": 3, "out": 2, "dropped": {"unreadable_sentence": 1},
         "dead_letters": {"unreadable_sentence": 1}},
    ]
    assert manifest["dead_letters"] == 1 and manifest["totals"]["samples"] == 5
    assert sorted(json.loads(line)["text"] for line in _jsons(tmp_path)) == ["bb", "ccc", "one", "three", "two"]
