import json

import pytest

from curation.config import from_mapping
from curation.models.generator import GenerationRequest, GenerationResult
from curation.records import QAPair
from synth.captions import PromptTemplate, pair_seed, retry_seed
from synth.qa import (
    DEFAULT_QA_PROMPT,
    NONE_KEPT,
    TOO_SHORT,
    TRUNCATION_NOTE,
    UNPARSABLE,
    QAOutcome,
    QAParseError,
    QAPromptTemplate,
    QASettings,
    check_qa,
    content_words,
    grounding,
    parse_qa,
    qa_request,
    question_key,
    truncate_transcription,
    write_qa,
)

PAGE = (
    "Quarterly report of the harbour authority, 2023.\n"
    "Cargo volume rose by 12 percent to 4.1 million tonnes.\n"
    "The new crane on pier 7 entered service in March.\n"
    "Passenger traffic stayed flat at 830,000 travellers."
)
GOOD = [
    {"question": "By how much did cargo volume rise?", "answer": "By 12 percent, to 4.1 million tonnes."},
    {"question": "When did the new crane enter service?", "answer": "In March."},
    {"question": "Where is the new crane?", "answer": "On pier 7."},
]


@pytest.fixture(scope="module")
def template():
    return QAPromptTemplate.load(DEFAULT_QA_PROMPT)


def qa(question, answer):
    return QAPair(question=question, answer=answer)


# Prompt and settings


def test_prompt_is_versioned_and_text_only(template):
    assert (template.name, template.version, template.id) == ("document_qa", 1, "document_qa_v1")
    assert not template.sees_image and template.intent


def test_prompt_needs_both_placeholders(tmp_path):
    path = tmp_path / "qa.yaml"
    path.write_text("name: qa\nversion: 2\nsystem: s\nuser: 'Write pairs about {transcription}'\n")
    with pytest.raises(ValueError, match="lacks {n_pairs}"):
        QAPromptTemplate.load(str(path))
    path.write_text("name: qa\nversion: 2\nsystem: s\nuser: 'Write {n_pairs} pairs about {alt_text}'\n")
    with pytest.raises(ValueError, match="lacks {transcription}"):
        QAPromptTemplate.load(str(path))


def test_caption_prompts_still_need_their_own_placeholder():
    with pytest.raises(ValueError, match="lacks {alt_text}"):
        PromptTemplate(name="x", version=1, system="s", user="{transcription}")


def test_request_holds_the_transcription_lines_and_the_count(template):
    request = qa_request("Cargo   rose.\n\n  Crane on pier 7. ", QASettings(n_pairs=4), template, seed=11)
    assert isinstance(request, GenerationRequest) and request.images == () and request.seed == 11
    assert "<transcription>\nCargo rose.\nCrane on pier 7.\n</transcription>" in request.prompt
    assert "Write 4 question-answer pairs" in request.prompt
    assert '[{"question": "...", "answer": "..."}]' in request.prompt
    assert "{transcription}" not in request.prompt and "{n_pairs}" not in request.prompt
    assert request.system and TRUNCATION_NOTE not in request.prompt


def test_long_transcriptions_are_cut_at_a_word_and_say_so(template):
    text = " ".join(f"word{i}" for i in range(2000))
    cut, truncated = truncate_transcription(text, 100)
    assert truncated and len(cut) <= 100 and text.startswith(cut) and text[len(cut)] == " "
    assert truncate_transcription("short text", 100) == ("short text", False)
    request = qa_request(text, QASettings(max_transcription_chars=100), template, seed=0)
    assert TRUNCATION_NOTE in request.prompt and "word1999" not in request.prompt


def test_settings_load_from_config_and_refuse_bad_values():
    settings = from_mapping(QASettings, {"n_pairs": 5, "min_grounding": 0.5})
    assert (settings.n_pairs, settings.min_grounding, settings.prompt) == (5, 0.5, "document_qa_v1")
    with pytest.raises(ValueError, match="n_pairs"):
        QASettings(n_pairs=0)
    with pytest.raises(ValueError, match="min_grounding"):
        QASettings(min_grounding=1.5)
    with pytest.raises(ValueError, match="max_attempts"):
        QASettings(max_attempts=0)


# Parsing


def test_parse_plain_json():
    assert parse_qa(json.dumps(GOOD)) == [qa(p["question"], p["answer"]) for p in GOOD]


def test_parse_tolerates_fences_preambles_and_trailing_prose():
    text = "Sure! Here are the pairs:\n```json\n" + json.dumps(GOOD[:2], indent=2) + "\n```\nI hope this [helps]."
    assert [p.answer for p in parse_qa(text)] == ["By 12 percent, to 4.1 million tonnes.", "In March."]


def test_parse_accepts_one_bare_object_and_collapses_whitespace():
    assert parse_qa('{"question": " Where is\\n the crane? ", "answer": "On pier 7."}') == [
        qa("Where is the crane?", "On pier 7.")
    ]


def test_parse_skips_brackets_that_are_not_json():
    assert len(parse_qa("[Note] the pairs: " + json.dumps(GOOD))) == 3


@pytest.mark.parametrize(
    "text",
    [
        "",
        "I cannot write questions about this page.",
        "[",
        '[{"question": "Q?", "answer": "A"',  # cut by max_new_tokens
        "[]",
        '[{"question": "Q?"}]',
        '[{"question": "Q?", "answer": 7}]',
        '["Q?", "A"]',
        '[{"question": "Q?", "answer": "A"}, "stray"]',
        '"just a string"',
    ],
)
def test_parse_is_strict_about_shape(text):
    with pytest.raises(QAParseError):
        parse_qa(text)


# Checks


def test_content_words_drop_stopwords_and_keep_numbers():
    assert content_words("The crane on Pier 7 entered service in March, twelve tonnes") == [
        "crane", "pier", "7", "entered", "service", "march", "12", "tonne",
    ]


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("By 12 percent, to 4.1 million tonnes.", 1.0),
        ("In March.", 1.0),
        ("twelve percent", 1.0),  # number words count as their digits
        ("In April.", 0.0),
        ("By 15 percent.", 0.5),
        ("The crane on pier 7 was painted red.", 3 / 5),  # crane pier 7 / painted red
        ("Yes.", 0.0),  # nothing to check
    ],
)
def test_grounding_shares(answer, expected):
    assert grounding(answer, PAGE) == pytest.approx(expected)


def test_check_keeps_grounded_pairs_and_names_each_drop():
    pairs = [
        qa("When did the new crane enter service?", "In March."),
        qa("When did the crane start working?", "In April 2021 after long delays."),  # not in the page
        qa("When did the new crane enter service?", "March."),  # the same question again
        qa("What is the weather like?", "I'm sorry, I cannot answer that from the page."),
        qa("How many travellers?", "830,000 travellers " * 5),
        qa("How big was the cargo volume?", " ".join(["4.1 million tonnes"] * 20)),
        qa("", "In March."),
        qa("Where is the new crane?", "On pier 7."),
    ]
    kept, dropped = check_qa(pairs, PAGE, QASettings(max_answer_words=30))
    assert kept == [pairs[0], pairs[7]]
    assert [reason for _, reason in dropped] == [
        "qa_not_grounded",
        "qa_duplicate_question",
        "qa_refusal",
        "qa_repetition",
        "qa_too_long",
        "qa_empty",
    ]
    assert [pair for pair, _ in dropped] == pairs[1:7]


def test_duplicate_questions_are_found_after_normalisation():
    assert question_key("What is the cargo volume?") == question_key("what was THE cargo volume ?")
    pairs = [qa("What is the cargo volume?", "4.1 million tonnes"), qa("What was the Cargo Volume", "4.1 million tonnes")]
    kept, dropped = check_qa(pairs, PAGE, QASettings())
    assert kept == pairs[:1] and dropped == [(pairs[1], "qa_duplicate_question")]


def test_grounding_threshold_is_configurable():
    pair = qa("How much did cargo rise?", "By 15 percent.")
    assert check_qa([pair], PAGE, QASettings())[1] == [(pair, "qa_not_grounded")]
    assert check_qa([pair], PAGE, QASettings(min_grounding=0.5))[0] == [pair]


def test_refusal_phrases_the_page_holds_itself_do_not_count():
    page = PAGE + "\nThe director said: I cannot stress enough how busy the port was."
    pair = qa("What did the director say?", "I cannot stress enough how busy the port was.")
    assert check_qa([pair], page, QASettings())[0] == [pair]


# The batch with a fake generator


class FakeGenerator:
    """Returns canned outputs in order and records every request."""

    def __init__(self, outputs):
        self.outputs = list(outputs)
        self.requests = []

    def __call__(self, requests):
        self.requests.extend(requests)
        results = []
        for _ in requests:
            output = self.outputs.pop(0)
            results.append(output if isinstance(output, GenerationResult) else GenerationResult(text=output))
        return results


def test_write_qa_accepts_the_first_valid_generation(template):
    fake = FakeGenerator(["```json\n" + json.dumps(GOOD) + "\n```"])
    [outcome] = write_qa([("page-1", PAGE)], fake, template, QASettings(), seed=3)
    assert outcome == QAOutcome(pairs=tuple(qa(p["question"], p["answer"]) for p in GOOD), attempts=1)
    assert fake.requests[0].seed == pair_seed(3, "page-1")


def test_write_qa_retries_with_another_seed_then_gives_up_with_a_reason(template):
    ungrounded = json.dumps([{"question": "Who built the crane?", "answer": "Liebherr engineers from Austria."}])
    fake = FakeGenerator(["Sorry, no JSON here.", ungrounded])
    [outcome] = write_qa([("page-1", PAGE)], fake, template, QASettings(), seed=3)
    assert outcome.pairs == () and outcome.reason == NONE_KEPT
    assert outcome.failures == (UNPARSABLE, NONE_KEPT) and outcome.attempts == 2
    assert outcome.dropped == {"qa_not_grounded": 1}
    first, second = (request.seed for request in fake.requests)
    assert (first, second) == (pair_seed(3, "page-1"), retry_seed(pair_seed(3, "page-1"), 1))
    assert first != second


def test_write_qa_batches_rounds_and_keeps_order(template):
    fake = FakeGenerator(
        [
            GenerationResult(text="", ok=False, reason="timeout"),  # page a, round 1
            json.dumps(GOOD[:1]),  # page b, round 1
            json.dumps(GOOD[1:]),  # page a, round 2
        ]
    )
    items = [("a", PAGE), ("short", "Page 3"), ("b", PAGE)]
    outcomes = write_qa(items, fake, template, QASettings(), seed=0)
    assert [len(o.pairs) for o in outcomes] == [2, 0, 1]
    assert outcomes[0].failures == ("timeout",) and outcomes[0].reason is None and outcomes[0].attempts == 2
    assert outcomes[1] == QAOutcome(reason=TOO_SHORT)
    assert len(fake.requests) == 3  # the short page was never sent


def test_write_qa_keeps_at_most_n_pairs_and_records_truncation(template):
    long_page = PAGE + "\n" + "Appendix line about harbour dues and fees. " * 200
    fake = FakeGenerator([json.dumps(GOOD)])
    [outcome] = write_qa([("p", long_page)], fake, template, QASettings(n_pairs=2, max_transcription_chars=2000))
    assert len(outcome.pairs) == 2 and outcome.truncated
    assert TRUNCATION_NOTE in fake.requests[0].prompt
    meta = outcome.as_meta({"model": "fake", "prompt": template.id})
    assert meta == {
        "model": "fake",
        "prompt": "document_qa_v1",
        "pairs": 2,
        "reason": None,
        "failures": [],
        "dropped": {},
        "attempts": 1,
        "truncated": True,
    }


def test_seeds_are_deterministic_and_independent_of_the_batch(template):
    def seeds(items, seed):
        fake = FakeGenerator(["not json"] * 2 * len(items))
        write_qa(items, fake, template, QASettings(), seed=seed)
        return {(r.prompt, r.seed) for r in fake.requests}

    alone = seeds([("p1", PAGE)], 9)
    together = seeds([("p0", PAGE.upper()), ("p1", PAGE)], 9)
    assert alone == seeds([("p1", PAGE)], 9)
    assert alone <= together
    assert alone != seeds([("p1", PAGE)], 10)
