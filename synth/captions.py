"""Synthetic captions: prompts, requests, output cleaning and the retry-then-fallback policy.

A small generative model rewrites a pair's alt text (``CaptionPair.text``) into a
longer descriptive caption. The pieces here are pure; the pipeline wires them:

1. :meth:`PromptTemplate.load` a versioned prompt (``synth/prompts/<id>.yaml``);
2. :func:`rewrite_request` builds a :class:`GenerationRequest` per pair, attempt
   ``i`` using ``retry_seed(seed, i)``;
3. :func:`clean_generation` tidies what came back, and the checks of
   ``filters.caption_checks`` judge it;
4. :func:`decide` turns the attempts so far into an :class:`Outcome`: accept the
   caption, retry with another seed, or give up, keeping the alt text alone
   (``fallback="alt_text"``) or dropping the pair (``fallback="drop"``).

A prompt file holds ``name``, ``version``, ``sees_image`` (whether the prompt
speaks of an image the model is shown), ``intent`` (a note for people),
``system`` and ``user``. ``{alt_text}`` in ``user`` is the only placeholder;
other braces are literal. A released version is never edited: a change is a new
file with the next version, so each caption's prompt id names its exact text.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import yaml

from curation.models.generator import GenerationRequest
from curation.records import SYNTHETIC_CAPTION_KEY

DEFAULT_PROMPT = "caption_rewrite_v1"
TEXT_ONLY_PROMPT = "caption_rewrite_text_only_v2"
PLACEHOLDER = "{alt_text}"
FALLBACKS = ("alt_text", "drop")
_PROMPT_KEYS = ("name", "version", "sees_image", "intent", "system", "user")


@dataclass(frozen=True)
class PromptTemplate:
    """A versioned prompt for rewriting alt texts.

    Attributes:
        name: the prompt's name, e.g. ``caption_rewrite``.
        version: its version, a positive integer.
        system: the system message.
        user: the user message, holding ``{alt_text}``.
        sees_image: True when the prompt speaks of an image the model is shown.
        intent: what the prompt is for, for people reading it.

    A subclass for another task sets ``placeholder`` (the slot ``user`` must hold)
    and renders its own inputs.
    """

    placeholder: ClassVar[str] = PLACEHOLDER
    name: str
    version: int
    system: str
    user: str
    sees_image: bool = True
    intent: str = ""

    def __post_init__(self) -> None:
        if self.placeholder not in self.user:
            raise ValueError(f"prompt {self.name!r}: the user message lacks {self.placeholder}")
        if not isinstance(self.version, int) or self.version < 1:
            raise ValueError(f"prompt {self.name!r}: version must be a positive integer, got {self.version!r}")

    @property
    def id(self) -> str:
        """The prompt's id, name and version: ``caption_rewrite_v1``."""
        return f"{self.name}_v{self.version}"

    @classmethod
    def load(cls, name_or_path: str | Path, opener: Callable[[str], Any] | None = None) -> PromptTemplate:
        """Loads a prompt by id from the packaged ``synth/prompts`` or from a YAML file.

        Args:
            name_or_path: a packaged prompt's id (``caption_rewrite_v1``), or the
                path of a YAML file (anything ending in ``.yaml``/``.yml`` or
                holding a path separator).
            opener: opens a path for reading in binary mode (``FileSystems.open`` for
                ``gs://`` and other Beam filesystems); local files need none.

        Raises:
            ValueError: on a missing or unknown key, or a packaged file whose
                name and version do not spell its id.
            FileNotFoundError: when there is no such prompt.
        """
        source = str(name_or_path)
        if source.endswith((".yaml", ".yml")) or "/" in source or "\\" in source:
            if opener is None:
                return cls.parse(Path(source).read_text(encoding="utf-8"), source)
            with opener(source) as handle:
                return cls.parse(handle.read().decode("utf-8"), source)
        resource = importlib.resources.files("synth").joinpath("prompts", f"{source}.yaml")
        if not resource.is_file():
            raise FileNotFoundError(f"no packaged prompt {source!r} (synth/prompts/{source}.yaml)")
        template = cls.parse(resource.read_text(encoding="utf-8"), source)
        if template.id != source:
            raise ValueError(f"packaged prompt {source!r} declares name and version of {template.id!r}")
        return template

    @classmethod
    def parse(cls, text: str, source: str = "<string>") -> PromptTemplate:
        """Builds a prompt from the text of a prompt file; ``source`` names it in errors."""
        data = yaml.safe_load(text)
        if not isinstance(data, dict):
            raise ValueError(f"prompt {source}: expected a mapping")
        unknown = sorted(set(data) - set(_PROMPT_KEYS))
        missing = sorted({"name", "version", "system", "user"} - set(data))
        if unknown or missing:
            raise ValueError(f"prompt {source}: unknown keys {unknown}, missing keys {missing}")
        return cls(**data)

    def render(self, alt_text: str) -> tuple[str, str]:
        """The ``(system, user)`` messages for one alt text, its whitespace collapsed."""
        return self.system.strip(), self.user.strip().replace(self.placeholder, " ".join(alt_text.split()))


def rewrite_request(pair: Any, template: PromptTemplate, seed: int, with_image: bool) -> GenerationRequest:
    """The generation request rewriting ``pair.text``.

    Args:
        pair: a ``CaptionPair``; ``text`` is the alt text, ``image.data`` the encoded image.
        template: the prompt; its ``sees_image`` must equal ``with_image``, so that
            an image prompt never goes to a model without the image.
        seed: the sampling seed (``retry_seed(seed, attempt)`` for a retry).
        with_image: attach the image (the generator sees images).

    Raises:
        ValueError: on a prompt made for the other mode, or an image asked of a pair without one.
    """
    if template.sees_image != with_image:
        mode = "with" if template.sees_image else "without"
        raise ValueError(f"prompt {template.id} is written for a model {mode} the image")
    if with_image and pair.image is None:
        raise ValueError(f"pair {pair.id} has no image to send")
    system, user = template.render(pair.text or "")
    return GenerationRequest(prompt=user, system=system, images=(pair.image.data,) if with_image else (), seed=seed)


def retry_seed(seed: int, attempt: int) -> int:
    """The seed of attempt ``attempt`` (0 is the first try, which uses ``seed`` itself).

    Later attempts get a seed derived by hashing ``(seed, attempt)``: deterministic,
    in ``[0, 2**31)``, and never ``seed``.
    """
    if attempt == 0:
        return seed
    digest = hashlib.blake2b(f"{seed}:{attempt}".encode(), digest_size=4).digest()
    derived = int.from_bytes(digest, "big") & 0x7FFFFFFF
    return derived if derived != seed else derived ^ 1


@dataclass(frozen=True)
class RetryPolicy:
    """What to do when generated captions fail.

    Attributes:
        max_attempts: generations per pair, the first try included (2: one retry).
        fallback: after the last failure, ``alt_text`` keeps the pair with its alt
            text alone; ``drop`` drops it.
    """

    max_attempts: int = 2
    fallback: str = "alt_text"

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {', '.join(FALLBACKS)}, got {self.fallback!r}")


class Attempt(NamedTuple):
    """One generation and its judgment.

    Attributes:
        caption: the cleaned caption, or None when generation failed.
        reason: None when the caption passed the checks; else why not (a check's
            reason such as ``caption_refusal``, or the generation's, such as ``timeout``).
    """

    caption: str | None
    reason: str | None = None


@dataclass(frozen=True)
class Outcome:
    """The decision on a pair after its attempts so far.

    Attributes:
        action: ``accept`` (a synthetic caption passed), ``retry`` (generate again
            with the next seed), ``fallback`` (keep the alt text alone) or ``drop``.
        caption: the final caption: the synthetic one, the alt text, or None
            (``retry``, ``drop``).
        synthetic: True when ``caption`` was generated.
        failures: the reasons of the failed attempts, in order.
    """

    action: str
    caption: str | None
    synthetic: bool
    failures: tuple[str, ...]

    @property
    def kept(self) -> bool:
        """True when the pair goes on (with a synthetic caption or its alt text)."""
        return self.action in ("accept", "fallback")


def decide(alt_text: str, attempts: Sequence[Attempt], policy: RetryPolicy) -> Outcome:
    """Applies the retry-then-fallback policy to the attempts made so far.

    The first passing attempt is accepted. With none, another attempt is asked
    for while fewer than ``policy.max_attempts`` were made; then the policy's
    fallback applies.

    Args:
        alt_text: the pair's alt text, the fallback caption.
        attempts: the attempts so far, in order (at least one); plain
            ``(caption, reason)`` tuples do.
        policy: the retry policy.

    Raises:
        ValueError: when ``attempts`` is empty.
    """
    if not attempts:
        raise ValueError("decide needs at least one attempt")
    failures: list[str] = []
    for caption, reason in attempts:
        if reason is None:
            return Outcome("accept", caption, True, tuple(failures))
        failures.append(reason)
    if len(attempts) < policy.max_attempts:
        return Outcome("retry", None, False, tuple(failures))
    if policy.fallback == "alt_text":
        return Outcome("fallback", alt_text, False, tuple(failures))
    return Outcome("drop", None, False, tuple(failures))


_FENCE_LINE = re.compile(r"^\s*```[\w-]*\s*$", re.MULTILINE)
_LINE_MARK = re.compile(r"^[ \t]*(?:#{1,6}|[-*+•>]|\d+[.)])[ \t]+", re.MULTILINE)
_EMPHASIS = re.compile(r"(\*{1,3}|_{2,3})(?=\S)(.+?)(?<=\S)\1", re.DOTALL)
_PREAMBLE = re.compile(
    r"^(?:(?:sure|certainly|of course|okay|absolutely)[!.,]+\s*"
    r"|here(?:'s|’s| is| are)\b[^\n:]*:(?:\s+|$)"
    r"|here(?:'s|’s| is)\b[^\n.:]*\b(?:caption|description)\b[^\n.:]*(?:[.!]|\n)\s*"
    r"|(?:[\w-]+\s+){0,3}(?:caption|description)\s*:(?:\s+|$))",
    re.IGNORECASE,
)
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_QUOTES = {'"': '"', "“": "”", "‘": "’", "«": "»"}
_COMPLETE = re.compile(r"[.!?…][\"'”’»)\]]*$")
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’»)\]]*(?=\s)")
_WORD_BEFORE = re.compile(r"(\w+)$")
ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "prof", "st", "mt", "jr", "sr", "no", "vs", "ft"})


def clean_generation(text: str) -> str:
    """Tidies a generated caption into one plain paragraph.

    In order: removes markdown (code fences, headings, list and quote marks,
    emphasis, backticks); removes leading preambles ("Sure!", "Here is a
    caption:", "Caption:", "Detailed description:"); keeps the first paragraph
    (the prompts ask for one, and what follows a blank line is a note about the
    caption); collapses whitespace; strips enclosing quotes (or a lone opening
    one). Last, a caption cut by ``max_new_tokens`` loses its unfinished
    sentence: a text not ending in terminal punctuation is cut after its last
    sentence end (``.``, ``!``, ``?`` or ``…`` followed by a space, not after an
    initial or a title like "St."). Generation results carry no finish reason,
    so a missing final stop is the sign; a text with no complete sentence is
    kept whole and left to the length checks.

    Args:
        text: the generated text.

    Returns:
        The cleaned caption, possibly empty.
    """
    text = _FENCE_LINE.sub("", text).replace("`", "")
    text = _EMPHASIS.sub(r"\2", _LINE_MARK.sub("", text)).strip()
    previous = None
    while text != previous:
        previous = text
        text = _strip_quotes(_PREAMBLE.sub("", text, count=1).strip())
    paragraph = next((p for p in _PARAGRAPH_BREAK.split(text) if p.strip()), "")
    return _trim_unfinished(_strip_quotes(" ".join(paragraph.split())))


def _strip_quotes(text: str) -> str:
    """Removes quotes enclosing the whole text, or an opening quote never closed."""
    close = _QUOTES.get(text[:1])
    if close is None:
        return text
    inner = text[1:]
    if inner.endswith(close) and close not in inner[:-1] and text[0] not in inner[:-1]:
        return inner[:-1].strip()
    if close not in inner and text[0] not in inner:
        return inner.strip()
    return text


def _trim_unfinished(text: str) -> str:
    """Cuts a trailing unfinished sentence, when a complete one comes before it."""
    if not text or _COMPLETE.search(text):
        return text
    ends = [m.end() for m in _SENTENCE_END.finditer(text) if not _after_abbreviation(text, m.start())]
    return text[: ends[-1]] if ends else text


def _after_abbreviation(text: str, stop: int) -> bool:
    """True when the stop at ``stop`` ends an initial ("J.") or a title ("Dr.")."""
    word = _WORD_BEFORE.search(text[:stop])
    return word is not None and (len(word.group(1)) == 1 or word.group(1).lower() in ABBREVIATIONS)


SYNTHETIC_KEY = SYNTHETIC_CAPTION_KEY
SOURCE_KEY = "caption_source"
REWRITE_KEY = "rewrite"


def pair_seed(seed: int, pair_id: str) -> int:
    """The first-attempt seed of one pair: ``seed`` mixed with the pair's id, so pairs sample differently
    and a pair samples the same in every run, whatever batch it lands in."""
    digest = hashlib.blake2b(f"{seed}:{pair_id}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") & 0x7FFFFFFF


def rewrite_pairs(
    pairs: Sequence[Any],
    generate: Callable[[list[GenerationRequest]], list[Any]],
    template: PromptTemplate,
    judge: Callable[[Any], tuple[bool, str | None]],
    policy: RetryPolicy,
    seed: int = 0,
) -> list[tuple[Any, Outcome]]:
    """Rewrites the alt texts of a batch of pairs, retrying failures with new seeds.

    Each round sends every pair still pending to ``generate`` at once (so a
    batched or concurrent backend stays busy), cleans each text, writes it to
    ``meta["synthetic_caption"]`` and asks ``judge`` (the output checks) about
    it; :func:`decide` then accepts, retries or gives up.

    Args:
        pairs: ``CaptionPair``s; ``text`` is the alt text.
        generate: the generator's ``generate``: requests -> results (``ok``, ``text``, ``reason``).
        template: the prompt; it is sent with the image when ``template.sees_image``.
        judge: ``record -> (ok, reason)``, scores written into the record's ``stats``.
        policy: attempts per pair and the fallback.
        seed: the run's seed (see :func:`pair_seed`).

    Returns:
        Per pair, in order: the pair as judged last (its last caption in ``meta``,
        check scores in ``stats``) and its :class:`Outcome`.
    """
    judged = list(pairs)
    attempts: list[list[Attempt]] = [[] for _ in pairs]
    outcomes: list[Outcome | None] = [None] * len(pairs)
    pending = list(range(len(pairs)))
    round_ = 0
    while pending:
        requests = [
            rewrite_request(pairs[i], template, retry_seed(pair_seed(seed, pairs[i].id), round_), template.sees_image)
            for i in pending
        ]
        still_pending = []
        for i, result in zip(pending, generate(requests)):
            if result.ok:
                caption = clean_generation(result.text)
                judged[i] = dataclasses.replace(
                    pairs[i], meta={**pairs[i].meta, SYNTHETIC_KEY: caption}, stats=dict(pairs[i].stats)
                )
                ok, reason = judge(judged[i])
                attempts[i].append(Attempt(caption, None if ok else reason))
            else:
                attempts[i].append(Attempt(None, result.reason))
            outcome = decide(pairs[i].text, attempts[i], policy)
            if outcome.action == "retry":
                still_pending.append(i)
            else:
                outcomes[i] = outcome
        pending = still_pending
        round_ += 1
    return list(zip(judged, outcomes))


def with_outcome(pair: Any, outcome: Outcome, provenance: dict[str, Any]) -> Any:
    """The pair as it goes on: ``meta["caption_source"]`` is ``synthetic`` or ``alt_text``, the
    synthetic caption (when accepted) in ``meta["synthetic_caption"]``, and ``meta["rewrite"]``
    holds ``provenance`` (model, prompt) with the failures of the attempts."""
    meta = {key: value for key, value in pair.meta.items() if key != SYNTHETIC_KEY}
    if outcome.synthetic:
        meta[SYNTHETIC_KEY] = outcome.caption
    meta[SOURCE_KEY] = "synthetic" if outcome.synthetic else "alt_text"
    meta[REWRITE_KEY] = {**provenance, "failures": list(outcome.failures)}
    return dataclasses.replace(pair, meta=meta)


def final_caption(pair: Any) -> str:
    """The caption a shard carries: the synthetic one when accepted, else the alt text."""
    if pair.meta.get(SOURCE_KEY) == "synthetic":
        return pair.meta[SYNTHETIC_KEY]
    return pair.text
