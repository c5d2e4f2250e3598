"""EndpointGenerator against the loopback LLMServer: retries, reasons, order, concurrency, images, auth, proxy."""

from __future__ import annotations

import io
import socket
import threading

import pytest
from PIL import Image

from curation.models.endpoint_generator import EndpointGenerator, image_mime
from curation.models.generator import GenerationRequest, GenerationSettings, GeneratorSpec, load_generator
from sampledata.llm_server import ImageInfo, LLMServer, decode_image_url, rewrite
from sampledata.pairs import render_image

KEY_ENV = "CURATION_TEST_LLM_KEY"
TIMEOUT = 0.5
RETRIES = 2
_PROXY_VARS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in (*_PROXY_VARS, KEY_ENV):
        monkeypatch.delenv(var, raising=False)


def _spec(endpoint: str, concurrency: int = 4, retries: int = RETRIES) -> GeneratorSpec:
    return GeneratorSpec(
        backend="endpoint",
        model="sample-llm",
        endpoint=endpoint,
        api_key_env=KEY_ENV,
        concurrency=concurrency,
        timeout=TIMEOUT,
        retries=retries,
        backoff=0.01,
        settings=GenerationSettings(max_new_tokens=64, temperature=0.0),
    )


def _generate(spec: GeneratorSpec, requests: list[GenerationRequest]):
    generator = load_generator(spec)
    try:
        return generator.generate(requests)
    finally:
        generator.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _gif(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "orange").save(buffer, format="GIF")
    return buffer.getvalue()


def _prompt(alt: str, marker: str = "") -> str:
    return f'Rewrite this alt text as a detailed caption: "{alt}" {marker}'


# (prompt, image, expected reason, expected attempts, expected text fragment)
_ROWS = [
    (_prompt("A red bicycle leaning against a brick wall in Amsterdam"), None, "ok", 1, "red bicycle"),
    (_prompt("Slow once, then fine", "[[slow:1]]"), None, "ok", 2, "Slow once"),
    (_prompt("Always slow", "[[slow]]"), None, "timeout", RETRIES + 1, ""),
    (_prompt("Maria with a tabby cat", "[[http500:1]]"), None, "ok", 2, "tabby cat"),
    (_prompt("Always broken server", "[[http500]]"), None, "http_500", RETRIES + 1, ""),
    (_prompt("Rate limited once", "[[http429:1]]"), None, "ok", 2, "Rate limited"),
    (_prompt("Not JSON", "[[malformed]]"), None, "malformed_response", RETRIES + 1, ""),
    (_prompt("No choices", "[[nochoices]]"), None, "malformed_response", RETRIES + 1, ""),
    (_prompt("Not JSON once", "[[malformed:1]]"), None, "ok", 2, "Not JSON once"),
    (_prompt("Bad request", "[[http400]]"), None, "http_400", 1, ""),
    (_prompt("A teapot on a kitchen table"), render_image(1, 64, 48, "jpg"), "ok", 1, "image/jpeg image is 64x48"),
    (_prompt("Six ducks near the harbour"), render_image(2, 40, 30, "png"), "ok", 1, "image/png image is 40x30"),
    (_prompt("A kite over a snowy field"), render_image(3, 32, 32, "webp"), "ok", 1, "image/webp image is 32x32"),
    (_prompt("An orange square"), _gif(8, 6), "ok", 1, "image/gif image is 8x6"),
    (_prompt("Looks like a JPEG, is not"), b"\xff\xd8\xff" + bytes(200), "http_400", 1, ""),
    (_prompt("Not an image at all"), b"plain text", "image_unsupported", 0, ""),
    (_prompt("A wooden boat at the river bank"), None, "ok", 1, "wooden boat"),
]


def test_every_row_accounted_for_in_order():
    system = "You write captions."
    requests = [GenerationRequest(prompt, system=system, images=(image,) if image is not None else ()) for prompt, image, *_ in _ROWS]
    with LLMServer(slow_seconds=4 * TIMEOUT) as server:
        results = _generate(_spec(server.base_url), requests)
        served, with_image = server.requests, server.image_requests
    assert len(results) == len(_ROWS)
    for (prompt, _, reason, attempts, fragment), result in zip(_ROWS, results):
        assert (result.reason, result.attempts, result.ok) == (reason, attempts, reason == "ok"), prompt
        assert fragment in result.text, (prompt, result.text)
        assert result.ok or (result.text == "" and result.detail), prompt
    assert served == sum(result.attempts for result in results)
    assert with_image == sum(1 for _, image, reason, *_ in _ROWS if reason == "ok" and image is not None)


def test_answer_keeps_the_alt_text_and_depends_on_the_seed():
    prompt = _prompt("Leather Ankle Boots - Black, Size 38")
    requests = [GenerationRequest(prompt, seed=seed) for seed in range(3)]
    with LLMServer() as server:
        results = _generate(_spec(server.base_url), requests)
    assert [result.text for result in results] == [rewrite(prompt, seed) for seed in range(3)]
    assert len({result.text for result in results}) == 3
    assert all("Leather Ankle Boots - Black, Size 38" in result.text for result in results)


def test_schedule_fails_the_first_requests_in_order():
    with LLMServer(schedule=("http500", "malformed", "nochoices")) as server:
        [result] = _generate(_spec(server.base_url, concurrency=1, retries=3), [GenerationRequest(_prompt("x"))])
        assert (result.reason, result.attempts, server.requests) == ("ok", 4, 4)
    with LLMServer(schedule=("http500",) * 5) as server:
        [result] = _generate(_spec(server.base_url, concurrency=1), [GenerationRequest(_prompt("x"))])
    assert (result.reason, result.attempts) == ("http_500", RETRIES + 1)
    assert "sample failure" in result.detail


def test_concurrency_is_bounded_and_reached_across_callers():
    concurrency = 4
    with LLMServer(delay=0.1) as server:
        generator = EndpointGenerator(_spec(server.base_url, concurrency=concurrency))
        batches = [[GenerationRequest(_prompt(f"caller {c} row {i}")) for i in range(10)] for c in range(2)]
        outputs: list[list] = [[], []]

        def call(c: int) -> None:
            outputs[c] = generator.generate(batches[c])

        threads = [threading.Thread(target=call, args=(c,)) for c in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        generator.close()
        assert server.max_in_flight == concurrency
        assert server.requests == 20
    for batch, results in zip(batches, outputs):
        assert [result.text for result in results] == [rewrite(request.prompt) for request in batch]


def test_payload_is_openai_chat_format_with_a_valid_data_url():
    spec = _spec("http://127.0.0.1:1/v1")
    image = render_image(5, 20, 10, "png")
    generator = EndpointGenerator(spec)
    payload = generator.payload(GenerationRequest("Describe.", system="Be brief.", images=(image,), seed=7))
    generator.close()
    assert payload["model"] == "sample-llm"
    assert (payload["max_tokens"], payload["temperature"], payload["top_p"], payload["seed"]) == (64, 0.0, 0.9, 7)
    system, user = payload["messages"]
    assert system == {"role": "system", "content": "Be brief."}
    image_part, text_part = user["content"]
    assert text_part == {"type": "text", "text": "Describe."}
    assert image_part["image_url"]["url"].startswith("data:image/png;base64,")
    assert decode_image_url(image_part["image_url"]["url"]) == ImageInfo("image/png", 20, 10)
    no_system = EndpointGenerator(spec)
    assert no_system.payload(GenerationRequest("Hi."))["messages"] == [{"role": "user", "content": "Hi."}]
    no_system.close()


def test_image_mime_from_magic():
    assert image_mime(render_image(0, 8, 8, "jpg")) == "image/jpeg"
    assert image_mime(render_image(0, 8, 8, "png")) == "image/png"
    assert image_mime(render_image(0, 8, 8, "webp")) == "image/webp"
    assert image_mime(_gif(2, 2)) == "image/gif"
    assert image_mime(b"RIFF\x00\x00\x00\x00WAVE") is None
    assert image_mime(b"") is None


@pytest.mark.parametrize("key", ["s3cret", None])
def test_api_key_header_only_when_the_variable_is_set(monkeypatch, key):
    if key is not None:
        monkeypatch.setenv(KEY_ENV, key)
    with LLMServer() as server:
        results = _generate(_spec(server.base_url), [GenerationRequest(_prompt(str(i))) for i in range(3)])
        authorizations = server.authorizations()
    assert all(result.ok for result in results)
    assert authorizations == {(f"Bearer {key}" if key else ""): 3}


def test_connection_refused_is_retried_then_reported():
    spec = _spec(f"http://127.0.0.1:{_closed_port()}/v1")
    [result] = _generate(spec, [GenerationRequest(_prompt("x"))])
    assert (result.ok, result.reason, result.attempts) == (False, "connection_error", RETRIES + 1)


def test_proxy_from_the_environment_and_no_proxy(monkeypatch):
    endpoint = f"http://127.0.0.1:{_closed_port()}/v1"
    with LLMServer() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.base_url.removesuffix("/v1"))
        [through_proxy] = _generate(_spec(endpoint), [GenerationRequest(_prompt("via proxy"))])
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        [direct] = _generate(_spec(endpoint), [GenerationRequest(_prompt("direct"))])
        assert proxy.requests == 1
    assert through_proxy.ok and "via proxy" in through_proxy.text
    assert direct.reason == "connection_error"


def test_empty_batch_and_unknown_schedule_mode():
    with LLMServer() as server:
        assert _generate(_spec(server.base_url), []) == []
        assert server.requests == 0
    with pytest.raises(ValueError, match="unknown modes"):
        LLMServer(schedule=("explode",))
