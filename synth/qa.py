"""Synthetic question-answer pairs about a transcription (a document page, a video's captions).

The pieces mirror ``synth.captions`` and reuse it; the pipeline wires them:

1. :meth:`QAPromptTemplate.load` a versioned prompt (``synth/prompts/document_qa_v1.yaml``),
   whose ``user`` holds ``{transcription}`` and ``{n_pairs}``;
2. :func:`qa_request` builds a :class:`GenerationRequest` per transcription, cut to
   ``max_transcription_chars`` (the prompt then says it was cut);
3. :func:`parse_qa` reads the JSON list that came back, and :func:`check_qa` keeps the pairs
   that pass: the shared output checks of ``filters.caption_checks`` (refusal, repetition,
   length), the answer grounded in the transcription, no duplicate question;
4. :func:`write_qa` runs a batch: a transcription whose attempt kept no pair is retried with
   another seed (``synth.captions.retry_seed``), then left without QA, with the reason.

Without a generator there is no QA: the pipeline records :data:`NO_GENERATOR` in the
manifest instead of calling anything here.
"""

from __future__ import annotations

import collections
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from curation.models.generator import GenerationRequest
from curation.records import QAPair
from filters.caption_checks import (
    FUNCTION_WORDS,
    NUMBER_WORDS,
    SYNTHETIC_KEY,
    CaptionLengthCheck,
    CaptionRefusalCheck,
    CaptionRepetitionCheck,
    fold,
    words,
)
from synth.captions import PromptTemplate, RetryPolicy, decide, pair_seed, retry_seed

DEFAULT_QA_PROMPT = "document_qa_v1"
N_PAIRS_PLACEHOLDER = "{n_pairs}"
TRUNCATION_NOTE = "[… the transcription is cut here]"
NO_GENERATOR = "no_generator"
TOO_SHORT = "transcription_too_short"
UNPARSABLE = "qa_unparsable"
NONE_KEPT = "qa_none_kept"

STOPWORDS = FUNCTION_WORDS | frozenset(
    "am been being do does did done has have had having not no yes so than then there here what which who "
    "whom whose when where why how also as if because while can could will would shall should may might must "
    "all any both each few more most other some such only own same very just too s t them him me us "
    "page document transcription".split()
)


class QAPromptTemplate(PromptTemplate):
    """A versioned QA prompt: ``user`` holds ``{transcription}`` and ``{n_pairs}``."""

    placeholder: ClassVar[str] = "{transcription}"

    def __post_init__(self) -> None:
        super().__post_init__()
        if N_PAIRS_PLACEHOLDER not in self.user:
            raise ValueError(f"prompt {self.name!r}: the user message lacks {N_PAIRS_PLACEHOLDER}")

    def render(self, transcription: str, n_pairs: int = 3) -> tuple[str, str]:  # type: ignore[override]
        """The ``(system, user)`` messages for one transcription; its lines are kept, their
        spaces collapsed, blank lines dropped."""
        lines = (" ".join(line.split()) for line in transcription.splitlines())
        text = "\n".join(line for line in lines if line)
        user = self.user.strip().replace(N_PAIRS_PLACEHOLDER, str(n_pairs)).replace(self.placeholder, text)
        return self.system.strip(), user


@dataclass(frozen=True)
class QASettings:
    """How QA pairs are written and checked (config section ``qa``).

    Attributes:
        n_pairs: pairs asked for per transcription.
        prompt: the prompt's id (``document_qa_v1``) or a YAML path.
        min_grounding: smallest share of an answer's content words found in the transcription
            (see :func:`grounding`).
        max_answer_words: most words of an answer.
        max_question_words: most words of a question.
        min_transcription_words: transcriptions with fewer words get no QA (and no request).
        max_transcription_chars: the transcription sent is cut to this many characters
            (SmolLM2 reads 8k tokens; a few thousand characters leave room for the answer).
        max_attempts: generations per transcription, the first included (2: one retry).
    """

    n_pairs: int = 3
    prompt: str = DEFAULT_QA_PROMPT
    min_grounding: float = 0.8
    max_answer_words: int = 40
    max_question_words: int = 40
    min_transcription_words: int = 20
    max_transcription_chars: int = 6000
    max_attempts: int = 2

    def __post_init__(self) -> None:
        if not 1 <= self.n_pairs <= 50:
            raise ValueError(f"qa n_pairs must be within 1..50, got {self.n_pairs}")
        if not 0.0 <= self.min_grounding <= 1.0:
            raise ValueError(f"qa min_grounding must be within 0..1, got {self.min_grounding}")
        for name in ("max_answer_words", "max_question_words", "max_transcription_chars", "max_attempts"):
            if getattr(self, name) < 1:
                raise ValueError(f"qa {name} must be positive, got {getattr(self, name)}")
        if self.min_transcription_words < 0:
            raise ValueError(f"qa min_transcription_words must be >= 0, got {self.min_transcription_words}")


def truncate_transcription(text: str, max_chars: int) -> tuple[str, bool]:
    """``text`` cut to at most ``max_chars`` characters at a word boundary, and whether it was cut."""
    if len(text) <= max_chars:
        return text, False
    cut = text[:max_chars]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    return (cut[:space] if space > max_chars // 2 else cut).rstrip(), True


def qa_request(
    transcription: str, settings: QASettings, template: QAPromptTemplate, seed: int
) -> GenerationRequest:
    """The request for ``settings.n_pairs`` pairs about ``transcription``.

    A transcription over ``settings.max_transcription_chars`` is cut at a word boundary and
    ends with :data:`TRUNCATION_NOTE`, so the model knows it reads a part.
    """
    text, truncated = truncate_transcription(transcription, settings.max_transcription_chars)
    if truncated:
        text = f"{text}\n{TRUNCATION_NOTE}"
    system, user = template.render(text, settings.n_pairs)
    return GenerationRequest(prompt=user, system=system, seed=seed)


class QAParseError(ValueError):
    """A generation that holds no well-formed list of QA pairs."""


def parse_qa(text: str) -> list[QAPair]:
    """The QA pairs of a generation: a JSON list of ``{"question": str, "answer": str}``.

    Tolerant of what surrounds the JSON (code fences, a preamble, trailing notes: the first
    ``[`` that starts a valid JSON value is read, up to that value's end) and of one bare
    object instead of a list; strict about its shape: every item is an object with string
    ``question`` and ``answer`` (other keys are ignored), or the whole generation fails.
    Whitespace inside each string is collapsed.

    Raises:
        QAParseError: when no JSON list or object is found, or an item is malformed.
    """
    decoder = json.JSONDecoder()
    value: Any = None
    for match in re.finditer(r"[\[{]", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, (list, dict)):
            break
        value = None
    if value is None:
        raise QAParseError("no JSON list of question-answer pairs")
    items = [value] if isinstance(value, dict) else value
    if not items:
        raise QAParseError("an empty list")
    pairs = []
    for position, item in enumerate(items):
        if not isinstance(item, dict):
            raise QAParseError(f"item {position} is a {type(item).__name__}, not an object")
        question, answer = item.get("question"), item.get("answer")
        if not isinstance(question, str) or not isinstance(answer, str):
            raise QAParseError(f"item {position} lacks a string question and answer")
        pairs.append(QAPair(question=" ".join(question.split()), answer=" ".join(answer.split())))
    return pairs


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def content_words(text: str) -> list[str]:
    """The content words of ``text``: :func:`~filters.caption_checks.words`, folded, stopwords
    removed, numbers kept (an English number word up to twenty counts as its digits)."""
    found = []
    for word in (fold(w) for w in words(text)):
        if word in NUMBER_WORDS:
            found.append(NUMBER_WORDS[word])
        elif word not in STOPWORDS:
            found.append(_stem(word))
    return found


def grounding(answer: str, transcription: str) -> float:
    """The share of the answer's content words found among the transcription's (a plural
    ``s`` ignored). An answer without any content word (a bare "yes") scores 0: nothing in
    it can be checked."""
    wanted = content_words(answer)
    if not wanted:
        return 0.0
    have = set(content_words(transcription))
    return sum(word in have for word in wanted) / len(wanted)


def question_key(question: str) -> tuple[str, ...]:
    """A question normalised for duplicates: its content words in order (all its folded words
    when it has no content word)."""
    return tuple(content_words(question)) or tuple(fold(w) for w in words(question))


@dataclass
class _Judged:
    """The record shape the shared output checks read: the generated text in ``meta``, the
    source text in ``text`` (a refusal phrase the source holds itself does not count)."""

    text: str
    meta: dict[str, Any]
    stats: dict[str, float] = field(default_factory=dict)


def shared_check(check: Any, generated: str, source: str, prefix: str = "qa") -> str | None:
    """One of the shared output checks of :mod:`filters.caption_checks` on ``generated`` text
    (``source``: the text it was written from); its reason, renamed ``<prefix>_...``, or None."""
    verdict = check(_Judged(source, {SYNTHETIC_KEY: generated}))
    return None if verdict.keep else verdict.reason.replace("caption_", f"{prefix}_", 1)


def check_qa(
    pairs: Sequence[QAPair], transcription: str, settings: QASettings
) -> tuple[list[QAPair], list[tuple[QAPair, str]]]:
    """Keeps the pairs that pass, in order.

    Per pair, the first failing check names it: ``qa_empty`` (a question or answer without
    words), ``qa_too_long`` (an answer over ``max_answer_words`` or a question over
    ``max_question_words``), ``qa_refusal`` (chat boilerplate in the question or answer),
    ``qa_repetition`` (a looping answer), ``qa_not_grounded`` (:func:`grounding` under
    ``min_grounding``), ``qa_duplicate_question`` (a question whose :func:`question_key` an
    earlier kept pair has).

    Returns:
        ``(kept, dropped)``: the kept pairs, and each dropped pair with its reason.
    """
    answer_length = CaptionLengthCheck(min_words=1, max_words=settings.max_answer_words, min_length_ratio=0.0)
    question_length = CaptionLengthCheck(min_words=1, max_words=settings.max_question_words, min_length_ratio=0.0)
    refusal, repetition = CaptionRefusalCheck(), CaptionRepetitionCheck()
    kept: list[QAPair] = []
    dropped: list[tuple[QAPair, str]] = []
    seen: set[tuple[str, ...]] = set()
    for pair in pairs:
        reason = (
            shared_check(question_length, pair.question, "")
            or shared_check(answer_length, pair.answer, "")
            or shared_check(refusal, f"{pair.question}\n{pair.answer}", transcription)
            or shared_check(repetition, pair.answer, "")
        )
        if reason is None and grounding(pair.answer, transcription) < settings.min_grounding:
            reason = "qa_not_grounded"
        if reason is None and question_key(pair.question) in seen:
            reason = "qa_duplicate_question"
        if reason is None:
            seen.add(question_key(pair.question))
            kept.append(pair)
        else:
            dropped.append((pair, reason))
    return kept, dropped


@dataclass(frozen=True)
class QAOutcome:
    """The QA of one transcription.

    Attributes:
        pairs: the kept pairs (empty when none).
        reason: None when pairs were kept; else why none: :data:`TOO_SHORT`, or the last
            attempt's failure (:data:`UNPARSABLE`, :data:`NONE_KEPT`, or the generation's
            reason such as ``timeout``).
        failures: the reasons of the failed attempts, in order.
        dropped: pairs dropped by :func:`check_qa` over all attempts, by reason.
        attempts: generations made.
        truncated: True when the transcription sent was cut.
    """

    pairs: tuple[QAPair, ...] = ()
    reason: str | None = None
    failures: tuple[str, ...] = ()
    dropped: dict[str, int] = field(default_factory=dict)
    attempts: int = 0
    truncated: bool = False

    def as_meta(self, provenance: dict[str, Any]) -> dict[str, Any]:
        """What a record's ``meta["qa"]`` holds: ``provenance`` (model, prompt) and this outcome
        (the pairs themselves go to the record's ``qa``)."""
        return {
            **provenance,
            "pairs": len(self.pairs),
            "reason": self.reason,
            "failures": list(self.failures),
            "dropped": dict(self.dropped),
            "attempts": self.attempts,
            "truncated": self.truncated,
        }


def write_qa(
    items: Sequence[tuple[str, str]],
    generate: Callable[[list[GenerationRequest]], list[Any]],
    template: QAPromptTemplate,
    settings: QASettings,
    seed: int = 0,
) -> list[QAOutcome]:
    """Writes QA pairs for a batch of transcriptions, retrying those that got none.

    Each round sends every transcription still pending to ``generate`` at once; each result is
    parsed (:func:`parse_qa`) and checked (:func:`check_qa`). An attempt that keeps at least
    one pair is accepted; one that keeps none is retried with the next seed
    (``retry_seed(pair_seed(seed, item_id), attempt)``: the same in every run and batch) until
    ``settings.max_attempts``, then the item gets no QA and the reason. Pairs past
    ``settings.n_pairs`` in a generation are ignored.

    Args:
        items: ``(item_id, transcription)`` per item (a page's id and transcript).
        generate: the generator's ``generate``: requests -> results (``ok``, ``text``, ``reason``).
        template: the QA prompt.
        settings: the QA settings.
        seed: the run's seed.

    Returns:
        One :class:`QAOutcome` per item, in order.
    """
    policy = RetryPolicy(max_attempts=settings.max_attempts, fallback="drop")
    outcomes: list[QAOutcome | None] = [None] * len(items)
    attempts: list[list[tuple[tuple[QAPair, ...] | None, str | None]]] = [[] for _ in items]
    dropped: list[collections.Counter[str]] = [collections.Counter() for _ in items]
    truncated = [len(text) > settings.max_transcription_chars for _, text in items]
    pending = []
    for i, (_, text) in enumerate(items):
        if len(words(text)) < max(settings.min_transcription_words, 1):
            outcomes[i] = QAOutcome(reason=TOO_SHORT, truncated=truncated[i])
        else:
            pending.append(i)
    round_ = 0
    while pending:
        requests = [
            qa_request(items[i][1], settings, template, retry_seed(pair_seed(seed, items[i][0]), round_))
            for i in pending
        ]
        still_pending = []
        for i, result in zip(pending, generate(requests)):
            attempts[i].append(_judge(result, items[i][1], settings, dropped[i]))
            outcome = decide("", attempts[i], policy)
            if outcome.action == "retry":
                still_pending.append(i)
                continue
            outcomes[i] = QAOutcome(
                pairs=tuple(outcome.caption or ()),
                reason=None if outcome.action == "accept" else outcome.failures[-1],
                failures=outcome.failures,
                dropped=dict(dropped[i]),
                attempts=len(attempts[i]),
                truncated=truncated[i],
            )
        pending = still_pending
        round_ += 1
    return outcomes  # type: ignore[return-value]


def _judge(
    result: Any, transcription: str, settings: QASettings, dropped: collections.Counter[str]
) -> tuple[tuple[QAPair, ...] | None, str | None]:
    """One attempt as ``(kept pairs, None)`` or ``(None, failure reason)``; drop reasons counted."""
    if not result.ok:
        return None, result.reason
    try:
        pairs = parse_qa(result.text)
    except QAParseError:
        return None, UNPARSABLE
    kept, rejected = check_qa(pairs[: settings.n_pairs], transcription, settings)
    dropped.update(reason for _, reason in rejected)
    return (tuple(kept), None) if kept else (None, NONE_KEPT)
