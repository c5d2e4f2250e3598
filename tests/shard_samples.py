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
