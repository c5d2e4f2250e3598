"""``curate demo``: the pairs pipeline on generated data served from loopback."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from apache_beam.io.filesystems import FileSystems

from curation.config import load_config
from curation.sample_data import ImageServer, make_pairs_cases, write_pairs_parquet
from manifests.manifest import load_manifest
from pipelines import pairs

DEMO_CONFIG = Path(__file__).parent / "configs" / "pairs-demo.yaml"


def run_demo(output_dir: str, beam_args: list[str] | None = None) -> dict:
    """Generates sample data, serves it on 127.0.0.1, runs ``curate pairs`` and returns the manifest."""
    from pipelines.cli import check_clip_weights

    for stale in ("shards", "rejects", "input"):
        shutil.rmtree(os.path.join(output_dir, stale), ignore_errors=True)
    input_path = os.path.join(output_dir, "input", "pairs.parquet")
    os.makedirs(os.path.dirname(input_path), exist_ok=True)
    config = load_config(pairs.PairsConfig, str(DEMO_CONFIG))
    check_clip_weights(config.clip)
    with ImageServer(slow_seconds=3.0) as server:
        cases = make_pairs_cases(server.base_url)
        write_pairs_parquet(cases, input_path)
        print(f"demo: {len(cases)} pairs served from {server.base_url}, input {input_path}")
        pairs.run(input_path, output_dir, config, beam_args or ["--runner=DirectRunner"])
        if server.forbidden_hits:
            raise RuntimeError("the fetcher contacted the forbidden host")
    return load_manifest(FileSystems.join(output_dir, "manifest.json"), opener=FileSystems.open)
