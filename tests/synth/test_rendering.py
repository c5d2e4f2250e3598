"""Renderers of `curate documents`: text pages, charts and LaTeX (synth/render_*.py)."""

import time

import numpy as np
import pytest

from synth.render_chart import ChartRenderSettings, render_chart
from synth.render_latex import LatexRenderSettings, render_latex, run_tex
from synth.render_text import TextRenderSettings, render_text, split_blocks
from synth.rendering import RenderError


WORDS = "the of data model page text column layout renderer curation sample seed font image long paragraph".split()


def _text(paragraphs=40, seed=0):
    rng = np.random.default_rng(seed)
    parts = []
    for i in range(paragraphs):
        if i % 6 == 0:
            parts.append(f"{i // 6 + 1}. Section Number {i}")
        parts.append(" ".join(rng.choice(WORDS, size=int(rng.integers(30, 120)))) + ".")
    return "\n\n".join(parts)


def _ink(image):
    return (np.asarray(image) < 200).any(axis=2)


# --- text -----------------------------------------------------------------------------


def test_text_same_seed_same_bytes_and_seeds_vary_layout():
    text = _text()
    a, b = render_text(text, 7), render_text(text, 7)
    assert a.image.mode == "RGB"
    assert a.image.tobytes() == b.image.tobytes() and a.target == b.target and a.layout == b.layout
    layouts = {tuple(sorted((k, str(v)) for k, v in render_text(text, s).layout.items())) for s in range(8)}
    assert len(layouts) > 1
    assert {render_text(text, s).renderer for s in range(8)} == {"text:one_column", "text:two_column"}


def test_two_columns_put_ink_in_both_halves_with_a_gutter():
    settings = TextRenderSettings(columns=(2,))
    page = render_text(_text(), 3, settings)
    assert page.renderer == "text:two_column" and page.layout["columns"] == 2
    ink = _ink(page.image)
    width = page.image.width
    left, right = ink[:, : width // 2 - 20].sum(), ink[:, width // 2 + 20 :].sum()
    assert left > 5000 and right > 5000
    margin_l, _, margin_r, _ = page.layout["margins_px"]
    column = (width - margin_l - margin_r - page.layout["column_gap_px"]) / 2
    gutter = ink[:, round(margin_l + column) + 2 : round(margin_l + column + page.layout["column_gap_px"]) - 2]
    assert gutter.sum() == 0
    one = render_text(_text(), 3, TextRenderSettings(columns=(1,)))
    assert one.renderer == "text:one_column"


def test_target_is_exactly_the_text_on_the_page():
    text = _text(paragraphs=60)
    page = render_text(text, 1)
    assert page.layout["truncated"]
    normalised = "\n\n".join(b.text for b in split_blocks(text))
    assert normalised.startswith(page.target[: len(page.target) - 1])
    cut = page.target.split("\n\n")
    # each block on the page is whole except perhaps the last, which ends at a line boundary
    blocks = [b.text for b in split_blocks(text)]
    assert cut[:-1] == blocks[: len(cut) - 1]
    assert blocks[len(cut) - 1].startswith(cut[-1])
    short = "A Short Title\n\nJust one   paragraph\nwith a soft wrap."
    page = render_text(short, 0)
    assert page.target == "A Short Title\n\nJust one paragraph with a soft wrap."
    assert not page.layout["truncated"] and page.layout["headings"] == 1


def test_text_without_visible_characters_is_refused():
    with pytest.raises(RenderError) as err:
        render_text(" \n\t\n ", 0)
    assert err.value.reason == "empty_source"


def test_a_word_wider_than_the_column_is_broken_and_kept_whole_in_the_target():
    word = "x" * 400
    page = render_text(f"start {word} end", 0, TextRenderSettings(columns=(2,)))
    assert page.target == f"start {word} end"
    assert page.layout["lines"] >= 3


# --- charts ---------------------------------------------------------------------------

SERIES = [{"name": "north", "x": ["Q1", "Q2", "Q3"], "y": [3, 5.5, 2]}, {"name": "south", "x": ["Q2", "Q4"], "y": [4, 1]}]
CHARTS = {
    "bar": {"type": "bar", "title": "Sales", "x_label": "Quarter", "y_label": "Units", "series": SERIES},
    "line": {"type": "line", "title": "Growth", "x_label": "Year", "y_label": "Value",
             "series": [{"name": "a", "x": [2020, 2021, 2022], "y": [1.5, 2.25, 4]}, {"name": "b", "x": [2021], "y": [7]}]},
    "pie": {"type": "pie", "title": "Share", "x_label": "Fruit", "series": [{"name": "votes", "x": ["apple", "pear", "fig"], "y": [5, 3, 2]}]},
    "scatter": {"type": "scatter", "title": "Points", "x_label": "height", "y_label": "weight",
                "series": [{"name": "p", "x": [1, 1, 2.5], "y": [3, 4, 5]}, {"name": "q", "x": [0.5], "y": [9]}]},
}
VEGA = {
    "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
    "title": "Rainfall",
    "data": {"values": [{"month": "Jan", "mm": 81}, {"month": "Feb", "mm": 62.5}, {"month": "Mar", "mm": 70}]},
    "mark": "bar",
    "encoding": {"x": {"field": "month", "type": "nominal"}, "y": {"field": "mm", "type": "quantitative"}},
}


@pytest.mark.parametrize("kind", sorted(CHARTS))
def test_each_chart_type_renders_a_non_blank_image(kind):
    settings = ChartRenderSettings(dpi=80)
    page = render_chart(CHARTS[kind], 1, settings)
    assert page.renderer == f"matplotlib:{kind}"
    assert page.image.mode == "RGB" and page.image.size == (512, 384)
    assert 2000 < _ink(page.image).sum() < 0.8 * 512 * 384
    assert page.image.tobytes() == render_chart(CHARTS[kind], 1, settings).image.tobytes()


def test_chart_targets_are_markdown_tables_of_the_data():
    assert render_chart(CHARTS["bar"], 0).target == (
        "| Quarter | north | south |\n| --- | --- | --- |\n| Q1 | 3 |  |\n| Q2 | 5.5 | 4 |\n| Q3 | 2 |  |\n| Q4 |  | 1 |"
    )
    assert render_chart(CHARTS["scatter"], 0).target.splitlines()[0] == "| series | height | weight |"
    assert "| q | 0.5 | 9 |" in render_chart(CHARTS["scatter"], 0).target
    assert "| pear | 3 |" in render_chart(CHARTS["pie"], 0).target


def test_vega_lite_renders_through_vl_convert():
    page = render_chart(VEGA, 0)
    assert page.renderer == "vega-lite" and page.image.mode == "RGB"
    assert page.image.width > 100 and page.image.height > 100 and _ink(page.image).sum() > 2000
    assert page.target == "| month | mm |\n| --- | --- |\n| Jan | 81 |\n| Feb | 62.5 |\n| Mar | 70 |"


def test_vega_lite_data_url_is_refused():
    spec = {**VEGA, "data": {"url": "https://example.com/data.csv"}}
    with pytest.raises(RenderError) as err:
        render_chart(spec, 0)
    assert err.value.reason == "bad_chart_spec" and "url" in err.value.detail
    layered = {**VEGA, "layer": [{"data": {"url": "data/cars.json"}, "mark": "point"}]}
    with pytest.raises(RenderError):
        render_chart(layered, 0)


@pytest.mark.parametrize(
    "spec, reason",
    [
        ({"type": "donut", "series": SERIES}, "unknown_chart_type"),
        ({"type": "bar"}, "bad_chart_spec"),
        ({"type": "bar", "series": [{"name": "a", "x": [1, 2], "y": [1]}]}, "bad_chart_spec"),
        ({"type": "line", "series": [{"name": "a", "x": [1, 1], "y": [1, 2]}]}, "bad_chart_spec"),
        ({"type": "scatter", "series": [{"name": "a", "x": ["a"], "y": [1]}]}, "bad_chart_spec"),
        ({"type": "pie", "series": [{"name": "a", "x": ["a"], "y": [-1]}]}, "bad_chart_spec"),
        ({"type": "bar", "series": [{"name": "a", "x": [1], "y": [float("nan")]}]}, "bad_chart_spec"),
        ({"type": "bar", "colour": "red", "series": SERIES}, "bad_chart_spec"),
        ({"mark": "bar", "encoding": {}}, "bad_chart_spec"),
    ],
)
def test_bad_chart_specs_are_refused_with_reasons(spec, reason):
    with pytest.raises(RenderError) as err:
        render_chart(spec, 0)
    assert err.value.reason == reason and err.value.detail


# --- LaTeX ----------------------------------------------------------------------------

TABLE = r"""\begin{tabular}{|l|c|r|}
\hline
Name & Value & \textbf{Unit} \\ \hline
alpha & $\alpha^2$ & 3.5\% \\
beta & 2 & m \\ \hline
\end{tabular}"""
EQUATION = r"E = mc^2 + \int_0^\infty e^{-x^2}\,dx = \frac{\sqrt{\pi}}{2}"
TEX = LatexRenderSettings(engine="tex", timeout_s=30)
MATHTEXT = LatexRenderSettings(engine="mathtext")


@pytest.mark.parametrize("kind, source", [("table", TABLE), ("equation", EQUATION), ("equation", r"\begin{align*} a &= b \\ c &= d \end{align*}")])
def test_tex_renders_tables_and_equations_cropped(kind, source):
    page = render_latex(source, kind, TEX)
    assert page.renderer == "pdflatex" and page.target == source and page.image.mode == "RGB"
    w, h = page.image.size
    assert 50 < w < 1500 and 20 < h < 800
    ink = _ink(page.image)
    assert ink.sum() > 500
    assert not ink[:5].any() and not ink[:, :5].any()  # cropped with a white margin


@pytest.mark.parametrize("kind, source, renderer", [("table", TABLE, "matplotlib:table"), ("equation", EQUATION, "mathtext"), ("equation", f"\\[{EQUATION}\\]", "mathtext")])
def test_mathtext_path_without_tex(kind, source, renderer):
    page = render_latex(source, kind, MATHTEXT)
    assert page.renderer == renderer and page.target == source
    assert _ink(page.image).sum() > 500


def test_mathtext_path_refuses_what_it_cannot_draw():
    with pytest.raises(RenderError) as err:
        render_latex(r"\begin{tabular}{ll} \multicolumn{2}{c}{x} \\ \end{tabular}", "table", MATHTEXT)
    assert err.value.reason == "render_failed"
    with pytest.raises(RenderError) as err:
        render_latex(r"\frac{1}{", "equation", MATHTEXT)
    assert err.value.reason == "latex_error" and err.value.detail.startswith("mathtext:")


def test_bad_latex_carries_tex_error_line():
    with pytest.raises(RenderError) as err:
        render_latex(r"x = \undefinedmacro{1}", "equation", TEX)
    assert err.value.reason == "latex_error" and err.value.detail == "! Undefined control sequence."


@pytest.mark.parametrize(
    "source",
    [r"\immediate\write18{touch /tmp/pwned}", r"\write18{ls}", r"\input{/etc/passwd}", r"\include{x}",
     r"\makeatletter\@@input /etc/passwd", r"\csname input\endcsname{/etc/passwd}", r"\catcode`\~=0",
     r"\^^69nput{/etc/passwd}", r"\openin5=/etc/passwd", r"\usepackage{shellesc}"],
)
def test_dangerous_sources_are_refused_before_tex(source):
    with pytest.raises(RenderError) as err:
        render_latex(source, "equation", TEX)
    assert err.value.reason == "latex_refused"


DOC = "\\documentclass{article}\n\\begin{document}\n%s\n\\end{document}\n"


def test_tex_sandbox_holds_without_the_text_check(tmp_path):
    import pypdfium2 as pdfium

    with pytest.raises(RenderError) as err:
        run_tex(DOC % r"\input{/etc/passwd}", 30)
    assert err.value.reason == "latex_error"
    probe = r"\newread\r \openin\r=/etc/passwd \ifeof\r BLOCKED\else READ\fi"
    pdf = pdfium.PdfDocument(run_tex(DOC % probe, 30))
    text = pdf[0].get_textpage().get_text_range()
    assert "BLOCKED" in text and "READ" not in text
    escaped = tmp_path / "escaped.txt"
    with pytest.raises(RenderError) as err:
        run_tex(DOC % (r"\newwrite\w \immediate\openout\w=%s \immediate\write\w{x}\immediate\closeout\w ok" % escaped), 30)
    assert err.value.detail.startswith("! I can't write on file")
    assert not escaped.exists()
    marker = tmp_path / "shell.txt"
    run_tex(DOC % (r"\immediate\write18{touch %s} ok" % marker), 30)
    assert not marker.exists()


def test_tex_loop_times_out_quickly():
    start = time.monotonic()
    with pytest.raises(RenderError) as err:
        render_latex(r"\def\x{\x}\x", "equation", LatexRenderSettings(engine="tex", timeout_s=1.5))
    assert err.value.reason == "latex_timeout"
    assert time.monotonic() - start < 10


def test_empty_latex_is_refused():
    with pytest.raises(RenderError) as err:
        render_latex("  ", "equation", MATHTEXT)
    assert err.value.reason == "empty_source"


def test_auto_engine_falls_back_to_mathtext_without_tex(monkeypatch):
    import synth.render_latex as render_latex_module

    monkeypatch.setattr(render_latex_module, "tex_available", lambda: False)
    page = render_latex(EQUATION, "equation", LatexRenderSettings(engine="auto"))
    assert page.renderer == "mathtext"
