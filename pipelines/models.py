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
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, RunInference
from PIL import Image

from curation.models.clip import ClipModel, ClipSpec
from curation.models.embedder import Embedder, EmbedderSpec
from curation.models.generator import Generator, GeneratorSpec, load_cached_generator
from curation.models.nsfw import NsfwModel, NsfwSpec, load_cached as load_cached_nsfw, prepare as prepare_nsfw
from curation.pdf import agreement
from curation.records import (
    SYNTHETIC_CAPTION_KEY, CaptionPair, DocumentPage, ImageData, InterleavedDoc, Reject, TextDoc, VideoClip, reject,
)
from filters.caption_checks import default_checks, run_checks
from filters.clip_score import SCORE_KEY
from filters.nsfw import SCORE_KEY as NSFW_KEY
from synth.captions import Outcome, PromptTemplate, rewrite_pairs
from synth.reorder import clip_inputs, page_score, reorder
from pipelines.transforms import Split

SCORE_DECIMALS = 4  # scores are rounded so batching differences between runners cannot leak into shards
TEXT_LAYER_KEY = "text_layer"  # a PDF page's embedded text, kept in meta until OCR has compared with it


def decode_for_model(image: ImageData, size: int) -> Image.Image:
    """Decodes a stored image to RGB, letting JPEG decode at reduced size when it can."""
    decoded = Image.open(io.BytesIO(image.data))
    if decoded.format == "JPEG":
        decoded.draft("RGB", (size, size))
    return decoded.convert("RGB")


class _ClipHandler(ModelHandler):
    """A CLIP model handler: batches of ``spec.batch_size // images_per_record`` records (about
    ``spec.batch_size`` images), the model loaded on the worker from any Beam filesystem."""

    def __init__(self, spec: ClipSpec, images_per_record: int = 1):
        super().__init__(min_batch_size=1, max_batch_size=max(1, spec.batch_size // images_per_record))
        self._spec = spec

    def load_model(self) -> ClipModel:
        return ClipModel.load(self._spec, opener=FileSystems.open)


class ClipScoreHandler(_ClipHandler):
    """Scores image-text agreement of caption pairs with CLIP (``stats["clip_score"]``)."""

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


class ClipPageHandler(_ClipHandler):
    """Scores pages with CLIP and moves images to better earlier sentences.

    For each page: the [images x sentences] similarity matrix, the page score
    (``stats["clip_score"]``: mean over images of the best sentence), then
    :func:`synth.reorder.reorder`; the moves land in ``meta["image_moves"]``.
    Similarities are rounded so that batch composition cannot change a decision.

    One forward pass per batch of pages embeds what those results can depend on,
    each distinct image and sentence once. The page score takes each image's best
    sentence over all of the page's sentences, so a page with a scorable image and
    a sentence needs every one of both (reordering needs only a subset: for each
    image, the sentences before it and the one beside it). A page with no scorable
    image or no sentence gets a NaN score and no moves whatever CLIP says, so none
    of its images or sentences is embedded.
    """

    def __init__(self, spec: ClipSpec, margin: float = 0.0):
        super().__init__(spec, images_per_record=8)  # a page holds several images and many sentences
        self._margin = margin

    def run_inference(
        self, batch: Sequence[InterleavedDoc], model: ClipModel, inference_args: dict[str, Any] | None = None
    ) -> Iterable[InterleavedDoc]:
        inputs = [clip_inputs(doc) for doc in batch]
        scored = [bool(layout.sentences) and any(image is not None for image in row) for layout, row in inputs]
        pages = [inputs[k] for k, page_scored in enumerate(scored) if page_scored]
        images = {image.sha256: image for _, row in pages for image in row if image is not None}
        sentences = list(dict.fromkeys(sentence for layout, _ in pages for sentence in layout.sentences))
        image_emb = model.embed_images([decode_for_model(image, model.image_size) for image in images.values()])
        text_emb = model.embed_texts(sentences)
        image_at = {sha: k for k, sha in enumerate(images)}
        text_at = {sentence: k for k, sentence in enumerate(sentences)}
        for doc, (layout, row), page_scored in zip(batch, inputs, scored):
            sim = np.full((len(row), len(layout.sentences)), np.nan, dtype=np.float64)
            if page_scored:
                present = [i for i, image in enumerate(row) if image is not None]
                block = model.similarity(image_emb[[image_at[row[i].sha256] for i in present]],
                                         text_emb[[text_at[sentence] for sentence in layout.sentences]])
                sim[present] = np.round(block, SCORE_DECIMALS)
            segments, moves = reorder(layout, sim, self._margin)
            score = page_score(sim)
            stats = {**doc.stats, SCORE_KEY: round(score, SCORE_DECIMALS) if score == score else score}
            meta = {**doc.meta, "image_moves": [move.to_dict() for move in moves]}
            yield dataclasses.replace(doc, segments=segments, stats=stats, meta=meta)

    def get_metrics_namespace(self) -> str:
        return "curation.clip_pages"


class ClipCaptionHandler(_ClipHandler):
    """Scores a pair's image against its alt text and its synthetic caption
    (``stats["clip_score_alt"]``, ``stats["clip_score_caption"]``), one image pass for both."""

    def run_inference(
        self, batch: Sequence[CaptionPair], model: ClipModel, inference_args: dict[str, Any] | None = None
    ) -> Iterable[CaptionPair]:
        images = model.embed_images([decode_for_model(pair.image, model.image_size) for pair in batch])
        alt = model.embed_texts([pair.text for pair in batch])
        captions = model.embed_texts([pair.meta.get(SYNTHETIC_CAPTION_KEY) or pair.text for pair in batch])
        for i, pair in enumerate(batch):
            scores = {
                "clip_score_alt": round(float(images[i] @ alt[i]), SCORE_DECIMALS),
                "clip_score_caption": round(float(images[i] @ captions[i]), SCORE_DECIMALS),
            }
            yield dataclasses.replace(pair, stats={**pair.stats, **scores})

    def get_metrics_namespace(self) -> str:
        return "curation.clip_captions"


def record_image(record: Any) -> bytes:
    """The encoded image of a record with an ``image`` (a caption pair)."""
    return record.image.data


class NsfwHandler(ModelHandler):
    """Scores images with open_nsfw: yields ``(element, P(nsfw))``, or ``(element, error)`` for an
    image that cannot be prepared (one bad image is one reject, not a failed batch).

    ``image(element)`` gives an element's encoded image (by default a record's ``image``).
    """

    def __init__(self, spec: NsfwSpec, image: Any = record_image):
        super().__init__(min_batch_size=1, max_batch_size=spec.batch_size)
        self._spec = spec
        self._image = image

    def load_model(self) -> NsfwModel:
        return load_cached_nsfw(self._spec, opener=FileSystems.open)

    def run_inference(
        self, batch: Sequence[Any], model: NsfwModel, inference_args: dict[str, Any] | None = None
    ) -> Iterable[tuple[Any, float | Exception]]:
        prepared = [_prepared(self._image(element)) for element in batch]
        scores = iter(model.scores([x for x in prepared if not isinstance(x, Exception)]))
        for element, x in zip(batch, prepared):
            yield element, x if isinstance(x, Exception) else round(float(next(scores)), SCORE_DECIMALS)

    def get_metrics_namespace(self) -> str:
        return "curation.nsfw"


def _prepared(image: bytes) -> np.ndarray | Exception:
    try:
        return prepare_nsfw(image)
    except Exception as error:  # an image the classifier cannot read is that image's reject
        return error


def with_nsfw_score(item: tuple[Any, float | Exception], step: str = "nsfw") -> Any:
    """A record with its NSFW score in ``stats``, or a dead letter of ``step`` when its image
    could not be prepared."""
    record, score = item
    if isinstance(score, Exception):
        return reject(record, step, "nsfw_unreadable", dead_letter=True, detail=repr(score)[:500])
    return dataclasses.replace(record, stats={**record.stats, NSFW_KEY: score})


class _GeneratorHandler(ModelHandler):
    """A generator loaded once per worker, with the prompt, settings and seed its batches use;
    batches of ``spec.batch_size`` records (an endpoint's batches are larger, to keep
    ``spec.concurrency`` requests in flight)."""

    def __init__(self, spec: GeneratorSpec, template: Any, settings: Any, seed: int = 0):
        batch = spec.batch_size if spec.backend == "transformers" else max(spec.batch_size, 2 * spec.concurrency)
        super().__init__(min_batch_size=1, max_batch_size=batch)
        self._spec = spec
        self._template = template
        self._settings = settings
        self._seed = seed

    def load_model(self) -> Generator:
        return load_cached_generator(self._spec, opener=FileSystems.open)


class RewriteHandler(_GeneratorHandler):
    """Rewrites alt texts with a generator, checks the captions and retries failures with new seeds.

    The prompt is resolved where the job is launched, for what the generator can see
    (``template.sees_image``); a worker whose generator disagrees refuses to start.
    Yields ``(pair, outcome)`` per pair (see :func:`synth.captions.rewrite_pairs`).
    """

    def __init__(self, spec: GeneratorSpec, template: PromptTemplate, rewrite: Any):
        super().__init__(spec, template, rewrite, rewrite.seed)
        self._rewrite = rewrite
        # The CLIP margin needs CLIP scores: it runs in its own step after the rewrite.
        self._checks = default_checks(dataclasses.replace(rewrite.checks, clip_margin=None))

    def load_model(self) -> Generator:
        generator = super().load_model()
        if generator.sees_images != self._template.sees_image:
            raise RuntimeError(
                f"generator {self._spec.model} sees_images={generator.sees_images}, but prompt "
                f"{self._template.id} was chosen for sees_images={self._template.sees_image}"
            )
        return generator

    def run_inference(
        self, batch: Sequence[CaptionPair], model: Generator, inference_args: dict[str, Any] | None = None
    ) -> Iterable[tuple[CaptionPair, Outcome]]:
        return rewrite_pairs(
            batch, model.generate, self._template, lambda pair: run_checks(pair, self._checks), self._rewrite.policy,
            self._rewrite.seed,
        )

    def get_metrics_namespace(self) -> str:
        return "curation.rewrite"


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


class OcrHandler(ModelHandler[DocumentPage, DocumentPage, Any]):
    """Transcribes the pages routed to OCR (``meta["route"] == "ocr"``); the others pass through.

    Each OCR'd page gets ``transcript``, ``meta`` ``lines`` (text, box, confidence), ``confidence``
    and ``engine``; a page that also had a text layer gets its ``agreement`` with it
    (``stats["ocr_agreement"]``, 1 - character error rate).
    """

    def __init__(self, spec: Any):
        super().__init__(min_batch_size=1, max_batch_size=spec.batch_size)
        self._spec = spec

    def load_model(self) -> Any:
        from curation.models.ocr import load_cached

        return load_cached(self._spec)

    def run_inference(
        self, batch: Sequence[DocumentPage], model: Any, inference_args: dict[str, Any] | None = None
    ) -> Iterable[DocumentPage]:
        todo = [i for i, page in enumerate(batch) if page.meta.get("route") == "ocr"]
        read = dict(zip(todo, model.recognize([_page_pixels(batch[i].image) for i in todo])))
        for i, page in enumerate(batch):
            meta = {key: value for key, value in page.meta.items() if key != TEXT_LAYER_KEY}
            if i not in read:
                yield dataclasses.replace(page, meta=meta)
                continue
            ocr = read[i]
            stats = dict(page.stats)
            if page.meta.get(TEXT_LAYER_KEY):
                stats["ocr_agreement"] = round(agreement(page.meta[TEXT_LAYER_KEY], ocr.text), SCORE_DECIMALS)
            meta.update(
                engine=ocr.engine, confidence=round(float(ocr.confidence), SCORE_DECIMALS),
                lines=[{"text": line.text, "box": list(line.box), "confidence": round(float(line.confidence), SCORE_DECIMALS)}
                       for line in ocr.lines],
            )
            yield dataclasses.replace(page, transcript=ocr.text, meta=meta, stats=stats)

    def get_metrics_namespace(self) -> str:
        return "curation.ocr"


def _page_pixels(image: ImageData) -> Image.Image:
    return Image.open(io.BytesIO(image.data)).convert("RGB")


class QAHandler(_GeneratorHandler):
    """Writes question-answer pairs about each page's transcription with a generator, checked
    and retried (:func:`synth.qa.write_qa`); ``meta["qa"]`` says how it went."""

    def run_inference(
        self, batch: Sequence[DocumentPage], model: Generator, inference_args: dict[str, Any] | None = None
    ) -> Iterable[DocumentPage]:
        from synth.qa import write_qa

        outcomes = write_qa([(page.id, page.transcript) for page in batch], model.generate, self._template,
                            self._settings, self._seed)
        provenance = {"model": self._spec.model, "prompt": self._template.id}
        for page, outcome in zip(batch, outcomes):
            meta = {**page.meta, "qa": outcome.as_meta(provenance)}
            yield dataclasses.replace(page, qa=list(outcome.pairs), meta=meta)

    def get_metrics_namespace(self) -> str:
        return "curation.qa"


class FrameCaptionHandler(_GeneratorHandler):
    """Describes the sampled frames of videos (:func:`synth.video_text.caption_windows`), a window
    of ``settings.window`` frames per request; ``meta["captions"]`` says how it went."""

    def run_inference(
        self, batch: Sequence[VideoClip], model: Generator, inference_args: dict[str, Any] | None = None
    ) -> Iterable[VideoClip]:
        from synth.video_text import Window, caption_windows

        size = self._settings.window
        spans = [(clip, start) for clip in batch for start in range(0, len(clip.frames), size)]
        windows = [
            Window(f"{clip.id}:{start}", tuple(f.image.data for f in clip.frames[start : start + size]),
                   tuple(f.t for f in clip.frames[start : start + size]))
            for clip, start in spans
        ]
        outcomes = caption_windows(windows, model.generate, self._template, self._settings, self._seed)
        found: dict[str, dict[int, str]] = {}
        failures: dict[str, list[str]] = {}
        for (clip, start), outcome in zip(spans, outcomes):
            found.setdefault(clip.id, {}).update({start + i: text for i, text in enumerate(outcome.texts)})
            if outcome.reason:
                failures.setdefault(clip.id, []).append(outcome.reason)
        for clip in batch:
            texts = found.get(clip.id, {})
            frames = [dataclasses.replace(f, caption=texts.get(i, "")) for i, f in enumerate(clip.frames)]
            reasons = failures.get(clip.id, [])
            meta = {**clip.meta, "captions": {
                "model": self._spec.model, "prompt": self._template.id, "window": size, "sees_images": model.sees_images,
                "described": sum(1 for f in frames if f.caption), "failed_windows": len(reasons),
                "reasons": {reason: reasons.count(reason) for reason in sorted(set(reasons))},
            }}
            yield dataclasses.replace(clip, frames=frames, meta=meta)

    def get_metrics_namespace(self) -> str:
        return "curation.frame_captions"


class VideoTextHandler(_GeneratorHandler):
    """Writes each video's summary and QA pairs from its timestamped frame descriptions
    (:func:`synth.video_text.write_summaries`, :func:`synth.qa.write_qa`); ``meta["summary"]``
    and ``meta["qa"]`` say how they went."""

    def __init__(self, spec: GeneratorSpec, prompts: tuple[Any, Any], settings: tuple[Any, Any], seed: int = 0):
        super().__init__(spec, prompts, settings, seed)
        self._summary_prompt, self._qa_prompt = prompts
        self._summary_settings, self._qa_settings = settings

    def run_inference(
        self, batch: Sequence[VideoClip], model: Generator, inference_args: dict[str, Any] | None = None
    ) -> Iterable[VideoClip]:
        from synth.qa import write_qa
        from synth.video_text import write_summaries

        items = [(clip.id, clip.text) for clip in batch]
        summaries = write_summaries(items, model.generate, self._summary_prompt, self._summary_settings, self._seed)
        answers = write_qa(items, model.generate, self._qa_prompt, self._qa_settings, self._seed)
        for clip, summary, qa in zip(batch, summaries, answers):
            meta = {
                **clip.meta,
                "summary": {"model": self._spec.model, "prompt": self._summary_prompt.id, "reason": summary.reason,
                            "attempts": summary.attempts, "failures": list(summary.failures)},
                "qa": qa.as_meta({"model": self._spec.model, "prompt": self._qa_prompt.id}),
            }
            text = summary.texts[0] if summary.texts else ""
            yield dataclasses.replace(clip, summary=text, qa=list(qa.pairs), meta=meta)

    def get_metrics_namespace(self) -> str:
        return "curation.video_text"


def _failed_batch_rejects(failure: tuple[Any, Any], step: str, keyed: bool) -> Iterable[Reject]:
    batch, error = failure  # Beam hands back the failed batch as a list
    for element in batch if isinstance(batch, list) else [batch]:
        record = element[1] if keyed else element
        yield reject(record, step, "batch_error", dead_letter=True, detail=repr(error)[:500])


class RunModel(beam.PTransform):
    """Runs a Beam ``ModelHandler`` over batches; failed batches become dead letters.

    The handler loads its model once per worker process (RunInference shares it
    across the process's threads) and returns the records it was given, with
    their ``stats`` updated. With ``keyed``, elements are ``(key, record)`` pairs
    (the items of a fan-out) and come out as ``(key, output)``.
    """

    def __init__(self, handler: ModelHandler, step: str, keyed: bool = False):
        super().__init__()
        self._handler = KeyedModelHandler(handler) if keyed else handler
        self._step = step
        self._keyed = keyed

    def expand(self, records: beam.PCollection) -> Split:
        scored, failures = records | "Infer" >> RunInference(self._handler).with_exception_handling()
        rejects = failures.failed_inferences | "FailedBatches" >> beam.FlatMap(
            _failed_batch_rejects, self._step, self._keyed
        )
        return Split(scored, rejects)
