import pytest

from curation.models.generator import GenerationRequest
from curation.records import CaptionPair, ImageData
from synth.captions import (
    DEFAULT_PROMPT,
    TEXT_ONLY_PROMPT,
    Attempt,
    Outcome,
    PromptTemplate,
    RetryPolicy,
    clean_generation,
    decide,
    retry_seed,
    rewrite_request,
)

ALT = "Eiffel Tower at night, Paris 2019"


def pair(text=ALT, image=True):
    data = ImageData(sha256="0" * 64, phash="0" * 16, width=4, height=4, format="jpeg", data=b"jpeg-bytes")
    return CaptionPair(id="p1", source="s", url="http://127.0.0.1/x.jpg", text=text, image=data if image else None)


# Prompt templates


def test_default_prompt_loads_by_id_with_version_in_id():
    template = PromptTemplate.load(DEFAULT_PROMPT)
    assert (template.name, template.version, template.id) == ("caption_rewrite", 1, "caption_rewrite_v1")
    assert template.sees_image
    assert template.intent


def test_render_fills_the_placeholder_and_collapses_whitespace():
    system, user = PromptTemplate.load(DEFAULT_PROMPT).render("  Eiffel   Tower\n at night,  Paris 2019 ")
    assert "Alt text: Eiffel Tower at night, Paris 2019\n" in user
    assert "{alt_text}" not in user
    assert system and system == system.strip() and user == user.strip()


def test_render_leaves_braces_in_the_alt_text_alone():
    _, user = PromptTemplate.load(DEFAULT_PROMPT).render("Poster {2019} for {name}")
    assert "Alt text: Poster {2019} for {name}" in user


@pytest.mark.parametrize("version", [1, 2])
def test_text_only_prompts_never_claim_to_see_the_image(version):
    template = PromptTemplate.load(f"caption_rewrite_text_only_v{version}")
    assert not template.sees_image
    system, user = template.render(ALT)
    assert ALT in user
    for claim in ("Here is an image", "visible", "you see", "shown here"):
        assert claim not in system and claim not in user
    assert "name" in user and "number" in user, "the prompt asks to keep the alt text's facts"


def test_the_default_text_only_prompt_is_the_newest():
    assert PromptTemplate.load(TEXT_ONLY_PROMPT).id == "caption_rewrite_text_only_v2"


def test_load_from_a_path(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("name: short\nversion: 3\nsystem: Be brief.\nuser: 'Rewrite: {alt_text}'\n")
    template = PromptTemplate.load(path)
    assert template.id == "short_v3"
    assert template.render("a cat") == ("Be brief.", "Rewrite: a cat")
    assert PromptTemplate.load(str(path)) == template


@pytest.mark.parametrize(
    "text, message",
    [
        ("name: x\nversion: 1\nsystem: s\nuser: no placeholder\n", "lacks {alt_text}"),
        ("name: x\nversion: 0\nsystem: s\nuser: '{alt_text}'\n", "positive integer"),
        ("name: x\nversion: 1\nsystem: s\nuser: '{alt_text}'\ncolour: red\n", "unknown keys \\['colour'\\]"),
        ("name: x\nversion: 1\nuser: '{alt_text}'\n", "missing keys \\['system'\\]"),
        ("- a list\n", "expected a mapping"),
    ],
)
def test_parse_rejects_malformed_prompts(text, message):
    with pytest.raises(ValueError, match=message):
        PromptTemplate.parse(text)


def test_unknown_packaged_prompt():
    with pytest.raises(FileNotFoundError, match="caption_rewrite_v99"):
        PromptTemplate.load("caption_rewrite_v99")


# Requests and seeds


def test_rewrite_request_with_image():
    template = PromptTemplate.load(DEFAULT_PROMPT)
    request = rewrite_request(pair(), template, seed=11, with_image=True)
    system, user = template.render(ALT)
    assert request == GenerationRequest(prompt=user, system=system, images=(b"jpeg-bytes",), seed=11)


def test_rewrite_request_text_only_sends_no_image():
    request = rewrite_request(pair(), PromptTemplate.load(TEXT_ONLY_PROMPT), seed=5, with_image=False)
    assert request.images == () and request.seed == 5 and ALT in request.prompt


@pytest.mark.parametrize(
    "prompt, with_image, has_image, message",
    [
        (DEFAULT_PROMPT, False, True, "for a model with the image"),
        (TEXT_ONLY_PROMPT, True, True, "for a model without the image"),
        (DEFAULT_PROMPT, True, False, "has no image"),
    ],
)
def test_rewrite_request_refuses_a_mismatch(prompt, with_image, has_image, message):
    with pytest.raises(ValueError, match=message):
        rewrite_request(pair(image=has_image), PromptTemplate.load(prompt), seed=1, with_image=with_image)


def test_retry_seed_is_deterministic_and_new():
    assert retry_seed(42, 0) == 42
    seeds = [retry_seed(42, attempt) for attempt in range(5)]
    assert len(set(seeds)) == 5
    assert seeds == [retry_seed(42, attempt) for attempt in range(5)]
    assert all(0 <= s < 2**31 for s in seeds[1:])
    assert retry_seed(43, 1) != retry_seed(42, 1)


# Retry-then-fallback policy


def test_first_passing_attempt_is_accepted():
    outcome = decide(ALT, [Attempt("A long caption.")], RetryPolicy())
    assert outcome == Outcome("accept", "A long caption.", True, ())
    assert outcome.kept


def test_failed_first_attempt_asks_for_a_retry():
    outcome = decide(ALT, [Attempt("I'm sorry.", "caption_refusal")], RetryPolicy())
    assert outcome == Outcome("retry", None, False, ("caption_refusal",))
    assert not outcome.kept


def test_retry_that_passes_is_accepted_with_the_earlier_failure():
    attempts = [(None, "timeout"), ("A long caption.", None)]
    assert decide(ALT, attempts, RetryPolicy()) == Outcome("accept", "A long caption.", True, ("timeout",))


def test_after_the_last_failure_the_alt_text_is_kept():
    attempts = [Attempt(None, "timeout"), Attempt("word word word", "caption_repetition")]
    outcome = decide(ALT, attempts, RetryPolicy(fallback="alt_text"))
    assert outcome == Outcome("fallback", ALT, False, ("timeout", "caption_repetition"))
    assert outcome.kept


def test_after_the_last_failure_the_pair_is_dropped():
    attempts = [Attempt("short", "caption_too_short"), Attempt("short", "caption_too_short")]
    outcome = decide(ALT, attempts, RetryPolicy(fallback="drop"))
    assert outcome == Outcome("drop", None, False, ("caption_too_short", "caption_too_short"))
    assert not outcome.kept


def test_single_attempt_policy_falls_back_at_once():
    assert decide(ALT, [(None, "timeout")], RetryPolicy(max_attempts=1)).action == "fallback"


def test_decide_needs_an_attempt_and_policy_is_validated():
    with pytest.raises(ValueError, match="at least one attempt"):
        decide(ALT, [], RetryPolicy())
    with pytest.raises(ValueError, match="fallback must be one of"):
        RetryPolicy(fallback="keep")
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


# Cleaning


@pytest.mark.parametrize(
    "raw, cleaned",
    [
        ("A dog runs on the beach.", "A dog runs on the beach."),
        ('  "A dog runs on the beach."  ', "A dog runs on the beach."),
        ("“A dog runs on the beach.”", "A dog runs on the beach."),
        ('"A dog runs on the beach', "A dog runs on the beach"),
        ('"Big" and "small" dogs play.', '"Big" and "small" dogs play.'),
        ("Caption: A dog runs on the beach.", "A dog runs on the beach."),
        ("**Detailed caption:** A dog runs on the beach.", "A dog runs on the beach."),
        ("Sure! Here's a caption for the image:\n\n\"A dog runs.\"\n\nIt keeps every fact.", "A dog runs."),
        ("Here is a more descriptive caption.\nA dog runs on the beach.", "A dog runs on the beach."),
        ("Here is the Eiffel Tower at 10:30 pm, lit in gold.", "Here is the Eiffel Tower at 10:30 pm, lit in gold."),
        ("OK Computer cover art, a blurred highway.", "OK Computer cover art, a blurred highway."),
        ("# A dog\n\nis *very* **happy** on the `beach`.", "A dog"),
        ("- A map of Europe in 1914.\n- It shows", "A map of Europe in 1914."),
        ("```\nA bowl of ramen.\n```", "A bowl of ramen."),
        ("A dog  runs\non the beach.", "A dog runs on the beach."),
        ("A red bicycle leans on a wall. The wall is old and", "A red bicycle leans on a wall."),
        ("Dr. J. Smith speaks in Berlin. Behind him is a", "Dr. J. Smith speaks in Berlin."),
        ("A view of St. Paul's Cathedral at dusk with", "A view of St. Paul's Cathedral at dusk with"),
        ("A price tag of 3.50 euros on a", "A price tag of 3.50 euros on a"),
        ("A dog runs (on the beach.) Then it", "A dog runs (on the beach.)"),
        ("", ""),
        ("Caption:", ""),
    ],
)
def test_clean_generation(raw, cleaned):
    assert clean_generation(raw) == cleaned


def test_clean_generation_removes_inline_markdown():
    assert clean_generation("A *very* **happy** dog on the `beach`.") == "A very happy dog on the beach."
