"""utils.interactive: the figure's specification, its filter, its static view, its errors.

What the figure draws when a control moves is checked in a real browser by
``make browser-check`` (tests/browser_check.py, FIGURE_PROBE); here, what Python promises.
"""
from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest

from utils.interactive import CDN, VEGA_VERSIONS, Control, line_explorer


def _rows():
    return [{"layer": layer, "std": 0.5**layer * (2.0 if rule == "He" else 1.0), "rule": rule,
             "depth": depth, "quantity": quantity}
            for depth in (5, 10) for rule in ("He", "Glorot")
            for quantity in ("activation", "gradient") for layer in range(1, depth + 1)]


def _figure(**kwargs):
    controls = [Control("depth", "depth", (5, 10), 10, kind="range"),
                Control("rule", "default", ("He", "Glorot"), "He", everything="both")]
    return line_explorer(_rows(), "layer", "std", controls, color="rule", panel="quantity",
                         log_y=True, title="spread by layer", **kwargs)


def test_visible_rows_follow_the_controls():
    figure = _figure()
    first = figure.visible()
    assert len(first) == 20 and {r["rule"] for r in first} == {"He"}
    assert {r["depth"] for r in first} == {10}
    both = figure.visible(rule="both", depth=5)
    assert len(both) == 20 and {r["rule"] for r in both} == {"He", "Glorot"}
    with pytest.raises(ValueError, match="values must name the controls' fields"):
        figure.visible(width=3)
    with pytest.raises(ValueError, match="depth must be one of"):
        figure.visible(depth=7)


def test_spec_holds_the_data_the_params_and_their_filter():
    figure = _figure()
    spec = figure.spec()
    assert spec["data"]["values"] == _rows()
    assert [p["name"] for p in spec["params"]] == ["control_depth", "control_rule"]
    assert spec["params"][0]["bind"] == {"input": "range", "min": 5, "max": 10, "step": 5,
                                         "name": "depth "}
    assert spec["params"][1]["bind"]["options"] == ["He", "Glorot", "both"]
    assert spec["params"][1]["value"] == "He"
    expression = spec["transform"][0]["filter"]
    assert expression == ('datum["depth"] == control_depth && (control_rule == "both" || '
                          'datum["rule"] == control_rule)')
    assert spec["encoding"]["y"]["scale"] == {"type": "log"}
    assert spec["$schema"].endswith(f"/v{VEGA_VERSIONS['vega-lite'].split('.')[0]}.json")
    json.dumps(spec)  # plain JSON: what the notebook stores


def test_the_filter_expression_agrees_with_visible_on_every_setting():
    # The browser evaluates the expression; Python's `visible` is what the tests compare with.
    # Evaluate the expression as Python (its operators translate one to one) on every setting.
    figure = _figure()
    expression = figure.spec()["transform"][0]["filter"]
    python = expression.replace("&&", " and ").replace("||", " or ")
    for depth in (5, 10):
        for rule in ("He", "Glorot", "both"):
            kept = [row for row in figure.rows
                    if eval(python, {"datum": row, "control_depth": depth, "control_rule": rule})]
            assert kept == figure.visible(depth=depth, rule=rule)


def test_the_html_draws_with_the_page_s_vega_or_the_pinned_cdn():
    html = _figure().html()
    ident = re.search(r'id="(course-figure-[0-9a-f]{12})"', html).group(1)
    assert f'"{ident}"' in html and "window.courseFigures" in html
    for name, version in VEGA_VERSIONS.items():
        assert CDN.format(package=name, version=version) in html
    assert "if (window.vegaEmbed) { draw(window.vegaEmbed); return; }" in html


def test_the_mime_bundle_has_the_interactive_and_the_static_view():
    bundle = _figure()._repr_mimebundle_()
    assert set(bundle) == {"text/html", "image/png", "text/plain"}
    png = base64.b64decode(bundle["image/png"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_numpy_numbers_become_plain_json():
    rows = [{"x": np.int64(i), "y": np.float32(i + 1.5), "k": "a"} for i in range(3)]
    figure = line_explorer(rows, "x", "y", [Control("k", "k", ("a",), "a")])
    assert all(type(r["x"]) is int and type(r["y"]) is float for r in figure.rows)
    json.dumps(figure.spec())


@pytest.mark.parametrize("kwargs, message", [
    ({"field": ""}, "field must be a non-empty string"),
    ({"options": ()}, "options must be distinct"),
    ({"options": ("a", "a")}, "options must be distinct"),
    ({"kind": "slider"}, "kind must be one of"),
    ({"initial": "z"}, "initial must be one of"),
    ({"everything": "a"}, "everything must be a label that is not an option"),
    ({"kind": "range"}, "a slider needs two or more numeric options"),
])
def test_control_errors_name_the_argument(kwargs, message):
    arguments = {"field": "k", "label": "k", "options": ("a", "b"), "initial": "a", **kwargs}
    with pytest.raises(ValueError, match=message):
        Control(**arguments)


def test_a_slider_needs_even_steps_and_no_everything():
    with pytest.raises(ValueError, match="equal steps"):
        Control("d", "d", (1, 2, 4), 1, kind="range")
    with pytest.raises(ValueError, match="cannot have everything"):
        Control("d", "d", (1, 2), 1, kind="range", everything="all")


@pytest.mark.parametrize("rows, kwargs, message", [
    ([], {}, "rows must hold at least one point"),
    ([{"x": 1, "y": 1, "k": "a"}, {"x": 1, "k": "a"}], {}, "rows must all have the same fields"),
    ([{"x": 1, "y": float("nan"), "k": "a"}], {}, r"rows\[0\]\['y'\] must be a string or a finite"),
    ([{"x": 1, "y": 1, "k": "a"}], {"x": "width"}, "x must name a field of the rows"),
    ([{"x": 1, "y": 0.0, "k": "a"}], {"log_y": True}, "log_y needs every 'y' > 0"),
])
def test_line_explorer_errors_name_the_argument(rows, kwargs, message):
    arguments = {"x": "x", "y": "y", "controls": [Control("k", "k", ("a",), "a")], **kwargs}
    with pytest.raises(ValueError, match=message):
        line_explorer(rows, **arguments)


def test_a_control_option_missing_from_the_data_is_refused():
    rows = [{"x": 1, "y": 1.0, "k": "a"}]
    with pytest.raises(ValueError, match=r"options \['b'\] never occur"):
        line_explorer(rows, "x", "y", [Control("k", "k", ("a", "b"), "a")])


def test_the_panel_size_is_an_argument():
    figure = _figure(width=230, height=180)
    assert (figure.spec()["width"], figure.spec()["height"]) == (230, 180)
    with pytest.raises(ValueError, match="width must be an integer >= 50"):
        _figure(width=10)
