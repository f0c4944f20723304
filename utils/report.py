"""One call that checks an initialisation before training: :func:`init_report` (Chapters 3, 4).

The course's checks, run together on one batch and sorted by how bad they are:

* the **initial loss** against the prior's entropy (:func:`utils.priors.check_initial_loss`,
  Chapter 4), when labels are given;
* per layer, the **activations**: their standard deviation, and the saturated and dead
  fractions as :func:`utils.variance.layer_statistics` defines them (Chapters 2 and 3);
* per weight tensor, the **gradients**: the ratio of the gradient's size to the weight's,
  and the size of the first optimiser step relative to the weight (the update-to-data ratio);
* per weight tensor, the **initialisation**: whether the values follow the framework's
  default (:func:`utils.distributions.default_distribution`) and which named variance rule
  (LeCun, Glorot, He, torch's default; Chapter 2) their variance matches.

Each finding has a severity (``"problem"``, ``"warning"``, ``"note"``), a one-line
measurement and a one-line suggestion; the report lists the worst first. The thresholds are
in :data:`THRESHOLDS`, each with the reason for its value: they are chosen, not derived,
except the dead-unit threshold, which is the chance level for the batch's size.

The model is run in inference mode (dropout off, batch normalisation with its moving
statistics, which are 0 and 1 at initialisation): the report shows what the weights do, which
is what the variance argument is about, and it leaves every parameter and buffer as it was.
"""
from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from typing import Any

import numpy as np

from utils.distributions import check_sample, default_distribution, keras_fans
from utils.frameworks import (OutputGraph, ParamInfo, forward, leaf_layers, output_graph,
                              parameters, require_built, trace)
from utils.initializers import compute_fans
from utils.priors import InitialLossCheck, check_initial_loss
from utils.stats import LINE_WIDTH, require_positive, variance_tolerance
from utils.variance import LayerStats, probe_loss, trace_statistics

__all__ = [
    "SEVERITIES",
    "THRESHOLDS",
    "OPTIMIZERS",
    "Finding",
    "LayerReport",
    "InitReport",
    "init_report",
]

#: Severities of a :class:`Finding`, worst first.
SEVERITIES = ("problem", "warning", "note")

#: The optimisers whose first step :func:`init_report` computes the update-to-data ratio for.
OPTIMIZERS = ("sgd", "adam")

#: The thresholds of :func:`init_report`'s findings, and why each is where it is.
THRESHOLDS: dict[str, float] = {
    # Saturated fraction of a bounded activation (within 1 - saturation of an end). A tanh
    # layer whose pre-activations have unit variance saturates 0.8 % of its outputs
    # (P(|z| > 2.65)); 5 % is reached at a pre-activation std of 1.35, 25 % at 2.3, where
    # most of the layer's slopes are below 0.1.
    "saturated_warning": 0.05,
    "saturated_problem": 0.25,
    # Dead units (0 for every example of the batch): a tenth of a layer lost before the first
    # step is a warning, half of it a problem. Deep ReLU stacks at He's scale have a few per
    # cent (a unit's pre-activations share an offset w . mean(h) across examples, since ReLU
    # outputs have a positive mean). Small batches raise the bar to the chance level (see
    # init_report).
    "dead_warning": 0.1,
    "dead_problem": 0.5,
    # Fewer examples than this and "0 for every example" says little: a unit with centred,
    # independent pre-activations is so with probability 2^-n (a quarter for n = 2), and
    # examples that look alike to the network make it likelier still. No dead-unit findings.
    "dead_min_examples": 16,
    # Activation scale of a weight layer's output relative to the first weight layer's:
    # the variance argument (Chapter 2) keeps it constant through depth; a factor 10 means the
    # initialisation does not, a factor 100 that the signal is lost or blown up.
    "scale_warning": 10.0,
    "scale_problem": 100.0,
    # Update-to-data ratio of one optimiser step (|update| / |weight|): beyond 0.1 a step
    # rewrites a tenth of the weights, and ten steps replace the initialisation; beyond 1 the
    # first step is larger than the weights. Below 1e-6 a million steps barely move them.
    "update_warning": 0.1,
    "update_problem": 1.0,
    "update_frozen": 1e-6,
    # Gradient-to-weight ratio of the slowest weight tensor against the fastest: beyond 1000
    # the first layers learn a thousand times slower than the last (vanishing gradients).
    "gradient_spread": 1e3,
}

# The named variance rules a weight tensor is compared with: Var[w] = scale / fan (Chapter 2).
_RULES = (("LeCun", 1.0, "fan_in"), ("Glorot", 1.0, "fan_avg"), ("He", 2.0, "fan_in"),
          ("He (fan_out)", 2.0, "fan_out"), ("torch default", 1.0 / 3.0, "fan_in"))
_MAX_SAMPLES = 100_000  # values drawn from a weight tensor for the distribution checks
_MOMENT_MIN = 100  # fewer values: no variance test (utils.distributions.MOMENT_TEST_MIN_N)
_RANK = {severity: rank for rank, severity in enumerate(SEVERITIES)}


@dataclass(frozen=True)
class Finding:
    """One thing :func:`init_report` found, with what to do about it.

    Attributes
    ----------
    severity
        ``"problem"`` (training will likely suffer), ``"warning"`` (worth checking) or
        ``"note"`` (information: a deliberate choice is fine).
    layer
        The layer it is about (its name, as :func:`utils.frameworks.leaf_layers` and the
        report's table give it), or the tensor (``"layer/param"``).
    what
        What was measured, one line.
    suggestion
        What to do, one line.
    score
        How far beyond its threshold, as a ratio >= 1 (larger is worse); orders findings of
        one severity.
    """

    severity: str
    layer: str
    what: str
    suggestion: str
    score: float = 1.0


@dataclass(frozen=True)
class LayerReport:
    """One row of :func:`init_report`'s table: a layer call and its main weight tensor.

    Attributes
    ----------
    name, layer_type
        As in :class:`utils.variance.LayerStats`.
    std
        Standard deviation of the layer's output over the batch.
    fraction_saturated, fraction_dead
        As in :class:`utils.variance.LayerStats` (``None`` where the output is unbounded).
    weight
        The ``layer/param`` label of the layer's main weight tensor (its first trainable
        tensor with two or more dimensions), or None.
    weight_std
        The weight's standard deviation.
    rule
        Which initialisation the weight's values follow: ``"default"`` (the framework's, with
        the named rules it matches, e.g. ``"default = Glorot"``), the named variance rules its
        variance matches (``"He"``, ``"LeCun/Glorot"``), ``"no rule: std kx LeCun's"``, or
        ``"constant c"``; None without a weight.
    grad_to_weight
        ``|g| / |W|`` (Frobenius norms) of the weight's gradient and the weight.
    update_to_data
        ``|step| / |W|`` for the first step of the optimiser.
    """

    name: str
    layer_type: str
    std: float
    fraction_saturated: float | None
    fraction_dead: float
    weight: str | None = None
    weight_std: float | None = None
    rule: str | None = None
    grad_to_weight: float | None = None
    update_to_data: float | None = None


@dataclass(frozen=True)
class InitReport:
    """What :func:`init_report` found: findings (worst first), the per-layer table, the loss.

    Attributes
    ----------
    model
        The model's name.
    examples
        The batch size.
    loss
        The initial-loss check (:class:`utils.priors.InitialLossCheck`) when ``y`` was given,
        else None.
    gradients
        Where the gradients come from: ``"loss"`` (the classification loss on ``y``) or
        ``"probe"`` (no ``y``: an output gradient of random signs at a cross-entropy's scale).
    optimizer, learning_rate
        The step the update-to-data ratios describe.
    layers
        One :class:`LayerReport` per layer call, in call order.
    findings
        Every :class:`Finding`, worst first.
    """

    model: str
    examples: int
    loss: InitialLossCheck | None
    gradients: str
    optimizer: str
    learning_rate: float
    layers: tuple[LayerReport, ...]
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        """True if no finding is a problem or a warning."""
        return all(f.severity == "note" for f in self.findings)

    def worst(self, severity: str = "warning") -> tuple[Finding, ...]:
        """The findings of ``severity`` or worse, worst first.

        Parameters
        ----------
        severity
            One of :data:`SEVERITIES`.

        Returns
        -------
        tuple of Finding
            In the report's order.

        Raises
        ------
        ValueError
            If ``severity`` is not one of :data:`SEVERITIES`.
        """
        if severity not in _RANK:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
        return tuple(f for f in self.findings if _RANK[f.severity] <= _RANK[severity])

    def table(self, max_rows: int | None = None) -> str:
        """The per-layer table as text, at most ``LINE_WIDTH`` characters a line.

        Parameters
        ----------
        max_rows
            Show at most this many rows (the first ones), or all with None.

        Returns
        -------
        str
            A header line and one line per layer call.

        Raises
        ------
        ValueError
            If ``max_rows`` is not None or a positive integer.
        """
        if max_rows is not None and (isinstance(max_rows, bool) or not isinstance(
                max_rows, (int, np.integer)) or max_rows < 1):
            raise ValueError(f"max_rows must be None or a positive integer, got {max_rows!r}")

        def number(value: float | None, digits: int = 2) -> str:
            return "-" if value is None else f"{value:.{digits}g}"

        def percent(value: float | None) -> str:
            return "-" if value is None else f"{100 * value:.0f}%"

        header = (f"{'layer (type)':<27} {'out std':>7} {'satur.':>6} {'dead':>5} "
                  f"{'w std':>7} {'g/w':>7} {'upd/w':>7}  init")
        lines = [header]
        rows = self.layers if max_rows is None else self.layers[:max_rows]
        for row in rows:
            label = _shorten(f"{row.name} ({row.layer_type})", 27)
            line = (f"{label:<27} {number(row.std):>7} {percent(row.fraction_saturated):>6} "
                    f"{percent(row.fraction_dead):>5} {number(row.weight_std):>7} "
                    f"{number(row.grad_to_weight):>7} {number(row.update_to_data):>7}  "
                    f"{row.rule or '-'}")
            lines.append(_shorten(line, LINE_WIDTH))
        if len(rows) < len(self.layers):
            lines.append(f"... {len(self.layers) - len(rows)} more layers: report.table()")
        return "\n".join(lines)

    def __str__(self) -> str:
        lines = textwrap.wrap(f"init_report: {self.model}, {self.examples} examples, gradients "
                              f"from the {self.gradients}, {self.optimizer} step of "
                              f"{self.learning_rate:g}", width=LINE_WIDTH,
                              subsequent_indent="  ")
        if self.loss is not None:
            lines += textwrap.wrap(
                f"initial loss {self.loss.measured:.4g} (output layer {self.loss.layer!r}): the "
                f"label prior gives {self.loss.optimum:.4g}, a uniform prediction "
                f"{self.loss.uniform:.4g}", width=LINE_WIDTH, initial_indent="  ",
                subsequent_indent="    ")
        shown = [f for f in self.findings if f.severity != "note"]
        notes = len(self.findings) - len(shown)
        if not shown:
            lines.append("  no problems or warnings" + (f" ({notes} notes)" if notes else ""))
        for number, finding in enumerate(self.findings[:max(len(shown), 3)], start=1):
            text = (f"{number}. [{finding.severity}] {finding.layer!r}: {finding.what} -> "
                    f"{finding.suggestion}")
            lines.append(textwrap.fill(text, width=LINE_WIDTH, initial_indent="  ",
                                       subsequent_indent="      "))
        hidden = len(self.findings) - max(len(shown), 3)
        if hidden > 0:
            lines.append(f"  ... and {hidden} more notes (report.findings)")
        lines.append(self.table(max_rows=40))
        return "\n".join(lines)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def _weight_tensors(model: Any) -> list[ParamInfo]:
    """The weights an initialisation rule draws: trainable tensors of two or more dimensions
    named as a layer's weight (torch ``*weight*``, Keras ``*kernel*`` and ``embeddings``), not
    position embeddings or class tokens owned by a model."""
    return [p for p in parameters(model) if len(p.shape) >= 2 and p.size > 0
            and ("weight" in p.name or "kernel" in p.name or p.name == "embeddings")]


_EMBEDDINGS = ("Embedding", "EmbeddingBag")


def _layer_key(framework: str, param: ParamInfo) -> str:
    """The name :func:`utils.frameworks.trace` gives the layer that owns ``param``."""
    return param.layer_object.name if framework == "keras" else param.layer


def _sample(values: np.ndarray, seed: int) -> tuple[np.ndarray, int | None]:
    flat = values.reshape(-1).astype(np.float64)
    if flat.size <= _MAX_SAMPLES:
        return flat, None
    index = np.random.default_rng(seed).integers(0, flat.size, size=_MAX_SAMPLES)
    return flat[index], int(flat.size)


def _fans(framework: str, param: ParamInfo) -> tuple[int, int]:
    if framework == "keras":
        return keras_fans(param.shape)
    return compute_fans(param.shape, "torch")


def _rule(framework: str, param: ParamInfo, values: np.ndarray,
          seed: int) -> tuple[str, Finding | None]:
    """What a weight's values follow, and a finding if it is none of the known rules."""
    sample, population = _sample(values, seed)
    default = default_distribution(param)
    follows_default = False
    if default is not None and default.is_known and not default.is_constant:
        follows_default = check_sample(sample, default, population=population).ok
    variance = float(np.var(sample))
    fan_in, fan_out = _fans(framework, param)
    fans = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}
    matches, nearest = [], None
    if sample.size >= _MOMENT_MIN and variance > 0:
        # kurtosis 3 (a normal's) bounds that of the uniform and truncated normal draws from
        # above, so the tolerance is wide enough for all of them; a subsample's variance
        # estimates the tensor's, itself a draw: the two relative errors add
        tolerance = variance_tolerance(sample.size, 5.0, 3.0)
        if population is not None:
            tolerance += variance_tolerance(population, 5.0, 3.0)
        for name, scale, mode in _RULES:
            expected = scale / max(fans[mode], 1)
            ratio = variance / expected
            if abs(ratio - 1) <= tolerance:
                matches.append(name)
            if nearest is None or abs(math.log(ratio)) < abs(math.log(nearest[1])):
                nearest = (name, ratio)
    where = param.label
    default_name = default.name if default is not None else None
    if follows_default:
        named = [m for m in matches if m != "torch default"]
        return "default" + (f" = {'/'.join(named)}" if named else ""), None
    if param.layer_type in _EMBEDDINGS:  # no fan rule: a lookup table's scale is a choice
        return f"std {math.sqrt(variance):.2g} (not default)", Finding(
            "note", where, f"std {math.sqrt(variance):.3g}, not the framework's default "
            f"({default_name})", "fine if chosen (e.g. 0.02 in GPT-style models)")
    if matches:
        text = "/".join(matches)
        note = Finding(
            "note", where,
            f"initialised by the {text} rule, not the framework's default ({default_name})",
            "fine if chosen; it is what the layer's activation needs that matters (Chapter 2)",
        ) if default is not None else None
        return text, note
    lecun = math.sqrt(variance * max(fan_in, 1)) if variance > 0 else 0.0
    text = f"no rule: std {lecun:.2g}x LeCun's"
    if nearest is None:
        return text, None
    off = abs(math.log2(nearest[1]))  # octaves of variance from the nearest rule
    severity = "warning" if off >= 1 else "note"
    return text, Finding(
        severity, where,
        f"std {math.sqrt(variance):.3g} follows neither the default ({default_name}) nor a "
        f"named rule: variance {nearest[1]:.2g} x {nearest[0]}'s",
        "re-initialise with the rule for its activation (He for ReLU, LeCun/Glorot for tanh), "
        "or check the custom initialiser", max(1.0, 2 ** off),
    )


def _output_gradient(raw: np.ndarray, y: Any, check: InitialLossCheck | None,
                     rng: np.random.Generator) -> np.ndarray:
    """dL/d(output) for the course's classification losses (mean over the batch; sigmoid also
    over the outputs), or without labels a probe at a cross-entropy's scale."""
    n = raw.shape[0]
    if check is None:
        k = raw.shape[-1] if raw.ndim > 1 else 1
        return rng.standard_normal(raw.shape) / (math.sqrt(k) * n)
    values = raw if raw.ndim > 1 else raw[:, None]
    k = values.shape[1]
    labels = np.asarray(y, dtype=np.float64)
    if check.activation == "softmax":
        targets = labels if labels.ndim == 2 and labels.shape[1] == k \
            else np.eye(k)[labels.reshape(-1).astype(np.int64)]
        if check.outputs == "logits":
            shifted = np.exp(values - values.max(axis=1, keepdims=True))
            gradient = (shifted / shifted.sum(axis=1, keepdims=True) - targets) / n
        elif check.outputs == "log_probabilities":
            gradient = -targets / n
        else:
            gradient = -targets / (n * np.clip(values, np.finfo(np.float32).tiny, None))
    else:
        targets = labels.reshape(values.shape)
        if check.outputs == "logits":
            gradient = (1 / (1 + np.exp(-values)) - targets) / (n * k)
        else:
            p = np.clip(values, np.finfo(np.float32).tiny, 1 - np.finfo(np.float32).epsneg)
            gradient = -(targets / p - (1 - targets) / (1 - p)) / (n * k)
    return gradient.reshape(raw.shape)


def _update(gradient: np.ndarray, optimizer: str, learning_rate: float) -> np.ndarray:
    if optimizer == "sgd":
        return learning_rate * gradient
    # Adam's first step: m = (1 - b1) g and v = (1 - b2) g^2, bias-corrected to g and g^2
    return learning_rate * gradient / (np.abs(gradient) + 1e-7)


def _units(framework: str, shape: tuple[int, ...]) -> int:
    if len(shape) < 2:
        return 1
    return int(shape[1] if framework == "torch" and len(shape) > 2 else shape[-1])


def _activation_findings(framework: str, rows: list[LayerStats], head_names: set[str],
                         weighted: set[str], n: int, normalised: bool) -> list[Finding]:
    findings = []
    reference = None
    for stats in rows:
        base = stats.name.split("#")[0]
        if base in head_names:
            continue
        if not (math.isfinite(stats.std) and math.isfinite(stats.mean)):
            findings.append(Finding("problem", stats.name, "the output is not finite (NaN or inf)",
                                    "check the inputs and the weights' scale", math.inf))
            continue
        if stats.fraction_saturated is not None:
            fraction = stats.fraction_saturated
            if fraction > THRESHOLDS["saturated_warning"]:
                severity = "problem" if fraction > THRESHOLDS["saturated_problem"] else "warning"
                findings.append(Finding(
                    severity, stats.name, f"{100 * fraction:.0f}% of the outputs are saturated",
                    "scale down the weights feeding it (LeCun/Glorot for tanh and sigmoid), or "
                    "normalise its inputs", fraction / THRESHOLDS["saturated_warning"]))
        # a unit of a ReLU layer with independent, centred pre-activations is 0 on an example
        # with probability 1/2, so dead (0 on all n examples) with probability 2^-n; a batch
        # too small to tell raises the threshold to that plus 5 binomial sds over U units
        units = _units(framework, stats.shape)
        chance = 0.5 ** n
        allowed = max(THRESHOLDS["dead_warning"],
                      chance + 5 * math.sqrt(chance * (1 - chance) / max(units, 1)))
        if n >= THRESHOLDS["dead_min_examples"] and stats.fraction_dead > allowed:
            severity = "problem" if stats.fraction_dead >= THRESHOLDS["dead_problem"] \
                else "warning"
            findings.append(Finding(
                severity, stats.name,
                f"{100 * stats.fraction_dead:.0f}% of its {units} units are 0 for every example "
                f"(chance allows {100 * allowed:.0f}% with {n} examples)",
                "use He initialisation with zero biases or a leaky ReLU; look for large "
                "negative biases or zero weights before it",
                stats.fraction_dead / max(allowed, 1e-12)))
        if base in weighted and stats.rms > 0:
            if reference is None:
                reference = (stats.name, stats.rms)
                continue
            ratio = stats.rms / reference[1]
            far = max(ratio, 1 / ratio)
            if far >= THRESHOLDS["scale_warning"]:
                severity = "problem" if far >= THRESHOLDS["scale_problem"] else "warning"
                direction = "grown" if ratio > 1 else "shrunk"
                suggestion = ("use the variance-preserving rule for its activation (He for ReLU, "
                              "LeCun/Glorot for tanh; Chapter 2), or normalisation layers")
                if normalised:  # batch norm rescales in training; here it runs on 0 and 1
                    severity = "note"
                    suggestion = ("batch normalisation rescales it in training (here it uses its "
                                  "initial statistics, 0 and 1); without it, " + suggestion[4:])
                findings.append(Finding(
                    severity, stats.name,
                    f"its output's rms has {direction} {far:.3g}x from the first weight layer's "
                    f"({reference[0]!r})", suggestion, far / THRESHOLDS["scale_warning"]))
    return findings


def init_report(model: Any, x: Any, y: Any = None, *, activation: str | None = None,
                layer: str | None = None, output: Any = None, outputs: str | None = None,
                optimizer: str = "adam", learning_rate: float = 1e-3,
                saturation: float = 0.99, seed: int = 0) -> InitReport:
    """Check a model's initialisation on one batch before training; the worst findings first.

    One forward and backward pass in inference mode (dropout off, batch normalisation on its
    moving statistics; the model is left unchanged), then:

    * **initial loss** (when ``y`` is given): :func:`utils.priors.check_initial_loss`, the
      measured loss against the prior's entropy and the loss the output bias predicts;
    * **activations**, per layer call: output std, saturated fraction (bounded activations)
      and dead fraction (units 0 for every example), as :func:`utils.variance.layer_statistics`
      defines them. Dead units are flagged from 10 % of a layer, or above their chance level
      if that is higher: a ReLU unit with centred, independent pre-activations is 0 on an
      example with probability 1/2, so dead on all ``n`` with ``2**-n``, and the threshold is
      that plus 5 binomial standard deviations over the layer's units. With fewer than 16
      examples there are no dead-unit findings; examples that differ little (two noise
      images seen by a deep network) make units look dead too, so use varied real inputs.
      The output rms of each weight layer is compared with the first weight layer's
      (:data:`THRESHOLDS`);
    * **gradients**, per weight tensor: ``|g| / |W|``, and the update-to-data ratio
      ``|step| / |W|`` of the first ``optimizer`` step (SGD: ``learning_rate * g``; Adam: its
      bias-corrected first step, ``learning_rate * g / (|g| + 1e-7)``). With ``y`` the
      gradients are the classification loss's (cross-entropy or binary cross-entropy, on the
      output the check uses); without, of a probe whose output gradient has random normal
      entries of a ``K``-class cross-entropy's scale, ``N(0, 1/K) / n``;
    * **initialisation**, per weight tensor (two or more dimensions): whether the values
      follow the framework's default (:func:`utils.distributions.default_distribution`, tested
      with :func:`utils.distributions.check_sample`), else which named rule's variance they
      match (LeCun, Glorot, He with ``fan_in`` or ``fan_out``, torch's default;
      :func:`utils.stats.variance_tolerance` at 5 standard deviations), else how far from the
      nearest they are. Constant weight tensors (no symmetry breaking) are flagged, except
      the output layer's (a zero output kernel is a deliberate start, Chapter 4).

    The layers that compute the checked output (:func:`utils.frameworks.output_graph`) and the
    steps after them are left out of the activation findings: a sigmoid after a rare class's
    prior bias is saturated by design, and small logits are a good start.

    Parameters
    ----------
    model
        A built Keras 3 model or ``torch.nn.Module``.
    x
        A batch of inputs (a tuple for several inputs), batch on axis 0.
    y
        Optional labels for a classification output, as in
        :func:`utils.priors.check_initial_loss`.
    activation, layer, output, outputs
        As in :func:`utils.priors.check_initial_loss` (with ``y``); ``output`` also chooses the
        output the gradients come from for a model with several outputs (required there).
    optimizer
        ``"adam"`` or ``"sgd"``: whose first step the update-to-data ratio describes.
    learning_rate
        The step's learning rate, ``> 0``.
    saturation
        As in :func:`utils.variance.layer_statistics`.
    seed
        Seeds the probe gradient (without ``y``) and the subsamples of large tensors.

    Returns
    -------
    InitReport
        ``print`` it for the findings and the per-layer table.

    Raises
    ------
    ValueError
        For a model that is not a built Keras/torch model, an input it cannot run, labels
        :func:`utils.priors.check_initial_loss` rejects or a model whose output it cannot
        check with them, several outputs without ``output``, an unknown ``optimizer``, a
        non-positive ``learning_rate``, a ``saturation`` outside (0, 1).
    """
    framework = require_built(model)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    learning_rate = require_positive(learning_rate, "learning_rate")
    if isinstance(saturation, bool) or not isinstance(saturation, (int, float)) \
            or not 0 < saturation < 1:
        raise ValueError(f"saturation must be a number strictly between 0 and 1, got "
                         f"{saturation!r}")
    if x is None:
        raise ValueError("x must be a batch of inputs (array or tensor), got None")
    rng = np.random.default_rng(seed)
    n = len(x[0]) if isinstance(x, tuple) else len(x)
    if n == 0:
        raise ValueError("x must hold at least one example")

    check = None
    if y is not None:
        check = check_initial_loss(model, x, y, activation, layer=layer, output=output,
                                   outputs=outputs, warn=False)
    outputs_now = forward(model, x)
    names = [name for name, _ in outputs_now]
    if check is not None:
        chosen = names.index(check.output)
    elif output is not None:
        chosen = OutputGraph(tuple(names), (), "").index(output)
    elif len(names) > 1:
        raise ValueError(f"output must be given: the model has {len(names)} outputs {names}; "
                         "pass output= the one whose gradients to report (name or position)")
    else:
        chosen = 0
    raw = outputs_now[chosen][1]
    gradient = _output_gradient(raw, y, check, rng)
    result = trace(model, x, gradient.astype(np.float32), probe_loss(framework),
                   training=False, output=chosen)
    rows = trace_statistics(model, result, saturation=saturation)

    # the layers that compute the checked output, and the steps after them
    sample = tuple(part[:8] for part in x) if isinstance(x, tuple) else x[:8]
    graph = output_graph(model, sample)
    head_names = set()
    for source in graph.sources:
        if source.output == chosen:
            head_names.add(source.layer)
            head_names.update(step.name.split("'")[1] for step in source.after
                              if step.is_layer)
    weights = _weight_tensors(model)
    weighted = {_layer_key(framework, p) for p in weights}
    normalised = any("BatchNorm" in type(obj).__name__ for _, obj in leaf_layers(model))
    findings = _activation_findings(framework, rows, head_names, weighted, n, normalised)

    grads = {id(p.handle): g for p, g in result.param_grads}
    per_layer: dict[str, dict[str, Any]] = {}
    ratios = []
    for index, param in enumerate(weights):
        values = param.numpy().astype(np.float64)
        key = _layer_key(framework, param)
        entry: dict[str, Any] = {"weight": param.label, "weight_std": float(values.std())}
        norm = float(np.linalg.norm(values))
        if values.size > 1 and float(np.ptp(values)) == 0.0:
            entry["rule"] = f"constant {values.flat[0]:.3g}"
            if key in head_names:
                findings.append(Finding(
                    "note", param.label, "the output kernel is constant: the bias alone decides "
                    "the first predictions", "fine for a prior bias start (Chapter 4)"))
            else:
                findings.append(Finding(
                    "problem", param.label,
                    f"all {values.size} weights equal {values.flat[0]:.3g}: every unit gets "
                    "the same gradient, so they never differ (symmetry not broken)",
                    "draw them from a random rule (He for ReLU, Glorot for tanh)", 10.0))
        else:
            entry["rule"], finding = _rule(framework, param, values, seed + index)
            if finding is not None:
                findings.append(finding)
        gradient_values = grads.get(id(param.handle))
        if gradient_values is None:
            findings.append(Finding(
                "note", param.label, "gets no gradient from this loss (unused in the forward "
                "pass, or it computes another output)",
                "fine for a frozen or auxiliary part; otherwise check forward()"))
        elif not np.all(np.isfinite(gradient_values)):
            findings.append(Finding("problem", param.label, "its gradient is not finite",
                                    "check the inputs and the weights' scale", math.inf))
        elif norm > 0:
            g_norm = float(np.linalg.norm(gradient_values))
            step = float(np.linalg.norm(_update(gradient_values, optimizer, learning_rate)))
            entry["grad_to_weight"] = g_norm / norm
            entry["update_to_data"] = step / norm
            ratios.append((param.label, g_norm / norm))
            ratio = step / norm
            if ratio > THRESHOLDS["update_warning"]:
                severity = "problem" if ratio > THRESHOLDS["update_problem"] else "warning"
                findings.append(Finding(
                    severity, param.label,
                    f"one {optimizer} step of {learning_rate:g} changes it by {100 * ratio:.3g}% "
                    "of its size", "lower the learning rate, or check that the weights are not "
                    "too small", ratio / THRESHOLDS["update_warning"]))
            elif ratio == 0:
                findings.append(Finding(
                    "problem", param.label, "its gradient is exactly 0: it will not train",
                    "look for dead units or zero weights between it and the output", 10.0))
            elif ratio < THRESHOLDS["update_frozen"]:
                findings.append(Finding(
                    "warning", param.label,
                    f"one {optimizer} step changes it by {ratio:.2g} of its size",
                    "raise the learning rate, or check that gradients reach it",
                    THRESHOLDS["update_frozen"] / ratio))
        per_layer.setdefault(key, entry)
    positive = [(label, r) for label, r in ratios if r > 0]
    if len(positive) >= 2:
        slowest = min(positive, key=lambda item: item[1])
        fastest = max(positive, key=lambda item: item[1])
        spread = fastest[1] / slowest[1]
        if spread > THRESHOLDS["gradient_spread"]:
            findings.append(Finding(
                "warning", slowest[0],
                f"its gradient-to-weight ratio is {spread:.3g}x smaller than {fastest[0]}'s",
                "gradients vanish on the way back: check the activations' scale through depth; "
                "residual connections or normalisation help (Chapter 6)",
                spread / THRESHOLDS["gradient_spread"]))
    if check is not None and not check.ok:
        second = check.predicted - check.optimum > check.prior_tolerance
        if second:
            findings.append(Finding(
                "warning", check.layer,
                f"initial loss {check.measured:.4g}: the bias predicts {check.predicted:.4g}, "
                f"the label prior {check.optimum:.4g}",
                "set_prior_bias(model, counts) (Chapter 4)" if check.has_bias else
                "add a bias to the output layer, then set_prior_bias (Chapter 4)",
                (check.predicted - check.optimum) / max(check.prior_tolerance, 1e-12)))
        if check.excess > check.rtol * check.predicted:
            findings.append(Finding(
                "warning", check.layer,
                f"the random part of the logits adds {check.excess:.3g} to the initial loss "
                f"({check.excess / check.predicted:.0%} of the prediction)",
                "set_prior_bias(..., kernel_scale=0.1) to shrink the output kernel",
                check.excess / (check.rtol * check.predicted)))

    findings.sort(key=lambda f: (_RANK[f.severity], -f.score))
    table = []
    for stats in rows:
        entry = per_layer.get(stats.name.split("#")[0], {})
        table.append(LayerReport(stats.name, stats.layer_type, stats.std,
                                 stats.fraction_saturated, stats.fraction_dead, **entry))
    name = getattr(model, "name", None) or type(model).__name__
    return InitReport(str(name), n, check, "loss" if check is not None else "probe",
                      optimizer, float(learning_rate), tuple(table), tuple(findings))
