"""``curate captions``: LAION-style parquet -> images -> alt texts rewritten by a small generative model -> shards.

The recipe: the download steps of ``curate pairs`` (read -> caption -> dedup ->
fetch -> image_quality [stage ``images``]) -> rewrite (generate, check, retry
once with another seed, then keep the alt text alone or drop) [stage
``rewrite``] and, when ``score_clip`` is on, clip_margin (a synthetic caption
whose CLIP score falls more than a margin below the alt text's gets the same
fallback). Pairs that kept their alt text are counted as fallbacks of the step
that decided it, and held to the fallback budget.

Each sample: the image, ``txt`` = the synthetic caption (or the alt text where
the fallback kept it), ``json`` = alt text, caption source, scores, prompt and
model. The manifest names the generator (model, revision, settings) and says
whether the model saw the images.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from apache_beam.io.filesystems import FileSystems

from curation.budgets import FailureBudgets
from curation.config import ConfigError
from curation.fetch import FetchSettings
from curation.images import ImageSettings
from curation.models.clip import ClipSpec
from curation.models.generator import GeneratorSpec, generator_sees_images
from curation.models.nsfw import NsfwSpec
from curation.readers import PairColumns
from curation.records import CaptionPair, Reject, reject
from curation.tokens import TokenSettings
from filters.caption import CaptionFilter
from filters.caption_checks import CaptionCheckSettings, CaptionClipMarginCheck
from filters.image_quality import ImageQualityFilter
from filters.nsfw import NsfwFilter
from manifests.samples import caption_pair_sample
from manifests.shards import ShardSettings
from pipelines.executor import runner
from pipelines.registry import GENERATOR_FLAGS, PipelineCommand, check_clip_weights, check_generator_flags
from pipelines.pairs import DownloadSettings, download_steps, nsfw_step
from pipelines.recipe import Model, Recipe, Samples, model_entry, without
from synth.captions import (
    DEFAULT_PROMPT,
    TEXT_ONLY_PROMPT,
    Outcome,
    REWRITE_KEY,
    SOURCE_KEY,
    PromptTemplate,
    RetryPolicy,
    final_caption,
    with_outcome,
)

@dataclass(frozen=True)
class CaptionsFilters:
    """The judgments before the rewrite; ``null`` switches one off."""

    caption: CaptionFilter | None = CaptionFilter()
    image: ImageQualityFilter | None = ImageQualityFilter()
    nsfw: NsfwFilter | None = NsfwFilter()


@dataclass(frozen=True)
class RewriteSettings:
    """How alt texts are rewritten.

    Attributes:
        prompt: prompt id or path for a generator that is shown the image.
        text_only_prompt: prompt id or path for one that is not (it never claims to see the image).
        seed: the run's sampling seed; each pair derives its own from it.
        policy: attempts per pair and what happens after the last failure.
        checks: the output checks (``null`` skips one).
    """

    prompt: str = DEFAULT_PROMPT
    text_only_prompt: str = TEXT_ONLY_PROMPT
    seed: int = 0
    policy: RetryPolicy = RetryPolicy()
    checks: CaptionCheckSettings = CaptionCheckSettings()


@dataclass(frozen=True)
class CaptionsConfig:
    """Everything ``curate captions`` can be told; every key can be set in YAML or with ``--set``.

    ``score_clip: true`` adds the CLIP margin check (image-caption score against the alt text's).
    """

    dataset: str = "captions"
    score_clip: bool = False
    columns: PairColumns = PairColumns()
    fetch: FetchSettings = FetchSettings()
    download: DownloadSettings = DownloadSettings()
    image: ImageSettings = ImageSettings()
    filters: CaptionsFilters = CaptionsFilters()
    generator: GeneratorSpec = GeneratorSpec()
    rewrite: RewriteSettings = RewriteSettings()
    nsfw: NsfwSpec = NsfwSpec()
    clip: ClipSpec = ClipSpec()
    tokens: TokenSettings = TokenSettings()
    shards: ShardSettings = ShardSettings()
    budgets: FailureBudgets = FailureBudgets()


def _apply_outcome(item: tuple[CaptionPair, Outcome], provenance: dict[str, Any]) -> CaptionPair | Reject:
    pair, outcome = item
    if outcome.kept:
        return with_outcome(pair, outcome, provenance)
    reason = outcome.failures[-1] if outcome.failures else "rewrite_failed"
    return reject(pair, "rewrite", reason, detail=", ".join(outcome.failures))


def _rewrite_fallback(pair: CaptionPair) -> str | None:
    return None if pair.meta.get(SOURCE_KEY) == "synthetic" else "fallback_alt_text"


def _judge_clip_margin(pair: CaptionPair, check: CaptionClipMarginCheck, policy: RetryPolicy) -> CaptionPair | Reject:
    verdict = check(pair)
    if verdict.keep or pair.meta.get(SOURCE_KEY) != "synthetic":
        return pair
    failures = tuple(pair.meta[REWRITE_KEY]["failures"]) + (verdict.reason,)
    if policy.fallback == "drop":
        return reject(pair, "clip_margin", verdict.reason)
    provenance = {k: v for k, v in pair.meta[REWRITE_KEY].items() if k != "failures"}
    return with_outcome(pair, Outcome("fallback", pair.text, False, failures), provenance)


def _clip_margin_fallback(pair: CaptionPair) -> str | None:
    """A pair whose synthetic caption this step replaced by its alt text (its last failure is the margin)."""
    failures = pair.meta.get(REWRITE_KEY, {}).get("failures", [])
    fell_back = pair.meta.get(SOURCE_KEY) != "synthetic" and failures[-1:] == [CaptionClipMarginCheck.name]
    return "fallback_alt_text" if fell_back else None


def captioned_sample(pair: CaptionPair, tokenizer: Any, resolution: str = "auto") -> Any:
    """A rewritten pair as a caption-pair sample whose ``txt`` is the final caption and whose
    ``json`` keeps the alt text."""
    meta = {**pair.meta, "alt_text": pair.text}
    return caption_pair_sample(dataclasses.replace(pair, text=final_caption(pair), meta=meta), tokenizer, resolution)


def generator_entry(spec: GeneratorSpec, sees_images: bool, prompt: str) -> dict[str, Any]:
    """The manifest's ``models`` entry for the rewriter: name, weights, settings, and what it saw
    (the manifest adds how many of its captions were kept)."""
    seen = "the image and the alt text" if sees_images else "the alt text but not the image"
    settings = {k: v for k, v in spec.describe().items() if k != "model"}
    return model_entry(spec, "caption_rewriter", **settings, prompt=prompt, sees_images=sees_images,
                       note=f"shown {seen} of each pair")


def _rewrite_step(config: CaptionsConfig, sees_images: bool) -> Model:
    from pipelines.models import RewriteHandler  # imports torch: only when a model runs

    template = PromptTemplate.load(
        config.rewrite.prompt if sees_images else config.rewrite.text_only_prompt, opener=FileSystems.open
    )
    if template.sees_image != sees_images:
        raise ConfigError(f"prompt {template.id} is written for sees_image={template.sees_image}, "
                          f"but the generator sees_images={sees_images}")
    provenance = {"model": config.generator.model, "prompt": template.id, "saw_image": sees_images}
    return Model(
        name="rewrite", handler=RewriteHandler(config.generator, template, config.rewrite),
        entry=generator_entry(config.generator, sees_images, template.id),
        then=lambda item: _apply_outcome(item, provenance), fallback=_rewrite_fallback, stage="rewrite",
        carried=lambda pair: pair.meta.get(SOURCE_KEY) == "synthetic",
    )


def _clip_margin_step(config: CaptionsConfig) -> Model | None:
    if not config.score_clip:
        return None
    from pipelines.models import ClipCaptionHandler  # imports torch: only when CLIP runs

    check = config.rewrite.checks.clip_margin or CaptionClipMarginCheck()
    policy = config.rewrite.policy
    return Model(
        name="clip_margin", handler=ClipCaptionHandler(config.clip), entry=model_entry(config.clip, "clip"),
        then=lambda pair: _judge_clip_margin(pair, check, policy), fallback=_clip_margin_fallback,
    )


def recipe(config: CaptionsConfig) -> Recipe:
    """The captions recipe. Whether the generator sees images is known before the job starts:
    an endpoint may be shown them; a transformers model is inspected without loading weights."""
    sees_images = generator_sees_images(config.generator, FileSystems.open)
    return Recipe(
        record_type=CaptionPair,
        steps=without([*download_steps(config), nsfw_step(config), _rewrite_step(config, sees_images),
                       _clip_margin_step(config)]),
        output=Samples(captioned_sample, config.tokens),
        config=config,
    )


run = runner(recipe)


COMMAND = PipelineCommand(
    name="captions",
    help="LAION-style parquet -> images with alt texts rewritten into long captions by a small model",
    description="Read LAION-style parquet, fetch and filter the images (quality, open_nsfw safety) as `curate pairs` does, then "
    "rewrite each alt text into a longer descriptive caption with a generative model (transformers "
    "from a local or Beam-filesystem directory, including a GGUF file, or an OpenAI-compatible "
    "endpoint such as vLLM, SGLang or TGI), check every caption (length, repetition loops, refusals, "
    "language, alt-text names and numbers kept, no invented names, dates or numbers, coverage of the alt "
    "text's content words, and with score_clip a CLIP margin), retry a failed one "
    "once with another seed, then keep the alt text alone or drop the pair "
    "(rewrite.policy.fallback); more fallbacks than budgets.fallback fails the run. Writes "
    "OUTPUT/shards/*.tar (image, txt = caption, json = alt text, scores, prompt and model), "
    "OUTPUT/manifest.json and OUTPUT/rejects/*.parquet. Stages: images, rewrite.",
    config=CaptionsConfig,
    recipe=recipe,
    flags=GENERATOR_FLAGS,
    check=check_generator_flags,
    before_run=check_clip_weights,
)
