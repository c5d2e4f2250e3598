import io
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from curation.models.clip import (
    TINY_CONFIG_NAME,
    ClipModel,
    ClipSpec,
    RandomWeightsRefused,
    cpu_has_bf16_units,
    load_cached,
    resolve_precision,
)

TINY = ClipSpec(model=TINY_CONFIG_NAME, precision="fp32", batch_size=3)
TEXTS = ["a red square", "a photo of a dog", "green noise", "", "a long caption " * 20]


def make_images(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(7)
    sizes = [(64, 64), (100, 80), (50, 120), (33, 33), (200, 150)]
    return [
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        for w, h in (sizes[i % len(sizes)] for i in range(n))
    ]


@pytest.fixture(scope="module")
def tiny() -> ClipModel:
    return ClipModel.load(TINY)


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory) -> tuple[Path, ClipModel]:
    """A tiny model whose weights differ from the seeded init, saved as a state_dict."""
    model = ClipModel.load(TINY)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(123)
        for param in model._model.parameters():
            param.add_(0.05 * torch.randn(param.shape, generator=generator))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    torch.save(model._model.state_dict(), path)
    return path, model


def test_tiny_config_loads_with_random_weights(tiny):
    assert tiny.spec.weights_source() == "random-init"
    assert tiny.spec.uses_random_weights()
    assert tiny.image_size == 64
    assert tiny.embed_dim == 64
    assert tiny.preprocess(make_images(1)[0]).shape == (3, 64, 64)


def test_random_weights_refused_without_flag():
    with pytest.raises(RandomWeightsRefused, match="--clip-pretrained TAG_OR_PATH.*--allow-random-weights"):
        ClipModel.load(ClipSpec(model="ViT-B-32"))


def test_random_weights_are_announced_on_stderr_and_log(capfd, caplog):
    message = (
        f"WARNING: CLIP model {TINY_CONFIG_NAME} is running with RANDOM weights (random-init): "
        "scores are meaningless"
    )
    with caplog.at_level(logging.WARNING, logger="curation.models.clip"):
        ClipModel.load(TINY)
    assert message in capfd.readouterr().err
    assert [r.getMessage() for r in caplog.records if r.name == "curation.models.clip"] == [message]


def test_random_init_is_deterministic(tiny):
    torch.manual_seed(999)  # the caller's RNG state must not matter
    again = ClipModel.load(TINY)
    images = make_images(4)
    np.testing.assert_array_equal(again.embed_images(images), tiny.embed_images(images))
    np.testing.assert_array_equal(again.embed_texts(TEXTS), tiny.embed_texts(TEXTS))


def test_spec_reports_weights_source(tmp_path):
    assert ClipSpec(pretrained="laion2b_s34b_b79k").weights_source() == "open_clip:laion2b_s34b_b79k"
    assert ClipSpec(pretrained="gs://bucket/clip.pt").weights_source() == "checkpoint:gs://bucket/clip.pt"
    local = tmp_path / "weights"
    local.write_bytes(b"x")
    assert ClipSpec(pretrained=str(local)).weights_source() == f"checkpoint:{local}"


def test_spec_rejects_bad_settings():
    with pytest.raises(ValueError, match="precision"):
        ClipSpec(precision="fp16")
    with pytest.raises(ValueError, match="device"):
        ClipSpec(device="tpu")
    with pytest.raises(ValueError, match="batch_size"):
        ClipSpec(batch_size=0)


def test_local_checkpoint_loads_the_saved_weights(trained_checkpoint, tiny, capfd):
    path, saved = trained_checkpoint
    capfd.readouterr()
    loaded = ClipModel.load(ClipSpec(model=TINY_CONFIG_NAME, pretrained=str(path), precision="fp32"))
    assert "RANDOM" not in capfd.readouterr().err
    assert loaded.spec.weights_source() == f"checkpoint:{path}"
    images = make_images(4)
    np.testing.assert_allclose(loaded.embed_images(images), saved.embed_images(images), atol=1e-6)
    np.testing.assert_allclose(loaded.embed_texts(TEXTS), saved.embed_texts(TEXTS), atol=1e-6)
    assert not np.allclose(loaded.embed_images(images), tiny.embed_images(images), atol=1e-3)


def test_remote_checkpoint_loads_through_opener(trained_checkpoint):
    path, saved = trained_checkpoint
    blobs = {"mem://models/tiny.pt": path.read_bytes()}
    opened = []

    def opener(p: str) -> io.BytesIO:
        opened.append(p)
        return io.BytesIO(blobs[p])

    spec = ClipSpec(model=TINY_CONFIG_NAME, pretrained="mem://models/tiny.pt", precision="fp32")
    loaded = ClipModel.load(spec, opener=opener)
    assert opened == ["mem://models/tiny.pt"]
    assert spec.weights_source() == "checkpoint:mem://models/tiny.pt"
    np.testing.assert_allclose(loaded.embed_texts(TEXTS), saved.embed_texts(TEXTS), atol=1e-6)


def test_remote_checkpoint_without_opener_fails():
    spec = ClipSpec(model=TINY_CONFIG_NAME, pretrained="mem://models/missing.pt")
    with pytest.raises(FileNotFoundError, match="no opener"):
        ClipModel.load(spec)


def test_embeddings_are_normalised_float32(tiny):
    images = make_images(5)
    image_emb = tiny.embed_images(images)
    text_emb = tiny.embed_texts(TEXTS)
    assert image_emb.shape == (5, 64) and image_emb.dtype == np.float32
    assert text_emb.shape == (len(TEXTS), 64) and text_emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(image_emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(text_emb, axis=1), 1.0, atol=1e-5)
    assert tiny.embed_images([]).shape == (0, 64)


def test_chunked_batches_match_one_by_one(tiny):
    images = make_images(7)  # batch_size 3: chunks of 3, 3, 1
    batched = tiny.embed_images(images)
    single = np.concatenate([tiny.embed_images([image]) for image in images])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    texts_batched = tiny.embed_texts(TEXTS)
    texts_single = np.concatenate([tiny.embed_texts([text]) for text in TEXTS])
    np.testing.assert_allclose(texts_batched, texts_single, atol=1e-5)


def test_similarity_and_pair_scores(tiny):
    images = make_images(3)
    image_emb = tiny.embed_images(images)
    text_emb = tiny.embed_texts(TEXTS)
    sim = tiny.similarity(image_emb, text_emb)
    assert sim.shape == (3, len(TEXTS))
    np.testing.assert_allclose(sim, image_emb @ text_emb.T, atol=1e-6)
    np.testing.assert_allclose(tiny.similarity(3 * image_emb, text_emb), sim, atol=1e-6)
    pairs = tiny.score_pairs(images, TEXTS[:3])
    np.testing.assert_allclose(pairs, np.diag(sim), atol=1e-5)
    with pytest.raises(ValueError, match="3 images but 2 texts"):
        tiny.score_pairs(images, TEXTS[:2])


def test_bf16_embeddings_stay_close_to_fp32(tiny):
    bf16 = ClipModel.load(ClipSpec(model=TINY_CONFIG_NAME, precision="bf16"))
    assert bf16.precision == "bf16"
    images = make_images(3)
    out = bf16.embed_images(images)
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert np.all(np.sum(out * tiny.embed_images(images), axis=1) > 0.98)


def test_auto_precision_follows_hardware():
    assert resolve_precision("auto", "cuda") == "bf16"
    assert resolve_precision("auto", "cpu") == ("bf16" if cpu_has_bf16_units() else "fp32")
    assert resolve_precision("fp32", "cuda") == "fp32"


def test_cpu_bf16_detection_reads_flags(tmp_path):
    amx = tmp_path / "amx"
    amx.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 amx_bf16 amx_tile\n")
    avx2 = tmp_path / "avx2"
    avx2.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\n")
    assert cpu_has_bf16_units(str(amx))
    assert not cpu_has_bf16_units(str(avx2))
    assert not cpu_has_bf16_units(str(tmp_path / "missing"))


def test_load_cached_loads_once_per_spec():
    spec = ClipSpec(model=TINY_CONFIG_NAME, batch_size=5)
    first = load_cached(spec)
    assert load_cached(ClipSpec(model=TINY_CONFIG_NAME, batch_size=5)) is first
    assert load_cached(ClipSpec(model=TINY_CONFIG_NAME, batch_size=6)) is not first


class RecordingTokenizer:
    """open_clip's tokenizer, recording the texts it is given."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.seen = []

    def __call__(self, texts):
        self.seen.extend(texts)
        return self.tokenizer(texts)

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)


def test_tokenize_cuts_long_texts_before_the_tokenizer_without_changing_a_token(tiny, monkeypatch):
    texts = [
        "a red square",
        "",
        "the " * 74,  # exactly fills the context with its end-of-text token
        "the " * 400,  # cut once
        "information community university " * 100,  # long words: the first cut is too short, cut again
        "x" * 3000,  # no whitespace to cut at: tokenized whole
        "Über die Brücke, café crème — “quoted” … " * 300,
        "  spaced   out \n text " * 200,
    ]
    whole = tiny._tokenizer(texts)
    recording = RecordingTokenizer(tiny._tokenizer)
    monkeypatch.setattr(tiny, "_tokenizer", recording)
    assert torch.equal(tiny.tokenize(texts), whole)
    cut = {text: max((len(s) for s in recording.seen if text.startswith(s)), default=0) for text in texts}
    assert cut["the " * 400] < 700 and cut["  spaced   out \n text " * 200] < 700
    assert 700 < cut["information community university " * 100] < len("information community university " * 100)
    assert cut["x" * 3000] == 3000
    assert all(len(seen) < 2500 for seen in recording.seen if not seen.startswith("x"))


def test_embed_texts_encodes_each_distinct_row_once_and_stops_after_its_end_of_text(tiny):
    shapes = []
    hook = tiny._model.token_embedding.register_forward_hook(lambda module, args, out: shapes.append(args[0].shape))
    long_a = "the river runs under an old stone bridge " * 12 + "and ends here."
    long_b = "the river runs under an old stone bridge " * 12 + "and ends somewhere else entirely."
    texts = ["a red square", "A  RED square", "a photo of a dog", "a red square", long_a, long_b, "green noise"]
    try:
        got = tiny.embed_texts(texts)
    finally:
        hook.remove()
    # lower-cased, whitespace-collapsed duplicates and texts equal in the 75 tokens CLIP reads are one row each;
    # rows by length with start and end: green noise 4, a red square 5, a photo of a dog 7, the long ones 77;
    # rounded up to 16 positions, the three short rows run together, the long one alone.
    assert [tuple(shape) for shape in shapes] == [(3, 16), (1, 77)]
    with torch.inference_mode():
        whole = torch.nn.functional.normalize(tiny._model.encode_text(tiny._tokenizer(texts)), dim=-1).numpy()
    np.testing.assert_allclose(got, whole, atol=1e-5)
    assert np.array_equal(got[0], got[1]) and np.array_equal(got[0], got[3]) and np.array_equal(got[4], got[5])
    assert tiny.embed_texts([]).shape == (0, 64)


def test_embed_texts_runs_rows_of_one_length_together_up_to_batch_size(tiny):
    shapes = []
    hook = tiny._model.token_embedding.register_forward_hook(lambda module, args, out: shapes.append(args[0].shape))
    try:
        tiny.embed_texts([f"cat number {word}" for word in ("one", "two", "three", "four", "five", "six", "seven")])
    finally:
        hook.remove()
    assert len(shapes) == 3 and all(rows <= 3 and length == 16 for rows, length in shapes)  # batch_size 3
    assert sum(rows for rows, _ in shapes) == 7


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_text_embeds_the_same_whatever_else_is_in_the_call(precision):
    # Runners batch differently; a text's embedding must not change with its company beyond the last bits
    # of a float32 product (which the rounded scores hide), or shards differ. In bf16 a pass run to another
    # length would move it by about 1e-3.
    model = ClipModel.load(ClipSpec(model=TINY_CONFIG_NAME, precision=precision, batch_size=4))
    alone = model.embed_texts(["green noise"])
    crowd = ["the river runs under an old stone bridge at night " * 3, "a photo of a dog", "cat", "green noise",
             "a red square on a white wall next to a blue door"]
    np.testing.assert_allclose(model.embed_texts(crowd)[3], alone[0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(model.embed_texts(crowd[2:4])[1], alone[0], rtol=0, atol=1e-6)
