from curation.text_dedup import (
    drop_paragraphs, exact_key, normalize_exact, paragraph_key, paragraph_keys, paragraph_losers, split_paragraphs,
)


def test_exact_key_ignores_whitespace_and_unicode_forms_only():
    assert exact_key("Hello   world\n") == exact_key("Hello world")
    assert exact_key("ﬁne day") == exact_key("fine day")  # NFKC ligature
    assert exact_key("Hello world") != exact_key("hello world")
    assert normalize_exact("  a \t b\n\nc ") == "a b c"


def test_paragraphs_are_non_empty_lines():
    text = "First para.\n\n  \nSecond.\n\n\n  Third.  "
    assert split_paragraphs(text) == ["First para.", "Second.", "Third."]
    assert paragraph_key("Subscribe  NOW") == paragraph_key("subscribe now")
    assert len(paragraph_keys("A.\n\nB.\n\na.")) == 2


def test_paragraph_kept_only_in_first_document_when_common_enough():
    assert paragraph_losers(["d3", "d1", "d2", "d1"], min_docs=3) == ["d2", "d3"]
    assert paragraph_losers(["d3", "d1"], min_docs=3) == []


def test_drop_paragraphs_keeps_the_rest_in_order():
    text = "Intro.\nSubscribe to our newsletter!\nBody text."
    key = paragraph_key("Subscribe to our newsletter!")
    assert drop_paragraphs(text, {key}) == "Intro.\nBody text."
    assert drop_paragraphs(text, set()) == text
