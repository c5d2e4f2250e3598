import io
from dataclasses import dataclass, field
from typing import Mapping

import pytest
import yaml

from curation.config import ConfigError, Section, load_config, optional_sections, to_mapping, walk_sections


@dataclass(frozen=True)
class Inner:
    size: int = 3
    ratio: float = 0.5
    names: tuple[str, ...] = ("a",)
    limit: int | None = None


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    inner: Inner = Inner()


def test_defaults_and_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: y\ninner:\n  size: 7\n  names: [b, c]\n")
    config = load_config(Outer, str(path))
    assert config == Outer(name="y", inner=Inner(size=7, names=("b", "c")))
    assert load_config(Outer) == Outer()


def test_overrides_win_and_parse_as_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("inner:\n  size: 7\n")
    config = load_config(Outer, str(path), ["inner.size=9", "inner.ratio=1", "inner.limit=null", "name=z"])
    assert config.inner.size == 9
    assert config.inner.ratio == 1.0 and isinstance(config.inner.ratio, float)
    assert config.inner.limit is None
    assert config.name == "z"


@pytest.mark.parametrize(
    "text, overrides, key",
    [
        ("inner:\n  sise: 1\n", [], "inner.sise"),
        ("nmae: q\n", [], "nmae"),
        ("", ["inner.bogus=1"], "inner.bogus"),
    ],
)
def test_unknown_key_is_named(text, overrides, key):
    with pytest.raises(ConfigError, match=f"unknown config key '{key}'"):
        load_config(Outer, text=text, overrides=overrides)


def test_wrong_type_and_bad_override():
    with pytest.raises(ConfigError, match="inner.size"):
        load_config(Outer, text="inner:\n  size: big\n")
    with pytest.raises(ConfigError, match="key.path=value"):
        load_config(Outer, overrides=["justakey"])


def test_to_mapping_is_plain_data():
    assert to_mapping(Outer())["inner"]["names"] == ["a"]


# --- null, empty values, validation, file reading ---------------------------------------------


@dataclass(frozen=True)
class Check:
    threshold: float = 0.5
    words: tuple[str, ...] = ("w",)

    def __post_init__(self):
        if not 0 <= self.threshold <= 1:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")


@dataclass(frozen=True)
class Filters:
    required: Inner = Inner()
    check: Check | None = Check()


@dataclass(frozen=True)
class Tree:
    name: str = "x"
    filters: Filters = Filters()
    budgets: Mapping[str, Check] = field(default_factory=dict)
    pair: tuple[int, float] = (1, 2.0)

    def __post_init__(self):
        if self.name == "bad":
            raise TypeError("name may not be 'bad'")


@pytest.mark.parametrize(
    "text, overrides",
    [
        ("filters:\n  required: null\n", []),
        ("filters:\n  required: ~\n", []),
        ("", ["filters.required=null"]),
    ],
)
def test_null_for_a_section_that_cannot_be_switched_off_names_it(text, overrides):
    message = "config key 'filters.required' cannot be null: this section cannot be switched off"
    with pytest.raises(ConfigError, match=message):
        load_config(Tree, text=text, overrides=overrides)
    with pytest.raises(ConfigError, match="config key 'filters' cannot be null"):
        load_config(Tree, overrides=["filters=null"])


def test_null_switches_an_optional_section_off_and_an_override_inside_fills_it_in():
    assert load_config(Tree, overrides=["filters.check=null"]).filters.check is None
    assert load_config(Tree, text="filters:\n  check: null\n").filters.check is None
    assert load_config(Tree, text="filters:\n  check: {}\n").filters.check == Check()
    config = load_config(Tree, text="filters:\n  check: null\n", overrides=["filters.check.threshold=0.7"])
    assert config.filters.check == Check(threshold=0.7)


def test_null_for_a_plain_value_names_the_key():
    with pytest.raises(ConfigError, match="config key 'filters.required.size' cannot be null: it expects int"):
        load_config(Tree, overrides=["filters.required.size=null"])
    with pytest.raises(ConfigError, match=r"config key 'filters.check.words\[1\]' cannot be null"):
        load_config(Tree, text="filters:\n  check:\n    words: [a, null]\n")


@pytest.mark.parametrize(
    "text, key",
    [
        ("filters:\n  # only comments\n", "filters"),
        ("filters:\n  required:\n", "filters.required"),
        ("filters:\n  check:\n    # threshold: 0.2\n", "filters.check"),
        ("filters:\n  required:\n    size:\n", "filters.required.size"),
        ("filters:\n  required:\n    limit:\n", "filters.required.limit"),
    ],
)
def test_an_empty_value_in_a_file_is_refused_naming_the_key(text, key):
    with pytest.raises(ConfigError, match=f"config key '{key}' is empty"):
        load_config(Tree, text=text)


def test_an_empty_section_says_how_to_get_defaults_or_switch_off():
    with pytest.raises(ConfigError, match="cannot be switched off") as required:
        load_config(Tree, text="filters:\n")
    assert "'{}'" in str(required.value)
    with pytest.raises(ConfigError, match="'null' to switch it off") as optional:
        load_config(Tree, text="filters:\n  check:\n")
    assert "cannot be switched off" not in str(optional.value)
    with pytest.raises(ConfigError, match="has no value"):
        load_config(Tree, overrides=["filters.check="])
    assert load_config(Tree, overrides=["name=''"]).name == ""
    assert load_config(Tree, text="# nothing but a comment\n") == Tree()


def test_a_value_the_dataclass_refuses_is_a_config_error_naming_the_section():
    with pytest.raises(ConfigError, match=r"config key 'filters.check' is invalid: threshold must be in \[0, 1\], got 2.0"):
        load_config(Tree, overrides=["filters.check.threshold=2"])
    with pytest.raises(ConfigError, match="the config is invalid: name may not be 'bad'"):
        load_config(Tree, overrides=["name=bad"])
    with pytest.raises(ConfigError, match="config key 'budgets.fetch' is invalid: threshold"):
        load_config(Tree, text="budgets:\n  fetch:\n    threshold: -1\n")


@pytest.mark.parametrize(
    "text, overrides, message",
    [
        ("filters:\n  check:\n    words: {a: 1}\n", [], "config key 'filters.check.words' expects a list"),
        ("filters:\n  check:\n    words: [3]\n", [], r"config key 'filters.check.words\[0\]' expects str, got 3"),
        ("", ["filters.required.size={a: 1}"], "config key 'filters.required.size' expects int, got {'a': 1}"),
        ("", ["filters.required.size=true"], "config key 'filters.required.size' expects int, got True"),
        ("", ["filters.required=3"], "config key 'filters.required' must be a mapping of keys, got 3"),
        ("", ["pair=[1, 2, 3]"], "config key 'pair' expects 2 values"),
        ("", ["budgets=[1]"], "config key 'budgets' expects a mapping"),
        ("", ["budgets.fetch.bogus=1"], "unknown config key 'budgets.fetch.bogus'"),
        (
            "",
            ["filters.required.size=5", "filters.required.size.x=1"],
            "override 'filters.required.size.x=1': 'filters.required.size' is not a section",
        ),
    ],
)
def test_values_of_the_wrong_shape_name_the_key(text, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(Tree, text=text, overrides=overrides)


def test_values_are_coerced_to_their_field_types():
    config = load_config(Tree, text="pair: [3, 4]\nbudgets:\n  fetch: {threshold: 1}\nfilters:\n  required:\n    names: one\n")
    assert config.pair == (3, 4.0) and isinstance(config.pair[1], float)
    assert config.budgets == {"fetch": Check(threshold=1.0)}
    assert config.filters.required.names == ("one",)


def test_the_resolved_config_loads_back_as_itself():
    config = load_config(Tree, overrides=["filters.check=null", "filters.required.limit=null", "budgets.x.words=[]"])
    assert load_config(Tree, text=yaml.safe_dump(to_mapping(config))) == config


def test_bad_yaml_is_a_config_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("filters: [\n")
    with pytest.raises(ConfigError, match=f"config file '{path}' is not valid YAML"):
        load_config(Tree, str(path))
    with pytest.raises(ConfigError, match="override 'name=\\[' is not valid YAML"):
        load_config(Tree, overrides=["name=["])
    path.write_text("- a\n")
    with pytest.raises(ConfigError, match="must hold a mapping at its top level"):
        load_config(Tree, str(path))


def test_the_file_is_read_through_the_opener():
    opened = []

    def opener(path):
        opened.append(path)
        return io.BytesIO("name: from-the-bucket\nfilters:\n  check: null\n".encode())

    config = load_config(Tree, "gs://bucket/c.yaml", ["filters.required.size=4"], opener=opener)
    assert opened == ["gs://bucket/c.yaml"]
    assert (config.name, config.filters.check, config.filters.required.size) == ("from-the-bucket", None, 4)


def test_a_file_that_cannot_be_read_is_a_config_error_naming_it(tmp_path):
    missing = str(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=f"config file '{missing}' does not exist"):
        load_config(Tree, missing)

    def missing_opener(path):
        raise FileNotFoundError(path)

    with pytest.raises(ConfigError, match="config file 'gs://b/c.yaml' does not exist"):
        load_config(Tree, "gs://b/c.yaml", opener=missing_opener)

    class NotFound(Exception):  # what a cloud storage client raises: not an OSError
        pass

    def remote_opener(path):
        raise NotFound("404 no such object")

    with pytest.raises(ConfigError, match="cannot read config file 'gs://b/c.yaml': NotFound: 404 no such object"):
        load_config(Tree, "gs://b/c.yaml", opener=remote_opener)
    with pytest.raises(ConfigError, match=f"cannot read config file '{tmp_path}'"):
        load_config(Tree, str(tmp_path))
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"name: \xff\n")
    with pytest.raises(ConfigError, match="is not UTF-8"):
        load_config(Tree, str(binary))


def test_walk_sections_lists_every_section_and_whether_it_can_be_switched_off():
    assert list(walk_sections(Tree)) == [
        Section("filters", Filters, False),
        Section("filters.required", Inner, False),
        Section("filters.check", Check, True),
    ]
    assert optional_sections(Tree) == ["filters.check"]
    for section in walk_sections(Tree):
        override = [f"{section.key}=null"]
        if section.optional:
            assert load_config(Tree, overrides=override).filters.check is None
        else:
            with pytest.raises(ConfigError, match=f"'{section.key}' cannot be null"):
                load_config(Tree, overrides=override)
