"""Interactive figures: move a control, the curves follow, in the offline book and in Colab.

Every chapter has at least one figure the reader can change: a depth, an activation, a gain, a
class profile. The figure's data are computed by the chapter's cells over a grid of control
values small enough to embed, and stored in the notebook with the figure; moving a control only
chooses which of the stored rows are drawn. Nothing runs in Python when a control moves, so
the figure works in the static book, offline, exactly as it does in a live notebook.

The figures are `Vega-Lite <https://vega.github.io/vega-lite/>`_ specifications (the grammar
the Altair library writes): a control is a Vega-Lite parameter bound to an HTML input, and the
rows are filtered by the parameters' values. Vega-Lite is maintained, draws in any browser,
and keeps the data in a plain JSON specification that tests can read back. The book ships its
JavaScript (``book/_static/vega``, from the npm packages of :data:`VEGA_VERSIONS`); in Colab or
Jupyter, the figure loads the same versions from a CDN when the page has none. Each figure also
carries a static PNG of its first view, which the PDF edition prints.

Chapter 1 introduces it (per-layer activation and gradient spread through a deep network).
"""
from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from utils.stats import require_int

__all__ = ["VEGA_VERSIONS", "CDN", "FALLBACK_LINE", "Control", "InteractiveFigure",
           "line_explorer"]

#: The npm releases of the three libraries a figure needs, vendored in the book and loaded from
#: the CDN elsewhere (``make vendor-vega`` refreshes the book's copy).
VEGA_VERSIONS: dict[str, str] = {"vega": "6.4.0", "vega-lite": "6.5.0", "vega-embed": "7.3.0"}

#: Where a live notebook (Colab, Jupyter) loads them from when the page has not loaded them.
CDN = "https://cdn.jsdelivr.net/npm/{package}@{version}"

#: The pattern of the figure's one line that names the CDN addresses. The book's build
#: (``book/_ext/course_book.py``) replaces that line by an empty list, since the book ships
#: the libraries and must name no other host.
FALLBACK_LINE = r"var urls = \[[^\]\n]*\];"

# Okabe-Ito, the course's colour-blind-safe palette (utils.plotting.SERIES_COLORS), restated
# here so that this module needs no matplotlib import to build a specification.
_PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442",
            "#000000")
_KINDS = ("select", "radio", "range")


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Control:
    """One control of an :class:`InteractiveFigure`: which rows of one field are drawn.

    Attributes
    ----------
    field
        The data field the control filters on (rows whose ``field`` equals the control's value
        are drawn).
    label
        What the reader sees beside the input ("depth", "activation").
    options
        The values the control can take, in order; each must occur in the data.
    initial
        The value shown first (and in the static PNG); one of ``options``, or ``everything``.
    kind
        ``"select"`` (a drop-down), ``"radio"`` (buttons) or ``"range"`` (a slider; its numeric
        options must be evenly spaced).
    everything
        If given, an extra option with this label that draws every value of the field (for
        example "all three"). Not allowed on a slider.
    """

    field: str
    label: str
    options: tuple
    initial: Any
    kind: str = "select"
    everything: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.field, str) or not self.field:
            raise ValueError(f"field must be a non-empty string, got {self.field!r}")
        if not isinstance(self.label, str) or not self.label:
            raise ValueError(f"label must be a non-empty string, got {self.label!r}")
        options = tuple(self.options)
        object.__setattr__(self, "options", options)
        if not options or not all(_is_scalar(o) for o in options) or len(set(options)) != len(
                options):
            raise ValueError(f"options must be distinct strings or numbers, got {self.options!r}")
        if self.kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {self.kind!r}")
        if self.everything is not None and (not isinstance(self.everything, str)
                                            or self.everything in options):
            raise ValueError(f"everything must be a label that is not an option, got "
                             f"{self.everything!r}")
        if self.kind == "range":
            if self.everything is not None:
                raise ValueError("a slider (kind='range') cannot have everything=")
            if not all(isinstance(o, (int, float)) for o in options) or len(options) < 2:
                raise ValueError(f"a slider needs two or more numeric options, got {options!r}")
            steps = {round(b - a, 9) for a, b in zip(options, options[1:])}
            if len(steps) != 1 or next(iter(steps)) <= 0:
                raise ValueError(f"a slider's options must increase in equal steps, got "
                                 f"{options!r}")
        allowed = options + ((self.everything,) if self.everything is not None else ())
        if self.initial not in allowed:
            raise ValueError(f"initial must be one of {allowed!r}, got {self.initial!r}")

    @property
    def parameter(self) -> str:
        """The Vega-Lite parameter's name (letters and digits only)."""
        return "control_" + "".join(ch if ch.isalnum() else "_" for ch in self.field)

    def keeps(self, row: dict, value: Any) -> bool:
        """Whether the control, at ``value``, draws ``row``: what the figure's filter computes."""
        return (self.everything is not None and value == self.everything) or row[self.field] == value

    def binding(self) -> dict:
        """The Vega-Lite ``bind`` of the parameter: which HTML input moves it."""
        if self.kind == "range":
            return {"input": "range", "min": self.options[0], "max": self.options[-1],
                    "step": self.options[1] - self.options[0], "name": self.label + " "}
        values = list(self.options) + ([self.everything] if self.everything is not None else [])
        return {"input": self.kind, "options": values, "name": self.label + " "}

    def expression(self) -> str:
        """The Vega expression the filter evaluates for this control."""
        field_ref = f"datum[{json.dumps(self.field)}]"
        test = f"{field_ref} == {self.parameter}"
        if self.everything is not None:
            test = f"({self.parameter} == {json.dumps(self.everything)} || {test})"
        return test


@dataclass
class InteractiveFigure:
    """A line figure whose controls choose which stored rows are drawn.

    Build one with :func:`line_explorer`. Displaying it in a notebook shows the interactive
    figure (HTML, with a static PNG of its first view for the PDF edition); :meth:`spec` is the
    Vega-Lite specification, :meth:`visible` the rows a given setting of the controls draws.
    """

    rows: list[dict]
    x: str
    y: str
    color: str | None
    controls: tuple[Control, ...]
    panel: str | None = None
    title: str = ""
    x_title: str = ""
    y_title: str = ""
    log_y: bool = False
    colors: dict[str, str] = field(default_factory=dict)
    width: int = 300
    height: int = 220

    def visible(self, **values: Any) -> list[dict]:
        """The rows drawn when each control (by field) has the given value (default: initial).

        Raises
        ------
        ValueError
            If a keyword is not a control's field, or a value is not one of its options.
        """
        settings = {}
        fields = {c.field: c for c in self.controls}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ValueError(f"values must name the controls' fields {sorted(fields)}, got "
                             f"{unknown}")
        for name, control in fields.items():
            value = values.get(name, control.initial)
            allowed = control.options + ((control.everything,) if control.everything else ())
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed!r}, got {value!r}")
            settings[name] = value
        return [row for row in self.rows
                if all(fields[name].keeps(row, value) for name, value in settings.items())]

    def spec(self) -> dict:
        """The Vega-Lite specification: the data, the controls, one line per colour and panel."""
        y_scale = {"type": "log"} if self.log_y else {"zero": False}
        encoding: dict[str, Any] = {
            "x": {"field": self.x, "type": "quantitative", "title": self.x_title or self.x},
            "y": {"field": self.y, "type": "quantitative", "title": self.y_title or self.y,
                  "scale": y_scale, "axis": {"format": ".0e"} if self.log_y else {}},
            "tooltip": [{"field": name, "type": "nominal" if isinstance(self.rows[0][name], str)
                         else "quantitative"} for name in self.rows[0]],
        }
        if self.color is not None:
            domain = list(dict.fromkeys(row[self.color] for row in self.rows))
            palette = [self.colors.get(name, _PALETTE[i % len(_PALETTE)])
                       for i, name in enumerate(domain)]
            encoding["color"] = {"field": self.color, "type": "nominal", "title": self.color,
                                 "scale": {"domain": domain, "range": palette}}
        if self.panel is not None:
            encoding["column"] = {"field": self.panel, "type": "nominal", "title": None,
                                  "sort": list(dict.fromkeys(r[self.panel] for r in self.rows))}
        filters = " && ".join(control.expression() for control in self.controls)
        spec = {
            "$schema": f"https://vega.github.io/schema/vega-lite/v{VEGA_VERSIONS['vega-lite'].split('.')[0]}.json",
            "title": self.title,
            "data": {"values": self.rows},
            "params": [{"name": c.parameter, "value": c.initial, "bind": c.binding()}
                       for c in self.controls],
            "transform": [{"filter": filters}] if filters else [],
            "mark": {"type": "line", "point": True, "strokeWidth": 2},
            "encoding": encoding,
            "width": self.width,
            "height": self.height,
            "resolve": {"scale": {"y": "independent"}} if self.panel else {},
        }
        return spec

    def static_png(self, dpi: int = 100) -> bytes:
        """The first view (every control at its initial value) drawn with matplotlib, as PNG."""
        from matplotlib.figure import Figure  # no pyplot: nothing is shown or kept

        rows = self.visible()
        panels = list(dict.fromkeys(r[self.panel] for r in self.rows)) if self.panel else [None]
        colours = list(dict.fromkeys(r[self.color] for r in self.rows)) if self.color else [None]
        figure = Figure(figsize=(4.2 * len(panels), 3.2), layout="constrained")
        axes = figure.subplots(1, len(panels), squeeze=False)
        for axis, panel in zip(axes[0], panels):
            for i, colour in enumerate(colours):
                line = [r for r in rows if (panel is None or r[self.panel] == panel)
                        and (colour is None or r[self.color] == colour)]
                if not line:
                    continue
                line.sort(key=lambda r: r[self.x])
                shade = self.colors.get(colour, _PALETTE[i % len(_PALETTE)])
                axis.plot([r[self.x] for r in line], [r[self.y] for r in line], "o-",
                          color=shade, markersize=3, label=colour)
            if self.log_y:
                axis.set_yscale("log")
            axis.set(xlabel=self.x_title or self.x, ylabel=self.y_title or self.y,
                     title=str(panel) if panel is not None else "")
        if self.color is not None:
            axes[0][-1].legend(title=self.color, fontsize="small")
        setting = ", ".join(f"{c.label} {c.initial}" for c in self.controls)
        figure.suptitle(f"{self.title} ({setting})" if self.title else setting)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=dpi)
        return buffer.getvalue()

    def html(self) -> str:
        """The HTML that draws the figure: a ``<div>`` and a script (see the module docstring)."""
        spec = self.spec()
        text = json.dumps(spec, sort_keys=True, separators=(",", ":"))
        ident = "course-figure-" + hashlib.sha1(text.encode()).hexdigest()[:12]
        meta = {"controls": [{"field": c.field, "parameter": c.parameter, "label": c.label,
                              "options": list(c.options), "everything": c.everything}
                             for c in self.controls],
                "x": self.x, "y": self.y, "color": self.color, "panel": self.panel}
        urls = [CDN.format(package=name, version=version)
                for name, version in VEGA_VERSIONS.items()]
        script = _LOADER.replace("__ID__", ident).replace("__SPEC__", text).replace(
            "__META__", json.dumps(meta, separators=(",", ":"))).replace(
            "__URLS__", json.dumps(urls))
        return (f'<div class="course-figure" id="{ident}" role="figure" '
                f'aria-label="{html.escape(self.title or "interactive figure")}"></div>\n'
                f"<script>{script}</script>")

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict:
        return {"text/html": self.html(),
                "image/png": base64.b64encode(self.static_png()).decode("ascii"),
                "text/plain": f"<interactive figure: {self.title or self.y}>"}


# The loader: draw with the page's vega-embed (the book loads it), else load the pinned
# releases from the CDN first (Colab, Jupyter; with require.js present, through it). The view
# is registered in window.courseFigures for the browser check. The CDN addresses sit on a line
# of their own (FALLBACK_LINE), which the book's build empties: the book never names a CDN.
_LOADER = r"""
(function () {
  var id = "__ID__", spec = __SPEC__, meta = __META__;
  var urls = __URLS__;  // live notebooks only: the book ships these libraries

  function draw(embed) {
    embed("#" + id, spec, {actions: false, renderer: "svg"}).then(function (result) {
      window.courseFigures = window.courseFigures || {};
      window.courseFigures[id] = {view: result.view, spec: spec, meta: meta};
    }).catch(function (error) {
      document.getElementById(id).textContent = "The figure could not be drawn: " + error;
    });
  }
  if (window.vegaEmbed) { draw(window.vegaEmbed); return; }
  if (typeof window.define === "function" && window.define.amd && window.require) {
    window.require.config({paths: {"vega": urls[0] + "?noext", "vega-lite": urls[1] + "?noext",
                                   "vega-embed": urls[2] + "?noext"}});
    window.require(["vega-embed"], function (embed) { draw(embed); });
    return;
  }
  (function load(i) {
    if (i === urls.length) { draw(window.vegaEmbed); return; }
    var tag = document.createElement("script");
    tag.src = urls[i];
    tag.onload = function () { load(i + 1); };
    tag.onerror = function () {
      document.getElementById(id).textContent =
        "The figure needs the Vega libraries, which could not be loaded from " + urls[i];
    };
    document.head.appendChild(tag);
  })(0);
})();
"""


def line_explorer(rows: Sequence[dict], x: str, y: str, controls: Sequence[Control],
                  color: str | None = None, panel: str | None = None, title: str = "",
                  x_title: str = "", y_title: str = "", log_y: bool = False,
                  colors: dict[str, str] | None = None, width: int = 300,
                  height: int = 220) -> InteractiveFigure:
    """An interactive line figure: ``y`` against ``x``, one line per ``color``, a panel per ``panel``.

    Parameters
    ----------
    rows
        The data, one dict per point, every dict with the same keys (strings and finite
        numbers); computed by the chapter over the controls' grid.
    x, y
        The fields on the axes (numbers; ``y > 0`` when ``log_y``).
    controls
        At least one :class:`Control`; each filters one field.
    color, panel
        Optional fields: one line (colour) per value, one panel per value.
    title, x_title, y_title
        The figure's title and axis titles.
    log_y
        A logarithmic y axis.
    colors
        Optional colour per value of ``color`` (the Okabe-Ito palette otherwise).
    width, height
        The size of one panel in pixels (the book's text column holds about 700 pixels: two
        panels of 300 with a legend, three of 200).

    Returns
    -------
    InteractiveFigure

    Raises
    ------
    ValueError
        If ``rows`` is empty or uneven, a named field is missing, a value is not a string or a
        finite number, a control's option never occurs in the data, or ``log_y`` meets a
        ``y <= 0``.
    """
    rows = [dict(row) for row in rows]
    if not rows:
        raise ValueError("rows must hold at least one point (a dict per point)")
    keys = set(rows[0])
    for index, row in enumerate(rows):
        if set(row) != keys:
            raise ValueError(f"rows must all have the same fields; row {index} has "
                             f"{sorted(row)}, row 0 {sorted(keys)}")
        for name, value in row.items():
            if type(value).__module__ == "numpy" and getattr(value, "shape", None) == ():
                value = row[name] = value.item()  # NumPy scalars become plain JSON numbers
            if isinstance(value, bool) or not isinstance(value, (str, int, float)) or (
                    isinstance(value, float) and not math.isfinite(value)):
                raise ValueError(f"rows[{index}][{name!r}] must be a string or a finite "
                                 f"number, got {value!r}")
    controls = tuple(controls)
    if not controls or not all(isinstance(c, Control) for c in controls):
        raise ValueError("controls must be a non-empty sequence of Control")
    for argument, name in (("x", x), ("y", y), ("color", color), ("panel", panel)):
        if name is not None and name not in keys:
            raise ValueError(f"{argument} must name a field of the rows {sorted(keys)}, got "
                             f"{name!r}")
    for control in controls:
        if control.field not in keys:
            raise ValueError(f"control field {control.field!r} is not a field of the rows "
                             f"{sorted(keys)}")
        present = {row[control.field] for row in rows}
        missing = [o for o in control.options if o not in present]
        if missing:
            raise ValueError(f"control {control.field!r}: options {missing} never occur in "
                             "the rows")
    if log_y and any(not isinstance(r[y], (int, float)) or r[y] <= 0 for r in rows):
        raise ValueError(f"log_y needs every {y!r} > 0")
    size = {"width": require_int(width, "width", 50), "height": require_int(height, "height", 50)}
    return InteractiveFigure(rows, x, y, color, controls, panel, title, x_title, y_title,
                             log_y, dict(colors or {}), **size)
