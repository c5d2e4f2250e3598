"""Configuration: nested frozen dataclasses loaded from YAML, with dotted CLI overrides.

A pipeline's config is a tree of dataclasses (the settings objects of the parts
it uses). :func:`load_config` builds one from a YAML file and ``key.path=value``
overrides; any key the tree does not have is an error that names the key.

What ``null`` means, and what an empty value means:

* ``null`` (or ``~``) switches off a section typed ``X | None`` (e.g.
  ``filters.language: null`` turns the language filter off) and unsets a scalar typed
  ``X | None``. Where the type is not optional, ``null`` is a :class:`ConfigError` naming
  the key: a section that cannot be switched off is never silently given its defaults.
* An *empty* value in a YAML file (``filters:`` with nothing, or only comments, under
  it) is a :class:`ConfigError` naming the key, whatever the key's type. YAML reads it
  as ``null``, but people write it meaning "the defaults", so it is refused rather than
  guessed: leave the key out (or write ``{}``) for the defaults, ``null`` to switch off.
  The same goes for an override with nothing after ``=`` (``--set filters.language=``).
* An override of a key inside a section that is null or empty in the file
  (``--set filters.language.min_score=0.5`` over ``language: null``) fills that section
  in: overrides win.

Values are checked against the field types (``int``, ``float``, ``str``, ``bool``,
``X | None``, ``tuple[X, ...]``, ``Mapping[str, X]`` and nested dataclasses); a value
a dataclass's own ``__post_init__`` refuses (``ValueError``/``TypeError``) is re-raised
as a :class:`ConfigError` naming the section. So every bad config is a usage error.

Values that cannot mean anything are refused when loading, naming the key: a float that is
NaN or infinite (``.nan``, ``.inf``, anywhere: fields, list elements, mapping values), a
boolean where a number is expected, and YAML aliases (``*name``) that stand for more than
:data:`MAX_ALIASED_VALUES` values in one document (an alias bomb expands a few lines into
billions of values). A few aliases, for repeating a value, are fine.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import json
import math
import types
import typing
from typing import IO, Any, Callable, Iterator, Mapping, NamedTuple, Sequence, TypeVar

import yaml

T = TypeVar("T")

_SCALARS = (int, float, str, bool)


class ConfigError(ValueError):
    """A config file or override that does not fit the config's schema."""


class _EmptyValue:
    """What an empty YAML value (``key:`` with nothing after it) loads as, so it is not taken for ``null``."""

    _instance: _EmptyValue | None = None

    def __new__(cls) -> _EmptyValue:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<empty>"


EMPTY = _EmptyValue()


class _Loader(yaml.SafeLoader):
    """A safe YAML loader that tells an empty value (``EMPTY``) from an explicit ``null``/``~`` (``None``)."""

    def construct_yaml_null(self, node: yaml.Node) -> Any:
        return EMPTY if node.value == "" else None


_Loader.add_constructor("tag:yaml.org,2002:null", _Loader.construct_yaml_null)


MAX_ALIASED_VALUES = 10_000
"""Most values that YAML aliases (``*name``) may stand for in one document, counted
through every level (an alias of a list of 10 aliases of lists of 10 values is 111):
a file of a few lines cannot expand to gigabytes (a "billion laughs" alias bomb)."""


def _load_yaml(text: str, where: str) -> Any:
    loader = _Loader(text)  # _Loader is a SafeLoader
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_aliases(node, where)
        return loader.construct_document(node)
    except yaml.YAMLError as error:
        raise ConfigError(f"{where} is not valid YAML: {' '.join(str(error).split())}") from None
    except RecursionError:
        raise ConfigError(f"{where} is nested too deeply") from None
    finally:
        loader.dispose()


def _check_aliases(root: yaml.Node, where: str) -> None:
    """Refuses a document whose aliases stand for more than :data:`MAX_ALIASED_VALUES` values.

    A node met a second time is an alias's target: it and everything under it count, every
    time. The walk stops at the limit, so an alias bomb (or an alias of its own ancestor)
    costs at most that many steps.
    """
    seen: set[int] = set()
    budget = MAX_ALIASED_VALUES
    stack: list[tuple[yaml.Node, str, bool]] = [(root, "", False)]
    while stack:
        node, path, aliased = stack.pop()
        if not aliased and id(node) in seen:
            aliased = True
        seen.add(id(node))
        if aliased:
            budget -= 1
            if budget < 0:
                key = f"config key '{path}'" if path else "the top level"
                raise ConfigError(
                    f"{where}: YAML aliases at {key} stand for more than {MAX_ALIASED_VALUES} values; "
                    "write the values out instead"
                )
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in reversed(node.value):
                name = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
                stack.append((value_node, f"{path}.{name}" if path else str(name), aliased))
                stack.append((key_node, path, aliased))
        elif isinstance(node, yaml.SequenceNode):
            for i in reversed(range(len(node.value))):
                stack.append((node.value[i], f"{path}[{i}]", aliased))


class Section(NamedTuple):
    """One section (a dataclass-typed key) of a config tree.

    Attributes:
        key: its full dotted key, e.g. ``filters.language``.
        type: its dataclass.
        optional: whether it is typed ``X | None``, i.e. ``key=null`` switches it off.
    """

    key: str
    type: type
    optional: bool


def walk_sections(cls: type, prefix: str = "") -> Iterator[Section]:
    """Yields every section of config ``cls``, depth first, with whether it can be switched off.

    Sections inside optional sections are yielded too (with their own ``optional``).
    """
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if not field.init:
            continue
        inner, optional = _split_optional(hints[field.name])
        if dataclasses.is_dataclass(inner):
            key = f"{prefix}{field.name}"
            yield Section(key, inner, optional)
            yield from walk_sections(inner, f"{key}.")


def optional_sections(cls: type) -> list[str]:
    """The dotted keys of the sections of config ``cls`` that ``key=null`` switches off."""
    return [section.key for section in walk_sections(cls) if section.optional]


def from_mapping(cls: type[T], data: Mapping[str, Any], prefix: str = "") -> T:
    """Builds dataclass ``cls`` from a mapping, recursing into nested dataclasses.

    Raises:
        ConfigError: on a key ``cls`` does not define (naming its full dotted path),
            a value of the wrong type or shape, a ``null`` or empty value where the
            key's type does not allow it, or a value ``cls`` itself refuses (naming
            the section and giving the refusal).
    """
    section = prefix.rstrip(".")
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"config {f'key {section!r}' if section else 'file'} must be a mapping of keys, got {data!r}"
        )
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(fields), key=str)
    if unknown:
        raise ConfigError(
            f"unknown config key '{prefix}{unknown[0]}' "
            f"(known keys here: {', '.join(sorted(fields))})"
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{prefix}{name}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as error:
        where = f"config key '{section}'" if section else "the config"
        raise ConfigError(f"{where} is invalid: {error}") from error


def _split_optional(hint: Any) -> tuple[Any, bool]:
    """``(X, True)`` for ``X | None`` (``Optional[X]``), else ``(hint, False)``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if type(None) in args:
            inner = tuple(a for a in args if a is not type(None))
            return (inner[0] if len(inner) == 1 else typing.Union[inner]), True
    return hint, False


def _describe(hint: Any) -> str:
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")


def _coerce(hint: Any, value: Any, path: str) -> Any:
    inner, optional = _split_optional(hint)
    section = dataclasses.is_dataclass(inner)
    if value is EMPTY:
        if section:
            fix = "'null' to switch it off, " if optional else ""
            raise ConfigError(
                f"config key '{path}' is empty: write {fix}'{{}}' (or leave the key out) for its defaults, "
                f"or give it keys" + ("" if optional else "; this section cannot be switched off")
            )
        fix = "write 'null' to unset it or give it a value" if optional else f"give it a value ({_describe(inner)})"
        raise ConfigError(f"config key '{path}' is empty: {fix}")
    if value is None:
        if optional:
            return None
        if section:
            raise ConfigError(
                f"config key '{path}' cannot be null: this section cannot be switched off; set its keys instead"
            )
        raise ConfigError(f"config key '{path}' cannot be null: it expects {_describe(inner)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"config key '{path}' must be a finite number, got {value!r}")
    if section:
        return from_mapping(inner, value, f"{path}.")
    origin = typing.get_origin(inner)
    args = typing.get_args(inner)
    if origin in (typing.Union, types.UnionType):
        return value  # a union of several types: taken as given
    if origin in (tuple, list, collections.abc.Sequence):
        return _coerce_sequence(inner, origin, args, value, path)
    if origin in (dict, collections.abc.Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{path}' expects a mapping, got {value!r}")
        key_hint, value_hint = args or (Any, Any)
        return {
            _coerce(key_hint, key, f"{path}.{key}"): _coerce(value_hint, item, f"{path}.{key}")
            for key, item in value.items()
        }
    if inner is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if inner in _SCALARS and (not isinstance(value, inner) or (inner is not bool and isinstance(value, bool))):
        raise ConfigError(f"config key '{path}' expects {inner.__name__}, got {value!r}")
    return value


def _coerce_sequence(hint: Any, origin: Any, args: tuple, value: Any, path: str) -> Any:
    if isinstance(value, Mapping):
        raise ConfigError(f"config key '{path}' expects a list of values ({_describe(hint)}), got {value!r}")
    if isinstance(value, str) or not isinstance(value, Sequence):
        value = [value]  # a single value stands for a list of one
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise ConfigError(f"config key '{path}' expects {len(args)} values ({_describe(hint)}), got {value!r}")
        items = [_coerce(arg, item, f"{path}[{i}]") for i, (arg, item) in enumerate(zip(args, value))]
    else:
        item_hint = args[0] if args else Any
        items = [_coerce(item_hint, item, f"{path}[{i}]") for i, item in enumerate(value)]
    return list(items) if origin is list else tuple(items)


def to_mapping(config: Any) -> dict[str, Any]:
    """The resolved config as plain JSON-able data (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Applies ``a.b.c=value`` overrides to a nested dict; values parse as YAML.

    A section that is null or empty where an override sets a key inside it is filled in.
    """
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override '{item}' is not of the form key.path=value")
        if not raw.strip():
            raise ConfigError(
                f"override '{item}' has no value: write {key}=null to switch a section off "
                f"or unset a value, or {key}=\"\" for an empty string"
            )
        node = data
        *parents, leaf = key.split(".")
        for depth, part in enumerate(parents):
            if node.get(part) is None or node.get(part) is EMPTY:
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise ConfigError(f"override '{item}': '{'.'.join(parents[:depth + 1])}' is not a section")
        node[leaf] = _load_yaml(raw, f"the value of override '{item}'")
    return data


def load_config(
    cls: type[T],
    path: str | None = None,
    overrides: Sequence[str] = (),
    text: str | None = None,
    opener: Callable[[str], IO[bytes]] | None = None,
) -> T:
    """Loads config ``cls`` from a YAML file (or ``text``) plus dotted overrides.

    Args:
        cls: the config dataclass.
        path: a YAML file; read with ``opener`` when given, else as a local file.
        overrides: ``key.path=value`` strings, applied in order after the file.
        text: YAML text, used when ``path`` is None.
        opener: ``path -> binary file object``; pass
            ``apache_beam.io.filesystems.FileSystems.open`` to read ``gs://`` and other
            Beam filesystems (this package does not import Beam itself).

    Raises:
        ConfigError: on a file that cannot be read (naming it), is not valid YAML or
            does not fit ``cls`` (naming the key), or a bad override.
    """
    data: Any = {}
    where = "the config text"
    if path is not None:
        where = f"config file '{path}'"
        text = _read(path, opener)
    if text:
        data = _load_yaml(text, where)
    if data is None or data is EMPTY:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must hold a mapping at its top level, got {data!r}")
    return from_mapping(cls, apply_overrides(data, overrides))


def _read(path: str, opener: Callable[[str], IO[bytes]] | None) -> str:
    try:
        if opener is None:
            with open(path, "rb") as handle:
                raw = handle.read()
        else:
            with opener(path) as handle:
                raw = handle.read()
    except FileNotFoundError:
        raise ConfigError(f"config file '{path}' does not exist") from None
    except Exception as error:  # a directory, no permission, a remote store's error (e.g. NotFound)
        if not isinstance(error, OSError) and opener is None:
            raise
        raise ConfigError(f"cannot read config file '{path}': {type(error).__name__}: {error}") from None
    try:
        return raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as error:
        raise ConfigError(f"config file '{path}' is not UTF-8 text: {error}") from None
