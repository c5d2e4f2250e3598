"""Chart specs rendered into chart images whose target is the chart's data as a Markdown table.

Two kinds of spec are accepted by :func:`render_chart`:

**Vega-Lite** (a dict with ``"$schema"`` or ``"mark"``): rendered to PNG by
``vl-convert-python`` (renderer ``vega-lite``). Only inline data is accepted: the spec
needs ``data.values``, a list of objects, and a ``url`` key anywhere in it is refused as
``bad_chart_spec`` (vl-convert is also given no allowed base URL), so nothing is fetched.
The seed picks a light theme from :attr:`ChartRenderSettings.vega_themes`. The target
table's columns are the keys of ``data.values`` in first-seen order, one row per value.

**The small schema** (renderer ``matplotlib:<type>``, drawn with matplotlib's Agg backend)::

    {
      "type": "bar" | "line" | "pie" | "scatter",     # required
      "title": str,                                   # optional, drawn above the chart
      "x_label": str, "y_label": str,                 # optional axis titles (pie: unused)
      "series": [                                     # required, 1 to max_series entries
        {"name": str, "x": [...], "y": [...]},        # x and y of the same length >= 1
        ...
      ]
    }

``y`` values are finite numbers. ``x`` values are numbers or strings (categories) for
bar, line and pie, and numbers for scatter. Bar, line and pie need distinct ``x`` within
a series; a pie has exactly one series with non-negative ``y`` and a positive sum (its
``x`` are the slice labels). Series names are distinct non-empty strings and label the
legend (shown with two or more series, and on every pie). Any other key is refused.
Errors raise :class:`~synth.rendering.RenderError` with ``bad_chart_spec`` (and what is
wrong in ``detail``), or ``unknown_chart_type`` for a ``type`` outside the four.

The target of bar, line and pie charts is a wide table: first column ``x_label`` (or
``x``), then one column per series in spec order; rows are the ``x`` values in
first-seen order over the series, a cell empty where a series has no value. Scatter
points repeat ``x``, so the target is a long table: ``series``, ``x_label``,
``y_label`` (or ``x``, ``y``), one row per point in spec order. Integral numbers are
written without a decimal point, others in Python's shortest ``repr``; ``|`` is escaped.
The seed picks the colour palette, grid and marker style.
"""

from __future__ import annotations

import io
import math
import random
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np
from PIL import Image

from synth.rendering import RenderedPage, RenderError, to_rgb

CHART_TYPES = ("bar", "line", "pie", "scatter")
_KEYS = {"type", "title", "x_label", "y_label", "series"}
_SERIES_KEYS = {"name", "x", "y"}


@dataclass(frozen=True)
class ChartRenderSettings:
    """Image size and the style choices the seed draws from."""

    dpi: int = 100
    size_in: tuple[float, float] = (6.4, 4.8)
    palettes: tuple[str, ...] = ("tab10", "Set1", "Dark2", "tab20")
    vega_scale: float = 1.5
    vega_themes: tuple[str | None, ...] = (None, "googlecharts", "quartz", "vox", "excel")
    max_series: int = 20
    max_points: int = 5000


def _bad(detail: str) -> RenderError:
    return RenderError("bad_chart_spec", detail)


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        text = str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    elif isinstance(value, (dict, list)):
        import json

        text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    else:
        text = str(value)
    return " ".join(text.split()).replace("|", "\\|")


def markdown_table(header: list[Any], rows: list[list[Any]]) -> str:
    """A Markdown table: header row, ``---`` separators, one line per row."""
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


# --- the small schema ---------------------------------------------------------------


def validate_spec(spec: Any, settings: ChartRenderSettings = ChartRenderSettings()) -> None:
    """Raises RenderError unless ``spec`` follows the small schema in this module's docstring."""
    if not isinstance(spec, dict):
        raise _bad("the spec is not an object")
    kind = spec.get("type")
    if kind not in CHART_TYPES:
        raise RenderError("unknown_chart_type", f"type {kind!r} is not one of {', '.join(CHART_TYPES)}")
    extra = sorted(set(spec) - _KEYS)
    if extra:
        raise _bad(f"unknown keys {extra}")
    for key in ("title", "x_label", "y_label"):
        if key in spec and not isinstance(spec[key], str):
            raise _bad(f"{key} is not a string")
    series = spec.get("series")
    if not isinstance(series, list) or not series:
        raise _bad("series is not a non-empty list")
    if len(series) > settings.max_series:
        raise _bad(f"{len(series)} series, at most {settings.max_series}")
    if kind == "pie" and len(series) != 1:
        raise _bad("a pie has exactly one series")
    names: set[str] = set()
    points = 0
    for index, item in enumerate(series):
        if not isinstance(item, dict):
            raise _bad(f"series[{index}] is not an object")
        extra = sorted(set(item) - _SERIES_KEYS)
        if extra:
            raise _bad(f"series[{index}] has unknown keys {extra}")
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            raise _bad(f"series[{index}].name is not a non-empty string")
        if name in names:
            raise _bad(f"series name {name!r} repeats")
        names.add(name)
        xs, ys = item.get("x"), item.get("y")
        if not isinstance(xs, list) or not isinstance(ys, list) or not xs or len(xs) != len(ys):
            raise _bad(f"series {name!r}: x and y are not lists of the same non-zero length")
        points += len(xs)
        if not all(_is_number(y) for y in ys):
            raise _bad(f"series {name!r}: a y value is not a finite number")
        if kind == "scatter":
            if not all(_is_number(x) for x in xs):
                raise _bad(f"series {name!r}: a scatter x value is not a finite number")
        else:
            if not all(_is_number(x) or isinstance(x, str) for x in xs):
                raise _bad(f"series {name!r}: an x value is neither a number nor a string")
            if len({(type(x) is str, x) for x in xs}) != len(xs):
                raise _bad(f"series {name!r}: x values repeat")
        if kind == "pie" and (any(y < 0 for y in ys) or sum(ys) <= 0):
            raise _bad("pie values must be non-negative with a positive sum")
    if points > settings.max_points:
        raise _bad(f"{points} points, at most {settings.max_points}")


def _x_order(series: list[dict]) -> list[Any]:
    seen: dict[tuple[bool, Any], Any] = {}
    for item in series:
        for x in item["x"]:
            seen.setdefault((isinstance(x, str), x), x)
    return list(seen.values())


def spec_table(spec: dict) -> str:
    """The target of a small-schema spec (see the module docstring)."""
    x_label = spec.get("x_label") or "x"
    if spec["type"] == "scatter":
        y_label = spec.get("y_label") or "y"
        rows = [[s["name"], x, y] for s in spec["series"] for x, y in zip(s["x"], s["y"])]
        return markdown_table(["series", x_label, y_label], rows)
    columns = [{(isinstance(x, str), x): y for x, y in zip(s["x"], s["y"])} for s in spec["series"]]
    rows = [[x] + [col.get((isinstance(x, str), x)) for col in columns] for x in _x_order(spec["series"])]
    return markdown_table([x_label] + [s["name"] for s in spec["series"]], rows)


def _figure_image(fig) -> Image.Image:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return to_rgb(Image.fromarray(np.asarray(canvas.buffer_rgba()).copy(), "RGBA"))


def _render_matplotlib(spec: dict, seed: int, settings: ChartRenderSettings) -> RenderedPage:
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    rng = random.Random(seed)
    palette = rng.choice(settings.palettes)
    grid = rng.random() < 0.5
    marker = rng.choice(["o", "s", "^", "D", None])
    colors = list(colormaps[palette].colors)  # qualitative maps: a list of colours
    kind, series = spec["type"], spec["series"]
    fig = Figure(figsize=settings.size_in, dpi=settings.dpi)
    ax = fig.add_subplot()
    if kind == "pie":
        s = series[0]
        ax.pie(s["y"], labels=[_cell(x) for x in s["x"]], colors=[colors[i % len(colors)] for i in range(len(s["x"]))],
               autopct="%1.1f%%", startangle=90, counterclock=False)
        ax.set_aspect("equal")
        ax.legend(title=s["name"], loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small")
    else:
        categorical = kind != "scatter" and any(isinstance(x, str) for s in series for x in s["x"])
        xs_all = _x_order(series)
        position = {(isinstance(x, str), x): i for i, x in enumerate(xs_all)}
        width = 0.8 / len(series)
        for index, s in enumerate(series):
            color = colors[index % len(colors)]
            if kind == "bar" or categorical:
                xs = np.array([position[(isinstance(x, str), x)] for x in s["x"]], dtype=float)
            else:
                xs = np.asarray(s["x"], dtype=float)
            if kind == "bar":
                ax.bar(xs + (index - (len(series) - 1) / 2) * width, s["y"], width=width, color=color, label=s["name"])
            elif kind == "line":
                order = np.argsort(xs, kind="stable")
                ax.plot(xs[order], np.asarray(s["y"], float)[order], color=color, marker=marker, label=s["name"])
            else:
                ax.scatter(xs, s["y"], color=color, marker=marker or "o", label=s["name"], s=24)
        if kind == "bar" or categorical:
            ax.set_xticks(range(len(xs_all)), [_cell(x) for x in xs_all],
                          rotation=45 if len(xs_all) > 6 else 0, ha="right" if len(xs_all) > 6 else "center")
        ax.set_xlabel(spec.get("x_label", ""))
        ax.set_ylabel(spec.get("y_label", ""))
        if grid:
            ax.grid(True, alpha=0.4)
        if len(series) > 1:
            ax.legend(fontsize="small")
    if spec.get("title"):
        ax.set_title(spec["title"])
    fig.tight_layout()
    image = _figure_image(fig)
    layout = {"palette": palette, "grid": grid, "marker": marker, "size_px": image.size, "dpi": settings.dpi}
    return RenderedPage(image, spec_table(spec), f"matplotlib:{kind}", layout)


# --- Vega-Lite ------------------------------------------------------------------------


def _has_url(value: Any) -> bool:
    if isinstance(value, dict):
        return any(k == "url" or _has_url(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_url(v) for v in value)
    return False


def _render_vega_lite(spec: dict, seed: int, settings: ChartRenderSettings) -> RenderedPage:
    import vl_convert

    if _has_url({k: v for k, v in spec.items() if k != "$schema"}):
        raise _bad("a Vega-Lite spec with a url is refused: only inline data.values")
    data = spec.get("data")
    values = data.get("values") if isinstance(data, dict) else None
    if not isinstance(values, list) or not values or not all(isinstance(v, dict) for v in values):
        raise _bad("a Vega-Lite spec needs inline data.values, a non-empty list of objects")
    theme = random.Random(seed).choice(settings.vega_themes)
    try:
        png = vl_convert.vegalite_to_png(spec, scale=settings.vega_scale, theme=theme, allowed_base_urls=[])
    except Exception as err:  # vl-convert raises ValueError with the JavaScript error
        raise _bad(str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__) from err
    image = to_rgb(Image.open(io.BytesIO(png)))
    header: dict[str, None] = {}
    for row in values:
        header.update(dict.fromkeys(row))
    table = markdown_table(list(header), [[row.get(k) for k in header] for row in values])
    layout = {"theme": theme, "size_px": image.size, "scale": settings.vega_scale}
    return RenderedPage(image, table, "vega-lite", layout)


def is_vega_lite(spec: Any) -> bool:
    return isinstance(spec, dict) and ("$schema" in spec or "mark" in spec)


def render_chart(spec: dict, seed: int, settings: ChartRenderSettings = ChartRenderSettings()) -> RenderedPage:
    """``spec`` (Vega-Lite or the small schema) as a chart image; target: its data as a Markdown table."""
    if not isinstance(spec, dict) or not spec:
        raise RenderError("empty_source" if isinstance(spec, dict) or spec is None else "bad_chart_spec",
                          "the spec is not a non-empty object")
    if is_vega_lite(spec):
        return _render_vega_lite(spec, seed, settings)
    validate_spec(spec, settings)
    try:
        return _render_matplotlib(spec, seed, settings)
    except RenderError:
        raise
    except Exception as err:
        raise RenderError("render_failed", f"{type(err).__name__}: {err}") from err
