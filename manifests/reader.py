"""The trainer-side reader: a webdataset pipeline over the shards a manifest lists.

Shards are split by node (``torch.distributed`` rank) and then by DataLoader
worker, so each sample is read exactly once per epoch however many nodes and
workers read the dataset (when there are at least as many shards as readers;
readers beyond that get nothing).

Shards are opened with :func:`manifests.manifest.default_opener`: local paths
and ``file://`` URLs directly, any other URL (``gs://``, ``s3://``,
``https://``...) through ``fsspec``, which needs the scheme's filesystem
package (``gcsfs``, ``s3fs``...). webdataset's own ``gopen`` (``pipe:``,
``gsutil cat``) is not used.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import webdataset as wds
from webdataset.tariterators import group_by_keys, tar_file_expander

from manifests.manifest import default_opener, load_manifest, resolve_path, validate_manifest


def shard_urls(manifest_path: str, manifest: Mapping[str, Any] | None = None) -> list[str]:
    """Returns the absolute paths or URLs of a manifest's shards, in manifest order.

    Args:
        manifest_path: where the manifest lives; relative shard paths resolve against it.
        manifest: the manifest, when already loaded; read from ``manifest_path`` otherwise.

    Raises:
        ValueError: when the manifest is invalid (see :func:`validate_manifest`).
    """
    if manifest is None:
        manifest = load_manifest(manifest_path)
    problems = validate_manifest(manifest)
    if problems:
        raise ValueError(f"invalid manifest {manifest_path}: " + "; ".join(problems))
    return [resolve_path(manifest_path, shard["path"]) for shard in manifest["shards"]]


def webdataset_from_manifest(
    manifest_path: str,
    *,
    shuffle: int = 0,
    seed: int = 0,
    decode: str | None = "pil",
    epoch_shuffle_shards: bool = False,
) -> wds.DataPipeline:
    """Builds an iterable dataset over a manifest's shards, usable in a torch DataLoader.

    Samples come out as dicts holding ``__key__``, ``__url__`` and one entry
    per field. With a ``decode`` spec, images are decoded by webdataset's
    decoder (``"pil"``: PIL images; ``"torchrgb"``: tensors; ...), ``txt`` to
    ``str`` and ``json`` to Python objects; with ``decode=None`` every field
    stays bytes.

    Args:
        manifest_path: local path or URL of the manifest.
        shuffle: size of the per-worker sample shuffle buffer; 0 keeps shard order.
        seed: seeds the sample shuffle and the shard shuffle.
        decode: a webdataset decoder spec, or None for raw bytes.
        epoch_shuffle_shards: permute the shard order (identically on every node
            and worker, before splitting). The permutation changes with each
            pass over the dataset object itself: in a single process, or in a
            DataLoader with ``persistent_workers=True``.

    Raises:
        ValueError: when the manifest is invalid or lists no shards.
    """
    manifest = load_manifest(manifest_path)
    urls = shard_urls(manifest_path, manifest)
    if not urls:
        raise ValueError(f"manifest {manifest_path} lists no shards: {why_empty(manifest)}")
    stages: list[Any] = [wds.SimpleShardList(urls)]
    if epoch_shuffle_shards:
        stages.append(wds.detshuffle(bufsize=len(urls), initial=len(urls), seed=seed))
    stages += [wds.split_by_node, wds.split_by_worker, _open_shards, tar_file_expander, group_by_keys]
    if shuffle:
        stages.append(wds.shuffle(shuffle, initial=shuffle, seed=seed))
    if decode is not None:
        stages.append(wds.decode(decode))
    return wds.DataPipeline(*stages)


def why_empty(manifest: Mapping[str, Any]) -> str:
    """Where a run that wrote no samples lost its records: the inputs, and the step and reason
    that dropped the most of them (from the manifest's funnel)."""
    funnel = manifest.get("funnel") or []
    if not funnel:
        return "its funnel is empty"
    drops = [(count, row["step"], reason) for row in funnel for reason, count in row.get("dropped", {}).items()]
    if not drops:
        return f"the run read {funnel[0].get('in', 0)} records and dropped none"
    count, step, reason = max(drops, key=lambda drop: (drop[0], drop[1], drop[2]))
    return f"the run read {funnel[0].get('in', 0)} records and kept none; most were dropped at {step}: {reason} ({count})"


def _open_shards(items: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Adds an open ``stream`` to each ``{"url": ...}``; closes it once the shard is consumed."""
    for item in items:
        stream = default_opener(item["url"])
        try:
            yield {**item, "stream": stream}
        finally:
            stream.close()
