"""The ``endpoint`` generator backend: an OpenAI-compatible ``/chat/completions`` server.

:class:`EndpointGenerator` sends each :class:`~curation.models.generator.GenerationRequest`
as one non-streaming chat completion (vLLM, SGLang, TGI and OpenAI speak the
same format) with urllib3, at most ``spec.concurrency`` requests in flight per
generator. Images travel inside the user message, before its text and in order,
as ``data:`` URLs whose MIME type comes from the bytes' magic number.

Each attempt has ``spec.timeout`` seconds to connect and receive the response
headers (no later read of the body may wait longer either). A request gets
``spec.retries`` extra attempts, the first after ``spec.backoff`` seconds,
doubled each time, on timeouts, connection errors, 429, 5xx and malformed
responses (invalid JSON, no string at ``choices[0].message.content``); a retry
resends the same body, seed included. Other 4xx answers fail at once, and image
bytes of no supported type fail with ``image_unsupported`` before any attempt.
Every outcome is a :class:`~curation.models.generator.GenerationResult`; nothing
raises for a single request.

Unlike :class:`curation.fetch.Fetcher`, this client does not refuse private or
loopback addresses: the endpoint is a service the user configured, usually on
a private cluster network, not an untrusted URL from the data. Proxies come
from ``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``NO_PROXY``, read when the generator is
built, as the fetcher reads them. HTTPS certificates are checked against the
system's trust store. Error reasons, retries and proxies come from
:mod:`curation.http_client`, the core under the fetcher too.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import urllib3
from urllib3.exceptions import SSLError
from urllib3.util import parse_url

from curation.http_client import EnvironmentProxies, classify_error, proxy_headers, with_retries
from curation.models.generator import GenerationRequest, GenerationResult, GeneratorSpec

_DETAIL_CHARS = 200
_IMAGE_MAGIC = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def image_mime(data: bytes) -> str | None:
    """The MIME type of encoded image bytes from their magic number, or None if unknown.

    Recognises JPEG, PNG, WebP and GIF, the formats OpenAI-compatible servers accept.
    """
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((mime for magic, mime in _IMAGE_MAGIC if data.startswith(magic)), None)


def image_data_url(data: bytes, mime: str) -> str:
    """``data:<mime>;base64,...`` for ``data``."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


@dataclass(frozen=True)
class _Attempt:
    """What one attempt gave: the text, or a failure reason and whether to retry."""

    reason: str
    text: str = ""
    retryable: bool = False
    detail: str = ""


def _short(text: str) -> str:
    return text[:_DETAIL_CHARS]


def _error_attempt(exc: BaseException) -> _Attempt:
    """Classifies an exception raised while requesting or reading a response."""
    # a certificate (any TLS failure) will not fix itself on a retry
    failure = classify_error(exc, permanent=(SSLError,), detail_chars=_DETAIL_CHARS)
    return _Attempt(failure.reason, retryable=failure.retryable, detail=failure.detail)


def _parse_completion(body: bytes) -> _Attempt:
    """The text of ``choices[0].message.content`` in a 200 response, or ``malformed_response``."""
    try:
        content = json.loads(body)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        detail = _short(f"{type(exc).__name__}: {exc}; body {body[:100]!r}")
        return _Attempt("malformed_response", retryable=True, detail=detail)
    if not isinstance(content, str):
        return _Attempt("malformed_response", retryable=True, detail=f"content is {type(content).__name__}")
    return _Attempt("ok", text=content)


def _response_attempt(status: int, body: bytes) -> _Attempt:
    """Classifies a response by its status and body."""
    if 200 <= status < 300:
        return _parse_completion(body)
    detail = _short(body.decode("utf-8", "replace"))
    return _Attempt(f"http_{status}", retryable=status == 429 or status >= 500, detail=detail)


def _pool_manager(endpoint: str, maxsize: int, headers: dict[str, str]) -> urllib3.PoolManager:
    """A pool manager for ``endpoint``, through the environment's proxy unless ``NO_PROXY`` exempts it."""
    target = parse_url(endpoint)
    scheme = target.scheme or "http"
    proxy = EnvironmentProxies((scheme,)).for_target(scheme, target.netloc or "")
    if proxy is None:
        return urllib3.PoolManager(maxsize=maxsize, headers=headers)
    proxy_url = proxy._replace(auth=None).url
    return urllib3.ProxyManager(proxy_url, maxsize=maxsize, headers=headers, proxy_headers=proxy_headers(proxy))


class EndpointGenerator:
    """Generates through an OpenAI-compatible chat completions server.

    Safe to share between threads: all calls to :meth:`generate` share one
    thread pool, so at most ``spec.concurrency`` requests are in flight at once.

    Args:
        spec: an ``endpoint`` spec: ``endpoint`` is the base URL (``.../v1``),
            ``model`` the served model name; the API key, if any, is read from
            the environment variable ``api_key_env`` when the generator is built.

    Raises:
        ValueError: if the spec names no endpoint, or a proxy variable is invalid.
    """

    sees_images = True

    def __init__(self, spec: GeneratorSpec):
        if not spec.endpoint:
            raise ValueError("the endpoint backend needs an endpoint URL")
        self._spec = spec
        self._url = spec.endpoint.rstrip("/") + "/chat/completions"
        self._timeout = urllib3.Timeout(total=spec.timeout)
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        api_key = os.environ.get(spec.api_key_env) if spec.api_key_env else None
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = _pool_manager(spec.endpoint, spec.concurrency, headers)
        self._executor = ThreadPoolExecutor(max_workers=spec.concurrency, thread_name_prefix="endpoint")

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """One result per request, in order; never raises for a per-request failure."""
        return list(self._executor.map(self._generate_one, requests))

    def close(self) -> None:
        """Waits for requests in flight, then stops the threads and closes the connections."""
        self._executor.shutdown(wait=True)
        self._http.clear()

    def payload(self, request: GenerationRequest) -> dict[str, Any]:
        """The chat completion request body for ``request``.

        Raises:
            ValueError: if one of ``request.images`` is not JPEG, PNG, WebP or GIF.
        """
        settings = self._spec.settings
        messages = [{"role": "system", "content": request.system}] if request.system else []
        messages.append({"role": "user", "content": self._user_content(request)})
        return {
            "model": self._spec.model,
            "messages": messages,
            "max_tokens": settings.max_new_tokens,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "seed": request.seed,
        }

    @staticmethod
    def _user_content(request: GenerationRequest) -> str | list[dict[str, Any]]:
        if not request.images:
            return request.prompt
        parts: list[dict[str, Any]] = []
        for position, image in enumerate(request.images):
            mime = image_mime(image)
            if mime is None:
                raise ValueError(f"image {position}: bytes are not JPEG, PNG, WebP or GIF: {image[:12]!r}")
            parts.append({"type": "image_url", "image_url": {"url": image_data_url(image, mime)}})
        return [*parts, {"type": "text", "text": request.prompt}]

    def _generate_one(self, request: GenerationRequest) -> GenerationResult:
        try:
            payload = self.payload(request)
        except ValueError as exc:
            return GenerationResult("", ok=False, reason="image_unsupported", attempts=0, detail=str(exc))
        body = json.dumps(payload).encode()
        outcome, attempts = with_retries(lambda _: self._attempt(body), self._spec.retries, self._spec.backoff)
        return GenerationResult(outcome.text, outcome.reason == "ok", outcome.reason, attempts, outcome.detail)

    def _attempt(self, body: bytes) -> _Attempt:
        try:
            response = self._http.request(
                "POST", self._url, body=body, timeout=self._timeout, retries=False, redirect=False
            )
        except Exception as exc:  # the never-raises contract: every error becomes a reason
            return _error_attempt(exc)
        return _response_attempt(response.status, response.data)
