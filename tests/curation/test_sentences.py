import threading

import numpy as np
import pytest

from curation.records import Segment
from curation.sentences import normalize_whitespace, sentence_layout, sentence_spans, split_sentences


def rejoin(text, sentences):
    """Rebuilds the normalised text from sentences, checking only whitespace lies between them."""
    normalized = normalize_whitespace(text)
    out, pos = [], 0
    for sentence in sentences:
        found = normalized.find(sentence, pos)
        assert found >= 0 and normalized[pos:found].strip() == ""
        out.append(normalized[pos:found] + sentence)
        pos = found + len(sentence)
    assert pos == len(normalized)
    return "".join(out)


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "Dr. Smith went to Washington. He arrived at 3.5 p.m. on Monday, e.g. late! Was it fine? Yes.",
            ["Dr. Smith went to Washington.", "He arrived at 3.5 p.m. on Monday, e.g. late!", "Was it fine?", "Yes."],
        ),
        (
            "The U.S. economy grew 2.4% in Q3. Mr. Jones, Ph.D., disagreed. See Fig. 3 for details.",
            ["The U.S. economy grew 2.4% in Q3.", "Mr. Jones, Ph.D., disagreed.", "See Fig. 3 for details."],
        ),
        (
            "Version 2.0 was released. It costs $3.99 (approx.). Call at 10 a.m. tomorrow.",
            ["Version 2.0 was released.", "It costs $3.99 (approx.).", "Call at 10 a.m. tomorrow."],
        ),
        ("One sentence without a full stop", ["One sentence without a full stop"]),
    ],
)
def test_abbreviations_and_decimals(text, expected):
    assert split_sentences(text) == expected


def test_whitespace_is_normalised_and_nothing_else_changes():
    text = '  He said "Stop."   Then he left.\n\n  Next \t sentence here.  '
    sentences = split_sentences(text)
    assert sentences == ['He said "Stop."', "Then he left.", "Next sentence here."]
    assert " ".join(sentences) == normalize_whitespace(text)


@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
def test_blank_text_has_no_sentences(text):
    assert split_sentences(text) == []
    assert sentence_spans(normalize_whitespace(text)) == []


def test_non_english():
    assert split_sentences("Der Hund bellt. Die Katze schläft z.B. im Garten. Das ist gut.", "de") == [
        "Der Hund bellt.",
        "Die Katze schläft z.B. im Garten.",
        "Das ist gut.",
    ]
    chinese = "这是第一句。这是第二句！这是第三句？"
    assert split_sentences(chinese) == ["这是第一句。", "这是第二句！", "这是第三句？"]
    assert "".join(split_sentences(chinese)) == chinese
    assert split_sentences("Il fait beau. Je suis allé au marché... Puis rentré.", "xx") == [
        "Il fait beau.",
        "Je suis allé au marché...",
        "Puis rentré.",
    ]


def test_random_text_is_never_altered():
    rng = np.random.RandomState(0)
    pieces = np.array(
        ["Dr.", "e.g.", "3.5", "word", "!", "?", "...", "。", "\n", "(", ")", '"', "1.", "_", "∯", "♨", "x@y.org"]
    )
    for _ in range(300):
        words = rng.choice(pieces, rng.randint(0, 40))
        text = "".join(w + (" " if rng.rand() < 0.5 else "") for w in words)
        sentences = split_sentences(text)
        assert all(s and s == s.strip() for s in sentences)
        assert rejoin(text, sentences) == normalize_whitespace(text)


def test_deterministic_across_threads():
    text = "Dr. Who arrived. It was 3.5 km away! Nobody knew, e.g. the cat. " * 20
    expected = split_sentences(text)
    results = []
    threads = [threading.Thread(target=lambda: results.append(split_sentences(text))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 4


def test_layout_anchors_images_at_the_next_sentence():
    segments = [
        Segment("image", image_sha256="a"),
        Segment("text", text="First one. Second one."),
        Segment("image", image_sha256="b"),
        Segment("text", text="   "),
        Segment("image", image_sha256="c"),
        Segment("text", text="Third one."),
        Segment("image", image_sha256="d"),
    ]
    layout = sentence_layout(segments)
    assert layout.sentences == ("First one.", "Second one.", "Third one.")
    assert layout.sentence_segment == (1, 1, 5)
    assert layout.spans == ((0, 10), (11, 22), (0, 10))
    assert layout.image_segments == (0, 2, 4, 6)
    assert layout.anchors == (0, 2, 2, 3)
    assert [s.image_sha256 for s in layout.images] == ["a", "b", "c", "d"]
    assert layout.segments == tuple(segments)


def test_layout_of_empty_document():
    layout = sentence_layout([])
    assert layout.sentences == () and layout.anchors == () and layout.images == []
