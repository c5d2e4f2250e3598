"""`curate mix`: stage specs resolved against real manifests, read back by the mixture reader."""

import collections
import hashlib
import json
import re

import pytest
import yaml

from manifests.manifest import build_funnel, build_manifest, dump_manifest
from manifests.mixture import MixtureError, SourceSpec, StageSpec, mixture_shares, resolve_stage
from manifests.reader import mixture_dataset
from manifests.shards import Sample, shard_name, write_shard
from pipelines.cli import main


def write_dataset(root, name, samples, tokens_each, shards=2):
    """``root/name``: ``samples`` text samples of ``tokens_each`` tokens over ``shards`` shards."""
    folder = root / name
    (folder / "shards").mkdir(parents=True)
    infos, per_shard = [], -(-samples // shards) if samples else 0
    for shard in range(shards if samples else 0):
        items = [
            Sample(key=f"{name}-{shard}-{i:04d}", fields={"txt": f"{name} {i}".encode()}, text_tokens=tokens_each)
            for i in range(shard * per_shard, min(samples, (shard + 1) * per_shard))
        ]
        path = shard_name(name, 0, shard)
        with open(folder / path, "wb") as fileobj:
            infos.append(write_shard(items, fileobj, path))
    manifest = build_manifest(
        dataset=name, config={}, models=[], shards=infos, funnel=build_funnel(["read"], samples, {}),
        dead_letters=0, package_version="0",
    )
    (folder / "manifest.json").write_bytes(dump_manifest(manifest))
    return folder / "manifest.json"


@pytest.fixture
def corpus(tmp_path):
    """web: 400 samples x 100 tokens; docs: 50 x 400; video: 20 x 1000 (40k, 20k, 20k tokens)."""
    write_dataset(tmp_path, "web", 400, 100)
    write_dataset(tmp_path, "docs", 50, 400)
    write_dataset(tmp_path, "video", 20, 1000)
    (tmp_path / "specs").mkdir()
    return tmp_path


def write_spec(root, **spec):
    path = root / "specs" / "stage.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def source(name, weight, **more):
    return {"name": name, "manifest": f"../{name}/manifest.json", "weight": weight, **more}


def test_shares_are_normalised_and_raised_to_their_minimum():
    assert mixture_shares([3, 1], [0, 0], "ab") == pytest.approx([0.75, 0.25])
    shares = mixture_shares([98, 1, 1], [0, 0.1, 0], "abc")
    assert shares[1] == pytest.approx(0.1) and sum(shares) == pytest.approx(1)
    assert shares[0] / shares[2] == pytest.approx(98), "the others shrink in proportion"
    with pytest.raises(MixtureError, match="b=0.6, c=0.5"):
        mixture_shares([1, 1, 1], [0, 0.6, 0.5], "abc")


def test_token_weights_are_realised_and_the_scarcest_source_is_used_once(corpus):
    spec = StageSpec(sources=(
        SourceSpec("web", "../web/manifest.json", 2), SourceSpec("docs", "../docs/manifest.json", 1),
        SourceSpec("video", "../video/manifest.json", 1),
    ), sequence_length=2048)
    spec_path = str(corpus / "specs" / "stage.yaml")
    stage = resolve_stage(spec, spec_path, str(corpus / "out" / "stage.json"))
    rows = {row["name"]: row for row in stage["sources"]}
    # 40k web tokens for a half share limit the stage to 80k tokens: web once, the others 20k each.
    assert {name: row["samples_per_epoch"] for name, row in rows.items()} == {"web": 400, "docs": 50, "video": 20}
    assert {name: row["share"] for name, row in rows.items()} == pytest.approx({"web": 0.5, "docs": 0.25, "video": 0.25})
    assert rows["web"]["repeat_factor"] == 1.0 and stage["warnings"] == []
    assert stage["totals"] == {"samples_per_epoch": 470, "tokens_per_epoch": 80_000, "sequences_per_epoch": 40}
    sha = hashlib.sha256((corpus / "docs" / "manifest.json").read_bytes()).hexdigest()
    assert rows["docs"]["manifest"] == "../docs/manifest.json" and rows["docs"]["manifest_sha256"] == sha


def test_curate_mix_writes_the_stage_the_reader_draws_in_proportion(corpus, capsys):
    spec = write_spec(
        corpus, name="mm-8k", weight_by="samples", total=900, max_repeats=3,
        sources=[source("web", 0.6), source("docs", 0.3), source("video", 0.09), source("docs-floor", 0.01)],
    )
    write_dataset(corpus, "docs-floor", 30, 10)
    assert main(["mix", str(spec), "--output", str(corpus / "out")]) == 0
    printed = capsys.readouterr()
    stage = json.loads((corpus / "out" / "stage.json").read_text())
    draws = {row["name"]: row["samples_per_epoch"] for row in stage["sources"]}
    assert draws == {"web": 540, "docs": 270, "video": 81, "docs-floor": 9}
    repeats = {row["name"]: row["repeat_factor"] for row in stage["sources"]}
    assert repeats["docs"] == pytest.approx(5.4) and repeats["video"] == pytest.approx(4.05)
    assert stage["warnings"] == [
        "source 'docs' repeats 5.40x per epoch, past max_repeats=3",
        "source 'video' repeats 4.05x per epoch, past max_repeats=3",
    ]
    assert "past max_repeats=3" in printed.err and "stage mm-8k" in printed.out
    assert (corpus / "out" / "report.html").exists() and "report: " in printed.out
    assert stage["config"]["sources"][0]["name"] == "web"
    seen = collections.Counter(sample["__source__"] for sample in mixture_dataset(str(corpus / "out" / "stage.json")))
    assert seen == draws, "the reader draws exactly what the stage resolved, the 1% source included"


@pytest.mark.parametrize("sources,total,message", [
    ([source("web", 1), source("empty", 1)], None, "source 'empty': .* holds no samples"),
    ([source("web", 1), source("video", 1e-6)], None, "source 'video': its share .* less than one of its samples"),
    ([source("web", 1, min_share=0.7), source("docs", 1, min_share=0.4)], None, "web=0.7, docs=0.4"),
    ([source("web", 1), source("missing", 1)], None, "source 'missing': cannot read manifest"),
    ([source("web", 1), source("docs", 1)], 3, "source '(web|docs)': its share"),
])
def test_an_impossible_spec_is_refused_naming_the_source(corpus, capsys, sources, total, message):
    write_dataset(corpus, "empty", 0, 1)
    spec = write_spec(corpus, weight_by="tokens", total=total, sources=sources)
    assert main(["mix", str(spec), "--output", str(corpus / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("curate: error: ")
    assert re.search(message, err), err
    assert not (corpus / "out" / "stage.json").exists()


def test_an_unknown_key_in_the_spec_is_named(corpus, capsys):
    spec = write_spec(corpus, sources=[{"name": "web", "manifest": "../web/manifest.json", "wieght": 2}])
    assert main(["mix", str(spec), "--output", str(corpus / "out")]) == 2
    assert "sources[0].wieght" in capsys.readouterr().err
