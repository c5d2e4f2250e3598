"""Configs that cannot mean anything are refused at load time, naming the key (issue 17, deliverable 5):
YAML alias bombs, NaN and infinities, booleans for numbers, and values outside a field's range."""

import json
import math
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Mapping

import pytest

from curation.config import MAX_ALIASED_VALUES, ConfigError, load_config
from filters.caption import CaptionFilter
from filters.text_quality import (
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
)
from pipelines.pairs import PairsConfig
from pipelines.text import TextConfig


def alias_bomb(levels: int, width: int = 10) -> str:
    """``fetch.allow_networks`` as a mapping of lists, each of ``width`` aliases of the one before."""
    lines = ["fetch:", "  allow_networks:", f"    l0: &l0 [{', '.join(['127.0.0.2/32'] * width)}]"]
    for level in range(1, levels):
        lines.append(f"    l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_quickly_naming_the_key():
    # 10**6 strings behind 60 lines; the former loader built an error message holding them all
    start = time.perf_counter()
    with pytest.raises(ConfigError) as error:
        load_config(PairsConfig, text=alias_bomb(6))
    assert time.perf_counter() - start < 1.0
    message = str(error.value)
    assert "alias" in message and "fetch.allow_networks" in message and len(message) < 500


def test_print_config_refuses_an_alias_bomb_in_bounded_time_and_memory(tmp_path):
    """The review's case: ``curate ... --config bomb.yaml --print-config`` ran 120 s into 1.4 GB."""
    config = tmp_path / "bomb.yaml"
    config.write_text(alias_bomb(9))  # 10**9 values if expanded
    plain = tmp_path / "plain.yaml"
    plain.write_text("fetch:\n  allow_networks: [127.0.0.2/32]\n")
    child = f"""
import json, resource, sys
from pipelines.cli import main
assert main(["pairs", "--input", "x", "--output", "y", "--config", {str(plain)!r}, "--print-config"]) == 0
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # after the imports a run makes
code = main(["pairs", "--input", "x", "--output", "y", "--config", {str(config)!r}, "--print-config"])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"code": code, "grown_kb": after - before}}))
"""
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=90)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["code"] == 2
    assert "fetch.allow_networks" in done.stderr and "alias" in done.stderr
    assert result["grown_kb"] < 50_000


def test_a_self_referencing_alias_is_refused():
    with pytest.raises(ConfigError, match=r"aliases at config key 'fetch\.allow_networks"):
        load_config(PairsConfig, text="fetch:\n  allow_networks: &a [*a]\n")


def test_a_few_aliases_still_load():
    text = "fetch:\n  connect_timeout: &t 3.5\n  read_timeout: *t\n  allow_networks: &n [127.0.0.2/32]\n"
    config = load_config(PairsConfig, text=text)
    assert config.fetch.connect_timeout == config.fetch.read_timeout == 3.5
    many = "fetch:\n  allow_networks: [" + ", ".join(["*n"] * (MAX_ALIASED_VALUES // 2)) + "]\n"
    text = "fetch:\n  ca_certs: &n 127.0.0.1/32\n" + many.removeprefix("fetch:\n")
    assert load_config(PairsConfig, text=text).fetch.allow_networks == ("127.0.0.1/32",) * (MAX_ALIASED_VALUES // 2)


def test_an_alias_bomb_in_an_override_is_refused():
    wide = "[&a [" + ", ".join(["x"] * 200) + "], " + ", ".join(["*a"] * 100) + "]"  # 20,000 values
    with pytest.raises(ConfigError, match="alias"):
        load_config(PairsConfig, overrides=[f"fetch.allow_networks={wide}"])


@pytest.mark.parametrize("raw", [".nan", ".NaN", ".inf", "-.inf", "+.Inf"])
def test_nan_and_infinity_are_refused_naming_the_key(raw):
    with pytest.raises(ConfigError, match=r"config key 'fetch\.total_timeout' must be a finite number"):
        load_config(PairsConfig, overrides=[f"fetch.total_timeout={raw}"])
    with pytest.raises(ConfigError, match=r"fetch\.connect_timeout"):
        load_config(PairsConfig, text=f"fetch:\n  connect_timeout: {raw}\n")


def test_nan_is_refused_inside_lists_and_mappings():
    with pytest.raises(ConfigError, match=r"filters\.gopher_repetition\.max_top_ngram_chars\[1\]"):
        load_config(TextConfig, overrides=["filters.gopher_repetition.max_top_ngram_chars=[0.2, .nan]"])

    @dataclass(frozen=True)
    class Weights:
        weights: Mapping[str, float] = None
        anything: object = None

    with pytest.raises(ConfigError, match=r"weights\.b"):
        load_config(Weights, text="weights: {a: 1.0, b: .inf}\n")
    with pytest.raises(ConfigError, match=r"'anything\[0\]'|'anything'"):
        load_config(Weights, text="anything: .nan\n")


def test_the_review_overrides_exit_2_naming_the_key(capsys):
    from pipelines.cli import main

    for override, key in [
        ("fetch.total_timeout=.nan", "fetch.total_timeout"),
        ("fetch.max_bytes=true", "fetch.max_bytes"),
    ]:
        code = main(["pairs", "--input", "x", "--output", "y", "--set", override, "--print-config"])
        assert code == 2
        assert key in capsys.readouterr().err


def test_booleans_are_not_numbers():
    with pytest.raises(ConfigError, match=r"fetch\.max_bytes.*expects int"):
        load_config(PairsConfig, overrides=["fetch.max_bytes=true"])
    with pytest.raises(ConfigError, match=r"filters\.caption\.min_alpha_ratio.*expects float"):
        load_config(PairsConfig, overrides=["filters.caption.min_alpha_ratio=false"])


def test_a_negative_max_bytes_is_refused():
    with pytest.raises(ConfigError, match=r"fetch"):
        load_config(PairsConfig, overrides=["fetch.max_bytes=-1"])


@pytest.mark.parametrize(
    "config, override, message",
    [
        (PairsConfig, "filters.caption.max_words=-1", "max_words must be >= 0"),
        (PairsConfig, "filters.caption.min_chars=3000", "min_chars .* must not exceed max_chars"),
        (PairsConfig, "filters.caption.min_alpha_ratio=1.5", r"min_alpha_ratio must be a share in \[0, 1\]"),
        (TextConfig, "filters.gopher_quality.min_words=-5", "min_words must be >= 0"),
        (TextConfig, "filters.gopher_quality.max_words=10", "min_words .* must not exceed max_words"),
        (TextConfig, "filters.gopher_quality.min_alpha_words_ratio=2", "min_alpha_words_ratio"),
        (TextConfig, "filters.gopher_repetition.max_dup_ngram_chars=[0.1, -0.2]", "max_dup_ngram_chars"),
        (TextConfig, "filters.c4.min_sentences=-1", "min_sentences must be >= 0"),
        (TextConfig, "filters.fineweb_quality.short_line_thr=-0.1", "short_line_thr"),
    ],
)
def test_values_outside_a_filter_s_range_are_refused_naming_the_section(config, override, message):
    section = override.partition("=")[0].rsplit(".", 1)[0]
    with pytest.raises(ConfigError, match=rf"config key '{section}' is invalid: {message}"):
        load_config(config, overrides=[override])


def test_filter_ranges_hold_for_direct_construction_and_nan():
    for make in (
        lambda: CaptionFilter(min_unique_word_ratio=math.nan),
        lambda: GopherQualityFilter(min_mean_word_length=math.nan),
        lambda: GopherRepetitionFilter(max_top_ngram_chars=(0.2, math.nan)),
        lambda: C4QualityFilter(max_word_length=-1),
        lambda: FineWebQualityFilter(new_line_ratio=-1.0),
    ):
        with pytest.raises(ValueError):
            make()
    # the defaults and the documented edges are valid
    CaptionFilter(min_words=0, max_words=0, min_alpha_ratio=0.0, min_unique_word_ratio=1.0)
    GopherRepetitionFilter(max_top_ngram_chars=(), max_dup_ngram_chars=())
    FineWebQualityFilter(line_punct_thr=0.0, short_line_thr=1.0)


def test_extract_settings_refuse_negative_values():
    from curation.html_extract import ExtractSettings

    with pytest.raises(ValueError, match="min_tail_chars"):
        ExtractSettings(min_tail_chars=-1)
    with pytest.raises(ValueError, match="max_html_chars"):
        ExtractSettings(max_html_chars=0)
    with pytest.raises(ValueError, match="climb_ratio"):
        ExtractSettings(climb_ratio=math.nan)
    ExtractSettings(wrapper_share=1.01, max_dateline_chars=0)
