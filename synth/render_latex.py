"""LaTeX tables and equations rendered by a real TeX, or by matplotlib when TeX is absent.

:func:`render_latex` takes a snippet, never a whole document: for ``kind="table"`` a
``tabular`` environment (``\\begin{tabular}{lr} ... \\end{tabular}``, the ``array``
package loaded); for ``kind="equation"`` math content, wrapped in ``\\[ ... \\]`` unless
it opens with ``$``, ``\\[`` or ``\\begin{`` (``equation*``, ``align*``, ``gather*``...;
amsmath and amssymb are loaded). The target is the source, unchanged.

**With TeX** (``engine="tex"``, or ``"auto"`` with ``pdflatex`` on PATH; Debian's
``texlive-latex-base`` is enough): the snippet goes into a minimal document on a large
page in a fresh temporary directory, and :func:`run_tex` runs ``pdflatex
-no-shell-escape -interaction=nonstopmode -halt-on-error`` there with kpathsea's
paranoid settings (``openin_any=p openout_any=p shell_escape=f``: no reading or writing
of absolute paths, ``..`` or dot files), no font generation, stdin closed, files capped
at 64 MB and a wall-clock limit that kills the whole process group. The PDF page is
rasterised with pypdfium2 cropped to the bounding box of its content plus a margin
(renderer ``pdflatex``).

Before TeX sees a snippet, :func:`check_source` refuses (``latex_refused``) anything
that could reach outside: control sequences naming input, include, openin/openout,
read, write (``\\write18``), immediate, catcode, csname, scantokens, special, pdf*
primitives, lua, shell, packages and classes, ``filecontents``, and ``^^`` escapes.
The sandbox is the second wall, not the only one.

**Without TeX** (``engine="mathtext"``, or ``"auto"`` without ``pdflatex``): equations
are drawn by matplotlib's mathtext (renderer ``mathtext``: a TeX subset, no multi-line
environments); tables are parsed into cells (``&`` and ``\\\\``; rules, ``$math$``,
``\\textbf``/``\\textit``/``\\emph`` and escaped specials understood, anything else
refused) and drawn as a matplotlib table (renderer ``matplotlib:table``).

Errors: ``empty_source``; ``latex_refused``; ``latex_error`` with TeX's first ``!``
line (e.g. ``! Undefined control sequence.``) or mathtext's message; ``latex_timeout``;
``render_failed`` (no TeX for ``engine="tex"``, a construct the matplotlib table does
not support, an output too large).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass

from PIL import Image

from synth.rendering import RenderedPage, RenderError, crop_to_ink, to_rgb

KINDS = ("table", "equation")
_FILE_LIMIT_BLOCKS = 131072  # ulimit -f, in 512-byte blocks: 64 MB
_FORBIDDEN_STEMS = (
    "input", "include", "openin", "openout", "read", "write", "immediate", "catcode",
    "csname", "scantokens", "special", "pdf", "lua", "shell", "package", "documentclass",
    "loadclass", "filecontents", "verbatim", "endlinechar", "everyeof", "outer", "jobname",
)
_CONTROL_WORD = re.compile(r"\\([A-Za-z@]+)")
_ENVIRONMENT = re.compile(r"\\begin\s*\{([^}]*)\}")
_PREAMBLE = r"""\documentclass[12pt]{article}
\usepackage{amsmath,amssymb,array}
\pagestyle{empty}
\setlength{\paperwidth}{20in}\setlength{\paperheight}{20in}
\pdfpagewidth=\paperwidth \pdfpageheight=\paperheight
\setlength{\textwidth}{18in}\setlength{\textheight}{18in}
\setlength{\oddsidemargin}{0in}\setlength{\topmargin}{0in}
\setlength{\headheight}{0pt}\setlength{\headsep}{0pt}\setlength{\parindent}{0pt}
\begin{document}
"""


@dataclass(frozen=True)
class LatexRenderSettings:
    """``engine``: "auto" (TeX when ``pdflatex`` is on PATH, else mathtext), "tex" or "mathtext"."""

    timeout_s: float = 20.0
    dpi: int = 200
    engine: str = "auto"
    margin_px: int = 12
    max_source_chars: int = 20000
    max_pixels: int = 40_000_000
    font_size_pt: float = 14.0  # the mathtext path's size


def tex_available() -> bool:
    return shutil.which("pdflatex") is not None


def check_source(source: str) -> None:
    """Raises ``latex_refused`` for a snippet that names a file or system primitive (see the docstring)."""
    if "^^" in source:
        raise RenderError("latex_refused", "^^ character escapes are refused")
    names = _CONTROL_WORD.findall(source) + _ENVIRONMENT.findall(source)
    for name in names:
        lowered = name.lower()
        for stem in _FORBIDDEN_STEMS:
            if stem in lowered:
                raise RenderError("latex_refused", f"\\{name} is refused in a snippet")


def _tex_error(log: str) -> str:
    for line in log.splitlines():
        if line.startswith("!"):
            return line.strip()
    return ""


def run_tex(document: str, timeout_s: float) -> bytes:
    """PDF bytes of a whole LaTeX ``document`` run by sandboxed pdflatex (see the docstring).

    No check of the text is made here: the sandbox alone holds. Raises ``latex_error``
    (TeX's first ``!`` line), ``latex_timeout`` or ``render_failed``.
    """
    pdflatex = shutil.which("pdflatex")
    if pdflatex is None:
        raise RenderError("render_failed", "pdflatex is not on PATH")
    with tempfile.TemporaryDirectory(prefix="render-latex-") as tmp:
        with open(os.path.join(tmp, "snippet.tex"), "w", encoding="utf-8") as f:
            f.write(document)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": tmp,
            "LANG": "C.UTF-8",
            "openin_any": "p",
            "openout_any": "p",
            "shell_escape": "f",
            "SOURCE_DATE_EPOCH": "0",
            "FORCE_SOURCE_DATE": "1",
        }
        command = [
            "sh", "-c", f'ulimit -f {_FILE_LIMIT_BLOCKS}; exec "$@"', "pdflatex", pdflatex,
            "-no-shell-escape", "-interaction=nonstopmode", "-halt-on-error",
            "-no-mktex=tfm", "-no-mktex=pk", "-no-mktex=tex", "snippet.tex",
        ]
        process = subprocess.Popen(
            command, cwd=tmp, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            out, _ = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise RenderError("latex_timeout", f"pdflatex ran past {timeout_s:g} s") from None
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log = out.decode("utf-8", "replace")
        pdf = os.path.join(tmp, "snippet.pdf")
        if process.returncode != 0 or not os.path.exists(pdf):
            raise RenderError("latex_error", _tex_error(log) or f"pdflatex exited with {process.returncode}")
        with open(pdf, "rb") as f:
            return f.read()


def rasterize_pdf(pdf: bytes, dpi: int, margin_px: int, max_pixels: int) -> Image.Image:
    """The first page of ``pdf`` at ``dpi``, cropped to its objects' bounding box plus ``margin_px``."""
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(pdf)
    try:
        if len(document) != 1:
            raise RenderError("render_failed", f"the content spans {len(document)} pages")
        page = document[0]
        width, height = page.get_size()
        boxes = [obj.get_bounds() for obj in page.get_objects()]
        if not boxes:
            raise RenderError("render_failed", "the rendering is blank")
        pad = margin_px * 72 / dpi
        left = max(0.0, min(b[0] for b in boxes) - pad)
        bottom = max(0.0, min(b[1] for b in boxes) - pad)
        right = min(width, max(b[2] for b in boxes) + pad)
        top = min(height, max(b[3] for b in boxes) + pad)
        scale = dpi / 72
        if (right - left) * (top - bottom) * scale * scale > max_pixels:
            raise RenderError("render_failed", "the rendering is too large")
        bitmap = page.render(scale=scale, crop=(left, bottom, width - right, height - top))
        return to_rgb(bitmap.to_pil())
    finally:
        document.close()


def _tex_document(source: str, kind: str) -> str:
    body = source.strip()
    if kind == "equation" and not (body.startswith("$") or body.startswith("\\[") or body.startswith("\\begin")):
        body = "\\[\n" + body + "\n\\]"
    return _PREAMBLE + "\\noindent\n" + body + "\n\\end{document}\n"


# --- the matplotlib path --------------------------------------------------------------

_DELIMITERS = (
    (r"^\$\$(.*)\$\$$", 1), (r"^\\\[(.*)\\\]$", 1), (r"^\$(.*)\$$", 1),
    (r"^\\begin\{(equation\*?|displaymath)\}(.*)\\end\{\1\}$", 2),
)


def _math_body(source: str) -> str:
    body = source.strip()
    for pattern, group in _DELIMITERS:
        match = re.match(pattern, body, re.S)
        if match:
            return match.group(group).strip()
    return body


def _render_mathtext(source: str, settings: LatexRenderSettings) -> Image.Image:
    from matplotlib.figure import Figure
    from matplotlib.font_manager import FontProperties
    from matplotlib.mathtext import MathTextParser

    body = _math_body(source)
    if "\\begin" in body or "\\\\" in body:
        raise RenderError("latex_error", "mathtext: environments and line breaks need TeX")
    text = "$" + " ".join(body.split()) + "$"
    prop = FontProperties(size=settings.font_size_pt, math_fontfamily="cm")
    try:
        width, height, depth, _, _ = MathTextParser("path").parse(text, dpi=72, prop=prop)
    except ValueError as err:
        raise RenderError("latex_error", "mathtext: " + str(err).strip().splitlines()[-1]) from err
    fig = Figure(figsize=(width / 72 + 0.2, height / 72 + 0.2), dpi=settings.dpi)
    fig.text(0.1 / (width / 72 + 0.2), (depth / 72 + 0.1) / (height / 72 + 0.2), text, fontproperties=prop)
    return crop_to_ink(_figure_to_image(fig), settings.margin_px)


def _figure_to_image(fig) -> Image.Image:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", facecolor="white", metadata={"Software": None})
    return to_rgb(Image.open(io.BytesIO(buffer.getvalue())))


_CELL_COMMANDS = re.compile(r"\\(textbf|textit|emph|textrm|texttt|mathrm)\s*\{([^{}]*)\}")
_ESCAPES = {"\\%": "%", "\\&": "&", "\\_": "_", "\\#": "#", "\\$": "\\$", "\\{": "{", "\\}": "}"}
_RULES = re.compile(r"\\(hline|toprule|midrule|bottomrule)\b|\\cline\s*\{[^}]*\}")


def parse_tabular(source: str) -> tuple[str, list[list[str]]]:
    """(column alignments, rows of cell texts) of a simple ``tabular``; ``render_failed`` otherwise."""
    match = re.fullmatch(r"\s*\\begin\{tabular\}\s*(\[[^\]]*\])?\s*\{([^{}]*)\}(.*)\\end\{tabular\}\s*", source, re.S)
    if not match:
        raise RenderError("render_failed", "no TeX: the matplotlib table needs one simple tabular environment")
    spec = "".join(c for c in match.group(2) if c in "lcr")
    body = _RULES.sub("", match.group(3))
    rows: list[list[str]] = []
    for raw in re.split(r"\\\\(?:\s*\[[^\]]*\])?", body):
        if not raw.strip():
            continue
        cells = []
        for cell in re.split(r"(?<!\\)&", raw):
            text = _CELL_COMMANDS.sub(lambda m: m.group(2), cell.strip())
            outside_math = re.sub(r"\$[^$]*\$", "", text)
            for escape in _ESCAPES:
                outside_math = outside_math.replace(escape, "")
            if "\\" in outside_math or "{" in outside_math:
                raise RenderError("render_failed", f"no TeX: the matplotlib table cannot draw {cell.strip()!r}")
            for escape, plain in _ESCAPES.items():
                text = text.replace(escape, plain)
            cells.append(" ".join(text.split()))
        rows.append(cells)
    if not rows:
        raise RenderError("render_failed", "no TeX: the tabular has no rows")
    width = max(len(r) for r in rows)
    if len(spec) < width:
        spec += "l" * (width - len(spec))
    return spec, [r + [""] * (width - len(r)) for r in rows]


def _render_table(source: str, settings: LatexRenderSettings) -> Image.Image:
    from matplotlib.figure import Figure
    from matplotlib.table import Table

    spec, rows = parse_tabular(source)
    columns = len(rows[0])
    fig = Figure(figsize=(max(2.0, 1.2 * columns), 0.35 * len(rows) + 0.5), dpi=settings.dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.axis("off")
    align = {"l": "left", "c": "center", "r": "right"}
    table = Table(ax, loc="center")
    for row, cells in enumerate(rows):
        for col, text in enumerate(cells):
            table.add_cell(row, col, width=1 / columns, height=1 / (len(rows) + 1), text=text, loc=align[spec[col]])
    table.auto_set_font_size(False)
    table.set_fontsize(settings.font_size_pt * 0.8)
    table.auto_set_column_width(list(range(columns)))
    ax.add_table(table)
    try:
        image = _figure_to_image(fig)
    except ValueError as err:
        raise RenderError("latex_error", "mathtext: " + str(err).strip().splitlines()[-1]) from err
    return crop_to_ink(image, settings.margin_px)


def render_latex(source: str, kind: str, settings: LatexRenderSettings = LatexRenderSettings()) -> RenderedPage:
    """A LaTeX ``table`` (tabular) or ``equation`` snippet as an image; the target is ``source``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    if settings.engine not in ("auto", "tex", "mathtext"):
        raise ValueError(f"engine must be auto, tex or mathtext, not {settings.engine!r}")
    if not source or not source.strip():
        raise RenderError("empty_source", "no LaTeX source")
    if len(source) > settings.max_source_chars:
        raise RenderError("latex_refused", f"{len(source)} characters, at most {settings.max_source_chars}")
    check_source(source)
    use_tex = settings.engine == "tex" or (settings.engine == "auto" and tex_available())
    if use_tex:
        pdf = run_tex(_tex_document(source, kind), settings.timeout_s)
        image = rasterize_pdf(pdf, settings.dpi, settings.margin_px, settings.max_pixels)
        renderer = "pdflatex"
    elif kind == "equation":
        image, renderer = _render_mathtext(source, settings), "mathtext"
    else:
        image, renderer = _render_table(source, settings), "matplotlib:table"
    layout = {"kind": kind, "engine": renderer, "dpi": settings.dpi, "size_px": image.size}
    return RenderedPage(image, source, renderer, layout)
