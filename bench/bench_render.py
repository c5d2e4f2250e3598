"""Pages per second on one core of each renderer of `curate documents` (synth/render_*.py).

    python bench/bench_render.py [--seconds 5]

Each renderer runs in this one process (pdflatex in its child process, one at a time)
for about ``--seconds`` after one warm-up call, over varied inputs: text pages of about
600 words with the layout drawn from the seed (``TextRenderSettings()`` defaults, 120 dpi
letter pages); matplotlib charts cycling through bar, line, pie and scatter; a Vega-Lite
bar chart; a five-row LaTeX table and an equation through pdflatex (200 dpi, cropped)
and through the pure-Python path (mathtext, matplotlib table). The floor is pypdfium2
alone rasterising a letter PDF page of text at 120 dpi, the cost every PDF page of the
pipeline pays. Rows whose tool is missing (no pdflatex) are reported as skipped.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synth.render_chart import render_chart  # noqa: E402
from synth.render_latex import LatexRenderSettings, render_latex, tex_available  # noqa: E402
from synth.render_text import render_text  # noqa: E402

WORDS = ("the of and data model page text column layout renderer curation sample seed font image "
         "paragraph figure results table method training evaluation corpus document").split()
TABLE = r"""\begin{tabular}{|l|r|r|}
\hline
Model & Params & Score \\ \hline
small & 125M & 61.2 \\
base & 350M & 66.8 \\
large & 1.3B & 71.5 \\
xl & 6.7B & 75.0 \\ \hline
\end{tabular}"""
EQUATION = r"\mathcal{L}(\theta) = -\sum_{i=1}^{N} \log p_\theta(y_i \mid x_i) + \lambda \|\theta\|_2^2"


def _texts(count: int = 16) -> list[str]:
    rng = np.random.default_rng(0)
    texts = []
    for _ in range(count):
        parts = []
        for i in range(8):
            if i % 3 == 0:
                parts.append(f"{i // 3 + 1}. Section Heading")
            parts.append(" ".join(rng.choice(WORDS, size=int(rng.integers(40, 110)))) + ".")
        texts.append("\n\n".join(parts))
    return texts


def _charts() -> list[dict]:
    rng = np.random.default_rng(1)
    cats = ["Q1", "Q2", "Q3", "Q4", "Q5", "Q6"]
    series = [{"name": f"s{i}", "x": cats, "y": [round(float(v), 1) for v in rng.uniform(1, 10, 6)]} for i in range(3)]
    points = [{"name": f"g{i}", "x": [round(float(v), 2) for v in rng.normal(size=40)],
               "y": [round(float(v), 2) for v in rng.normal(size=40)]} for i in range(2)]
    return [
        {"type": "bar", "title": "Revenue", "x_label": "quarter", "y_label": "USD m", "series": series},
        {"type": "line", "title": "Trend", "x_label": "quarter", "y_label": "index", "series": series},
        {"type": "pie", "title": "Share", "series": [{"name": "share", "x": cats, "y": series[0]["y"]}]},
        {"type": "scatter", "title": "Samples", "x_label": "a", "y_label": "b", "series": points},
    ]


VEGA = {
    "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
    "title": "Rainfall",
    "data": {"values": [{"month": m, "mm": 40 + 7 * i} for i, m in enumerate(["Jan", "Feb", "Mar", "Apr", "May", "Jun"])]},
    "mark": "bar",
    "encoding": {"x": {"field": "month", "type": "nominal"}, "y": {"field": "mm", "type": "quantitative"}},
}


def _letter_pdf(text: str) -> bytes:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.5, 11))
    lines = text.replace("\n\n", " ").split()
    rows = [" ".join(lines[i : i + 14]) for i in range(0, len(lines), 14)][:55]
    for i, row in enumerate(rows):
        fig.text(0.08, 0.95 - i * 0.016, row, fontsize=9, family="DejaVu Serif")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="pdf")
    return buffer.getvalue()


def _pdfium_page(pdf: bytes):
    import pypdfium2 as pdfium

    def render(_: int) -> None:
        document = pdfium.PdfDocument(pdf)
        document[0].render(scale=120 / 72).to_pil().convert("RGB")
        document.close()

    return render


def _measure(call, seconds: float) -> tuple[int, float, float]:
    call(0)
    pages, cpu0 = 0, _cpu()
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        call(pages + 1)
        pages += 1
    wall = time.perf_counter() - start
    return pages, wall, _cpu() - cpu0


def _cpu() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    texts, charts = _texts(), _charts()
    tex, mathtext = LatexRenderSettings(engine="tex"), LatexRenderSettings(engine="mathtext")
    rows = [
        ("text page (PIL + DejaVu, 1-2 columns)", "text:*", lambda i: render_text(texts[i % len(texts)], i), True),
        ("matplotlib chart (bar/line/pie/scatter)", "matplotlib:*", lambda i: render_chart(charts[i % 4], i), True),
        ("Vega-Lite chart (vl-convert)", "vega-lite", lambda i: render_chart(VEGA, i), True),
        ("LaTeX table via TeX", "pdflatex", lambda i: render_latex(TABLE, "table", tex), tex_available()),
        ("equation via TeX", "pdflatex", lambda i: render_latex(EQUATION, "equation", tex), tex_available()),
        ("equation via mathtext", "mathtext", lambda i: render_latex(EQUATION, "equation", mathtext), True),
        ("LaTeX table via matplotlib", "matplotlib:table", lambda i: render_latex(TABLE, "table", mathtext), True),
        ("floor: pypdfium2 renders a letter PDF page", "-", _pdfium_page(_letter_pdf(texts[0])), True),
    ]
    print(f"\n{os.cpu_count()} CPUs; each row on one core, {args.seconds:g} s after a warm-up call\n")
    print("| renderer | `renderer` field | pages | pages/s per core | ms/page | CPU s/page |")
    print("|---|---|---|---|---|---|")
    for label, name, call, available in rows:
        if not available:
            print(f"| {label} | {name} | skipped: pdflatex not installed | | | |")
            continue
        pages, wall, cpu = _measure(call, args.seconds)
        print(f"| {label} | {name} | {pages} | {pages / wall:.1f} | {1000 * wall / pages:.0f} | {cpu / pages:.3f} |")


if __name__ == "__main__":
    main()
