"""Model-based text quality: a hashed word n-gram logistic regression the user trains.

``curate train-quality --positive FILES --negative FILES`` reads example documents
with :func:`read_training_texts`, fits a :class:`HashedNgramClassifier` (known good
text, e.g. reference articles, against web text one wants less of) and saves it as
one small ``.npz`` file. :class:`QualityModelFilter` then drops documents whose
predicted probability of being high quality is below a threshold.

Features are counts of lowercased word n-grams hashed into ``n_features``
buckets, L2-normalised per document. The hash is crc32 of each word combined
with the splitmix64 finaliser: the same in every process and on every machine
(Python's salted ``hash()`` is never used), so a saved model scores identically
wherever it is loaded. Training is mini-batch AdaGrad on the logistic loss with
L2 regularisation, in plain numpy; the two classes are weighted equally whatever
their sizes, so 0.5 is a roughly neutral threshold.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import re
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, ClassVar

import numpy as np

from curation.readers import decompressed
from filters.base import Filter

FORMAT = "curation.quality_model.hashed_ngram_logreg"
FORMAT_VERSION = 1
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
TEXT_SUFFIXES = (".txt",)
GZIP_SUFFIXES = (".gz",)
ZSTD_SUFFIXES = (".zst", ".zstd")

_WORD = re.compile(r"\w+", re.UNICODE)
_GRAM_MULTIPLIER = np.uint64(0x100000001B3)  # FNV-64 prime: folds the next word into an n-gram hash
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_ADAGRAD_EPS = 1e-8

Opener = Callable[[str], BinaryIO]


@dataclass(frozen=True)
class QualityModelSettings:
    """Features and training of a :class:`HashedNgramClassifier`; saved with the model.

    Attributes:
        ngram_range: smallest and largest word n-gram length used as features.
        n_features: hash buckets (weights); collisions fall as it grows.
        epochs: passes over the training documents.
        l2: L2 penalty on the weights (applied to the weights a batch touches).
        learning_rate: AdaGrad step size.
        batch_size: documents per gradient step.
        seed: seeds the shuffling of documents between epochs.
    """

    ngram_range: tuple[int, int] = (1, 2)
    n_features: int = 2**20
    epochs: int = 5
    l2: float = 1e-6
    learning_rate: float = 0.5
    batch_size: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        low, high = self.ngram_range
        if not 1 <= low <= high:
            raise ValueError(f"ngram_range must be (low, high) with 1 <= low <= high, got {self.ngram_range}")
        if not 2 <= self.n_features <= 2**32:
            raise ValueError(f"n_features must be in [2, 2**32], got {self.n_features}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if self.learning_rate <= 0 or self.l2 < 0:
            raise ValueError(f"need learning_rate > 0 and l2 >= 0, got {self.learning_rate}, {self.l2}")


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijective scramble of uint64 values."""
    z = (z ^ (z >> np.uint64(30))) * _MIX_1
    z = (z ^ (z >> np.uint64(27))) * _MIX_2
    return z ^ (z >> np.uint64(31))


def ngram_hashes(text: str, ngram_range: tuple[int, int]) -> np.ndarray:
    """Deterministic 64-bit hashes of every lowercased word n-gram of ``text``, uint64 [k].

    Words are ``\\w+`` runs. An n-gram's hash depends on its words, their order and n.
    """
    words = _WORD.findall(text.lower())
    if not words:
        return np.empty(0, dtype=np.uint64)
    unigrams = np.fromiter((zlib.crc32(w.encode("utf-8")) for w in words), dtype=np.uint64, count=len(words))
    low, high = ngram_range
    out = [np.empty(0, dtype=np.uint64)]
    state = unigrams  # state[i]: hash of the n words starting at word i
    for n in range(1, min(high, len(words)) + 1):
        if n > 1:
            state = _mix(state[:-1] * _GRAM_MULTIPLIER + unigrams[n - 1 :])
        if n >= low:
            out.append(_mix(state ^ np.uint64(n)))
    return np.concatenate(out)


def featurize(text: str, settings: QualityModelSettings) -> tuple[np.ndarray, np.ndarray]:
    """The document's sparse feature vector: bucket indices (int64) and L2-normalised counts (float64)."""
    buckets = ngram_hashes(text, settings.ngram_range) % np.uint64(settings.n_features)
    indices, counts = np.unique(buckets.astype(np.int64), return_counts=True)
    values = counts.astype(np.float64)
    if len(values):
        values /= np.linalg.norm(values)
    return indices, values


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _stack(docs: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenated indices, values and the row each entry belongs to."""
    lengths = [len(indices) for indices, _ in docs]
    rows = np.repeat(np.arange(len(docs)), lengths)
    if not rows.size:
        return np.empty(0, dtype=np.int64), np.empty(0), rows
    return np.concatenate([d[0] for d in docs]), np.concatenate([d[1] for d in docs]), rows


class HashedNgramClassifier:
    """Logistic regression over hashed word n-grams; ``predict_proba`` is P(high quality).

    Attributes:
        settings: the feature and training settings it was trained with.
        weights: one float32 weight per hash bucket.
        bias: the intercept.
        n_positive: high-quality documents it was trained on.
        n_negative: low-quality documents it was trained on.
    """

    def __init__(
        self, settings: QualityModelSettings, weights: np.ndarray, bias: float, n_positive: int, n_negative: int
    ) -> None:
        if weights.shape != (settings.n_features,):
            raise ValueError(f"expected {settings.n_features} weights, got shape {weights.shape}")
        self.settings = settings
        self.weights = weights.astype(np.float32, copy=False)
        self.bias = float(bias)
        self.n_positive = n_positive
        self.n_negative = n_negative

    @classmethod
    def train(
        cls,
        positives: Iterable[str],
        negatives: Iterable[str],
        settings: QualityModelSettings = QualityModelSettings(),
    ) -> HashedNgramClassifier:
        """Fits the classifier; holds the hashed features (not the texts) in memory.

        Raises:
            ValueError: either class has no documents.
        """
        docs = [featurize(text, settings) for text in positives]
        n_positive = len(docs)
        docs.extend(featurize(text, settings) for text in negatives)
        n_negative = len(docs) - n_positive
        if not n_positive or not n_negative:
            raise ValueError(f"need documents of both classes, got {n_positive} positive, {n_negative} negative")
        labels = np.zeros(len(docs))
        labels[:n_positive] = 1.0
        # Each class carries half the total weight, whatever the class sizes.
        class_weight = np.where(labels == 1, len(docs) / (2 * n_positive), len(docs) / (2 * n_negative))

        weights = np.zeros(settings.n_features)
        squared_grads = np.zeros(settings.n_features)
        bias, bias_squared_grad = 0.0, 0.0
        rng = np.random.default_rng(settings.seed)
        for _ in range(settings.epochs):
            order = rng.permutation(len(docs))
            for start in range(0, len(order), settings.batch_size):
                batch = order[start : start + settings.batch_size]
                indices, values, rows = _stack([docs[i] for i in batch])
                margins = np.bincount(rows, weights=weights[indices] * values, minlength=len(batch)) + bias
                residuals = (_sigmoid(margins) - labels[batch]) * class_weight[batch] / len(batch)
                touched, inverse = np.unique(indices, return_inverse=True)
                grad = np.bincount(inverse, weights=residuals[rows] * values, minlength=len(touched))
                grad += settings.l2 * weights[touched]
                squared_grads[touched] += grad * grad
                weights[touched] -= settings.learning_rate * grad / (np.sqrt(squared_grads[touched]) + _ADAGRAD_EPS)
                bias_grad = float(residuals.sum())
                bias_squared_grad += bias_grad * bias_grad
                bias -= settings.learning_rate * bias_grad / (math.sqrt(bias_squared_grad) + _ADAGRAD_EPS)
        return cls(settings, weights, bias, n_positive, n_negative)

    def decision_function(self, texts: Sequence[str]) -> np.ndarray:
        """Logits (log-odds of high quality), float64 [n]."""
        indices, values, rows = _stack([featurize(text, self.settings) for text in texts])
        contributions = self.weights[indices].astype(np.float64) * values
        return np.bincount(rows, weights=contributions, minlength=len(texts)) + self.bias

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """P(high quality) of each text, float64 [n]."""
        return _sigmoid(self.decision_function(texts))

    def save(self, fileobj: BinaryIO) -> None:
        """Writes the model as one compressed ``.npz`` (non-zero weights + settings JSON).

        The archive is built in memory and written in one call, so ``fileobj`` need
        not be seekable (any Beam filesystem's writer works).
        """
        nonzero = np.flatnonzero(self.weights).astype(np.uint32)
        header = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "settings": dataclasses.asdict(self.settings),
            "n_positive": self.n_positive,
            "n_negative": self.n_negative,
        }
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            header=np.array(json.dumps(header, sort_keys=True)),
            indices=nonzero,
            weights=self.weights[nonzero],
            bias=np.array(self.bias, dtype=np.float64),
        )
        fileobj.write(buffer.getvalue())

    def __reduce__(self) -> tuple[Callable[[bytes], HashedNgramClassifier], tuple[bytes]]:
        """Pickles as the saved file: only non-zero weights travel (e.g. to Beam workers)."""
        buffer = io.BytesIO()
        self.save(buffer)
        return _classifier_from_bytes, (buffer.getvalue(),)

    @classmethod
    def load(cls, fileobj: BinaryIO) -> HashedNgramClassifier:
        """Reads a model written by :meth:`save`.

        Raises:
            ValueError: the file is not a model of this format and version.
        """
        with np.load(io.BytesIO(fileobj.read()), allow_pickle=False) as archive:
            header = json.loads(str(archive["header"]))
            if header.get("format") != FORMAT or header.get("version") != FORMAT_VERSION:
                raise ValueError(
                    f"not a {FORMAT} v{FORMAT_VERSION} model: "
                    f"format {header.get('format')!r} v{header.get('version')!r}"
                )
            raw = header["settings"]
            settings = QualityModelSettings(**{**raw, "ngram_range": tuple(raw["ngram_range"])})
            weights = np.zeros(settings.n_features, dtype=np.float32)
            weights[archive["indices"].astype(np.int64)] = archive["weights"]
            bias = float(archive["bias"])
        return cls(settings, weights, bias, header["n_positive"], header["n_negative"])


def _classifier_from_bytes(data: bytes) -> HashedNgramClassifier:
    return HashedNgramClassifier.load(io.BytesIO(data))


def read_training_texts(fileobj: BinaryIO, name: str, text_field: str = "text") -> Iterator[str]:
    """Yields the documents of one training file.

    The format follows ``name``: ``.jsonl`` / ``.ndjson`` / ``.json`` hold one JSON
    object per line, the document in ``text_field``; ``.txt`` holds documents as
    blocks separated by blank lines. Either may be compressed, marked by a further
    ``.gz`` or ``.zst`` suffix (``zstandard`` is imported only for ``.zst``). Pass the
    raw bytes: with Beam, open with ``compression_type=CompressionTypes.UNCOMPRESSED``.
    ``fileobj`` is left open.

    Raises:
        ValueError: an unknown suffix, or a JSON line without a string ``text_field``.
    """
    lowered = name.lower()
    compression = next((s for s in GZIP_SUFFIXES + ZSTD_SUFFIXES if lowered.endswith(s)), "")
    base = lowered.removesuffix(compression)
    if not base.endswith(JSONL_SUFFIXES + TEXT_SUFFIXES):
        raise ValueError(
            f"{name}: unknown training file type; expected one of {JSONL_SUFFIXES + TEXT_SUFFIXES}, "
            f"optionally followed by one of {GZIP_SUFFIXES + ZSTD_SUFFIXES}"
        )
    text = io.TextIOWrapper(decompressed(fileobj, lowered), encoding="utf-8", errors="replace")
    try:
        if base.endswith(JSONL_SUFFIXES):
            yield from _jsonl_texts(text, name, text_field)
        else:
            yield from _blank_line_blocks(text)
    finally:
        text.detach()


def _jsonl_texts(lines: Iterable[str], name: str, text_field: str) -> Iterator[str]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        value = json.loads(line).get(text_field)
        if not isinstance(value, str):
            raise ValueError(f"{name}:{number}: no string field {text_field!r}")
        yield value


def _blank_line_blocks(lines: Iterable[str]) -> Iterator[str]:
    block: list[str] = []
    for line in lines:
        if line.strip():
            block.append(line.rstrip("\n"))
        elif block:
            yield "\n".join(block)
            block = []
    if block:
        yield "\n".join(block)


def _open_binary(path: str) -> BinaryIO:
    return open(path, "rb")


@dataclass(frozen=True)
class QualityModelFilter(Filter):
    """Drops texts that a trained :class:`HashedNgramClassifier` scores as low quality.

    The fields are settings only (so the filter sits in a YAML config tree); the
    loaded classifier is attached state, outside the dataclass fields, that does
    not take part in equality, ``repr`` or config dumps. The pipeline attaches it
    with :meth:`load_model` (passing ``FileSystems.open`` for remote paths), on the
    worker in ``DoFn.setup`` or once at construction, or with :meth:`with_model`.

    Works on any record with a ``text``; the score is P(high quality), written to
    ``stats["quality_model"]``.

    Attributes:
        model_path: the file :meth:`HashedNgramClassifier.save` wrote.
        threshold: kept when the score is at least this.
    """

    name: ClassVar[str] = "quality_model"
    model_path: str = ""
    threshold: float = 0.5
    _classifier: ClassVar[HashedNgramClassifier | None] = None  # set per instance by with_model

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")

    @property
    def classifier(self) -> HashedNgramClassifier | None:
        return self._classifier

    def with_model(self, classifier: HashedNgramClassifier) -> QualityModelFilter:
        """A copy of this filter that scores with ``classifier``."""
        attached = dataclasses.replace(self)
        object.__setattr__(attached, "_classifier", classifier)
        return attached

    def load_model(self, opener: Opener = _open_binary) -> QualityModelFilter:
        """A copy of this filter holding the classifier read from ``model_path``.

        Args:
            opener: opens a path for binary reading (``FileSystems.open`` for ``gs://``...).

        Raises:
            ValueError: ``model_path`` is empty or not a model file.
        """
        if not self.model_path:
            raise ValueError("quality_model filter has no model_path: train one with `curate train-quality`")
        with opener(self.model_path) as fileobj:
            return self.with_model(HashedNgramClassifier.load(fileobj))

    def score(self, record: Any) -> float:
        if self._classifier is None:
            raise RuntimeError("quality_model filter has no classifier: call load_model() or with_model() first")
        return float(self._classifier.predict_proba([record.text or ""])[0])

    def keep(self, score: float) -> tuple[bool, str | None]:
        if score < self.threshold:
            return False, "low_quality_score"
        return True, None
