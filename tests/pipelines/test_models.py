"""The page CLIP handler with a tiny CLIP whose similarities the test controls."""

import io

import numpy as np
from PIL import Image

from curation.images import normalize_image
from curation.models.clip import ClipSpec
from curation.records import InterleavedDoc, Segment
from pipelines.models import ClipPageHandler

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
