"""Beam model handlers: wrap the pure model handles of ``curation.models`` for RunInference.

A handler holds only a spec; ``load_model`` runs on the worker, and RunInference
keeps one loaded model per worker process. Importing this module imports torch
(through Beam's RunInference), so pipelines import it only when a model runs.
"""

from __future__ import annotations

import dataclasses
import io
from typing import Any, Iterable, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import ModelHandler, RunInference
from PIL import Image

from curation.models.clip import ClipModel, ClipSpec
from curation.models.embedder import Embedder, EmbedderSpec
from curation.records import CaptionPair, ImageData, Reject, TextDoc, reject
from filters.clip_score import SCORE_KEY
from pipelines.transforms import Split, count_drop

SCORE_DECIMALS = 4  # scores are rounded so batching differences between runners cannot leak into shards


def decode_for_model(image: ImageData, size: int) -> Image.Image:
    """Decodes a stored image to RGB, letting JPEG decode at reduced size when it can."""
    decoded = Image.open(io.BytesIO(image.data))
    if decoded.format == "JPEG":
        decoded.draft("RGB", (size, size))
    return decoded.convert("RGB")


class ClipScoreHandler(ModelHandler[CaptionPair, CaptionPair, ClipModel]):
    """Scores image-text agreement of caption pairs with CLIP (``stats["clip_score"]``)."""

    def __init__(self, spec: ClipSpec):
        super().__init__(min_batch_size=1, max_batch_size=spec.batch_size)
        self._spec = spec

    def load_model(self) -> ClipModel:
        return ClipModel.load(self._spec, opener=FileSystems.open)

    def run_inference(
        self, batch: Sequence[CaptionPair], model: ClipModel, inference_args: dict[str, Any] | None = None
    ) -> Iterable[CaptionPair]:
        images = [decode_for_model(record.image, model.image_size) for record in batch]
        scores = model.score_pairs(images, [record.text for record in batch])
        for record, score in zip(batch, scores):
            stats = {**record.stats, SCORE_KEY: round(float(score), SCORE_DECIMALS)}
            yield dataclasses.replace(record, stats=stats)

    def get_metrics_namespace(self) -> str:
        return "curation.clip"


class EmbedHandler(ModelHandler[TextDoc, tuple[TextDoc, Any], Embedder]):
    """Embeds documents with a sentence embedder; yields ``(doc, float32 vector)``."""

    def __init__(self, spec: EmbedderSpec):
        super().__init__(min_batch_size=1, max_batch_size=spec.batch_size)
        self._spec = spec

    def load_model(self) -> Embedder:
        return Embedder.load(self._spec)

    def run_inference(
        self, batch: Sequence[TextDoc], model: Embedder, inference_args: dict[str, Any] | None = None
    ) -> Iterable[tuple[TextDoc, Any]]:
        return zip(batch, model.embed([doc.text for doc in batch]))

    def get_metrics_namespace(self) -> str:
        return "curation.embed"


def _failed_batch_rejects(failure: tuple[Any, Any], step: str) -> Iterable[Reject]:
    batch, error = failure
    for record in batch if isinstance(batch, (list, tuple)) else [batch]:
        count_drop(step, "model_error")
        yield reject(record, step, "model_error", dead_letter=True, detail=repr(error)[:500])


class RunModel(beam.PTransform):
    """Runs a Beam ``ModelHandler`` over batches; failed batches become dead letters.

    The handler loads its model once per worker process (RunInference shares it
    across the process's threads) and returns the records it was given, with
    their ``stats`` updated.
    """

    def __init__(self, handler: ModelHandler, step: str):
        super().__init__()
        self._handler = handler
        self._step = step

    def expand(self, records: beam.PCollection) -> Split:
        scored, failures = records | "Infer" >> RunInference(self._handler).with_exception_handling()
        rejects = failures.failed_inferences | "FailedBatches" >> beam.FlatMap(
            _failed_batch_rejects, self._step
        )
        return Split(scored, rejects)
