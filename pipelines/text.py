"""``curate text``: language data -> deduplicated, filtered, MST-packed training sequences.

Stages (each a funnel step): read -> exact_dedup -> c4_clean -> one step per
quality filter -> near_dedup -> paragraph_dedup -> embed -> pack. Documents are
then packed so that similar ones share a sequence: the corpus is split into
partitions by k-means on the embeddings, and each partition is packed on one
worker along a minimum spanning forest of its kNN graph.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, Iterable

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pvalue import AsSingleton, TaggedOutput

from curation.config import to_mapping
from curation.minhash import MinHashSettings
from curation.models.embedder import EmbedderSpec
from curation.readers import TextColumns, iter_jsonl, iter_parquet_rows, parquet_row_groups, text_doc_from_row
from curation.records import Reject, TextDoc, reject
from curation.tokens import TokenSettings
from curation.text_dedup import drop_paragraphs, exact_key, paragraph_keys, paragraph_losers
from filters.language import LanguageFilter
from filters.quality_model import QualityModelFilter
from filters.text_quality import C4QualityFilter, FineWebQualityFilter, GopherQualityFilter, GopherRepetitionFilter, c4_clean
from manifests.samples import packed_sequence_sample
from manifests.shards import ShardSettings
from pipelines.io import ManifestHeader, MatchPaths, WriteDataset, split_rejects
from pipelines.dedup import NearDedup
from pipelines.transforms import REJECTS, ApplyFilter, count_drop
from synth.packing import pack_corpus
from synth.partition import assign, fit_centroids


@dataclass(frozen=True)
class TextQualityFilters:
    """The quality filters, in the order they run; set one to ``null`` to skip it."""

    gopher_quality: GopherQualityFilter | None = GopherQualityFilter()
    gopher_repetition: GopherRepetitionFilter | None = GopherRepetitionFilter()
    c4: C4QualityFilter | None = C4QualityFilter()
    fineweb_quality: FineWebQualityFilter | None = FineWebQualityFilter()
    language: LanguageFilter | None = LanguageFilter()
    quality_model: QualityModelFilter | None = None

    def enabled(self) -> list[tuple[str, Any]]:
        return [(f.name, getattr(self, f.name)) for f in dataclasses.fields(self) if getattr(self, f.name)]


@dataclass(frozen=True)
class TextDedupSettings:
    """The three dedup granularities.

    Attributes:
        exact: drop documents identical after whitespace/Unicode normalisation.
        near: MinHash LSH settings; ``null`` skips near-duplicate removal. The
            default 20 bands x 5 rows catches pairs at Jaccard 0.8 with
            probability 0.9996; candidates are verified on the signatures.
        paragraph_min_docs: a paragraph found in this many documents or more is
            kept only in the first (smallest id); ``null`` skips the step.
    """

    exact: bool = True
    near: MinHashSettings | None = MinHashSettings(bands=20, rows=5, threshold=0.65)
    paragraph_min_docs: int | None = 3


@dataclass(frozen=True)
class PackSettings:
    """MST packing.

    Attributes:
        seq_len: tokens per training sequence, separators included.
        knn: neighbours per document in the kNN graph.
        sep_tokens: separator tokens after each document piece.
        separator: the text written between pieces in the ``txt`` file.
        max_partition_docs: partitions (packed one per worker) hold about this
            many documents; k-means on the embeddings splits the corpus.
        centroid_sample: documents the partition centroids are fit on.
        seed: seeds centroids, kNN search and the sequence shuffle.
    """

    seq_len: int = 8192
    knn: int = 10
    sep_tokens: int = 1
    separator: str = "\n\n"
    max_partition_docs: int = 200_000
    centroid_sample: int = 20_000
    seed: int = 0


@dataclass(frozen=True)
class TextConfig:
    """Everything ``curate text`` can be told; every key can be set in YAML or with ``--set``."""

    dataset: str = "text"
    columns: TextColumns = TextColumns()
    dedup: TextDedupSettings = TextDedupSettings()
    c4_clean: bool = True
    filters: TextQualityFilters = TextQualityFilters()
    embedder: EmbedderSpec = EmbedderSpec()
    tokens: TokenSettings = TokenSettings()
    packing: PackSettings = PackSettings()
    shards: ShardSettings = ShardSettings(max_samples=2000, partitions=4)

    def steps(self) -> tuple[str, ...]:
        steps = ["read"]
        if self.dedup.exact:
            steps.append("exact_dedup")
        if self.c4_clean:
            steps.append("c4_clean")
        steps += [name for name, _ in self.filters.enabled()]
        if self.dedup.near:
            steps.append("near_dedup")
        if self.dedup.paragraph_min_docs:
            steps.append("paragraph_dedup")
        return (*steps, "embed")


def _read_file(path: str, columns: TextColumns) -> Iterable[Any]:
    name = path.rsplit("/", 1)[-1]
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            if name.endswith(".parquet"):
                for group in range(parquet_row_groups(handle)):
                    for index, row in iter_parquet_rows(handle, group):
                        yield text_doc_from_row(row, f"{name}#{index}", columns)
            else:
                for index, row in iter_jsonl(handle, name):
                    yield text_doc_from_row(row, f"{name}#{index}", columns)
    except Exception as error:  # a truncated or corrupt file: one dead letter, rows read so far stay
        yield Reject(id=path, source=name, step="read", reason="unreadable_file", dead_letter=True,
                     detail=repr(error)[:500])


class ReadTextFiles(beam.PTransform):
    """JSONL (plain, .gz, .zst) and Parquet files matching a glob, one file per task."""

    def __init__(self, pattern: str, columns: TextColumns):
        super().__init__()
        self._pattern = pattern
        self._columns = columns

    def expand(self, pipeline: beam.Pipeline) -> beam.PCollection:
        return (
            pipeline
            | "Match" >> MatchPaths(self._pattern)
            | "SpreadFiles" >> beam.Reshuffle()
            | "ReadFiles" >> beam.FlatMap(_read_file, self._columns)
        )


def _keep_first_of(item: tuple[str, Iterable[TextDoc]], step: str) -> Iterable[Any]:
    _, copies = item
    first, *rest = sorted(copies, key=lambda d: (d.source, d.id))
    yield first
    for copy in rest:
        count_drop(step, "duplicate")
        yield TaggedOutput(REJECTS, reject(copy, step, "duplicate", detail=f"same as {first.source}"))


def _c4_cleaned(doc: TextDoc, settings: C4QualityFilter) -> Iterable[Any]:
    text, counts = c4_clean(doc.text, settings)
    if not text.strip():
        count_drop("c4_clean", "empty_after_c4_clean")
        yield TaggedOutput(REJECTS, reject(doc, "c4_clean", "empty_after_c4_clean"))
        return
    stats = {**doc.stats, "c4_clean.removed_lines": float(counts["lines"] - counts["kept_lines"])}
    yield dataclasses.replace(doc, text=text, stats=stats)


def _without_common_paragraphs(item: tuple[str, dict[str, list]]) -> Iterable[Any]:
    _, joined = item
    for doc in joined["doc"]:
        keys = set(joined["drop"])
        if not keys:
            yield doc
            continue
        text = drop_paragraphs(doc.text, keys)
        if not text:
            count_drop("paragraph_dedup", "empty_after_paragraph_dedup")
            yield TaggedOutput(REJECTS, reject(doc, "paragraph_dedup", "empty_after_paragraph_dedup"))
            continue
        stats = {**doc.stats, "paragraph_dedup.removed": float(len(keys))}
        yield dataclasses.replace(doc, text=text, stats=stats)


class ParagraphDedup(beam.PTransform):
    """Removes paragraphs found in ``min_docs`` or more documents from all but the first."""

    def __init__(self, min_docs: int):
        super().__init__()
        self._min_docs = min_docs

    def expand(self, docs: beam.PCollection):
        min_docs = self._min_docs
        drops = (
            docs
            | "ParagraphKeys" >> beam.FlatMap(lambda d: [(key, d.id) for key in paragraph_keys(d.text)])
            | "GroupParagraphs" >> beam.GroupByKey()
            | "Losers" >> beam.FlatMap(lambda kv: [(doc, kv[0]) for doc in paragraph_losers(kv[1], min_docs)])
        )
        joined = {"doc": docs | "KeyDocs" >> beam.Map(lambda d: (d.id, d)), "drop": drops} | "Join" >> beam.CoGroupByKey()
        return joined | "RemoveParagraphs" >> beam.FlatMap(_without_common_paragraphs).with_outputs(
            REJECTS, main="kept"
        )


class CountTokens(beam.DoFn):
    """Pairs each embedded document with its token count (tokenizer loaded once per worker)."""

    def __init__(self, tokens: TokenSettings):
        self._tokens = tokens

    def setup(self) -> None:
        from curation.tokens import TextTokenizer

        self._tokenizer = TextTokenizer.load(self._tokens.text_tokenizer)

    def process(self, item: tuple[TextDoc, np.ndarray]) -> Iterable[tuple[TextDoc, np.ndarray, int]]:
        doc, embedding = item
        yield doc, embedding, max(self._tokenizer.count(doc.text), 1)


def _centroids(sample: list[tuple[str, np.ndarray]], count: int, settings: PackSettings) -> np.ndarray:
    k = max(1, math.ceil(count / settings.max_partition_docs))
    if not sample:
        return np.zeros((1, 1), dtype=np.float32)
    return fit_centroids(np.stack([vector for _, vector in sorted(sample, key=lambda kv: kv[0])]), k, seed=settings.seed)


def _pack_partition(item: tuple[int, Iterable[tuple[TextDoc, np.ndarray, int]]], settings: PackSettings) -> Iterable[Any]:
    _, members = item
    members = sorted(members, key=lambda m: m[0].id)
    docs = [doc for doc, _, _ in members]
    embeddings = np.stack([embedding for _, embedding, _ in members])
    tokens = np.array([count for _, _, count in members], dtype=np.int64)
    sequences = pack_corpus(
        embeddings, tokens, k=settings.knn, seq_len=settings.seq_len, sep_tokens=settings.sep_tokens, seed=settings.seed
    )
    for pieces in sequences:
        yield packed_sequence_sample(
            [(docs[d], int(start), int(end), int(tokens[d])) for d, start, end in pieces],
            settings.sep_tokens,
            settings.separator,
        )


class PackSequences(beam.PTransform):
    """Partitions the corpus by k-means on embeddings, then MST-packs each partition."""

    def __init__(self, settings: PackSettings):
        super().__init__()
        self._settings = settings

    def expand(self, items: beam.PCollection) -> beam.PCollection:
        settings = self._settings
        count = items | "CountDocs" >> beam.combiners.Count.Globally()
        sample = (
            items
            | "IdAndVector" >> beam.Map(lambda m: (m[0].id, m[1]))
            | "SmallestIds" >> beam.combiners.Top.Of(settings.centroid_sample, key=lambda kv: kv[0], reverse=True)
        )
        centroids = sample | "FitCentroids" >> beam.Map(_centroids, AsSingleton(count), settings)
        return (
            items
            | "AssignPartition" >> beam.Map(lambda m, c: (int(assign(m[1][None, :], c)[0]), m), AsSingleton(centroids))
            | "GroupPartitions" >> beam.GroupByKey()
            | "PackPartition" >> beam.FlatMap(_pack_partition, settings)
        )


def build(pipeline: beam.Pipeline, input_glob: str, output_dir: str, config: TextConfig) -> None:
    """Adds the text pipeline to ``pipeline``."""
    from pipelines.models import EmbedHandler, RunModel  # imports torch: only when the pipeline is built

    rows = pipeline | "Read" >> ReadTextFiles(input_glob, config.columns)
    docs, read_rejects = split_rejects(rows, "SplitReadRejects")
    rejects = [read_rejects]

    if config.dedup.exact:
        exact = (
            docs
            | "ExactKey" >> beam.Map(lambda d: (exact_key(d.text), d))
            | "GroupExact" >> beam.GroupByKey()
            | "KeepFirstExact" >> beam.FlatMap(_keep_first_of, "exact_dedup").with_outputs(REJECTS, main="kept")
        )
        docs = exact.kept
        rejects.append(exact[REJECTS])
    if config.c4_clean:
        cleaned = docs | "C4Clean" >> beam.FlatMap(_c4_cleaned, config.filters.c4 or C4QualityFilter()).with_outputs(
            REJECTS, main="kept"
        )
        docs = cleaned.kept
        rejects.append(cleaned[REJECTS])
    for name, filt in config.filters.enabled():
        if isinstance(filt, QualityModelFilter):
            filt = filt.load_model(FileSystems.open)
        judged = docs | f"Filter_{name}" >> ApplyFilter(filt, step=name)
        docs = judged.kept
        rejects.append(judged.rejects)
    if config.dedup.near:
        near = docs | "NearDedup" >> NearDedup(config.dedup.near, step="near_dedup")
        docs = near.kept
        rejects.append(near[REJECTS])
    if config.dedup.paragraph_min_docs:
        paragraphs = docs | "ParagraphDedup" >> ParagraphDedup(config.dedup.paragraph_min_docs)
        docs = paragraphs.kept
        rejects.append(paragraphs[REJECTS])

    embedded = docs | "Embed" >> RunModel(EmbedHandler(config.embedder), step="embed")
    rejects.append(embedded.rejects)
    all_rejects = rejects | "AllRejects" >> beam.Flatten()

    packed = (
        embedded.kept
        | "CountTokens" >> beam.ParDo(CountTokens(config.tokens))
        | "Pack" >> PackSequences(config.packing)
    )
    header = ManifestHeader(
        dataset=config.dataset,
        config=to_mapping(config),
        models=({"name": config.embedder.model, "role": "embedder", "weights": config.embedder.weights_source()},),
        steps=config.steps(),
    )
    packed_records = (
        packed
        | "PackedDocIds" >> beam.FlatMap(lambda sample: json.loads(sample.fields["json"])["documents"])
        | "DistinctDocs" >> beam.Distinct()
        | "CountPackedDocs" >> beam.combiners.Count.Globally()
    )
    _ = {
        "samples": packed, "inputs": rows, "rejects": all_rejects, "packed_records": packed_records
    } | "WriteDataset" >> WriteDataset(output_dir, header, config.shards)


def run(input_glob: str, output_dir: str, config: TextConfig, beam_args: list[str]) -> bool:
    """Builds and runs the text pipeline; False when the runner only translated it (``--dry_run``)."""
    options = PipelineOptions(beam_args)
    with beam.Pipeline(options=options) as pipeline:
        build(pipeline, input_glob, output_dir, config)
    return not options.get_all_options().get("dry_run")
