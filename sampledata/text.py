"""Generated language data with planted structure, for tests and demos of ``curate text``.

Documents are English prose on a few topics (so embeddings cluster by topic),
long and clean enough to pass the quality filters, plus planted cases: exact
copies, near copies (a few words edited), a boilerplate paragraph repeated in
many documents, and documents each filter must drop.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

TOPICS = {
    "cooking": ["onion", "garlic", "skillet", "recipe", "butter", "oven", "flour", "sauce", "kitchen", "pepper",
                "simmer", "dough", "basil", "roast", "broth"],
    "astronomy": ["telescope", "galaxy", "orbit", "planet", "nebula", "comet", "star", "eclipse", "asteroid",
                  "observatory", "moon", "spectrum", "quasar", "meteor", "cosmos"],
    "football": ["striker", "goalkeeper", "penalty", "stadium", "league", "referee", "midfield", "match",
                 "tackle", "coach", "season", "header", "defender", "corner", "trophy"],
    "finance": ["dividend", "portfolio", "interest", "inflation", "bond", "equity", "budget", "mortgage",
                "investor", "market", "savings", "currency", "pension", "loan", "revenue"],
}
_ADJECTIVES = ["careful", "bright", "quiet", "steady", "early", "patient", "simple", "famous", "heavy", "gentle",
               "curious", "modern", "ancient", "strange", "honest", "rapid", "narrow", "generous", "silent", "bold",
               "clever", "distant", "fragile", "golden", "humble", "lively", "proud", "rare", "sudden", "warm"]
_NOUNS = ["family", "friend", "teacher", "village", "morning", "journey", "window", "garden", "letter", "river",
          "question", "evening", "student", "neighbour", "story", "afternoon", "city", "winter", "house", "crowd"]
_VERBS = ["described", "admired", "changed", "followed", "noticed", "prepared", "remembered", "explained",
          "discovered", "carried", "watched", "shared", "imagined", "questioned", "welcomed", "measured",
          "praised", "studied", "reached", "returned"]
_DETERMINERS = ["the", "the", "a", "this", "that", "every", "our", "their"]
_PREPOSITIONS = ["with", "of", "to", "near", "after", "before", "during", "behind", "beyond", "without"]
BOILERPLATE = "Subscribe to our newsletter to receive the latest stories from our writers every single week."


@dataclass
class TextCorpus:
    """A generated corpus and what was planted in it.

    Attributes:
        docs: ``{"id": ..., "text": ...}`` objects, in file order.
        topic: corpus id -> topic of every on-topic document.
        exact_copies: corpus ids of planted exact copies (each has an original in the corpus).
        near_copies: ``(original id, copy id)`` pairs.
        far_pairs: ``(a, b)`` same-topic pairs that must both survive.
        boilerplate_docs: corpus ids whose text contains :data:`BOILERPLATE`.
        bad: corpus id -> the filter step that must drop it.
    """

    docs: list[dict] = field(default_factory=list)
    topic: dict[str, str] = field(default_factory=dict)
    exact_copies: list[str] = field(default_factory=list)
    near_copies: list[tuple[str, str]] = field(default_factory=list)
    far_pairs: list[tuple[str, str]] = field(default_factory=list)
    boilerplate_docs: list[str] = field(default_factory=list)
    bad: dict[str, str] = field(default_factory=dict)

    def jsonl(self) -> bytes:
        return "".join(json.dumps(d) + "\n" for d in self.docs).encode("utf-8")


def _sentence(rng: np.random.Generator, topic_words: list[str]) -> str:
    def pick(words: list[str]) -> str:
        return words[rng.integers(len(words))]

    nouns = topic_words + _NOUNS
    words = [pick(_DETERMINERS), pick(_ADJECTIVES), pick(topic_words), pick(_VERBS), pick(_DETERMINERS),
             pick(nouns), pick(_PREPOSITIONS), pick(_DETERMINERS), pick(_ADJECTIVES), pick(nouns), "and",
             pick(_VERBS), "the", pick(topic_words)]
    return " ".join(words).capitalize() + "."


def _paragraph(rng: np.random.Generator, words: list[str], sentences: int) -> str:
    return " ".join(_sentence(rng, words) for _ in range(sentences))


def topic_document(rng: np.random.Generator, topic: str, paragraphs: int = 3) -> str:
    """A clean English document about ``topic``: paragraphs of four sentences."""
    return "\n\n".join(_paragraph(rng, TOPICS[topic], 4) for _ in range(paragraphs))


def edit_words(rng: np.random.Generator, text: str, edits: int) -> str:
    """Replaces ``edits`` words spread over the text (a near copy)."""
    words = text.split(" ")
    for position in np.linspace(5, len(words) - 5, edits).astype(int):
        words[position] = "remarkably"
    return " ".join(words)


def make_text_corpus(per_topic: int = 12, seed: int = 0) -> TextCorpus:
    """A corpus of ``per_topic`` documents per topic plus planted duplicates and bad documents."""
    rng = np.random.default_rng(seed)
    corpus = TextCorpus()

    def add(doc_id: str, text: str) -> None:
        corpus.docs.append({"id": doc_id, "text": text, "url": f"https://example.test/{doc_id}"})

    for topic in TOPICS:
        for i in range(per_topic):
            doc_id = f"{topic}-{i}"
            text = topic_document(rng, topic)
            if i < 2:  # boilerplate in several documents of every topic
                text = f"{text}\n\n{BOILERPLATE}"
                corpus.boilerplate_docs.append(doc_id)
            add(doc_id, text)
            corpus.topic[doc_id] = topic
    originals = [d for d in corpus.docs if d["id"].endswith("-3")]
    for original in originals:
        copy_id = f"{original['id']}-exact"
        add(copy_id, original["text"].replace(". ", ".  ", 2))  # differs in whitespace only
        corpus.exact_copies.append(copy_id)
        near_id = f"{original['id']}-near"
        add(near_id, edit_words(rng, original["text"], 2))
        corpus.near_copies.append((original["id"], near_id))
    corpus.far_pairs = [(f"{topic}-4", f"{topic}-5") for topic in TOPICS]
    add("bad-short", "Too short to be a document.")
    corpus.bad["bad-short"] = "gopher_quality"
    add("bad-french", "\n\n".join(
        "Le chat dort sur la table de la cuisine pendant que nous preparons le repas du soir avec les enfants."
        " Il fait beau et la maison est calme, alors nous restons dehors jusqu'a la nuit tombee." for _ in range(4)))
    corpus.bad["bad-french"] = "gopher_repetition"  # judged in French, its stop words pass; its repeats do not
    add("bad-spam", "\n".join(["Buy the cheap tickets now and get the best price with our offer today."] * 30))
    corpus.bad["bad-spam"] = "gopher_repetition"
    return corpus
