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

:func:`mixture_dataset` is the resumable reader for training: one dataset or a
stage manifest mixing several, in one deterministic global order per epoch
that does not depend on how many ranks and workers read it, with a
``state_dict``/``load_state_dict`` that resumes at any world size.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import json
import random
import tarfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info
from webdataset import autodecode
from webdataset.tariterators import base_plus_ext, group_by_keys, tar_file_expander

from manifests.manifest import default_opener, load_manifest, resolve_path, validate_manifest, why_empty
from manifests.samples import IMAGES_FIELD, unpack_images


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
    decoder (``"pil"``: PIL images; ``"torchrgb"``: tensors; ...), the
    ``images.mp`` field of pages and videos to a list of them, ``txt`` to
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
        stages.append(wds.map(sample_decoder(decode)))
    return wds.DataPipeline(*stages)


def sample_decoder(spec: str) -> autodecode.Decoder:
    """webdataset's decoder for ``spec`` (see :func:`webdataset_from_manifest`) that also decodes
    the ``images.mp`` field (:func:`manifests.samples.pack_images`) into a list of images."""
    image = autodecode.imagehandler(spec)

    def images(key: str, data: bytes) -> list[Any] | None:
        if key.lstrip(".").lower() != IMAGES_FIELD:
            return None
        return [image("image.jpg", item) for item in unpack_images(data)]  # PIL reads the format from the bytes

    return autodecode.Decoder([images, image])


def _open_shards(items: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Adds an open ``stream`` to each ``{"url": ...}``; closes it once the shard is consumed."""
    for item in items:
        stream = default_opener(item["url"])
        try:
            yield {**item, "stream": stream}
        finally:
            stream.close()


STAGE_KIND = "stage"
STAGE_FORMAT_VERSION = 1


def mixture_dataset(
    manifest: str,
    rank: int = 0,
    world_size: int = 1,
    seed: int = 0,
    decode: str | None = "pil",
) -> MixtureDataset:
    """A resumable, deterministic reader over one dataset or a mixture of datasets (a stage).

    **Input.** ``manifest`` is the local path or URL of either a dataset
    ``manifest.json`` (one source, named by the manifest's ``dataset``, drawn
    once per sample per epoch) or a *stage manifest*, the JSON object that
    ``curate mix`` writes::

        {
          "kind": "stage",                  # required: tells it from a dataset manifest
          "format_version": 1,              # optional; when present it must be 1
          "sources": [                      # required, non-empty, in a fixed order
            {"name": "captions",            # unique non-empty string; seeds the source's shard order
             "manifest": "../captions/manifest.json",  # a dataset manifest: relative to the
                                                       # stage manifest's folder, absolute, or a URL
             "samples_per_epoch": 300},     # int >= 1: the source's draws in one epoch
            ...
          ],
          ...                               # anything else (the stage's name, the weights and
        }                                   # config curate mix used, created_at) is ignored here

    ``samples_per_epoch`` equal to the source's sample count reads it once;
    larger repeats it (whole passes, then a partial one); smaller takes a
    subset (the first draws of the epoch's pass, i.e. whole shards of its
    shard permutation, not a uniform sample). ``curate mix`` computes it from
    the weights: source i's share of an epoch is ``samples_per_epoch[i] / N``
    with ``N = sum(samples_per_epoch)``. A source's manifest must be a dataset
    manifest (stages do not nest) that validates and lists at least one shard.

    **Global order.** An epoch is ``N`` global positions ``0..N-1``, fixed by
    ``(seed, epoch)`` and the stage alone:

    * Source i's draw sequence: its shards in a permutation seeded by
      ``(seed, epoch, name, pass)``, each shard's samples in shard order; draw
      ``d`` is sample ``d % size`` of pass ``d // size``, cut at
      ``samples_per_epoch``. Each pass gets a fresh permutation.
    * Which source takes each position: :func:`mixture_schedule`, which keeps
      every source within quota in every prefix: after ``n`` positions source
      i has had ``floor(n*f_i)`` or ``ceil(n*f_i)`` draws, ``f_i = s_i / N``,
      i.e. strictly less than 1 away from its exact share. So a 1% source
      appears within the first 100 positions, and proportions can be tested
      with a tolerance of 1 sample per source for any prefix.

    **Split.** Global position ``p`` belongs to rank ``(p - start) % world_size``;
    within the rank, its ``j``-th position ``p = start + j*world_size + rank``
    goes to DataLoader worker ``j % num_workers`` (from
    ``torch.utils.data.get_worker_info()``; one worker outside a DataLoader).
    ``start`` is 0 at the start of an epoch (so the worker is
    ``(p // world_size) % num_workers``) and the resumed position after
    :meth:`MixtureDataset.load_state_dict`. A ``DataLoader`` takes its workers'
    samples round-robin, so the ``j``-th sample that rank ``rank`` gets is
    position ``start + j*world_size + rank``, with any ``batch_size``; no
    position is read by two readers. Ranks get ``ceil`` or ``floor`` of
    ``(N - start) / world_size`` positions (the first ranks get the extra one).

    **Reading and its cost.** A reader walks the schedule (about 1-2 µs of
    Python per global position of the epoch, its own or not) and opens a
    shard only when it holds one of the reader's positions; tar shards are
    streams, so it reads through the samples before its own in that shard
    (without decoding them) and stops at its last one. With many readers
    (``world_size * num_workers``) against the samples per shard, nearly every
    reader opens nearly every shard: the bytes read per epoch grow up to that
    many times the dataset's size, while decoding stays once per sample.
    Per-sample byte offsets in the manifest (ranged reads) would remove that
    cost; this reader puts correctness first. A shard that holds fewer samples
    than its manifest says raises ``ValueError`` (positions would shift).

    **Samples** are dicts with ``__key__``, ``__url__`` (the shard),
    ``__source__`` (the source's name), ``__position__`` (global position),
    ``__epoch__``, and one entry per field: decoded by webdataset's decoder
    when ``decode`` is a spec (``"pil"``, ``"torchrgb"``...; ``txt`` to
    ``str``, ``json`` to objects), raw bytes when ``decode`` is None.

    **Epochs and resuming.** One ``iter`` is (the rest of) one epoch; see
    :class:`MixtureDataset` for ``set_epoch``, ``state_dict`` and
    ``load_state_dict``.

    Args:
        manifest: local path or URL of a dataset manifest or a stage manifest.
        rank: this process's rank in data-parallel training, ``0 <= rank < world_size``.
        world_size: the number of data-parallel ranks.
        seed: seeds every shard permutation.
        decode: a webdataset decoder spec, or None for raw bytes.

    Raises:
        ValueError: on an invalid stage or dataset manifest, a source whose
            manifest lists no shards or no samples (naming the source), or an
            invalid rank, world size or decode spec.
    """
    return MixtureDataset(load_sources(manifest), rank=rank, world_size=world_size, seed=seed, decode=decode)


def mixture_schedule(samples_per_epoch: Sequence[int]) -> Iterator[int]:
    """The source index of each global position of an epoch, ``sum(samples_per_epoch)`` in all.

    Source i takes exactly ``s_i = samples_per_epoch[i]`` positions, and in
    every prefix of ``n`` positions it has taken ``floor(n*s_i/N)`` or
    ``ceil(n*s_i/N)`` of them (``N = sum(s)``): within quota, strictly less
    than one sample from its exact proportional share.

    How: the ``j``-th draw (1-based) of source i must come at a time ``t``
    (1-based) in ``[floor((j-1)*N/s_i) + 1, ceil(j*N/s_i)]``: no earlier, or
    the upper quota breaks; no later, or the lower one does. This is earliest
    deadline first over those windows (ties to the lower source index), which
    places unit jobs on a single slot per time whenever any placement exists.
    One exists: in any span ``[a, b]`` of times, source i has at most
    ``floor(b*f) - ceil((a-1)*f) <= (b-a+1)*f`` draws whose window lies
    inside it (``f = s_i/N``), so all sources together have at most ``b-a+1``.
    Only a source's next draw can be due (its draws' deadlines increase), so
    each step costs ``O(log k)`` for ``k`` sources; it depends on nothing
    but ``samples_per_epoch``.

    Raises:
        ValueError: when a count is not a positive integer.
    """
    counts = list(samples_per_epoch)
    if not counts or any(type(s) is not int or s < 1 for s in counts):
        raise ValueError(f"samples_per_epoch must be a non-empty list of positive integers, got {counts}")
    return _edf_schedule(counts)


def _edf_schedule(counts: list[int]) -> Iterator[int]:
    total = sum(counts)
    taken = [0] * len(counts)
    waiting = [(1, i) for i in range(len(counts))]  # (release time of the next draw, source)
    due: list[tuple[int, int]] = []  # (deadline of the next draw, source)
    for time in range(1, total + 1):
        while waiting and waiting[0][0] <= time:
            _, i = heapq.heappop(waiting)
            heapq.heappush(due, (-(-(taken[i] + 1) * total // counts[i]), i))
        if not due or due[0][0] < time:  # cannot happen (see above); guards the argument
            raise RuntimeError(f"mixture schedule broke quota at position {time - 1} for {counts}")
        _, i = heapq.heappop(due)
        taken[i] += 1
        if taken[i] < counts[i]:
            heapq.heappush(waiting, (taken[i] * total // counts[i] + 1, i))
        yield i


@dataclass(frozen=True)
class MixtureSource:
    """One source of a mixture, as :func:`load_sources` resolved it.

    Attributes:
        name: the source's name (seeds its shard permutations).
        manifest: the resolved path or URL of its dataset manifest.
        urls: its shards' paths or URLs, in manifest order.
        counts: the samples in each shard, as the manifest says.
        samples_per_epoch: its draws per epoch.
    """

    name: str
    manifest: str
    urls: tuple[str, ...]
    counts: tuple[int, ...]
    samples_per_epoch: int

    @property
    def size(self) -> int:
        return sum(self.counts)


def load_sources(manifest_path: str) -> list[MixtureSource]:
    """Reads a dataset manifest or a stage manifest (see :func:`mixture_dataset`) into its sources.

    Raises:
        ValueError: on an invalid manifest, or a source without shards or samples.
    """
    manifest = load_manifest(manifest_path)
    if manifest.get("kind") != STAGE_KIND:
        name = manifest.get("dataset")
        source = _load_source(str(name), manifest_path, None, manifest)
        return [source]
    if "format_version" in manifest and manifest["format_version"] != STAGE_FORMAT_VERSION:
        raise ValueError(
            f"stage manifest {manifest_path}: unknown format_version {manifest['format_version']!r}"
            f" (this reader knows {STAGE_FORMAT_VERSION})"
        )
    entries = manifest.get("sources")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"stage manifest {manifest_path}: sources must be a non-empty list")
    sources, names = [], set()
    for index, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise ValueError(f"stage manifest {manifest_path}: sources[{index}] is not a JSON object")
        name, path, draws = entry.get("name"), entry.get("manifest"), entry.get("samples_per_epoch")
        if not (isinstance(name, str) and name):
            raise ValueError(f"stage manifest {manifest_path}: sources[{index}] has no name")
        if name in names:
            raise ValueError(f"stage manifest {manifest_path}: source name {name!r} repeats")
        names.add(name)
        if not (isinstance(path, str) and path):
            raise ValueError(f"stage manifest {manifest_path}: source {name!r} has no manifest path")
        if type(draws) is not int or draws < 1:
            raise ValueError(
                f"stage manifest {manifest_path}: source {name!r}: samples_per_epoch must be a positive"
                f" integer, got {draws!r}"
            )
        resolved = resolve_path(manifest_path, path)
        try:
            source_manifest = load_manifest(resolved)
        except (OSError, ValueError) as exc:
            raise ValueError(f"stage manifest {manifest_path}: source {name!r}: cannot read {resolved}: {exc}") from exc
        sources.append(_load_source(name, resolved, draws, source_manifest))
    return sources


def _load_source(name: str, path: str, draws: int | None, manifest: Mapping[str, Any]) -> MixtureSource:
    if manifest.get("kind") == STAGE_KIND:
        raise ValueError(f"source {name!r}: {path} is a stage manifest; a source must be a dataset manifest")
    try:
        urls = shard_urls(path, manifest)
    except ValueError as exc:
        raise ValueError(f"source {name!r}: {exc}") from exc
    if not urls:
        raise ValueError(f"source {name!r}: manifest {path} lists no shards: {why_empty(manifest)}")
    counts = tuple(int(shard["samples"]) for shard in manifest["shards"])
    if not sum(counts):
        raise ValueError(f"source {name!r}: the shards of manifest {path} hold no samples")
    return MixtureSource(name, path, tuple(urls), counts, sum(counts) if draws is None else draws)


class MixtureDataset(IterableDataset):
    """The iterable dataset :func:`mixture_dataset` returns; see there for order and split.

    **Epochs.** Each ``iter()`` yields this rank's share of one epoch, from the
    current start position to the epoch's end, and stops. ``set_epoch(e)``
    selects epoch ``e`` (fresh shard permutations, same multiset of draws) and
    moves the start to its position 0, unless ``e`` is already the current
    epoch, where it keeps the start (so the usual loop, ``load_state_dict``
    then ``set_epoch(e)`` for each epoch from the saved one, resumes mid-epoch).

    **State.** ``state_dict(consumed)`` is ``{"seed", "epoch", "position"}``,
    JSON-able, where ``position = start + consumed * world_size``: the global
    positions consumed so far in this epoch. ``consumed`` is the number of
    samples this rank's trainer has taken from the current iteration (since
    the epoch's start or the last ``load_state_dict``); left as None, it is
    the number this object itself has yielded in its latest iteration, which
    is right only when it is iterated in this process (``num_workers=0``):
    DataLoader workers iterate copies of it, and their samples are prefetched,
    so with workers pass the trainer's count. ``load_state_dict(state)`` makes
    the next iteration start at that position of that epoch, at any
    ``world_size`` and ``num_workers``: rank r then gets positions
    ``position + j*world_size + r``; positions before it are not read, and
    shards whose draws all lie before it are not opened.

    **The assumption.** ``position = start + consumed * world_size`` holds
    when every rank consumed the same number of samples, each taking its
    positions in order, as synchronous data-parallel training does (every
    step takes one batch on every rank). Then the positions consumed are
    exactly ``start..position-1``, and a run saved at one world size resumes
    at another with every position taken exactly once. Ranks that drifted
    apart (uneven batches, a rank that skipped a step) break it. So does the
    tail of an epoch whose length is not a multiple of ``world_size``, where
    the first ranks have one position more; ``position`` is clamped to the
    epoch's length, which means the epoch is done (resume with
    ``set_epoch(epoch + 1)``).

    Set the epoch and load state before creating the DataLoader's iterator,
    and keep ``persistent_workers=False`` (the default): persistent workers
    keep the copy of this object they started with.
    """

    def __init__(
        self,
        sources: Sequence[MixtureSource],
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        decode: str | None = "pil",
    ):
        super().__init__()
        if type(world_size) is not int or world_size < 1:
            raise ValueError(f"world_size must be a positive integer, got {world_size!r}")
        if type(rank) is not int or not 0 <= rank < world_size:
            raise ValueError(f"rank must be an integer in [0, {world_size}), got {rank!r}")
        if not sources:
            raise ValueError("a mixture needs at least one source")
        names = [source.name for source in sources]
        if len(set(names)) != len(names):
            raise ValueError(f"source names repeat: {names}")
        if decode is not None:
            autodecode.imagehandler(decode)  # an unknown spec fails here, not in a worker
        self.sources = list(sources)
        self.rank, self.world_size, self.seed, self.decode = rank, world_size, int(seed), decode
        self.samples_per_epoch = sum(source.samples_per_epoch for source in self.sources)
        self.epoch = 0
        self._start = 0
        self._yielded = 0

    def __len__(self) -> int:
        """The samples this rank gets from the next iteration (all its workers together)."""
        return max(0, -(-(self.samples_per_epoch - self._start - self.rank) // self.world_size))

    def set_epoch(self, epoch: int) -> None:
        if type(epoch) is not int or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer, got {epoch!r}")
        if epoch != self.epoch:
            self.epoch, self._start, self._yielded = epoch, 0, 0

    def state_dict(self, consumed: int | None = None) -> dict[str, int]:
        """``{"seed", "epoch", "position"}``: see the class docstring for what ``consumed`` counts.

        Raises:
            ValueError: when ``consumed`` is negative or more than this rank's share of the iteration.
        """
        if consumed is None:
            consumed = self._yielded
        if type(consumed) is not int or not 0 <= consumed <= len(self):
            raise ValueError(f"consumed must be an integer in [0, {len(self)}] (this rank's share), got {consumed!r}")
        position = min(self.samples_per_epoch, self._start + consumed * self.world_size)
        return {"seed": self.seed, "epoch": self.epoch, "position": position}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Makes the next iteration start at ``state["position"]`` of ``state["epoch"]``.

        Raises:
            ValueError: when the state's seed differs from this dataset's (the order would
                differ), or its epoch or position is out of range for this mixture.
        """
        seed, epoch, position = (state.get(key) for key in ("seed", "epoch", "position"))
        if seed != self.seed:
            raise ValueError(f"state was saved with seed {seed!r}, this dataset has seed {self.seed}")
        if type(epoch) is not int or epoch < 0:
            raise ValueError(f"state epoch must be a non-negative integer, got {epoch!r}")
        if type(position) is not int or not 0 <= position <= self.samples_per_epoch:
            raise ValueError(
                f"state position must be an integer in [0, {self.samples_per_epoch}] (this mixture's"
                f" epoch), got {position!r}"
            )
        self.epoch, self._start, self._yielded = epoch, position, 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        self._yielded = 0
        return self._iterate(self.epoch, self._start, workers, worker)

    def _iterate(self, epoch: int, start: int, workers: int, worker: int) -> Iterator[dict[str, Any]]:
        total = self.samples_per_epoch
        step = self.world_size * workers
        mine = start + worker * self.world_size + self.rank  # this reader's next position
        if mine >= total:
            return
        decoder = sample_decoder(self.decode) if self.decode is not None else None
        draws = [_SourceDraws(source, self.seed, epoch) for source in self.sources]
        taken = [0] * len(self.sources)
        try:
            for position, i in enumerate(mixture_schedule([s.samples_per_epoch for s in self.sources])):
                draw = taken[i]
                taken[i] += 1
                if position != mine:
                    continue
                sample = draws[i].get(draw)
                if decoder is not None:
                    sample = decoder(sample)
                sample.update(__source__=self.sources[i].name, __position__=position, __epoch__=epoch)
                self._yielded += 1
                yield sample
                mine += step
                if mine >= total:
                    return
        finally:
            for source_draws in draws:
                source_draws.close()


def shard_permutation(seed: int, epoch: int, name: str, pass_: int, shards: int) -> list[int]:
    """The order of a source's shards (indices into its manifest's list) in one pass of one epoch."""
    digest = hashlib.sha256(json.dumps([seed, epoch, name, pass_]).encode()).digest()
    order = list(range(shards))
    random.Random(int.from_bytes(digest[:8], "big")).shuffle(order)
    return order


class _SeekableShard:
    """A shard on a seekable stream, sample by sample, reading a sample's bytes only when asked.

    The samples of other readers (ranks and workers take every n-th position) are passed over
    by their tar headers, so n readers of a shard read its bytes once between them, not n times.
    Samples are grouped as webdataset groups them: consecutive files sharing the part of their
    name before the first dot of the base name, the rest (lower case) naming the field.
    """

    def __init__(self, stream: Any, url: str):
        self._tar = tarfile.open(fileobj=stream, mode="r:")
        self._url = url
        self._members = iter(self._tar)
        self._pending: tuple[str, str, tarfile.TarInfo] | None = None

    def next_sample(self) -> list[tuple[str, str, tarfile.TarInfo]] | None:
        """The next sample's ``(key, field, member)`` files, or None at the shard's end."""
        group = [self._pending] if self._pending else []
        self._pending = None
        for member in self._members:
            key, field = base_plus_ext(member.name) if member.isfile() else (None, None)
            if key is None:
                continue
            entry = (key, field.lower(), member)
            if group and key != group[0][0]:
                self._pending = entry
                break
            group.append(entry)
        return group or None

    def load(self, files: list[tuple[str, str, tarfile.TarInfo]]) -> dict[str, Any]:
        sample: dict[str, Any] = {"__key__": files[0][0], "__url__": self._url}
        for _, field, member in files:
            handle = self._tar.extractfile(member)
            sample[field] = handle.read() if handle is not None else b""
        return sample

    def close(self) -> None:
        self._tar.close()


class _SourceDraws:
    """One source's draws in one epoch, read lazily and in increasing draw order.

    Keeps at most one shard open; a shard none of whose draws is asked for is
    never opened, and the samples before an asked one are not decoded (nor read,
    when the shard's stream can seek: see :class:`_SeekableShard`).
    """

    def __init__(self, source: MixtureSource, seed: int, epoch: int):
        self.source, self.seed, self.epoch = source, seed, epoch
        self._pass: int | None = None
        self._order: list[int] = []
        self._ends: list[int] = []  # cumulative sample counts along the pass's shard order
        self._shard: int | None = None  # position of the open shard in the pass's order
        self._samples: Iterator[dict[str, Any]] | None = None
        self._seekable: _SeekableShard | None = None
        self._stream: Any = None
        self._next = 0  # offset in the open shard of the sample _samples yields next

    def get(self, draw: int) -> dict[str, Any]:
        pass_, offset = divmod(draw, self.source.size)
        if pass_ != self._pass:
            self.close()
            self._pass = pass_
            self._order = shard_permutation(self.seed, self.epoch, self.source.name, pass_, len(self.source.urls))
            self._ends, total = [], 0
            for index in self._order:
                total += self.source.counts[index]
                self._ends.append(total)
        shard = bisect.bisect_right(self._ends, offset)
        within = offset - (self._ends[shard - 1] if shard else 0)
        if shard != self._shard or within < self._next:
            self.close()
            url = self.source.urls[self._order[shard]]
            self._stream = default_opener(url)
            if self._stream.seekable():
                self._seekable = _SeekableShard(self._stream, url)
            else:
                self._samples = group_by_keys(tar_file_expander([{"url": url, "stream": self._stream}]))
            self._shard, self._next = shard, 0
        while True:
            sample = self._read_next(wanted=self._next == within)
            if sample is None:
                url, read = self.source.urls[self._order[shard]], self._next
                count = self.source.counts[self._order[shard]]
                self.close()
                raise ValueError(
                    f"source {self.source.name!r}: shard {url} ends after {read} samples, but its manifest"
                    f" says {count}"
                )
            self._next += 1
            if self._next > within:
                return sample

    def _read_next(self, wanted: bool) -> dict[str, Any] | None:
        """The open shard's next sample (only its key when not ``wanted`` and the shard can seek),
        or None at the shard's end."""
        if self._seekable is None:
            return next(self._samples, None)
        files = self._seekable.next_sample()
        if files is None:
            return None
        return self._seekable.load(files) if wanted else {"__key__": files[0][0]}

    def close(self) -> None:
        if self._samples is not None:
            self._samples.close()
        if self._seekable is not None:
            self._seekable.close()
        if self._stream is not None:
            self._stream.close()
        self._samples = self._seekable = self._stream = None
        self._shard, self._next = None, 0
