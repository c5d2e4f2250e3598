import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel, BertTokenizer

from curation.models.embedder import (
    DEFAULT_EMBEDDER,
    Embedder,
    EmbedderSpec,
    load_cached,
)

WORDS = "the a cat dog sat on mat ran fast slow red blue house river over under and".split()
TEXTS = ["the cat sat on the mat", "a dog", "", "red blue house over the river and under the mat " * 5, "cat"]
HIDDEN = 32
MAX_POSITIONS = 64


def save_tiny_bert(directory: Path) -> None:
    """A real BERT architecture with random weights, and its tokenizer, saved like a hub model."""
    directory.mkdir(parents=True, exist_ok=True)
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    BertTokenizer(vocab_file=str(vocab)).save_pretrained(directory)
    config = BertConfig(
        vocab_size=5 + len(WORDS),
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=MAX_POSITIONS,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(directory)


def reference_states(directory: Path, texts: list[str]) -> list[torch.Tensor]:
    """Token states of each text alone (no padding), computed with transformers directly."""
    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    model = AutoModel.from_pretrained(directory, local_files_only=True).eval()
    with torch.inference_mode():
        return [model(**tokenizer([text], return_tensors="pt")).last_hidden_state[0] for text in texts]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("tiny-bert")
    save_tiny_bert(directory)
    return directory


@pytest.fixture(scope="module")
def minilm() -> Embedder:
    return load_cached(EmbedderSpec())


def test_bundled_minilm_gives_normalised_384d_embeddings(minilm):
    assert minilm.spec.model == DEFAULT_EMBEDDER
    assert minilm.spec.weights_source().startswith(f"package:{DEFAULT_EMBEDDER}==")
    assert minilm.spec.model_dir().name == "model"
    assert (minilm.dim, minilm.pooling, minilm.max_tokens) == (384, "mean", 256)
    emb = minilm.embed(["A man is eating food.", "Someone is having a meal.", "The stock market fell sharply."])
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    paraphrase, unrelated = emb[0] @ emb[1], emb[0] @ emb[2]
    assert paraphrase > 0.5 > unrelated + 0.3


def test_load_cached_loads_once(minilm):
    assert load_cached(EmbedderSpec()) is minilm


def test_plain_hf_directory_loads_with_mean_pooling(tiny_dir):
    embedder = Embedder.load(EmbedderSpec(model=str(tiny_dir), batch_size=2))
    assert embedder.spec.weights_source() == f"path:{tiny_dir.resolve()}"
    assert (embedder.dim, embedder.pooling, embedder.max_tokens) == (HIDDEN, "mean", MAX_POSITIONS)
    emb = embedder.embed(TEXTS)
    assert emb.shape == (len(TEXTS), HIDDEN) and emb.dtype == np.float32
    expected = torch.stack([states.mean(dim=0) for states in reference_states(tiny_dir, TEXTS)])
    expected = torch.nn.functional.normalize(expected, dim=-1).numpy()
    np.testing.assert_allclose(emb, expected, atol=1e-5)


def test_batching_equals_one_by_one(tiny_dir):
    batched = Embedder.load(EmbedderSpec(model=str(tiny_dir), batch_size=2)).embed(TEXTS)
    single = Embedder.load(EmbedderSpec(model=str(tiny_dir), batch_size=1))
    one_by_one = np.concatenate([single.embed([text]) for text in TEXTS])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    assert single.embed([]).shape == (0, HIDDEN)


def test_unnormalised_embeddings_keep_their_norm(tiny_dir):
    emb = Embedder.load(EmbedderSpec(model=str(tiny_dir), normalize=False)).embed(TEXTS[:2])
    expected = torch.stack([s.mean(dim=0) for s in reference_states(tiny_dir, TEXTS[:2])]).numpy()
    np.testing.assert_allclose(emb, expected, atol=1e-5)
    assert not np.allclose(np.linalg.norm(emb, axis=1), 1.0)


def test_truncates_to_max_tokens(tiny_dir):
    embedder = Embedder.load(EmbedderSpec(model=str(tiny_dir), max_tokens=4))
    # [CLS] the cat [SEP]: the rest of the text is cut off.
    np.testing.assert_allclose(embedder.embed(["the cat sat on the mat"]), embedder.embed(["the cat"]), atol=1e-6)


def write_sentence_transformers_layout(root: Path, pooling: dict, max_seq_length: int) -> None:
    """A sentence-transformers directory with the encoder in a subfolder (the older layout)."""
    encoder = root / "0_Transformer"
    save_tiny_bert(encoder)
    (encoder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length}))
    (root / "1_Pooling").mkdir(parents=True)
    (root / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": HIDDEN, **pooling}))
    modules = [
        {"idx": 0, "name": "0", "path": "0_Transformer", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    (root / "modules.json").write_text(json.dumps(modules))


@pytest.mark.parametrize(
    "pooling", [{"pooling_mode": "cls"}, {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}]
)
def test_sentence_transformers_layout_with_cls_pooling(tmp_path, pooling):
    write_sentence_transformers_layout(tmp_path, pooling, max_seq_length=16)
    embedder = Embedder.load(EmbedderSpec(model=str(tmp_path)))
    assert (embedder.pooling, embedder.max_tokens) == ("cls", 16)
    expected = torch.stack([states[0] for states in reference_states(tmp_path / "0_Transformer", TEXTS[:3])])
    expected = torch.nn.functional.normalize(expected, dim=-1).numpy()
    np.testing.assert_allclose(embedder.embed(TEXTS[:3]), expected, atol=1e-5)


def test_sentence_transformers_layout_with_max_pooling(tmp_path):
    write_sentence_transformers_layout(tmp_path, {"pooling_mode": "max"}, max_seq_length=128)
    embedder = Embedder.load(EmbedderSpec(model=str(tmp_path), normalize=False, batch_size=3))
    states = reference_states(tmp_path / "0_Transformer", TEXTS)
    expected = torch.stack([s.max(dim=0).values for s in states]).numpy()
    np.testing.assert_allclose(embedder.embed(TEXTS), expected, atol=1e-5)


def test_unsupported_pooling_is_refused(tmp_path):
    write_sentence_transformers_layout(tmp_path, {"pooling_mode": "weightedmean"}, max_seq_length=16)
    with pytest.raises(ValueError, match="unsupported pooling mode 'weightedmean'"):
        Embedder.load(EmbedderSpec(model=str(tmp_path)))


@pytest.mark.parametrize("model", ["no-such-embedder-package", "/no/such/dir", "numpy"])
def test_unknown_model_is_a_clear_error(model):
    with pytest.raises(FileNotFoundError, match="model"):
        EmbedderSpec(model=model).model_dir()


def test_spec_validates_settings():
    with pytest.raises(ValueError, match="device"):
        EmbedderSpec(device="tpu")
    with pytest.raises(ValueError, match="batch_size"):
        EmbedderSpec(batch_size=0)
