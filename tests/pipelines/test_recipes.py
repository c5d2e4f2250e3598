"""Every pipeline is a recipe: its funnel, its stages, and what `null` does to each of its filters."""

from __future__ import annotations

import dataclasses
import types

import pytest

from curation.config import ConfigError, load_config, walk_sections
from pipelines.recipe import Recipe, resumable_stages
from pipelines.registry import pipeline_commands

COMMANDS = {command.name: command for command in pipeline_commands()}


def _reachable(root: object, depth: int = 10) -> set[int]:
    """Ids of every object reachable from ``root`` through fields, containers and closures."""
    seen: set[int] = set()
    stack = [(root, 0)]
    while stack:
        obj, level = stack.pop()
        if id(obj) in seen or level > depth or isinstance(obj, (str, bytes, int, float, bool, type, types.ModuleType)):
            continue
        seen.add(id(obj))
        if isinstance(obj, dict):
            children = list(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            children = list(obj)
        elif isinstance(obj, types.FunctionType):
            children = [cell.cell_contents for cell in obj.__closure__ or ()] + list(obj.__defaults__ or ())
        else:
            children = list(getattr(obj, "__dict__", {}).values())
        stack.extend((child, level + 1) for child in children)
    return seen


def _value_at(config: object, key: str) -> object:
    for part in key.split("."):
        config = getattr(config, part)
    return config


def _filter_keys(command) -> list[str]:
    return [section.key for section in walk_sections(command.config) if section.key.startswith("filters.")]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_null_switches_off_every_filter_or_names_the_key(name):
    command = COMMANDS[name]
    default = command.config()
    keys = _filter_keys(command)
    assert keys, f"{name} declares no filter sections"
    for key in keys:
        switched = _value_at(default, key)
        if switched is None:
            continue  # off by default (e.g. the trained quality model)
        assert id(switched) in _reachable(command.recipe(default)), f"{key} is used by the default recipe"
        try:
            config = load_config(command.config, overrides=[f"{key}=null"])
        except ConfigError as error:
            assert key in str(error) and "cannot be null" in str(error)
            continue
        assert _value_at(config, key) is None
        assert id(switched) not in _reachable(command.recipe(config)), f"{name}: {key}=null still judges"


def test_every_top_level_filter_can_be_switched_off():
    for name, command in COMMANDS.items():
        for section in walk_sections(command.config):
            if section.key.count(".") == 1 and section.key.startswith("filters."):
                assert section.optional, f"{name}: {section.key} cannot be switched off"


def test_a_null_language_filter_takes_its_step_out_of_the_interleaved_funnel():
    command = COMMANDS["interleaved"]
    assert "language" in command.recipe(command.config()).funnel
    config = load_config(command.config, overrides=["filters.language=null"])
    assert "language" not in command.recipe(config).funnel


def test_text_filters_each_have_a_step():
    command = COMMANDS["text"]
    recipe: Recipe = command.recipe(command.config())
    assert recipe.funnel == (
        "read", "exact_dedup", "c4_clean", "gopher_quality", "gopher_repetition", "c4", "fineweb_quality",
        "language", "near_dedup", "paragraph_dedup", "embed",
    )
    assert resumable_stages(recipe) == ("deduplicated",)


def test_every_pipeline_has_stages_to_resume_from():
    for name, command in COMMANDS.items():
        recipe = command.recipe(command.config())
        assert resumable_stages(recipe), name
        assert recipe.funnel[0] == "read"
        assert dataclasses.is_dataclass(recipe.config)
