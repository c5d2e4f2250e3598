import json
import re

import numpy as np
import pytest

from curation.records import ImageData, InterleavedDoc, Segment
from curation.sentences import normalize_whitespace, sentence_layout
from synth.reorder import Move, clip_inputs, page_score, reorder


def img(name):
    return Segment("image", image_sha256=name, image_url=f"https://x.example/{name}.jpg")


def txt(text):
    return Segment("text", text=text)


def layout_of(*segments):
    return sentence_layout(list(segments))


def shape(segments):
    """Segments as short strings: image names and text."""
    return [s.image_sha256 if s.kind == "image" else s.text for s in segments]


def sim_for(layout, rows):
    """A similarity matrix that is 0 except for {(image, sentence): value}."""
    sim = np.zeros((len(layout.images), len(layout.sentences)))
    for (i, j), value in rows.items():
        sim[i, j] = value
    return sim


def test_image_moves_to_the_front_of_an_earlier_paragraph():
    layout = layout_of(txt("A cat sleeps. It purrs."), txt("Dogs bark."), img("cat"), txt("Birds sing."))
    assert layout.anchors == (3,)
    segments, moves = reorder(layout, sim_for(layout, {(0, 0): 0.9, (0, 3): 0.2}))
    assert shape(segments) == ["cat", "A cat sleeps. It purrs.", "Dogs bark.", "Birds sing."]
    assert segments[1] is layout.segments[0]
    assert moves == [
        Move(
            image=0,
            image_sha256="cat",
            image_url="https://x.example/cat.jpg",
            from_anchor=3,
            to_anchor=0,
            sentences_moved=3,
            old_score=0.2,
            new_score=0.9,
        )
    ]


def test_image_moving_mid_paragraph_splits_it():
    layout = layout_of(txt("Intro here.  A cat   sleeps. It purrs."), img("cat"), txt("Birds sing."))
    segments, moves = reorder(layout, sim_for(layout, {(0, 1): 0.8, (0, 3): 0.1}))
    assert shape(segments) == ["Intro here.", "cat", "A cat sleeps. It purrs.", "Birds sing."]
    assert [(m.from_anchor, m.to_anchor, m.sentences_moved) for m in moves] == [(3, 1, 2)]


def test_no_move_when_no_earlier_sentence_is_better():
    layout = layout_of(txt("One. Two."), img("a"), txt("Three."))
    sim = sim_for(layout, {(0, 0): 0.5, (0, 1): 0.6, (0, 2): 0.6})
    segments, moves = reorder(layout, sim)
    assert moves == [] and segments == list(layout.segments)


def test_never_moves_later_even_when_a_later_sentence_is_better():
    layout = layout_of(txt("One."), img("a"), txt("Two. Three. Four."))
    segments, moves = reorder(layout, sim_for(layout, {(0, 0): 0.1, (0, 1): 0.2, (0, 3): 0.99}))
    assert moves == [] and segments == list(layout.segments)


def test_image_before_all_text_never_moves():
    layout = layout_of(img("a"), txt("One. Two."), img("b"))
    assert layout.anchors == (0, 2)
    segments, moves = reorder(layout, sim_for(layout, {(0, 1): 1.0, (1, 1): 0.3}))
    assert moves == [] and segments == list(layout.segments)


def test_margin():
    layout = layout_of(txt("One."), txt("Two."), img("a"))
    sim = sim_for(layout, {(0, 0): 0.35, (0, 1): 0.3})
    assert reorder(layout, sim, margin=0.1)[1] == []
    assert [m.to_anchor for m in reorder(layout, sim, margin=0.01)[1]] == [0]
    with pytest.raises(ValueError):
        reorder(layout, sim, margin=-0.1)


def test_ties_go_to_the_nearest_earlier_sentence_and_equal_to_current_stays():
    layout = layout_of(txt("One. Two. Three."), img("a"), txt("Four."))
    segments, moves = reorder(layout, sim_for(layout, {(0, 0): 0.7, (0, 1): 0.7, (0, 3): 0.2}))
    assert [m.to_anchor for m in moves] == [1]
    assert shape(segments) == ["One.", "a", "Two. Three.", "Four."]
    tie = sim_for(layout, {(0, 0): 0.7, (0, 3): 0.7})
    assert reorder(layout, tie)[1] == []


def test_image_at_the_end_compares_with_the_last_sentence():
    layout = layout_of(txt("One. Two."), txt("Three."), img("end"))
    assert layout.anchors == (3,)
    segments, moves = reorder(layout, sim_for(layout, {(0, 1): 0.6, (0, 2): 0.5}))
    assert shape(segments) == ["One.", "end", "Two.", "Three."]
    assert (moves[0].old_score, moves[0].new_score, moves[0].from_anchor) == (0.5, 0.6, 3)
    # the last sentence itself wins: stays at the end
    assert reorder(layout, sim_for(layout, {(0, 1): 0.6, (0, 2): 0.6}))[1] == []


def test_two_images_keep_their_order_at_the_same_target():
    layout = layout_of(txt("One. Two."), img("stays"), txt("Three."), img("a"), img("b"), txt("Four."))
    assert layout.anchors == (2, 3, 3)
    sim = sim_for(layout, {(0, 2): 0.9, (1, 2): 0.8, (2, 2): 0.7})
    segments, moves = reorder(layout, sim)
    assert shape(segments) == ["One. Two.", "stays", "a", "b", "Three.", "Four."]
    assert [(m.image, m.to_anchor) for m in moves] == [(1, 2), (2, 2)]


def test_two_images_split_one_paragraph_twice():
    layout = layout_of(txt("One. Two. Three. Four."), img("a"), img("b"))
    segments, moves = reorder(layout, sim_for(layout, {(0, 2): 1.0, (1, 1): 1.0}))
    assert shape(segments) == ["One.", "b", "Two.", "a", "Three. Four."]
    assert [m.image for m in moves] == [0, 1]


def test_nan_rows_never_move_and_are_left_out_of_the_page_score():
    layout = layout_of(txt("One. Two."), img("a"), img("b"))
    sim = np.array([[np.nan, np.nan], [0.9, np.nan]])
    assert reorder(layout, sim)[1] == []
    assert page_score(sim) == pytest.approx(0.9)
    sim = np.array([[np.nan, 0.1], [0.9, 0.2]])
    assert [m.image for m in reorder(layout, sim)[1]] == [1]


def test_page_score():
    assert page_score(np.array([[0.1, 0.3], [0.5, 0.2]])) == pytest.approx(0.4)
    assert np.isnan(page_score(np.zeros((0, 3))))
    assert np.isnan(page_score(np.zeros((2, 0))))
    assert np.isnan(page_score(np.full((2, 2), np.nan)))
    with pytest.raises(ValueError):
        page_score(np.zeros(3))


def test_wrong_shape_is_rejected():
    layout = layout_of(txt("One. Two."), img("a"))
    with pytest.raises(ValueError, match="shape"):
        reorder(layout, np.zeros((1, 3)))


def test_moves_are_json_friendly():
    layout = layout_of(txt("One."), txt("Two."), img("a"))
    _, moves = reorder(layout, np.array([[np.float32(0.5), np.float32(0.25)]]))
    payload = json.loads(json.dumps([m.to_dict() for m in moves]))
    assert payload == [
        {
            "image": 0,
            "image_sha256": "a",
            "image_url": "https://x.example/a.jpg",
            "from_anchor": 2,
            "to_anchor": 0,
            "sentences_moved": 2,
            "old_score": 0.25,
            "new_score": 0.5,
        }
    ]


def random_document(rng):
    segments = []
    for k in range(rng.randint(0, 12)):
        if rng.rand() < 0.4:
            segments.append(img(f"i{k}"))
        else:
            words = [f"Sentence {k}.{s} here." for s in range(rng.randint(0, 4))]
            segments.append(txt("  ".join(words)))
    return segments


def test_property_random_matrices():
    rng = np.random.RandomState(0)
    for _ in range(300):
        layout = sentence_layout(random_document(rng))
        sim = rng.rand(len(layout.images), len(layout.sentences)).round(1)
        margin = rng.choice([0.0, 0.2])
        segments, moves = reorder(layout, sim, margin=margin)

        texts = lambda segs: normalize_whitespace(" ".join(s.text for s in segs if s.kind == "text"))
        assert texts(segments) == texts(layout.segments)
        assert sorted(s.image_sha256 for s in segments if s.kind == "image") == sorted(
            s.image_sha256 for s in layout.images
        )

        new = sentence_layout(segments)
        assert new.sentences == layout.sentences
        new_anchor = dict(zip((s.image_sha256 for s in new.images), new.anchors))
        by_image = {m.image: m for m in moves}
        for i, (segment, anchor) in enumerate(zip(layout.images, layout.anchors)):
            moved_to = new_anchor[segment.image_sha256]
            assert moved_to <= anchor
            if i in by_image:
                m = by_image[i]
                beside = min(anchor, len(layout.sentences) - 1)
                assert (m.from_anchor, m.to_anchor, m.sentences_moved) == (anchor, moved_to, anchor - moved_to)
                assert m.new_score == sim[i, moved_to] == sim[i, :anchor].max()
                assert moved_to == max(j for j in range(anchor) if sim[i, j] == m.new_score)
                assert m.old_score == sim[i, beside] and m.new_score > m.old_score + margin
            else:
                assert moved_to == anchor
                assert anchor == 0 or sim[i, :anchor].max() <= sim[i, min(anchor, len(layout.sentences) - 1)] + margin

        # images standing before the same sentence keep their original relative order
        order = [s.image_sha256 for s in segments if s.kind == "image"]
        for a in set(new.anchors):
            group = [s for s, x in zip(order, new.anchors) if x == a]
            assert group == sorted(group, key=[s.image_sha256 for s in layout.images].index)


class TinyClip:
    """A bag-of-words 'CLIP' whose similarities the test controls.

    Image i's embedding is the one-hot of its keyword; a sentence's embedding
    is the indicator of the vocabulary words it contains; the similarity is
    their dot product (1 when the sentence mentions the image's keyword).
    """

    def __init__(self, vocabulary, keywords):
        self.index = {w: k for k, w in enumerate(vocabulary)}
        self.keywords = keywords

    def embed_image(self, image):
        vector = np.zeros(len(self.index))
        vector[self.index[self.keywords[image.sha256]]] = 1.0
        return vector

    def embed_text(self, sentence):
        vector = np.zeros(len(self.index))
        for word in re.findall(r"\w+", sentence.lower()):
            if word in self.index:
                vector[self.index[word]] = 1.0
        return vector

    def __call__(self, images, sentences):
        image_vectors = np.array([self.embed_image(i) for i in images]).reshape(len(images), len(self.index))
        text_vectors = np.array([self.embed_text(s) for s in sentences]).reshape(len(sentences), len(self.index))
        return image_vectors @ text_vectors.T


def image_data(name):
    return ImageData(sha256=name, phash="0" * 16, width=1, height=1, format="png", data=b"")


def test_end_to_end_with_a_tiny_clip():
    doc = InterleavedDoc(
        id="d",
        source="s",
        url="https://x.example/page",
        segments=[
            txt("Our trip began at the harbour. Boats rocked in the wind. Dr. Lee met us there."),
            img("boat"),
            txt("Later we walked to the market."),
            img("market"),
            img("harbour"),
        ],
        images=[image_data("boat"), image_data("market"), image_data("harbour")],
    )
    clip = TinyClip(["harbour", "boats", "market"], {"boat": "boats", "market": "market", "harbour": "harbour"})

    layout, images = clip_inputs(doc)
    assert [i.sha256 for i in images] == ["boat", "market", "harbour"]
    sim = clip(images, layout.sentences)
    assert sim.shape == (3, 4)
    score = page_score(sim)
    doc.segments, moves = reorder(layout, sim)
    doc.meta["image_moves"] = [m.to_dict() for m in moves]

    assert score == 1.0
    assert shape(doc.segments) == [
        "harbour",
        "Our trip began at the harbour.",
        "boat",
        "Boats rocked in the wind. Dr. Lee met us there.",
        "Later we walked to the market.",
        "market",
    ]
    assert [(m["image_sha256"], m["from_anchor"], m["to_anchor"]) for m in doc.meta["image_moves"]] == [
        ("boat", 3, 1),
        ("harbour", 4, 0),
    ]


def test_clip_inputs_marks_missing_images():
    doc = InterleavedDoc("d", "s", "u", segments=[txt("Hi."), img("gone")], images=[])
    layout, images = clip_inputs(doc)
    assert layout.sentences == ("Hi.",) and images == [None]
