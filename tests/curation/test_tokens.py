import random
import time

import pytest
from open_clip.tokenizer import SimpleTokenizer
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

from curation.tokens import TextTokenizer, visual_tokens

CORPUS = [
    "A photo of a small brown dog running on the beach at sunset.",
    "Two cats sleeping on a red sofa next to a window.",
    "The quick brown fox jumps over the lazy dog.",
]


@pytest.mark.parametrize(
    "width,height,expected",
    [
        (490, 300, 128),
        (300, 490, 128),
        (1, 1, 128),
        (491, 300, 256),
        (980, 980, 256),
        (100, 980, 256),
        (981, 10, 2 * 256 + 256),
        (1960, 980, 2 * 256 + 256),
        (1961, 980, 3 * 256 + 256),
        (3000, 1000, 8 * 256 + 256),
        (1000, 3000, 8 * 256 + 256),
    ],
)
def test_auto_resolution_bands(width, height, expected):
    assert visual_tokens(width, height) == expected
    assert visual_tokens(width, height, "auto") == expected


def test_fixed_resolutions():
    assert visual_tokens(4000, 3000, "medium") == 128
    assert visual_tokens(64, 64, "high") == 256
    assert visual_tokens(3000, 1000, "ultra") == 2304  # 4 x 2 crops + the overview
    assert visual_tokens(100, 100, "ultra") == 512


def test_visual_tokens_rejects_bad_input():
    with pytest.raises(ValueError, match="resolution"):
        visual_tokens(100, 100, "huge")
    with pytest.raises(ValueError, match="size"):
        visual_tokens(0, 100)


def test_clip_bpe_counts_grow_with_text():
    tokenizer = TextTokenizer.load("clip-bpe")
    assert tokenizer.name == "clip-bpe"
    short = tokenizer.count("a dog")
    longer = tokenizer.count("a dog on the beach")
    assert 0 < short < longer
    assert tokenizer.count("") == 0


def test_clip_bpe_matches_open_clip_encode():
    reference = SimpleTokenizer()
    texts = CORPUS + ["Ünïcödé ça va? 日本語 &amp; <b>html</b> it's we'll 12345 x² 😀", "supercalifragilistic " * 3]
    tokenizer = TextTokenizer.load()
    for text in texts:
        assert tokenizer.count(text) == len(reference.encode(text))


def test_clip_bpe_matches_open_clip_on_ascii_with_and_without_its_shortcut():
    """Plain ASCII skips ftfy and unescaping; ASCII with "&", "\\r" or control characters does not."""
    reference = SimpleTokenizer()
    tokenizer = TextTokenizer.load()
    rng = random.Random(7)
    alphabet = [chr(c) for c in range(32, 127)] + ["\t", "\n", "\r", "\x00", "\x1b", "\x7f", "&amp;", "&#39;", "&lt;"]
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 60))) for _ in range(400)]
    texts += ["Caf\u00e9 at 5 o'clock", "  Two\tcats\n\nsleeping  ", "Tom &amp; Jerry", "\x1b[31mred\x1b[0m text"]
    assert sum("&" not in t and "\r" not in t and "\x00" not in t for t in texts) > 100  # both paths are exercised
    for text in texts:
        assert tokenizer.count(text) == len(reference.encode(text)), repr(text)


def test_clip_bpe_counts_a_huge_word_quickly():
    tokenizer = TextTokenizer.load("clip-bpe")
    start = time.perf_counter()
    count = tokenizer.count("q" * 200_000)
    assert time.perf_counter() - start < 5
    assert count > 1000


def test_load_is_cached_per_process():
    assert TextTokenizer.load() is TextTokenizer.load("clip-bpe")
    assert TextTokenizer.load("whitespace") is TextTokenizer.load("whitespace")


def test_whitespace_tokenizer_counts_words_and_punctuation():
    tokenizer = TextTokenizer.load("whitespace")
    assert tokenizer.count("Hello, world! It's 2024.") == 9  # Hello , world ! It ' s 2024 .
    assert tokenizer.count("   ") == 0
    assert tokenizer.count("naïve café") == 2


def build_tokenizer_json(path) -> None:
    """A small BPE trained on CORPUS that adds [CLS]/[SEP] and truncates to 4 tokens."""
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=200, special_tokens=["[UNK]", "[CLS]", "[SEP]"])
    tokenizer.train_from_iterator(CORPUS, trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 1), ("[SEP]", 2)]
    )
    tokenizer.enable_truncation(max_length=4)
    tokenizer.save(str(path))


def test_tokenizer_json_file_and_directory(tmp_path):
    build_tokenizer_json(tmp_path / "tokenizer.json")
    text = " ".join(CORPUS)
    raw = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert len(raw.encode(text).ids) == 4  # as saved: truncating, with [CLS]/[SEP]
    raw.no_truncation()
    untruncated = len(raw.encode(text, add_special_tokens=False).ids)
    assert untruncated > len(text.split())
    for spec in (str(tmp_path / "tokenizer.json"), str(tmp_path)):
        tokenizer = TextTokenizer.load(spec)
        assert tokenizer.name == spec
        assert tokenizer.count(text) == untruncated
        assert tokenizer.count("dog") == 1
        assert tokenizer.count(CORPUS[0]) < tokenizer.count(text)


def test_unknown_tokenizer_path_names_it(tmp_path):
    missing = str(tmp_path / "no-such-tokenizer")
    with pytest.raises(ValueError, match="no-such-tokenizer"):
        TextTokenizer.load(missing)


def test_unreadable_tokenizer_json_is_a_value_error(tmp_path):
    broken = tmp_path / "tokenizer.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="cannot load"):
        TextTokenizer.load(str(broken))
