"""What the pipeline tests share: the runners they compare, and the samples a run's shards hold."""

import json
import tarfile
from pathlib import Path

MULTIPROCESS = ["--runner=DirectRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2"]
PORTABLE = ["--runner=PortableRunner", "--environment_type=LOOPBACK"]  # add --job_endpoint


def read_samples(out: Path) -> list[tuple[dict, dict[str, bytes]]]:
    """``(json, other files by extension)`` of every sample in ``out/shards``, in shard and key order."""
    found = []
    for path in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(path) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        for name in sorted(members):
            if name.endswith(".json"):
                key = name[: -len(".json")]
                files = {n[len(key) + 1 :]: d for n, d in members.items() if n.startswith(key + ".") and n != name}
                found.append((json.loads(members[name]), files))
    return found



def hugging_face_rows(out: Path, cache: Path, *, by_files: bool = False) -> list[dict]:
    """Every sample of ``out`` as Hugging Face ``datasets`` loads it, checked to be whole.

    By default the way its dataset card says (``load_dataset(out)``), and then every value of
    every sample's ``json`` must come back as the shard holds it. With ``by_files`` the way a new
    user would without the card (``load_dataset("webdataset", data_files=...)``), where the
    ``json`` columns are inferred from the first samples: then every row must still hold every
    field (HF fills a field the first samples lacked with None).
    """
    from datasets import load_dataset

    if by_files:
        files = sorted(str(path) for path in (out / "shards").glob("*.tar"))
        rows = list(load_dataset("webdataset", data_files={"train": files}, split="train", cache_dir=str(cache)))
    else:
        rows = list(load_dataset(str(out), split="train", cache_dir=str(cache)))
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(rows) == manifest["totals"]["samples"] > 0
    missing = [(row["__key__"], field) for row in rows for field, value in row.items() if value is None]
    assert not missing, f"fields HF could not fill: {missing[:5]}"
    if not by_files:
        by_key = {row["__key__"]: row for row in rows}
        for path in sorted((out / "shards").glob("*.tar")):
            with tarfile.open(path) as tar:
                for member in tar.getmembers():
                    if member.name.endswith(".json"):
                        key = member.name[: -len(".json")]
                        _assert_holds(by_key[key]["json"], json.loads(tar.extractfile(member).read()), key)
    return rows


def _assert_holds(loaded, original, where: str) -> None:
    """``loaded`` (what HF gave) holds every value of ``original``; keys HF adds are None."""
    if isinstance(original, dict):
        assert isinstance(loaded, dict), where
        for key, value in original.items():
            _assert_holds(loaded.get(key), value, f"{where}.{key}")
        assert all(loaded[key] is None for key in loaded.keys() - original.keys()), where
    elif isinstance(original, list):
        assert isinstance(loaded, list) and len(loaded) == len(original), where
        for n, (a, b) in enumerate(zip(loaded, original)):
            _assert_holds(a, b, f"{where}[{n}]")
    elif isinstance(original, float):
        assert loaded == original or abs(loaded - original) <= 1e-9 * max(1.0, abs(original)), where
    else:
        assert loaded == original, f"{where}: {loaded!r} != {original!r}"
