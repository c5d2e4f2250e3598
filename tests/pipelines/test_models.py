"""The page CLIP handler: with a tiny CLIP whose similarities the test controls, and with a
tiny real CLIP against the full [images x sentences] matrix computed with the model directly."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from curation.images import normalize_image
from curation.models.clip import TINY_CONFIG_NAME, ClipModel, ClipSpec
from curation.records import InterleavedDoc, Segment
from pipelines.models import SCORE_DECIMALS, ClipPageHandler, decode_for_model
from synth.reorder import clip_inputs, page_score, reorder

COLOURS = {"red": (220, 20, 20), "blue": (20, 20, 220), "green": (20, 200, 20)}


class ColourClip:
    """Embeds an image as its dominant colour and a sentence as the colours it names."""

    image_size = 32

    def embed_images(self, images):
        vectors = [self._one_hot(min(COLOURS, key=lambda c: _distance(image, COLOURS[c]))) for image in images]
        return np.array(vectors).reshape(len(images), 3)

    def embed_texts(self, texts):
        vectors = [sum((self._one_hot(c) for c in COLOURS if c in text.lower()), np.zeros(3)) for text in texts]
        return np.array(vectors).reshape(len(texts), 3)

    def similarity(self, image_emb, text_emb):
        return np.asarray(image_emb) @ np.asarray(text_emb).T

    @staticmethod
    def _one_hot(colour):
        vector = np.zeros(3)
        vector[list(COLOURS).index(colour)] = 1.0
        return vector


def _distance(image, rgb):
    return float(np.abs(np.asarray(image.resize((4, 4))).astype(float) - rgb).mean())


def _image(colour):
    buffer = io.BytesIO()
    Image.new("RGB", (200, 160), COLOURS[colour]).save(buffer, format="PNG")
    return normalize_image(buffer.getvalue())


def _doc(doc_id, *parts):
    segments, images = [], []
    for part in parts:
        if part in COLOURS:
            image = _image(part)
            images.append(image)
            segments.append(Segment("image", image_sha256=image.sha256, image_url=f"https://x/{part}.png"))
        else:
            segments.append(Segment("text", text=part))
    return InterleavedDoc(id=doc_id, source="s", url=f"https://x/{doc_id}", segments=segments, images=images)


def test_images_move_to_better_earlier_sentences_across_a_batch():
    moving = _doc("a", "The red barn stood in the field. Cows grazed nearby.", "Waves hit the sea wall.", "red")
    staying = _doc("b", "blue", "A blue boat sailed past. The red flag waved.")
    no_better = _doc("c", "A quiet morning began.", "green", "The green hills rolled on.")
    handler = ClipPageHandler(ClipSpec(model="curation-tiny", allow_random_weights=True))
    out = {doc.id: doc for doc in handler.run_inference([moving, staying, no_better], ColourClip())}

    kinds = [(s.kind, s.text if s.kind == "text" else s.image_url) for s in out["a"].segments]
    assert kinds[0] == ("image", "https://x/red.png"), kinds
    assert [m["sentences_moved"] for m in out["a"].meta["image_moves"]] == [3]
    assert out["a"].stats["clip_score"] == 1.0

    assert out["b"].segments == staying.segments and out["b"].meta["image_moves"] == []
    assert out["c"].segments == no_better.segments and out["c"].meta["image_moves"] == []
    assert out["c"].stats["clip_score"] == 1.0
    texts = lambda doc: " ".join(s.text for s in doc.segments if s.kind == "text").split()  # noqa: E731
    assert all(texts(out[d.id]) == texts(d) for d in (moving, staying, no_better)), "text order never changes"


def test_a_page_without_sentences_has_no_score():
    handler = ClipPageHandler(ClipSpec(model="curation-tiny", allow_random_weights=True))
    (out,) = handler.run_inference([_doc("d", "red")], ColourClip())
    assert np.isnan(out.stats["clip_score"])


BOILERPLATE = ["Subscribe to our newsletter.", "All rights reserved.", "Share this page with your friends."]
TOPICS = [
    "A red barn stands at the edge of the field.", "The river runs under an old stone bridge.",
    "Two dogs chase a ball across the beach.", "The market sells fresh bread every morning.",
    "Snow covers the mountain pass in winter.", "A green tram crosses the square at noon.",
    "The museum opens a new wing for modern art.", "Children fly kites on the windy hill.",
]
LONG = "The committee discussed the annual report in detail " + "and then moved on to the next item " * 40 + "."


def _noise_image(seed):
    buffer = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="PNG")
    return normalize_image(buffer.getvalue())


def _page(doc_id, parts, missing=()):
    """A page from text parts and image seeds (ints); seeds in ``missing`` are referenced but not stored."""
    segments, images = [], {}
    for part in parts:
        if isinstance(part, int):
            image = _noise_image(part)
            if part not in missing:
                images[image.sha256] = image
            segments.append(Segment("image", image_sha256=image.sha256, image_url=f"https://x/{part}.png"))
        else:
            segments.append(Segment("text", text=part))
    return InterleavedDoc(id=doc_id, source="s", url=f"https://x/{doc_id}", segments=segments, images=list(images.values()))


def _generated_pages():
    """Pages that repeat boilerplate and sentences, share images, and pages whose text cannot matter."""
    rng = np.random.default_rng(3)
    pages = []
    for k in range(8):
        topics = [TOPICS[i] for i in rng.choice(len(TOPICS), 4, replace=False)]
        paragraphs = [" ".join(topics[:2]), topics[2] + " " + topics[0], topics[3], " ".join(BOILERPLATE)]
        parts = [paragraphs[0], paragraphs[1], 100 + k, paragraphs[2], 7, paragraphs[3]]  # image 7 on every page
        if k % 3 == 0:
            parts.insert(1, 200 + k)
        if k == 5:
            parts.insert(2, LONG)
        pages.append(_page(f"p{k}", parts))
    unscorable = [
        _page("text-only", ["Nothing here is ever shown next to a picture.", " ".join(BOILERPLATE)]),
        _page("image-lost", ["This sentence stands beside an image that was never stored.", 300], missing=(300,)),
        _page("no-text", [301]),
    ]
    return pages, unscorable


class CountingClip:
    """A CLIP model that records what it is asked to embed."""

    def __init__(self, model):
        self.model = model
        self.image_size = model.image_size
        self.texts, self.images = [], 0

    def embed_images(self, images):
        self.images += len(images)
        return self.model.embed_images(images)

    def embed_texts(self, texts):
        self.texts.extend(texts)
        return self.model.embed_texts(texts)

    def similarity(self, image_emb, text_emb):
        return self.model.similarity(image_emb, text_emb)


def _full_matrix(model, doc, margin):
    """The page score and reordering from every image against every sentence, embedded by the
    open_clip model itself (whole texts, the full context), one page at a time."""
    layout, row = clip_inputs(doc)
    sim = np.full((len(row), len(layout.sentences)), np.nan)
    present = [i for i, image in enumerate(row) if image is not None]
    if present and layout.sentences:
        with torch.inference_mode():
            pixels = torch.stack([model.preprocess(decode_for_model(row[i], model.image_size)) for i in present])
            image_emb = model._model.encode_image(pixels).numpy()
            text_emb = model._model.encode_text(model._tokenizer(list(layout.sentences))).numpy()
        sim[present] = np.round(model.similarity(image_emb, text_emb), SCORE_DECIMALS)
    segments, moves = reorder(layout, sim, margin)
    return round(page_score(sim), SCORE_DECIMALS), segments, moves


@pytest.fixture(scope="module")
def tiny_fp32():
    return ClipModel.load(ClipSpec(model=TINY_CONFIG_NAME, precision="fp32", batch_size=8))


@pytest.mark.parametrize("margin", [0.0, 0.05])
def test_scores_and_moves_equal_the_full_matrix_and_each_needed_text_is_embedded_once(tiny_fp32, margin):
    pages, unscorable = _generated_pages()
    batch = pages[:3] + unscorable + pages[3:]
    counting = CountingClip(tiny_fp32)
    handler = ClipPageHandler(ClipSpec(model=TINY_CONFIG_NAME, precision="fp32", batch_size=8), margin)
    out = {doc.id: doc for doc in handler.run_inference(batch, counting)}

    moved = 0
    for doc in pages:
        score, segments, moves = _full_matrix(tiny_fp32, doc, margin)
        got = out[doc.id]
        # fp32 sums taken in another order may cross a rounding boundary: one step of SCORE_DECIMALS at most
        assert got.stats["clip_score"] == pytest.approx(score, abs=10**-SCORE_DECIMALS), doc.id
        assert got.segments == segments, doc.id
        assert [(m["image"], m["from_anchor"], m["to_anchor"]) for m in got.meta["image_moves"]] == [
            (m.image, m.from_anchor, m.to_anchor) for m in moves
        ], doc.id
        for m, ref in zip(got.meta["image_moves"], moves):
            assert m["new_score"] == pytest.approx(ref.new_score, abs=10**-SCORE_DECIMALS)
            assert m["old_score"] == pytest.approx(ref.old_score, abs=10**-SCORE_DECIMALS)
        moved += len(moves)
    assert moved >= 3, "the comparison should cover moves"
    for doc in unscorable:
        assert np.isnan(out[doc.id].stats["clip_score"]) and out[doc.id].meta["image_moves"] == []
        assert out[doc.id].segments == doc.segments

    needed = {sentence for doc in pages for sentence in clip_inputs(doc)[0].sentences}
    sent = sum(len(clip_inputs(doc)[0].sentences) for doc in pages)
    assert len(counting.texts) == len(set(counting.texts)), "each distinct sentence once"
    assert set(counting.texts) == needed, "only the sentences of pages with a scorable image"
    assert len(counting.texts) < sent / 2
    distinct_images = {image.sha256 for doc in pages for image in doc.images}
    assert counting.images == len(distinct_images), "each image of a page with text once; none of the others"
