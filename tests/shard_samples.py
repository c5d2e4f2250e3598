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


def hugging_face_rows(out: Path, cache: Path) -> list[dict]:
    """Every sample of ``out/shards`` as Hugging Face ``datasets`` loads it, the way a new user would:
    ``load_dataset("webdataset", data_files=...)``, nothing else said.

    Checks that it loads all of them whole: as many rows as the manifest counts samples, and no
    row missing a field that another row has (HF fills a field the first samples lacked with None).
    """
    from datasets import load_dataset

    files = sorted(str(path) for path in (out / "shards").glob("*.tar"))
    rows = list(load_dataset("webdataset", data_files={"train": files}, split="train", cache_dir=str(cache)))
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(rows) == manifest["totals"]["samples"] > 0
    missing = [(row["__key__"], field) for row in rows for field, value in row.items() if value is None]
    assert not missing, f"fields HF could not fill: {missing[:5]}"
    return rows
