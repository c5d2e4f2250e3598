from dataclasses import dataclass

import pytest

from curation.config import ConfigError, load_config, to_mapping


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
