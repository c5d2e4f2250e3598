import math

import pytest

from curation.records import CaptionPair, ImageData
from filters.caption import CaptionFilter
from filters.clip_score import ClipScoreFilter
from filters.image_quality import ImageQualityFilter


def pair(text="A red bicycle leaning against a brick wall", width=640, height=480, fmt="jpeg", nbytes=5000, stats=None):
    image = ImageData(sha256="0" * 64, phash="0" * 16, width=width, height=height, format=fmt, data=b"x" * nbytes)
    return CaptionPair(id="i", source="s", url="http://127.0.0.1/x.jpg", text=text, image=image, stats=dict(stats or {}))


@pytest.mark.parametrize(
    "text, reason",
    [
        ("A red bicycle leaning against a brick wall in Amsterdam", None),
        ("Two cats", None),
        ("", "caption_empty"),
        ("   ", "caption_empty"),
        ("DSC_0042.JPG", "caption_filename"),
        ("IMG 2019 001", "caption_filename"),
        ("holiday-photo.png", "caption_filename"),
        ("https://example.com/image.jpg", "caption_url"),
        ("<b>bold</b> claim here", "caption_markup"),
        ("cat", "caption_too_short"),
        ("a b", "caption_too_short"),
        ("word " * 300, "caption_too_long"),
        ("12 34 56 78 !! ??", "caption_low_alpha"),
        ("buy buy buy buy buy buy buy buy now", "caption_repetitive"),
    ],
)
def test_caption_filter_reasons(text, reason):
    record = pair(text=text)
    verdict = CaptionFilter()(record)
    assert verdict.keep is (reason is None)
    assert verdict.reason == reason
    assert record.stats["caption.words"] == verdict.score["words"]


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        ({}, None),
        ({"width": 40, "height": 40}, "small_image"),
        ({"width": 1000, "height": 100}, "bad_aspect"),
        ({"fmt": "gif"}, "bad_format"),
        ({"nbytes": 30_000_000}, "too_many_bytes"),
    ],
)
def test_image_quality_reasons(kwargs, reason):
    record = pair(**kwargs)
    verdict = ImageQualityFilter()(record)
    assert (verdict.keep, verdict.reason) == (reason is None, reason)
    assert record.stats["image_quality.min_side"] == min(record.image.width, record.image.height)


def test_image_quality_thresholds_are_configurable():
    strict = ImageQualityFilter(min_side=500, max_aspect=1.2, min_bytes=10_000)
    assert strict(pair(width=800, height=600)).reason == "bad_aspect"
    assert strict(pair(width=600, height=550)).reason == "too_few_bytes"
    assert strict(pair(width=400, height=400)).reason == "small_image"


def test_image_quality_judges_a_bare_image_as_its_record_would():
    strict = ImageQualityFilter(min_side=150, max_aspect=2.0)
    for width, height, reason in [(640, 480, None), (100, 400, "small_image"), (600, 200, "bad_aspect")]:
        record = pair(width=width, height=height)
        assert strict.keep(strict.score(record.image)) == strict.keep(strict.score(record)) == (reason is None, reason)


def test_clip_threshold():
    filt = ClipScoreFilter(threshold=0.3)
    assert filt(pair(stats={"clip_score": 0.31})).keep
    verdict = filt(pair(stats={"clip_score": 0.29}))
    assert (verdict.keep, verdict.reason) == (False, "low_clip_score")
    assert filt(pair()).reason == "clip_score_missing"


def test_clip_quantile_needs_resolution():
    filt = ClipScoreFilter(threshold=None, keep_fraction=0.3)
    assert filt.needs_corpus_quantile
    assert math.isclose(filt.quantile, 0.7)
    with pytest.raises(RuntimeError):
        filt(pair(stats={"clip_score": 0.5}))
    resolved = filt.with_threshold(0.25)
    assert not resolved.needs_corpus_quantile
    assert resolved(pair(stats={"clip_score": 0.25})).keep
    assert resolved(pair(stats={"clip_score": 0.2})).reason == "low_clip_score"


def test_clip_keep_fraction_validated():
    with pytest.raises(ValueError):
        ClipScoreFilter(keep_fraction=1.5)
