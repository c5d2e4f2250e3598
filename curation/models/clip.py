"""CLIP model handle: a spec that loads an open_clip model on the worker.

A :class:`ClipSpec` holds only a name, a weights source and settings, so it is
cheap to build, pickle and ship to Beam workers. :meth:`ClipModel.load` (or the
process-wide :func:`load_cached`) builds the model where it runs. Importing this
module does not import torch or open_clip.

Weights come from an open_clip pretrained tag, a local checkpoint file, or any
path an ``opener`` can read (``gs://...`` through Beam's ``FileSystems.open``).
Random weights are refused unless asked for, or unless the model is the tiny
test/demo config :data:`TINY_CONFIG_NAME`; when used they are announced loudly
and are identical in every process (seeded init).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
from curation.models.cache import ProcessCache

if TYPE_CHECKING:
    import torch
    from PIL import Image

logger = logging.getLogger(__name__)

TINY_CONFIG_NAME = "curation-tiny"
TINY_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
RANDOM_INIT_SEED = 0
# A long text is cut at this many characters per context token before tokenizing (see ClipModel.tokenize);
# English runs about 4-5 characters per CLIP token, so a cut text almost always still fills the context.
CUT_CHARS_PER_TOKEN = 8
# The text tower runs each row to its end of text rounded up to a multiple of this many positions: a row's
# length, and so its arithmetic, depends on the row alone, never on which rows share its batch.
TEXT_LENGTH_STEP = 16
_TAG_PATTERN = re.compile(r"[A-Za-z0-9_\-]+")
_BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})

Opener = Callable[[str], BinaryIO]


class RandomWeightsRefused(ValueError):
    """Raised when a model would run with random weights that nobody asked for."""


@dataclass(frozen=True)
class ClipSpec:
    """What to load and how to run it; hashable, so it keys the process cache.

    Attributes:
        model: open_clip architecture name (``ViT-B-32``) or :data:`TINY_CONFIG_NAME`.
        pretrained: an open_clip pretrained tag (``laion2b_s34b_b79k``) or a checkpoint
            path: local, or any path the loader's ``opener`` can open.
        allow_random_weights: run with random weights when ``pretrained`` is None.
        device: ``cpu``, ``cuda`` or ``auto`` (CUDA when available).
        precision: ``fp32``, ``bf16`` or ``auto`` (bf16 on CUDA or on a CPU with bf16
            matrix units, else fp32).
        batch_size: the most images or texts per forward pass.
    """

    model: str = "ViT-B-32"
    pretrained: str | None = None
    allow_random_weights: bool = False
    device: str = "cpu"
    precision: str = "auto"
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.device not in ("cpu", "cuda", "auto"):
            raise ValueError(f"device must be cpu, cuda or auto, got {self.device!r}")
        if self.precision not in ("fp32", "bf16", "auto"):
            raise ValueError(f"precision must be fp32, bf16 or auto, got {self.precision!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    def is_checkpoint_path(self) -> bool:
        """Whether ``pretrained`` names a checkpoint file rather than an open_clip tag."""
        if self.pretrained is None:
            return False
        return os.path.isfile(self.pretrained) or not _TAG_PATTERN.fullmatch(self.pretrained)

    def uses_random_weights(self) -> bool:
        return self.pretrained is None

    def check_weights(self) -> None:
        """Refuses random weights unless asked for (or the tiny test config is named).

        Raises:
            RandomWeightsRefused: ``pretrained`` is None and random weights were not allowed.
        """
        if self.uses_random_weights() and not (self.allow_random_weights or self.model == TINY_CONFIG_NAME):
            raise RandomWeightsRefused(
                f"CLIP model {self.model} has no weights: pass --clip-pretrained TAG_OR_PATH "
                "(an open_clip tag or a checkpoint path), or --allow-random-weights to run "
                "with meaningless random weights"
            )

    def weights_source(self) -> str:
        """``random-init``, ``open_clip:<tag>`` or ``checkpoint:<path>``."""
        if self.pretrained is None:
            return "random-init"
        if self.is_checkpoint_path():
            return f"checkpoint:{self.pretrained}"
        return f"open_clip:{self.pretrained}"


def cpu_has_bf16_units(cpuinfo_path: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU has bf16 matrix instructions (AMX-BF16 or AVX512-BF16)."""
    try:
        with open(cpuinfo_path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return bool(_BF16_CPU_FLAGS & set(line.split(":", 1)[1].split()))
    except OSError:
        return False
    return False


def resolve_device(device: str) -> str:
    """Turns ``auto`` into ``cuda`` or ``cpu``."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_precision(precision: str, device: str) -> str:
    """Turns ``auto`` into ``bf16`` (CUDA, or a CPU with bf16 units) or ``fp32``."""
    if precision != "auto":
        return precision
    return "bf16" if device == "cuda" or cpu_has_bf16_units() else "fp32"


_register_lock = threading.Lock()


def register_tiny_config() -> None:
    """Adds :data:`TINY_CONFIG_NAME` to open_clip's model-config registry (idempotent)."""
    import open_clip

    with _register_lock:
        if TINY_CONFIG_NAME in open_clip.list_models():
            return
        config_dir = Path(tempfile.mkdtemp(prefix="curation-open-clip-configs-"))
        (config_dir / f"{TINY_CONFIG_NAME}.json").write_text(json.dumps(TINY_CONFIG))
        open_clip.add_model_config(config_dir)


@contextmanager
def _local_checkpoint(path: str, opener: Opener | None) -> Iterator[str]:
    """Yields a local file holding the checkpoint at ``path``, copied through ``opener`` if remote."""
    if os.path.isfile(path):
        yield path
        return
    if opener is None:
        raise FileNotFoundError(f"checkpoint {path!r} is not a local file and no opener was given")
    fd, local = tempfile.mkstemp(prefix="clip-ckpt-", suffix=Path(path).suffix)
    try:
        with opener(path) as src, os.fdopen(fd, "wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 20)
        yield local
    finally:
        os.unlink(local)


RANDOM_WEIGHTS_ANNOUNCED_ENV = "CURATION_RANDOM_WEIGHTS_ANNOUNCED"  # models announced at launch, comma-separated
_announce_lock = threading.Lock()


def _random_weights_message(spec: ClipSpec) -> str:
    return (
        f"WARNING: CLIP model {spec.model} is running with RANDOM weights (random-init): "
        "scores are meaningless"
    )


def _announced_at_launch(spec: ClipSpec) -> bool:
    return spec.model in os.environ.get(RANDOM_WEIGHTS_ANNOUNCED_ENV, "").split(",")


def announce_random_weights(spec: ClipSpec) -> None:
    """Says loudly on stderr, once per launch, that ``spec`` runs with random weights.

    The launching process calls it before any worker starts. The model is then recorded in
    ``os.environ[RANDOM_WEIGHTS_ANNOUNCED_ENV]``, so later calls in this process (a second
    pipeline of the demo) and the model loads here and in the worker processes it starts (they
    inherit the variable) only log it at INFO: one line on the console, not one per load.
    """
    message = _random_weights_message(spec)
    with _announce_lock:
        first = not _announced_at_launch(spec)
        if first:
            announced = os.environ.get(RANDOM_WEIGHTS_ANNOUNCED_ENV, "")
            os.environ[RANDOM_WEIGHTS_ANNOUNCED_ENV] = f"{announced},{spec.model}".lstrip(",")
    logger.info(message)
    if first:
        print(message, file=sys.stderr, flush=True)


def _announce_random_weights_on_load(spec: ClipSpec) -> None:
    """At load: only logs (INFO) when the launcher announced the model; else says it in the log
    (WARNING) and on stderr (a worker of a launcher that did not, e.g. on a remote runner)."""
    message = _random_weights_message(spec)
    if _announced_at_launch(spec):
        logger.info(message)
        return
    logger.warning(message)
    print(message, file=sys.stderr, flush=True)


class ClipModel:
    """A loaded CLIP model that embeds and scores batches of images and texts.

    Build it with :meth:`load` or :func:`load_cached`. Embeddings are float32 and
    L2-normalised whatever the compute precision.

    Attributes:
        spec: the spec it was loaded from.
        device: the resolved device (``cpu`` or ``cuda``).
        precision: the resolved compute precision (``fp32`` or ``bf16``).
        image_size: side of the square model input, in pixels.
        embed_dim: embedding width.
    """

    def __init__(
        self,
        spec: ClipSpec,
        model: torch.nn.Module,
        preprocess: Callable[[Image.Image], torch.Tensor],
        tokenizer: Callable[[Sequence[str]], torch.Tensor],
        device: str,
        precision: str,
        embed_dim: int,
    ) -> None:
        self.spec = spec
        self.device = device
        self.precision = precision
        self._model = model
        self._preprocess = preprocess
        self._tokenizer = tokenizer
        size = model.visual.image_size
        self.image_size = int(size[0] if isinstance(size, tuple) else size)
        self.embed_dim = embed_dim
        self._cuts_texts = _tokens_of_cut_texts_are_prefixes(tokenizer)
        self._trims_text = _text_tower_reads_to_end_of_text(model)

    @classmethod
    def load(cls, spec: ClipSpec, opener: Opener | None = None) -> ClipModel:
        """Builds the model described by ``spec``.

        Args:
            spec: what to load.
            opener: opens a non-local checkpoint path for reading (for example
                ``apache_beam.io.filesystems.FileSystems.open``); it is copied to a
                local temp file and loaded like a local checkpoint.

        Raises:
            RandomWeightsRefused: ``pretrained`` is None and random weights were not
                allowed (explicitly, or by using the tiny config).
            FileNotFoundError: a checkpoint path is neither local nor openable.
        """
        import open_clip
        import torch

        if spec.model == TINY_CONFIG_NAME:
            register_tiny_config()
        spec.check_weights()
        random_weights = spec.uses_random_weights()
        device = resolve_device(spec.device)
        precision = resolve_precision(spec.precision, device)

        def create(pretrained: str | None):
            # Seeded init: every process builds identical random weights.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(RANDOM_INIT_SEED)
                return open_clip.create_model_and_transforms(spec.model, pretrained=pretrained)

        if spec.is_checkpoint_path():
            with _local_checkpoint(spec.pretrained, opener) as local_path:
                model, _, preprocess = create(local_path)
        else:
            model, _, preprocess = create(spec.pretrained)
        if random_weights:
            _announce_random_weights_on_load(spec)
        model = model.to(device).eval()
        tokenizer = open_clip.get_tokenizer(spec.model)
        logger.info(
            "loaded CLIP %s from %s on %s (%s)", spec.model, spec.weights_source(), device, precision
        )
        embed_dim = open_clip.get_model_config(spec.model)["embed_dim"]
        return cls(spec, model, preprocess, tokenizer, device, precision, embed_dim)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """open_clip's eval transform: RGB, resize, center crop, normalise; [3, S, S]."""
        return self._preprocess(image)

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """L2-normalised float32 image embeddings, [n, embed_dim]."""
        import torch

        return self._embed(
            images,
            lambda chunk: torch.stack([self._preprocess(image) for image in chunk]),
            self._model.encode_image,
        )

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """The token ids the text tower reads, [n, context length]: the model's tokenizer on ``texts``.

        With open_clip's CLIP tokenizer a long text is first cut at a whitespace after about
        :data:`CUT_CHARS_PER_TOKEN` characters per context token, so that the tokenizer does not
        clean and split what the model never reads. Cut at whitespace, a text tokenizes to a
        prefix of the whole text's tokens, so once the cut text fills the context its row is the
        whole text's row; a cut text that does not fill it is cut again four times longer, up to
        the whole text. (One difference: open_clip's cleaning runs ftfy, whose mojibake repair
        judges a line as a whole, so text past the cut, which the model never reads, can no
        longer sway how the text it reads is repaired.)
        """
        texts = list(texts)
        if not self._cuts_texts:
            return self._tokenizer(texts)
        chars = CUT_CHARS_PER_TOKEN * self._tokenizer.context_length
        cuts = [_cut_at_space(text, chars) for text in texts]
        rows = self._tokenizer(cuts)
        eot = self._tokenizer.eot_token_id
        while True:
            short = [i for i, text in enumerate(texts) if len(cuts[i]) < len(text) and rows[i, -1] != eot]
            if not short:
                return rows
            chars *= 4
            for i in short:
                cuts[i] = _cut_at_space(texts[i], chars)
            rows[short] = self._tokenizer([cuts[i] for i in short])

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 text embeddings, [n, embed_dim].

        Texts are tokenized by :meth:`tokenize` and each distinct row of tokens is encoded once.
        When the text tower attends causally and pools at the end-of-text token (CLIP's), the
        padding after a row's end of text cannot change its embedding: each row runs only to
        its end of text rounded up to :data:`TEXT_LENGTH_STEP` positions, rows of one length
        in chunks of at most ``spec.batch_size``. A row's length depends on the row alone, so
        its embedding does not depend on the other texts of the call, which keeps runs on
        different runners (different batches) identical.
        """
        import torch

        tokens = self.tokenize(texts)
        rows, inverse = torch.unique(tokens, dim=0, return_inverse=True)
        if not self._trims_text:
            return self._embed(rows, lambda chunk: chunk, self._model.encode_text)[inverse.numpy()]
        context = rows.shape[1]
        ends = rows.argmax(dim=-1) + 1  # CLIP's end of text is its largest id
        lengths = torch.clamp((ends + TEXT_LENGTH_STEP - 1) // TEXT_LENGTH_STEP * TEXT_LENGTH_STEP, max=context)
        order = torch.argsort(lengths, stable=True)
        place = torch.empty_like(order)
        place[order] = torch.arange(len(order))
        encoded = self._embed(
            rows[order], lambda chunk: chunk, self._encode_to_length,
            _runs_of_equal(lengths[order].tolist(), self.spec.batch_size),
        )
        return encoded[place[inverse].numpy()]

    def _encode_to_length(self, tokens: torch.Tensor) -> torch.Tensor:
        """The text tower on a chunk of token rows of one length bucket, run to that length."""
        end = int(tokens.argmax(dim=-1).max()) + 1
        length = min(tokens.shape[1], -(-end // TEXT_LENGTH_STEP) * TEXT_LENGTH_STEP)
        return _encode_text_prefix(self._model, tokens, length)

    def similarity(self, image_emb: np.ndarray, text_emb: np.ndarray) -> np.ndarray:
        """Cosine similarity of every image with every text, [n_img, n_txt]."""
        return _normalise(image_emb) @ _normalise(text_emb).T

    def score_pairs(self, images: Sequence[Image.Image], texts: Sequence[str]) -> np.ndarray:
        """Cosine similarity of image ``i`` with text ``i``, [n]."""
        if len(images) != len(texts):
            raise ValueError(f"{len(images)} images but {len(texts)} texts")
        return np.einsum("nd,nd->n", self.embed_images(images), self.embed_texts(texts))

    def _embed(
        self,
        items: Sequence,
        to_input: Callable[[Sequence], torch.Tensor],
        encode: Callable[[torch.Tensor], torch.Tensor],
        chunks: Sequence[slice] | None = None,
    ) -> np.ndarray:
        """Encodes ``items`` in ``chunks`` (by default of ``spec.batch_size``); float32, L2-normalised."""
        import torch

        out = np.empty((len(items), self.embed_dim), dtype=np.float32)
        step = self.spec.batch_size
        if chunks is None:
            chunks = [slice(start, start + step) for start in range(0, len(items), step)]
        with torch.inference_mode(), torch.autocast(
            self.device, dtype=torch.bfloat16, enabled=self.precision == "bf16"
        ):
            for chunk in chunks:
                batch = to_input(items[chunk]).to(self.device, non_blocking=True)
                features = encode(batch).float()
                features = torch.nn.functional.normalize(features, dim=-1)
                out[chunk] = features.cpu().numpy()
        return out


def _runs_of_equal(values: Sequence[int], max_rows: int) -> list[slice]:
    """Consecutive runs of equal ``values`` (sorted), each cut into slices of at most ``max_rows``."""
    chunks, start = [], 0
    for end in range(1, len(values) + 1):
        if end == len(values) or values[end] != values[start] or end - start == max_rows:
            chunks.append(slice(start, end))
            start = end
    return chunks


def _cut_at_space(text: str, chars: int) -> str:
    """``text`` cut just before its last whitespace among its first ``chars + 1`` characters;
    whole when it is no longer than ``chars`` or has no whitespace there."""
    if len(text) <= chars:
        return text
    head = text[: chars + 1].rsplit(None, 1)
    return text[: len(head[0])] if len(head) == 2 else text


def _tokens_of_cut_texts_are_prefixes(tokenizer: object) -> bool:
    """Whether ``tokenizer`` is open_clip's CLIP BPE tokenizer truncating to its context: it
    splits cleaned text into words at whitespace and encodes each word on its own, so the
    tokens of a text cut at whitespace are a prefix of the whole text's tokens."""
    from open_clip.tokenizer import SimpleTokenizer

    return isinstance(tokenizer, SimpleTokenizer) and tokenizer.reduction_fn is None


def _text_tower_reads_to_end_of_text(model: torch.nn.Module) -> bool:
    """Whether ``model`` is an open_clip ``CLIP`` whose text tower attends causally and pools
    at the end-of-text token (``argmax``): then no position after a row's end of text changes
    its embedding, and a batch can stop at its longest row's end of text."""
    import open_clip
    import torch

    mask = getattr(model, "attn_mask", None)
    if not isinstance(model, open_clip.CLIP) or model.text_pool_type != "argmax" or mask is None:
        return False
    return torch.equal(torch.isinf(mask).cpu(), torch.ones(mask.shape, dtype=torch.bool).triu(1))


def _encode_text_prefix(model: torch.nn.Module, tokens: torch.Tensor, length: int) -> torch.Tensor:
    """open_clip's ``CLIP.encode_text`` run on the first ``length`` positions only (positional
    embedding and causal mask cut to match)."""
    import torch
    from open_clip.transformer import text_global_pool

    tokens = tokens[:, :length]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype) + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = text_global_pool(model.ln_final(x), tokens, model.text_pool_type)
    if isinstance(model.text_projection, torch.nn.Linear):
        return model.text_projection(x)
    return x if model.text_projection is None else x @ model.text_projection


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, np.finfo(np.float32).tiny)


_cache: ProcessCache[ClipModel] = ProcessCache()


def load_cached(spec: ClipSpec, opener: Opener | None = None) -> ClipModel:
    """:meth:`ClipModel.load`, once per process and spec (Beam workers share it).

    The ``opener`` is used only by the first load of a spec.
    """
    return _cache.get(spec, lambda: ClipModel.load(spec, opener))
