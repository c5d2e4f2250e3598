"""Configuration: nested frozen dataclasses loaded from YAML, with dotted CLI overrides.

A pipeline's config is a tree of dataclasses (the settings objects of the parts
it uses). :func:`load_config` builds one from a YAML file and ``key.path=value``
overrides; any key the tree does not have is an error that names the key.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, Mapping, Sequence, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that does not fit the config's schema."""


def from_mapping(cls: type[T], data: Mapping[str, Any], prefix: str = "") -> T:
    """Builds dataclass ``cls`` from a mapping, recursing into nested dataclasses.

    Raises:
        ConfigError: on a key ``cls`` does not define (naming its full dotted path)
            or a value of the wrong shape.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"config section '{prefix.rstrip('.') or '<root>'}' must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown config key '{prefix}{unknown[0]}' "
            f"(known keys here: {', '.join(sorted(fields))})"
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{prefix}{name}")
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, path) if len(inner) == 1 else value
    if dataclasses.is_dataclass(hint):
        return from_mapping(hint, value or {}, f"{path}.")
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, Sequence):
            value = [value]
        return tuple(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not isinstance(value, hint):
        raise ConfigError(f"config key '{path}' expects {hint.__name__}, got {value!r}")
    return value


def to_mapping(config: Any) -> dict[str, Any]:
    """The resolved config as plain JSON-able data (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Applies ``a.b.c=value`` overrides to a nested dict; values parse as YAML."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override '{item}' is not of the form key.path=value")
        node = data
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{item}': '{part}' is not a section")
        node[leaf] = yaml.safe_load(raw)
    return data


def load_config(
    cls: type[T], path: str | None = None, overrides: Sequence[str] = (), text: str | None = None
) -> T:
    """Loads config ``cls`` from a YAML file (or ``text``) plus dotted overrides."""
    data: Any = {}
    if path is not None:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    if text:
        data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise ConfigError("the config file must hold a mapping at its top level")
    return from_mapping(cls, apply_overrides(data, overrides))

