"""Histograms of weights, biases, activations and gradients for any Keras 3 or torch model
(Chapter 3), and a mean-with-band line plot for repeated runs (Chapters 2, 3, 5 and 6).

The course's fixed visual vocabulary: one panel per tensor in layer order,
titled ``layer/param`` with its shape and size; the sampled values as a filled histogram
(neutral grey); the initializer's density on top (solid black) with dashed bounds (black) where
the initializer is known (:func:`utils.distributions.param_distribution`); a constant tensor as
a spike annotated with its value; the std written on a weight or parameter-gradient panel is the
sample std (``ddof=1``) of the values drawn, as :func:`utils.distributions.check_sample`
reports it, while activation panels give the batch's std from
:func:`utils.variance.layer_statistics`; saturation and dead-unit fractions written on activation
panels, computed by :func:`utils.variance.layer_statistics` (the course's one definition of
both). Colours come from the Okabe-Ito palette, which stays distinguishable under the common
colour-vision deficiencies; blue and vermillion are reserved for the two frameworks
(:data:`FRAMEWORK_COLORS`), so nothing else in a figure uses them.

Large models stay fast and readable: each histogram is computed from at most ``max_samples``
values drawn with a fixed-seed generator (exact minimum and maximum are kept), and at most
``max_panels`` panels are drawn per figure (``page=`` selects the rest; :func:`weight_summary`
shows every tensor of a deep model in one axes).
"""
from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from utils.distributions import InitDistribution, check_sample, param_distribution
from utils.frameworks import (LayerRecord, ParamInfo, framework_of, leaf_layers, parameters,
                              require_built, trace)
from utils.stats import pointwise_mean_ci, require_int, require_positive

__all__ = [
    "OKABE_ITO",
    "PALETTE",
    "NEUTRAL",
    "COLORS",
    "FONT_SIZES",
    "FRAMEWORK_COLORS",
    "weight_histograms",
    "weight_summary",
    "activation_histograms",
    "gradient_histograms",
    "mean_band",
    "plot_mean_band",
    "compact_inline_figures",
]

#: The Okabe-Ito colour-blind-safe palette, by name.
OKABE_ITO: dict[str, str] = {
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
    "black": "#000000",
}
#: One colour per framework, the same in every chapter's figures.
FRAMEWORK_COLORS: dict[str, str] = {"keras": OKABE_ITO["blue"], "torch": OKABE_ITO["vermillion"]}
#: The palette in the order the course cycles through it for series that are *not* frameworks
#: (initializers, scales, arms of an experiment). The two framework colours come after every
#: other colour, so a figure with up to five series never uses them; pale yellow is last (low
#: contrast on white).
PALETTE: tuple[str, ...] = ("#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#000000", "#0072B2",
                            "#D55E00", "#F0E442")
#: A neutral grey for histogram bars, the data whichever framework it came from.
NEUTRAL = "#8C8C8C"
#: What each colour means in the histogram figures (no framework colour among them).
COLORS: dict[str, str] = {
    "sample": NEUTRAL,
    "theory": OKABE_ITO["black"],
    "bounds": OKABE_ITO["black"],
    "constant": OKABE_ITO["bluish_green"],
    "threshold": OKABE_ITO["orange"],
    "flag": OKABE_ITO["reddish_purple"],
}
#: Font sizes (points) of the histogram figures. At the course's 90 dpi, 8 pt is 10 pixels, so
#: a figure up to 7.6 inches wide, shown a little narrower in the book's text column, keeps
#: its smallest text at about 9 pixels.
FONT_SIZES: dict[str, float] = {"title": 9.0, "note": 8.0, "tick": 8.0, "label": 8.5,
                                "legend": 8.5, "suptitle": 11.0}

_TITLE_CHARS = 30


# --------------------------------------------------------------------------------------------
# Panels: the data behind one histogram, independent of where it came from
# --------------------------------------------------------------------------------------------

@dataclass
class _Panel:
    label: str
    shape: tuple[int, ...]
    sample: np.ndarray  # float64, at most max_samples values
    count: int
    minimum: float
    maximum: float
    distribution: InitDistribution | None = None
    notes: list[tuple[str, str]] = field(default_factory=list)  # (text, colour)
    thresholds: tuple[float, ...] = ()
    eps: float | None = None  # machine epsilon of the tensor's dtype, if coarser than float32

    @property
    def constant(self) -> bool:
        return self.minimum == self.maximum


# Storage dtypes coarser than float32, by the name the frameworks print (machine epsilon).
_COARSE_EPS = {"bfloat16": 2.0 ** -7, "float16": 2.0 ** -10}


def _storage_eps(values: Any) -> float | None:
    name = str(getattr(values, "dtype", "")).rsplit(".", 1)[-1]
    return _COARSE_EPS.get(name)


def _flat(values: Any) -> np.ndarray:
    """A flat NumPy view of a tensor, without a copy where the framework allows it."""
    if hasattr(values, "detach"):  # torch
        tensor = values.detach().reshape(-1).cpu()
        if str(tensor.dtype) == "torch.bfloat16":  # NumPy has no bfloat16
            tensor = tensor.float()
        return tensor.numpy()
    if hasattr(values, "numpy") and not isinstance(values, np.ndarray):  # keras.Variable, tf
        return np.asarray(values.numpy()).reshape(-1)
    return np.asarray(values).reshape(-1)


def _sample_std(values: Any) -> float:
    """The sample standard deviation (``ddof=1``) of a parameter's (or its gradient's) values,
    0 for fewer than two: the estimate of the initializer's std that
    :func:`utils.distributions.check_sample` reports too, so a figure and a table agree."""
    array = np.asarray(values, dtype=np.float64)
    return float(array.std(ddof=1)) if array.size > 1 else 0.0


def _make_panel(label: str, shape: tuple[int, ...], values: Any, max_samples: int,
                seed: int) -> _Panel:
    flat = _flat(values)
    count = int(flat.size)
    if count == 0:
        return _Panel(label, shape, np.zeros(0), 0, math.nan, math.nan)
    if count > max_samples:
        # Random (not strided) positions: a stride can alias with a tensor's row length and
        # sample one column only. Sorted indices keep the gather cache-friendly.
        rng = np.random.default_rng(seed)
        index = np.sort(rng.integers(0, count, size=max_samples))
        sample = flat[index].astype(np.float64)
    else:
        sample = flat.astype(np.float64)
    return _Panel(label, shape, sample, count, float(flat.min()), float(flat.max()),
                  eps=_storage_eps(values))


def _matches(select: str | Callable[[Any], bool] | None, item: Any, *texts: str) -> bool:
    if select is None:
        return True
    if callable(select):
        return bool(select(item))
    return any(re.search(select, text) for text in texts)


def _check_select(select: Any) -> None:
    if select is None or callable(select):
        return
    if not isinstance(select, str):
        raise ValueError(f"select must be None, a regular expression string or a callable, "
                         f"got {type(select).__name__}")
    try:
        re.compile(select)
    except re.error as err:
        raise ValueError(f"select is not a valid regular expression: {err}") from None


def _page(panels: list[Any], max_panels: int, page: int) -> tuple[list[Any], str]:
    """The items on page ``page`` and the text that says which they are."""
    pages = max(1, math.ceil(len(panels) / max_panels))
    if isinstance(page, bool) or not isinstance(page, (int, np.integer)) or not 0 <= page < pages:
        raise ValueError(f"page must be an integer in [0, {pages - 1}] ({len(panels)} panels, "
                         f"max_panels={max_panels}), got {page!r}")
    start = page * max_panels
    chosen = panels[start:start + max_panels]
    info = "" if pages == 1 else (f" (panels {start + 1}-{start + len(chosen)} of "
                                  f"{len(panels)}, page {page + 1}/{pages})")
    return chosen, info


def _short_label(label: str) -> str:
    return label if len(label) <= _TITLE_CHARS else "…" + label[-(_TITLE_CHARS - 1):]


def _histogram_range(panel: _Panel) -> tuple[float, float]:
    lo, hi = panel.minimum, panel.maximum
    dist = panel.distribution
    if dist is not None and dist.is_known and not dist.is_constant and dist.bounds is not None:
        lo, hi = min(lo, dist.bounds[0]), max(hi, dist.bounds[1])
    return lo, hi


def _draw_constant(ax: Any, panel: _Panel) -> set[str]:
    value = panel.minimum
    ax.vlines([value], 0, panel.count, color=COLORS["constant"], linewidth=3)
    ax.plot([value], [panel.count], marker="o", color=COLORS["constant"], markersize=4)
    half_width = max(0.5 * abs(value), 0.1)
    ax.set_xlim(value - half_width, value + half_width)
    ax.set_ylim(0, panel.count * (1.35 + 0.14 * len(panel.notes)))
    ax.annotate(f"all {panel.count:,} = {value:.4g}", (value, panel.count),
                xytext=(0, 4), textcoords="offset points", ha="center", va="bottom",
                fontsize=FONT_SIZES["note"], color=COLORS["constant"])
    ax.set_yticks([0, panel.count])
    ax.set_ylabel("count", fontsize=FONT_SIZES["label"])
    return {"constant"}


def _draw_panel(ax: Any, panel: _Panel, bins: int, log: bool) -> set[str]:
    """Draw one panel; return the legend roles it used."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    shape_text = "×".join(str(d) for d in panel.shape) if panel.shape else "scalar"
    ax.set_title(f"{_short_label(panel.label)}\n({shape_text}) · {panel.count:,} values",
                 fontsize=FONT_SIZES["title"])
    ax.tick_params(labelsize=FONT_SIZES["tick"])
    ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
    # plain labels such as 4e-05, never a separate "1e-5" multiplier that collides with the
    # panel title
    short = FuncFormatter(lambda value, _: f"{value:.3g}")
    ax.xaxis.set_major_formatter(short)
    if not log:
        ax.yaxis.set_major_formatter(short)
    if panel.count == 0:
        ax.text(0.5, 0.5, "empty tensor", transform=ax.transAxes, ha="center",
                fontsize=FONT_SIZES["note"])
        return set()
    roles: set[str] = set()
    if panel.constant:
        roles |= _draw_constant(ax, panel)
    else:
        roles.add("sample")
        lo, hi = _histogram_range(panel)
        pad = 0.04 * (hi - lo)
        # about 2 sqrt(n) bins for small tensors (a 64-value bias in 50 bins is mostly noise)
        n_bins = int(min(bins, max(8, round(2 * math.sqrt(panel.sample.size)))))
        density, edges = np.histogram(panel.sample, bins=n_bins, range=(lo, hi), density=True)
        ax.stairs(density, edges, fill=True, color=COLORS["sample"], alpha=0.6, linewidth=0)
        ax.stairs(density, edges, color=COLORS["sample"], linewidth=0.6)
        top = float(density.max()) if density.size else 1.0
        dist = panel.distribution
        if dist is not None and dist.is_known and not dist.is_constant:
            grid = np.linspace(lo - pad, hi + pad, 400)
            if dist.bounds is not None:  # make the box edges vertical
                b0, b1 = dist.bounds
                tiny = 1e-9 * max(abs(b0), abs(b1), 1e-30)
                grid = np.sort(np.concatenate([grid, [b0 - tiny, b0 + tiny, b1 - tiny, b1 + tiny]]))
            pdf = dist.pdf(grid)
            finite = pdf[np.isfinite(pdf)]
            ax.plot(grid, pdf, color=COLORS["theory"], linewidth=1.3)
            roles.add("theory")
            if finite.size:
                # the theory may be far narrower than trained values: cap it, do not let it
                # flatten the histogram
                top = max(top, min(float(finite.max()), 3 * top))
            if dist.bounds is not None:
                for b in dist.bounds:
                    ax.axvline(b, color=COLORS["bounds"], linestyle="--", linewidth=0.8)
                roles.add("bounds")
        elif dist is not None and dist.is_constant:
            ax.axvline(dist.value, color=COLORS["theory"], linewidth=1.2)
            roles.add("theory")
        for t in [t for t in panel.thresholds if lo <= t <= hi]:  # only those in view
            ax.axvline(t, color=COLORS["threshold"], linestyle=":", linewidth=1.3)
            roles.add("threshold")
        ax.set_xlim(lo - pad, hi + pad)
        if log:
            ax.set_yscale("log")
        else:
            # head room for the notes written in the top-left corner
            ax.set_ylim(0, top * (1.15 + 0.17 * len(panel.notes)))
    if panel.notes:
        for i, (text, colour) in enumerate(panel.notes):
            flag = colour == COLORS["flag"]  # a warning: bold, so the paler colour reads
            note = ax.text(0.03, 0.97 - 0.13 * i, text, transform=ax.transAxes, ha="left",
                           va="top", fontsize=FONT_SIZES["note"], color=colour,
                           fontweight="bold" if flag else "normal",
                           bbox={"facecolor": "white", "alpha": 0.75, "edgecolor": "none",
                                 "pad": 0.6})
            note.set_in_layout(False)  # a long note must not shrink the panel it sits on
    return roles


_LEGEND = {
    "sample": ("values (histogram)", "patch"),
    "theory": ("initializer density", "line"),
    "bounds": ("initializer bounds", "dashed"),
    "constant": ("constant tensor (count)", "spike"),
    "threshold": ("saturation threshold", "dotted"),
}


def _legend_handles(roles: set[str]) -> list[Any]:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = []
    for role in ("sample", "theory", "bounds", "constant", "threshold"):
        if role not in roles:
            continue
        text, style = _LEGEND[role]
        colour = COLORS[role]
        if style == "patch":
            handles.append(Patch(facecolor=colour, alpha=0.6, label=text))
        elif style == "spike":
            handles.append(Line2D([], [], color=colour, linewidth=3, marker="o", markersize=4,
                                  label=text))
        else:
            ls = {"line": "-", "dashed": "--", "dotted": ":"}[style]
            handles.append(Line2D([], [], color=colour, linestyle=ls, label=text))
    return handles


def _draw_figure(panels: list[_Panel], *, ncols: int, bins: int, log: bool,
                 axes: Sequence[Any] | None, title: str, xlabel: str, ylabel: str,
                 footnote: str | None, legend: bool, panel_size: tuple[float, float],
                 dpi: float | None) -> Any:
    import matplotlib.pyplot as plt

    if axes is not None:
        axes = list(np.ravel(np.asarray(axes, dtype=object)))
        if len(axes) < len(panels):
            raise ValueError(f"axes must hold at least one Axes per panel ({len(panels)}), "
                             f"got {len(axes)}")
        fig = axes[0].figure
        used_axes = axes[:len(panels)]
    else:
        ncols = min(ncols, len(panels))
        nrows = math.ceil(len(panels) / ncols)
        width, height = panel_size
        fig, grid = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows + 0.9),
                                 dpi=dpi, squeeze=False, layout="constrained")
        flat_axes = list(grid.ravel())
        for ax in flat_axes[len(panels):]:
            ax.set_visible(False)
        used_axes = flat_axes[:len(panels)]
    roles: set[str] = set()
    for ax, panel in zip(used_axes, panels):
        roles |= _draw_panel(ax, panel, bins, log)
    if axes is not None:
        for ax in used_axes:  # the caller arranges the axes: label every one
            ax.set_xlabel(xlabel, fontsize=FONT_SIZES["label"])
            if not ax.get_ylabel():  # constants already say "count"
                ax.set_ylabel(ylabel, fontsize=FONT_SIZES["label"])
        if legend and roles:
            handles = _legend_handles(roles)
            # "outside" placement needs the constrained layout engine; elsewhere the legend
            # sits at the bottom edge of the figure
            constrained = type(fig.get_layout_engine()).__name__ == "ConstrainedLayoutEngine"
            fig.legend(handles=handles, loc="outside lower center" if constrained else
                       "lower center", ncols=min(len(handles), 3), fontsize=FONT_SIZES["legend"],
                       frameon=False)
        return fig
    fig.suptitle(title, fontsize=FONT_SIZES["suptitle"])
    ncols_used = grid.shape[1]
    for index, ax in enumerate(used_axes):
        if index + ncols_used >= len(used_axes):  # nothing drawn below it
            ax.set_xlabel(xlabel, fontsize=FONT_SIZES["label"])
        if index % ncols_used == 0 and not ax.get_ylabel():  # constants say "count"
            ax.set_ylabel(ylabel, fontsize=FONT_SIZES["label"])
    handles = _legend_handles(roles) if legend else []
    if footnote is not None:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], linestyle="none", label=footnote))
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 3),
                   fontsize=FONT_SIZES["legend"], frameon=False)
    return fig


def _model_name(model: Any) -> str:
    return getattr(model, "name", None) or type(model).__name__


# --------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------

def _param_panels(model: Any, include_non_trainable: bool, select: Any, max_samples: int,
                  seed: int, overlay: bool,
                  distributions: dict[str, InitDistribution | None] | None,
                  max_panels: int | None = None, page: int = 0,
                  z: float = 5.0) -> tuple[list[_Panel], str]:
    require_built(model)
    _check_select(select)
    params = parameters(model, include_non_trainable=include_non_trainable)
    if not params:
        kinds = "trainable parameters or floating-point buffers" if include_non_trainable \
            else "trainable parameters"
        raise ValueError(f"model has no {kinds}, so there is nothing to draw "
                         f"({type(model).__name__}); pass a model with layers that own weights")
    known = {p.label for p in params}
    unknown_labels = sorted(set(distributions or {}) - known)
    if unknown_labels:
        raise ValueError(f"distributions names tensors the model does not have: "
                         f"{unknown_labels}; its tensors are {sorted(known)}")
    chosen = [p for p in params if _matches(select, p, p.label, p.layer_type)]
    if not chosen:
        raise ValueError(f"select={select!r} matches none of the model's tensors "
                         f"{[p.label for p in params]}")
    # page first: only the tensors on this page are sampled and checked
    indexed, info = _page(list(enumerate(chosen)), max_panels or len(chosen), page)
    panels = []
    for index, p in indexed:
        panel = _make_panel(p.label, p.shape, p.handle, max_samples, seed + index)
        if overlay and panel.count:
            if distributions is not None and p.label in distributions:
                dist = distributions[p.label]
            else:
                dist = param_distribution(p)
            panel.distribution = dist
            _weight_notes(panel, dist, z)
        elif panel.count and not panel.constant:
            panel.notes.append((f"std {_sample_std(panel.sample):.3g}", COLORS["bounds"]))
        panels.append(panel)
    return panels, info


def _weight_notes(panel: _Panel, dist: InitDistribution | None, z: float = 5.0) -> None:
    std = _sample_std(panel.sample)
    if dist is None or not dist.is_known:
        name = "initializer unknown" if dist is None else f"unknown: {dist.name}"
        panel.notes.append((_short_label(name), COLORS["bounds"]))
        if not panel.constant:
            panel.notes.append((f"std {std:.3g}", COLORS["bounds"]))
        return
    star = "*" if dist.assumed else ""
    if dist.is_constant:
        panel.notes.append((f"{dist.name}{star}", COLORS["theory"]))
    else:
        panel.notes.append((f"{dist.name}{star} {dist.short}", COLORS["theory"]))
        panel.notes.append((f"std {std:.3g} (theory {dist.std:.3g})", COLORS["bounds"]))
    population = panel.count if panel.sample.size < panel.count else None
    check = check_sample(panel.sample, dist, z=z, population=population, eps=panel.eps)
    if not check.ok:
        panel.notes.append(("values differ from it:", COLORS["flag"]))
        panel.notes.append((", ".join(check.failures), COLORS["flag"]))


def weight_histograms(model: Any, *, include_non_trainable: bool = False,
                      select: str | Callable[[ParamInfo], bool] | None = None,
                      overlay: bool = True,
                      distributions: dict[str, InitDistribution | None] | None = None,
                      max_panels: int = 24, page: int = 0, ncols: int = 4, bins: int = 50,
                      max_samples: int = 100_000, seed: int = 0, log: bool = False,
                      axes: Sequence[Any] | None = None, title: str | None = None,
                      legend: bool = True, panel_size: tuple[float, float] = (2.9, 2.3),
                      dpi: float | None = None, z: float = 5.0) -> Any:
    """One histogram per parameter tensor of a Keras 3 or torch model, in layer order.

    Each panel is titled ``layer/param`` with the tensor's shape and size. Where the
    initializer is known (:func:`utils.distributions.param_distribution`), its density is drawn
    on top (bounded kinds with dashed bounds) and the panel says whether the values still agree
    with it (:func:`utils.distributions.check_sample`). For torch the overlay is the layer's
    *constructor default* (marked ``*``): torch does not record a tensor's initializer, so pass
    ``distributions`` after re-initialising. A constant tensor (zeros, ones, ``Constant(0.4)``)
    is drawn as a spike labelled with its value. Explained in Chapter 3.

    Parameters
    ----------
    model
        A built Keras 3 model/layer or a ``torch.nn.Module``.
    include_non_trainable
        Also draw Keras non-trainable variables and torch floating-point buffers.
    select
        Only the tensors whose ``layer/param`` label or layer type matches this regular
        expression (e.g. ``"kernel|weight"``), or for which this callable of a
        :class:`~utils.frameworks.ParamInfo` returns True.
    overlay
        Draw the initializer's density/bounds where known.
    distributions
        Distributions to use instead of :func:`~utils.distributions.param_distribution`, by ``layer/param`` label
        (None for "unknown"): what you passed to ``torch.nn.init``, for instance.
    max_panels, page
        At most ``max_panels`` panels per figure; ``page`` (from 0) selects which.
    ncols, bins, log
        Panels per row, histogram bins, logarithmic count axis.
    max_samples, seed
        Each histogram uses at most ``max_samples`` values drawn uniformly at random (with
        replacement) by a generator seeded with ``seed`` plus the panel's index, so a
        25-million-parameter model draws in about a second. Minimum and maximum are exact.
    axes
        Draw into these Axes (one per panel) instead of a new figure, to compose figures.
    title, legend, panel_size, dpi
        Figure title (default: the model's name), legend on/off, inches per panel, resolution.
    z
        How strict the flag "values differ from it" is: passed to
        :func:`utils.distributions.check_sample` (each of its tests at a ``z``-sigma level).
        With many panels asserted together, raise it so that the whole figure stays within the
        course's risk budget (a union bound: ``k`` panels at ``RISK / k`` each).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        If ``model`` is not a Keras/torch model, is an unbuilt Keras model (the message says
        how to build it), has no parameters, or an argument is out of range.
    """
    max_panels = require_int(max_panels, "max_panels")
    ncols = require_int(ncols, "ncols")
    bins = require_int(bins, "bins")
    max_samples = require_int(max_samples, "max_samples", 2)
    z = require_positive(z, "z")
    chosen, info = _param_panels(model, include_non_trainable, select, max_samples, seed,
                                 overlay, distributions, max_panels, page, z)
    assumed = any(p.distribution is not None and p.distribution.assumed for p in chosen)
    footnote = ("* torch constructor default (torch does not record how a tensor was "
                "initialised)") if assumed else None
    heading = (title or f"Parameters of {_model_name(model)}") + info
    return _draw_figure(chosen, ncols=ncols, bins=bins, log=log, axes=axes, title=heading,
                        xlabel="parameter value", ylabel="density",
                        footnote=footnote, legend=legend, panel_size=panel_size, dpi=dpi)


def weight_summary(model: Any, *, include_non_trainable: bool = False,
                   select: str | Callable[[ParamInfo], bool] | None = None,
                   max_samples: int = 20_000, seed: int = 0, ax: Any = None,
                   title: str | None = None, figsize: tuple[float, float] = (8, 3.2),
                   dpi: float | None = None) -> Any:
    """Every parameter tensor of a (deep) model in one axes: a box per tensor (Chapter 3).

    The summary view for models with too many tensors for :func:`weight_histograms`: boxes span
    the 25-75 % quantiles, whiskers 5-95 %, the line is the median; the initializer's ±1 std
    (long black ticks) and bounds (short black ticks) are marked where known.

    Parameters
    ----------
    model
        A built Keras 3 model or a ``torch.nn.Module``.
    include_non_trainable, select, max_samples, seed
        As in :func:`weight_histograms`.
    ax
        A Matplotlib axes to draw into; a new figure if None.
    title
        The axes title; the model's name if None.
    figsize, dpi
        The size and resolution of a new figure (ignored with ``ax``).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        As :func:`weight_histograms`.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    max_samples = require_int(max_samples, "max_samples", 2)
    panels, _ = _param_panels(model, include_non_trainable, select, max_samples, seed, True,
                              None)
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize, dpi=dpi, layout="constrained")
    else:
        fig = ax.figure
    stats = []
    for p in panels:
        q05, q25, q50, q75, q95 = np.quantile(p.sample, [0.05, 0.25, 0.5, 0.75, 0.95])
        stats.append({"whislo": q05, "q1": q25, "med": q50, "q3": q75, "whishi": q95,
                      "fliers": [], "label": ""})
    positions = np.arange(len(panels))
    ax.bxp(stats, positions=positions, showfliers=False, widths=0.6, patch_artist=True,
           boxprops={"facecolor": COLORS["sample"], "alpha": 0.6, "linewidth": 0.5},
           medianprops={"color": "black", "linewidth": 0.8},
           whiskerprops={"linewidth": 0.6}, capprops={"linewidth": 0.6})
    for x, p in zip(positions, panels):
        d = p.distribution
        if d is None or not d.is_known:
            continue
        if d.is_constant:
            ax.plot([x], [d.value], marker="D", color=COLORS["constant"], markersize=4)
            continue
        ax.plot([x, x], [d.mean - d.std, d.mean + d.std], linestyle="none", marker="_",
                color=COLORS["theory"], markersize=9, markeredgewidth=1.8)
        if d.bounds is not None:
            ax.plot([x, x], list(d.bounds), linestyle="none", marker="_",
                    color=COLORS["bounds"], markersize=6)
    step = max(1, math.ceil(len(panels) / 40))  # at most ~40 readable tick labels
    ax.set_xticks(positions[::step])
    ax.set_xticklabels([_short_label(p.label) for p in panels[::step]], rotation=90,
                       fontsize=FONT_SIZES["tick"])
    ax.tick_params(axis="y", labelsize=FONT_SIZES["tick"])
    ax.set_xlabel("parameter tensor (layer order)", fontsize=FONT_SIZES["label"])
    ax.set_ylabel("parameter value", fontsize=FONT_SIZES["label"])
    ax.set_title(title or f"Parameters of {_model_name(model)}: quantiles per tensor",
                 fontsize=FONT_SIZES["suptitle"])
    handles = [Patch(facecolor=COLORS["sample"], alpha=0.6, label="25-75 % (5-95 %)"),
               Line2D([], [], color=COLORS["theory"], marker="_", linestyle="none",
                      markersize=9, markeredgewidth=1.8, label="initializer ±1 std"),
               Line2D([], [], color=COLORS["bounds"], marker="_", linestyle="none",
                      label="initializer bounds"),
               Line2D([], [], color=COLORS["constant"], marker="D", linestyle="none",
                      label="constant")]
    if type(fig.get_layout_engine()).__name__ == "ConstrainedLayoutEngine":
        # below the tick labels, so the plot keeps the figure's whole width
        fig.legend(handles=handles, fontsize=FONT_SIZES["legend"], ncols=len(handles),
                   loc="outside lower center", frameon=False)
    else:
        ax.legend(handles=handles, fontsize=FONT_SIZES["legend"], loc="best")
    return fig


# --------------------------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------------------------

# Output ranges of the bounded activations whose panels get saturation thresholds. Where the
# thresholds sit is utils.variance.layer_statistics' definition (within 1 - saturation of an
# end of the range); tests/test_plotting.py checks that the lines and its fractions agree.
_RANGES = {"tanh": (-1.0, 1.0), "sigmoid": (0.0, 1.0)}
_TORCH_KINDS = {"Tanh": "tanh", "Sigmoid": "sigmoid", "ReLU": "relu", "ReLU6": "relu"}


def _activation_kind(layer: Any) -> str | None:
    """``"tanh"``, ``"sigmoid"``, ``"relu"`` or None: what the layer applies last."""
    if layer is None:
        return None
    name = type(layer).__name__
    if framework_of(layer, "layer") == "torch":
        return _TORCH_KINDS.get(name)
    if name == "ReLU":
        slope = float(getattr(layer, "negative_slope", 0.0) or 0.0)
        return "relu" if slope == 0.0 else None
    activation = getattr(layer, "activation", None)
    function = getattr(activation, "__name__", "")
    return {"tanh": "tanh", "sigmoid": "sigmoid", "relu": "relu", "relu6": "relu"}.get(function)


def _thresholds(kind: str | None, saturation: float) -> tuple[float, float] | None:
    if kind not in _RANGES:
        return None
    low, high = _RANGES[kind]
    margin = 1.0 - saturation
    return low + margin, high - margin


def _batch_size(x: Any) -> int:
    """The number of examples in ``x`` (the first input's, for a tuple of inputs)."""
    first = x[0] if isinstance(x, tuple) and x else x
    return int(getattr(first, "shape", np.shape(first))[0])


def _check_input(model: Any, x: Any, framework: str) -> None:
    if x is None:
        raise ValueError("x must be a batch of inputs (array or tensor), got None")
    if isinstance(x, tuple):  # several inputs: each a non-empty batch of the same size
        shapes = [tuple(int(d) for d in getattr(part, "shape", np.shape(part))) for part in x]
        if not shapes or any(len(s) == 0 or s[0] == 0 for s in shapes) \
                or len({s[0] for s in shapes}) != 1:
            raise ValueError(f"x must be a tuple of non-empty batches of one size (batch on "
                             f"axis 0), got shapes {shapes}")
        return  # the model checks the rest
    shape = tuple(int(d) for d in getattr(x, "shape", np.shape(x)))
    if len(shape) == 0 or shape[0] == 0:
        raise ValueError(f"x must be a non-empty batch with the batch on axis 0, got shape {shape}")
    if framework != "keras":
        return  # torch modules declare no input shape; trace() reports a mismatch
    try:
        expected = model.input_shape
    except (AttributeError, ValueError, RuntimeError):
        return
    if not (isinstance(expected, tuple) and all(d is None or isinstance(d, int) for d in expected)):
        return  # several inputs: let the model check
    if len(expected) != len(shape) or any(e is not None and e != s
                                           for e, s in zip(expected[1:], shape[1:])):
        wanted = ("batch",) + tuple("any" if d is None else d for d in expected[1:])
        raise ValueError(f"x must have shape {wanted} for this model, got {shape}")


def _layer_objects(model: Any) -> dict[str, Any]:
    return dict(leaf_layers(model))


def _traced_statistics(model: Any, x: Any, select: Any, training: bool,
                       saturation: float) -> list[tuple[LayerRecord, Any, Any]]:
    """(record, LayerStats, layer object) for every selected leaf-layer call."""
    from utils.variance import layer_statistics

    framework = require_built(model)
    _check_select(select)
    _check_input(model, x, framework)
    statistics = layer_statistics(model, x, training=training, saturation=saturation)
    result = trace(model, x, training=training)
    if [s.name for s in statistics] != [r.name for r in result.layers]:  # pragma: no cover
        raise RuntimeError("layer_statistics and trace disagree on the layers; please report")
    layers = _layer_objects(model)
    chosen = [(record, stats, layers.get(record.name.split("#")[0]))
              for record, stats in zip(result.layers, statistics)
              if _matches(select, record, record.name, record.layer_type)]
    if not chosen:
        raise ValueError(f"no layer output to draw: select={select!r} matched none of "
                         f"{[r.name for r in result.layers]}")
    return chosen


def _activity_notes(stats: Any, kind: str | None, saturation: float) -> list[tuple[str, str]]:
    notes = [(f"std {stats.std:.3g}", COLORS["bounds"])]
    bounds = _thresholds(kind, saturation)
    if stats.fraction_saturated is not None:
        if kind == "tanh":
            condition = f"|h| > {bounds[1]:g}"
        elif kind == "sigmoid":
            condition = f"h < {bounds[0]:g} or > {bounds[1]:g}"
        else:
            condition = f"within {1 - saturation:g} of an end"
        notes.append((f"saturated, {condition}: {100 * stats.fraction_saturated:.1f} %",
                      COLORS["bounds"]))
    if kind == "relu":
        notes.append((f"h = 0: {100 * stats.fraction_zero:.1f} %", COLORS["bounds"]))
        notes.append((f"dead units: {100 * stats.fraction_dead:.1f} %", COLORS["bounds"]))
    return notes


def activation_histograms(model: Any, x: Any, *,
                          select: str | Callable[[LayerRecord], bool] | None = None,
                          saturation: float = 0.99, training: bool = False,
                          max_panels: int = 24, page: int = 0,
                          ncols: int = 4, bins: int = 50, max_samples: int = 100_000,
                          seed: int = 0, log: bool = False, axes: Sequence[Any] | None = None,
                          title: str | None = None, legend: bool = True,
                          panel_size: tuple[float, float] = (2.9, 2.3),
                          dpi: float | None = None) -> Any:
    """One histogram per layer output for a batch ``x``, in call order (Chapter 3).

    Uses :func:`utils.frameworks.trace` (torch forward hooks; Keras layer calls recorded in
    one eager pass). Every panel gives the output's std; tanh and sigmoid panels also the
    saturated fraction, with dotted lines at the saturation thresholds; ReLU panels the
    fraction of zeros and of dead units (units, or channels, that are 0 for every example of
    the batch). The numbers are :func:`utils.variance.layer_statistics`'s, the course's one
    definition: saturated means within ``1 - saturation`` of an end of the output range
    (``|tanh| > 0.99`` by default). Other layers (linear, leaky ReLU, GELU, SiLU, ELU, ...)
    get their std only. Other parameters as in :func:`weight_histograms`.

    Parameters
    ----------
    model, x
        A built Keras 3 or torch model and a batch of inputs.
    select
        Only layers whose name or type matches this regular expression, or for whose
        :class:`~utils.frameworks.LayerRecord` this callable returns True.
    saturation
        As in :func:`utils.variance.layer_statistics` (strictly between 0 and 1).
    training
        Run dropout/batch normalisation in training mode. The statistics then come from a
        second forward pass, so with dropout they differ slightly from the histogram's.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        For an unsupported or unbuilt model (the message says how to build it), an input of
        the wrong shape (the message says what the model expects, where it declares it), a
        ``select`` that matches nothing, or an argument out of range.
    """
    max_panels = require_int(max_panels, "max_panels")
    ncols = require_int(ncols, "ncols")
    bins = require_int(bins, "bins")
    max_samples = require_int(max_samples, "max_samples", 2)
    chosen = _traced_statistics(model, x, select, training, saturation)
    panels = []
    for index, (record, stats, layer) in enumerate(chosen):
        kind = _activation_kind(layer)
        panel = _make_panel(f"{record.name} ({record.layer_type})",
                            tuple(record.output.shape), record.output, max_samples,
                            seed + index)
        panel.notes = _activity_notes(stats, kind, saturation)
        thresholds = _thresholds(kind, saturation)
        if thresholds is not None and stats.fraction_saturated is not None:
            panel.thresholds = thresholds
        panels.append(panel)
    chosen_panels, info = _page(panels, max_panels, page)
    heading = (title or f"Layer outputs of {_model_name(model)}, batch of "
                        f"{_batch_size(x)}") + info
    return _draw_figure(chosen_panels, ncols=ncols, bins=bins, log=log, axes=axes,
                        title=heading, xlabel="output value", ylabel="density",
                        footnote=None, legend=legend, panel_size=panel_size, dpi=dpi)


# --------------------------------------------------------------------------------------------
# Gradients
# --------------------------------------------------------------------------------------------

def gradient_histograms(model: Any, x: Any, y: Any, loss: Any, *, of: str = "parameters",
                        select: str | Callable[[Any], bool] | None = None,
                        training: bool = False, output: Any = None,
                        max_panels: int = 24, page: int = 0,
                        ncols: int = 4, bins: int = 50, max_samples: int = 100_000,
                        seed: int = 0, log: bool = False, axes: Sequence[Any] | None = None,
                        title: str | None = None, legend: bool = True,
                        panel_size: tuple[float, float] = (2.9, 2.3),
                        dpi: float | None = None) -> Any:
    """Histograms of the loss's gradients for one batch, per tensor or per layer (Chapter 3).

    Parameters
    ----------
    model, x, y, loss
        As :func:`utils.frameworks.trace`: ``loss`` is ``"mse"``, ``"cross_entropy"``
        (integer labels, logits out), ``"binary_cross_entropy"`` or a framework callable.
    of
        ``"parameters"``: one panel per parameter tensor (``∂L/∂W``), annotated with the
        gradient's std and its ratio to the weights' std (a rough per-step update scale);
        ``"outputs"``: one panel per layer output (``∂L/∂h``), the backward signal through
        depth.
    training
        Run dropout and batch normalisation in training mode for the pass.
    output
        For a model with several outputs: the one ``loss`` applies to, by name or position
        (as :func:`utils.frameworks.trace`); required there with a named ``loss``.

    Other Parameters
    ----------------
    select, max_panels, page, ncols, bins, max_samples, seed
        As in :func:`weight_histograms`.
    log, axes, title, legend, panel_size, dpi
        As in :func:`weight_histograms`.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        For an unsupported or unbuilt model, a model without parameters, an input of the wrong
        shape, an unknown ``loss`` or ``of``, a model with several outputs and a named ``loss``
        but no ``output`` (or an ``output`` it does not have), or an argument out of range.
    """
    if of not in ("parameters", "outputs"):
        raise ValueError(f"of must be 'parameters' or 'outputs', got {of!r}")
    max_panels = require_int(max_panels, "max_panels")
    ncols = require_int(ncols, "ncols")
    bins = require_int(bins, "bins")
    max_samples = require_int(max_samples, "max_samples", 2)
    framework = require_built(model)
    _check_select(select)
    if not parameters(model):
        raise ValueError(f"model has no trainable parameters, so there are no gradients to "
                         f"draw ({type(model).__name__})")
    _check_input(model, x, framework)
    result = trace(model, x, y, loss, training=training, output=output)
    panels = []
    if of == "parameters":
        for index, (p, grad) in enumerate(result.param_grads):
            if not _matches(select, p, p.label, p.layer_type):
                continue
            panel = _make_panel(p.label, p.shape, grad, max_samples, seed + index)
            g_std = _sample_std(panel.sample)
            w_std = _sample_std(_flat(p.handle))
            panel.notes.append((f"std {g_std:.3g}", COLORS["bounds"]))
            if w_std > 0:
                panel.notes.append((f"grad std / weight std {g_std / w_std:.2g}",
                                    COLORS["bounds"]))
            panels.append(panel)
    else:
        for index, record in enumerate(result.layers):
            if record.output_grad is None or not _matches(select, record, record.name,
                                                          record.layer_type):
                continue
            panel = _make_panel(f"{record.name} ({record.layer_type})",
                                tuple(record.output_grad.shape), record.output_grad,
                                max_samples, seed + index)
            panel.notes.append((f"std {np.std(panel.sample):.3g}", COLORS["bounds"]))
            panels.append(panel)
    if not panels:
        raise ValueError(f"no gradient to draw: select={select!r} matched nothing, or the loss "
                         "does not depend on the selected tensors")
    chosen, info = _page(panels, max_panels, page)
    what = "parameter" if of == "parameters" else "layer-output"
    heading = (title or f"Loss gradients ({what}) of {_model_name(model)}, loss "
                        f"{result.loss:.4g}") + info
    return _draw_figure(chosen, ncols=ncols, bins=bins, log=log, axes=axes, title=heading,
                        xlabel="gradient value", ylabel="density",
                        footnote=None, legend=legend, panel_size=panel_size, dpi=dpi)


# --------------------------------------------------------------------------------------------
# Repeated runs: mean with a band (Chapters 2, 3 and 5)
# --------------------------------------------------------------------------------------------

INTERVALS = ("ci95", "sd", "range")


def mean_band(runs: Any, interval: str = "ci95") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over runs with a lower and upper band, pointwise along axis 1.

    Parameters
    ----------
    runs
        Array of shape ``(n_runs, n_points)``, ``n_runs >= 2``, finite.
    interval
        ``"ci95"``: at each point, the 95 % Student-t confidence interval for the mean,
        :func:`utils.stats.pointwise_mean_ci` (``mean ± t_{0.975, n-1} s / sqrt(n)``); ``"sd"``:
        ``mean ± s``; ``"range"``: the runs' minimum and maximum.

    Returns
    -------
    mean, low, high : numpy.ndarray

    Raises
    ------
    ValueError
        If ``runs`` is not 2-D with at least 2 runs or not finite, or ``interval`` is unknown.
    """
    array = np.asarray(runs, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] < 2:
        raise ValueError(f"runs must have shape (n_runs >= 2, n_points) (one run has no "
                         f"interval), got {array.shape}")
    if interval not in INTERVALS:
        raise ValueError(f"interval must be one of {INTERVALS}, got {interval!r}")
    if not np.all(np.isfinite(array)):
        raise ValueError("runs must be finite (found NaN or inf)")
    mean = array.mean(axis=0)
    if interval == "range":
        return mean, array.min(axis=0), array.max(axis=0)
    if interval == "sd":
        sd = array.std(axis=0, ddof=1)
        return mean, mean - sd, mean + sd
    return pointwise_mean_ci(array, 0.95)


def plot_mean_band(x: Any, runs: Any, label: str, ax: Any = None, *, color: str | None = None,
                   interval: str = "ci95", alpha: float = 0.25, describe: bool = True,
                   **line_kwargs: Any) -> Any:
    """Plot the mean of several runs as a line and their interval as a shaded band.

    For loss curves over steps (Chapters 2, 5 and 6) and statistics through depth (Chapter 3).
    With ``describe`` the label gets the interval's meaning and the number of runs appended,
    e.g. ``"He init (mean, 95 % CI, 5 runs)"``; pass ``describe=False`` when the title or
    caption already says it.

    Parameters
    ----------
    x
        The ``n_points`` abscissae.
    runs
        Shape ``(n_runs, n_points)``: one row per run (seed).
    label
        Legend label.
    ax
        Axes to draw in (default: the current axes).
    color
        Line and band colour (default: the next colour of :data:`PALETTE` not yet on ``ax``).
    interval
        See :func:`mean_band`.
    alpha
        Band opacity.
    describe
        Append ``"(mean, <interval>, <n> runs)"`` to the label.
    **line_kwargs
        Passed to ``ax.plot``.

    Returns
    -------
    matplotlib.lines.Line2D
        The mean line.

    Raises
    ------
    ValueError
        If ``runs`` does not have shape ``(n_runs >= 2, len(x))`` or ``interval`` is unknown.
    """
    import matplotlib.pyplot as plt

    xs = np.asarray(x, dtype=np.float64)
    array = np.asarray(runs, dtype=np.float64)
    if xs.ndim != 1:
        raise ValueError(f"x must be 1-D, got shape {xs.shape}")
    if array.ndim != 2 or array.shape[1] != xs.size:
        raise ValueError(f"runs must have shape (n_runs, len(x)) = (n_runs, {xs.size}), got "
                         f"{array.shape}")
    mean, low, high = mean_band(array, interval)
    ax = plt.gca() if ax is None else ax
    if color is None:
        used = {line.get_color() for line in ax.get_lines()}
        color = next((c for c in PALETTE if c not in used), PALETTE[len(used) % len(PALETTE)])
    meaning = {"ci95": "95 % CI", "sd": "±1 sd", "range": "min-max"}[interval]
    text = f"{label} (mean, {meaning}, {array.shape[0]} runs)" if describe else label
    (line,) = ax.plot(xs, mean, color=color, label=text, **line_kwargs)
    ax.fill_between(xs, low, high, color=color, alpha=alpha, linewidth=0)
    return line


# --------------------------------------------------------------------------------------------
# Small notebooks
# --------------------------------------------------------------------------------------------

def _palette_png(fig: Any, colors: int) -> bytes | None:
    from PIL import Image

    if not fig.axes:
        return None
    rendered = io.BytesIO()
    fig.savefig(rendered, format="png", bbox_inches="tight", facecolor="white")
    rendered.seek(0)
    image = Image.open(rendered).convert("RGB").quantize(colors,
                                                         method=Image.Quantize.MEDIANCUT)
    compact = io.BytesIO()
    image.save(compact, format="PNG", optimize=True)
    return compact.getvalue()


def compact_inline_figures(colors: int = 128) -> bool:
    """Store the figures a notebook shows as palette PNGs, about three times smaller (Chapter 3).

    Registers an ``image/png`` display formatter for matplotlib figures in the running IPython
    kernel: each figure is rendered at its own dpi on white, reduced to ``colors`` colours
    (median cut) and saved optimised. Plots with a few flat colours look the same; the
    committed notebook shrinks. Call it once, after importing ``matplotlib.pyplot``.

    Parameters
    ----------
    colors
        Palette size, 16 to 256.

    Returns
    -------
    bool
        True if a kernel was found and the formatter registered; False outside IPython (then
        nothing changes).

    Raises
    ------
    ValueError
        If ``colors`` is not an integer in [16, 256].
    """
    if isinstance(colors, bool) or not isinstance(colors, (int, np.integer)) \
            or not 16 <= colors <= 256:
        raise ValueError(f"colors must be an integer in [16, 256], got {colors!r}")
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False
    import matplotlib
    from matplotlib.figure import Figure

    if "inline" in str(matplotlib.rcParams["backend"]):
        # matplotlib loads its backend lazily, and loading the inline backend re-registers its
        # own PNG formatter; load it now so that ours is registered last.
        import matplotlib_inline.backend_inline  # noqa: F401
    formatter = shell.display_formatter.formatters["image/png"]
    formatter.for_type(Figure, lambda fig: _palette_png(fig, int(colors)))
    return True
