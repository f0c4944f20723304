"""Seeded multi-arm training experiments in Keras 3 and torch, and their statistics (Chapter 5).

Chapter 5 measures what a prior-logit output bias buys: several *arms* (zero bias, prior bias,
class weights, ...) trained from the same seeds, in both frameworks, compared with intervals
and paired tests. This module holds the pieces that are not specific to that chapter:

* :func:`small_classifier` builds the chapter's small network (dense ReLU layer, optional
  dropout, dense output) identically structured in both frameworks, and :func:`reinitialize`
  redraws any model's parameters with its framework's default initializers from a seed, so
  one model can be reused for every seed of an experiment.
* :func:`train_fused` trains a model for a few epochs and returns every batch's *true* loss,
  like :func:`utils.training.train`, with the same batches and optimizer settings. For Keras
  it compiles the whole run into one TensorFlow graph instead of calling a compiled step once
  per batch, which removes the per-step Python overhead that dominates the step of a small
  model; PyTorch models go to :func:`utils.training.train_torch`.
* :func:`class_weighted_bce` is the class-weighted binary cross-entropy of Keras'
  ``fit(class_weight=...)`` as a loss callable in either framework.
* :func:`trailing_mean`, :func:`steps_to_threshold` and :func:`compare_arms` turn per-seed
  results into the numbers a reader needs: smoothed curves, how many updates until a loss
  threshold, and each arm's mean with an interval plus paired differences that say whether
  they are significant.

Only NumPy is imported at module level (SciPy when a summary is computed); Keras, TensorFlow
and torch only inside the functions that get a model of that framework, so
``import utils.experiments`` stays cheap.
"""
from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from utils.frameworks import LOSS_NAMES, leaf_layers, loss_function, parameters, require_built
from utils.stats import (Interval, PairedComparison, mean_ci, paired_difference,
                         require_finite, require_int, require_positive, require_seed)
from utils.training import (OPTIMIZER_NAMES, TrainingHistory, batch_order, keras_optimizer,
                            train_torch)

__all__ = [
    "OUTPUT_ACTIVATIONS",
    "small_classifier",
    "reinitialize",
    "predict",
    "train_fused",
    "class_weighted_bce",
    "trailing_mean",
    "steps_to_threshold",
    "ArmComparison",
    "compare_arms",
]

#: Output activations :func:`small_classifier` accepts (``None``: the model outputs logits).
OUTPUT_ACTIVATIONS = (None, "sigmoid", "softmax")

# Keras variables whose initializer attribute is not simply "<variable name>_initializer".
_KERAS_INITIALIZER_ATTRIBUTES = {"recurrent_kernel": "recurrent_initializer"}


# --------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------


def _framework_name(framework: Any) -> str:
    if framework not in ("keras", "torch"):
        raise ValueError(f"framework must be 'keras' or 'torch', got {framework!r}")
    return framework


def _layer_seed(seed: int, index: int) -> int:
    """An independent 31-bit seed for the ``index``-th layer of a model seeded with ``seed``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0] >> 1)


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


def small_classifier(framework: str, n_in: int, n_out: int, *, hidden: int = 64,
                     dropout: float = 0.0, output_activation: str | None = None,
                     seed: int = 0) -> Any:
    """The small network of Chapter 5: ``dense(hidden, relu) -> [dropout] -> dense(n_out)``.

    Both frameworks get the same structure with their own default initialisation (Keras:
    Glorot-uniform kernels and zero biases; torch: ``U(±1/sqrt(fan_in))`` weights and biases),
    drawn from ``seed`` through :func:`reinitialize`, so the same seed gives the same model
    and building it does not touch any global random state. With ``n_in=30, hidden=16,
    dropout=0.5, n_out=1, output_activation="sigmoid"`` it is the fraud model of the sources.

    Parameters
    ----------
    framework
        ``"keras"`` or ``"torch"``.
    n_in, n_out
        Number of input features and of outputs.
    hidden
        Units of the hidden ReLU layer.
    dropout
        Dropout rate after the hidden layer, in ``[0, 1)``; 0 leaves the layer out.
    output_activation
        ``None`` (logits, what ``utils.training``'s named losses expect), ``"sigmoid"`` or
        ``"softmax"``. Keras applies it inside the output ``Dense`` layer (as the sources do);
        torch appends ``nn.Sigmoid()`` or ``nn.Softmax(dim=-1)``.
    seed
        Seed of the initial parameters.

    Returns
    -------
    A built ``keras.Sequential`` (layers ``"hidden"``, ``"dropout"``, ``"output"``) or a
    ``torch.nn.Sequential``.

    Raises
    ------
    ValueError
        If ``framework`` or ``output_activation`` is unknown, a size is not a positive integer,
        ``dropout`` is outside ``[0, 1)`` or ``seed`` outside ``[0, 2**32)``.
    """
    framework = _framework_name(framework)
    n_in = require_int(n_in, "n_in")
    n_out = require_int(n_out, "n_out")
    hidden = require_int(hidden, "hidden")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) \
            or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
    if output_activation not in OUTPUT_ACTIVATIONS:
        raise ValueError(f"output_activation must be one of {OUTPUT_ACTIVATIONS}, "
                         f"got {output_activation!r}")
    seed = require_seed(seed)
    if framework == "keras":
        import keras

        # Keras draws a default seed for each initializer and dropout layer from Python's
        # global generator while building; restore it so building changes no global state.
        python_state = random.getstate()
        try:
            layers = [keras.Input((n_in,)), keras.layers.Dense(hidden, activation="relu",
                                                               name="hidden")]
            if dropout:
                layers.append(keras.layers.Dropout(dropout, name="dropout"))
            layers.append(keras.layers.Dense(n_out, activation=output_activation,
                                             name="output"))
            model = keras.Sequential(layers)
        finally:
            random.setstate(python_state)
    else:
        import torch
        import torch.nn as nn

        with torch.random.fork_rng(devices=[]):  # the constructors draw from the global RNG
            modules = [nn.Linear(n_in, hidden), nn.ReLU()]
            if dropout:
                modules.append(nn.Dropout(dropout))
            modules.append(nn.Linear(hidden, n_out))
            if output_activation == "sigmoid":
                modules.append(nn.Sigmoid())
            elif output_activation == "softmax":
                modules.append(nn.Softmax(dim=-1))
            model = nn.Sequential(*modules)
    reinitialize(model, seed)
    return model


def reinitialize(model: Any, seed: int) -> Any:
    """Redraw every parameter of ``model`` in place with its framework's default initializers.

    A seeded experiment (Chapter 5) reuses one model for every seed (a Keras model keeps its
    compiled training graph, see :func:`train_fused`); this gives it fresh default parameters.

    - **Keras:** each variable ``v`` of a layer is redrawn with the layer's ``v_initializer``
      attribute (``kernel_initializer``, ``bias_initializer``, ``gamma_initializer``,
      ``recurrent_initializer`` for ``recurrent_kernel``, ...; an LSTM's forget-gate bias
      starts at one as Keras builds it), copied and seeded by ``(seed, layer index,
      variable)``: the layer's own distribution, independent draws per layer, no global random
      state used. The state of every random-seed generator (``Dropout``'s) is reset from the
      seed too, so a run does not depend on what ran before it.
    - **torch:** ``torch.manual_seed(seed)`` inside ``torch.random.fork_rng`` (the global
      generator is left as it was), then ``reset_parameters()`` of every module that owns
      parameters or buffers, in ``named_modules`` order: for a freshly built model this is
      what its constructors did.

    Parameters
    ----------
    model
        A built Keras 3 model or a ``torch.nn.Module``.
    seed
        Integer in ``[0, 2**32)``; the same seed gives the same parameters.

    Returns
    -------
    The same model, for chaining.

    Raises
    ------
    ValueError
        If ``model`` is not a built Keras/torch model, ``seed`` is out of range, or a
        parameter has no initializer to redraw it with (a Keras variable without a matching
        ``*_initializer`` attribute, a torch parameter whose module has no
        ``reset_parameters()``); nothing is changed then.
    """
    framework = require_built(model)
    seed = require_seed(seed)
    if framework == "torch":
        import torch

        owners = {id(p.layer_object) for p in parameters(model, include_non_trainable=True)}
        missing = [f"{p.layer}/{p.name}" for p in parameters(model, include_non_trainable=True)
                   if not callable(getattr(p.layer_object, "reset_parameters", None))]
        if missing:
            raise ValueError(f"model has parameters whose module has no reset_parameters(), "
                             f"which reinitialize cannot redraw: {missing}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for module in model.modules():
                reset = getattr(module, "reset_parameters", None)
                if id(module) in owners and callable(reset):
                    reset()
        return model

    import keras

    missing, values, generators = [], [], []
    for index, (name, layer) in enumerate(leaf_layers(model)):
        for number, variable in enumerate(layer.weights):
            attribute = _KERAS_INITIALIZER_ATTRIBUTES.get(variable.name,
                                                          f"{variable.name}_initializer")
            initializer = getattr(layer, attribute, None)
            if initializer is None:
                missing.append(f"{name}/{variable.name}")
                continue
            initializer = keras.initializers.get(initializer)
            config = initializer.get_config()
            if "seed" in config:
                config["seed"] = _layer_seed(seed, 1000 * index + number)
                initializer = initializer.__class__.from_config(config)
            shape = tuple(variable.shape)
            if variable.name == "bias" and getattr(layer, "unit_forget_bias", False):
                # as Keras builds an LSTM cell: the forget gate's bias starts at one
                units = shape[0] // 4
                part = np.asarray(initializer((units,), dtype=variable.dtype))
                rest = np.asarray(initializer((2 * units,), dtype=variable.dtype))
                value = np.concatenate([part, np.ones(units, part.dtype), rest])
            else:
                value = initializer(shape, dtype=variable.dtype)
            values.append((variable, value))
        generator = getattr(layer, "seed_generator", None)
        if generator is not None and hasattr(generator, "state"):
            generators.append((generator, _layer_seed(seed, 1000 * index + 999)))
    if missing:
        raise ValueError(f"model has variables without an initializer attribute, which "
                         f"reinitialize cannot redraw: {missing}")
    for variable, value in values:
        variable.assign(value)
    for generator, generator_seed in generators:
        generator.state.assign(np.array([generator_seed, 0],
                                        dtype=np.dtype(generator.state.dtype)))
    return model


def predict(model: Any, x: Any, batch_size: int = 65_536) -> np.ndarray:
    """A model's outputs in inference mode (dropout off), as float64 NumPy, in either framework.

    Keras models are called with ``training=False``; torch modules are put in ``eval()`` mode
    under ``torch.no_grad()`` and returned to the mode they were in. Floating inputs are cast
    to float32 (the models' dtype in this course). Chapter 5 scores held-out data with it.

    Parameters
    ----------
    model
        A built Keras 3 model or ``torch.nn.Module``.
    x
        Inputs, a NumPy array (first axis: examples).
    batch_size
        Examples per forward pass, to bound memory.

    Returns
    -------
    numpy.ndarray
        The outputs, float64, first axis as ``x``.

    Raises
    ------
    ValueError
        If ``model`` is not a built Keras/torch model, ``x`` has no first axis or is empty, or
        ``batch_size`` is not a positive integer.
    """
    framework = require_built(model)
    inputs = np.asarray(x)
    if inputs.ndim == 0 or len(inputs) == 0:
        raise ValueError(f"x must be a non-empty array of examples, got shape {inputs.shape}")
    size = require_int(batch_size, "batch_size")
    if inputs.dtype.kind == "f":
        inputs = inputs.astype(np.float32, copy=False)
    chunks = [inputs[start:start + size] for start in range(0, len(inputs), size)]
    if framework == "keras":
        return np.concatenate([np.asarray(model(chunk, training=False), dtype=np.float64)
                               for chunk in chunks])
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            outputs = [model(torch.from_numpy(np.ascontiguousarray(chunk))).numpy()
                       for chunk in chunks]
    finally:
        model.train(was_training)
    return np.concatenate(outputs).astype(np.float64)


# --------------------------------------------------------------------------------------------
# Training: the whole run in one graph (Keras), or utils.training's loop (torch)
# --------------------------------------------------------------------------------------------

# Compiled runs are cached on the model (one graph per loss, optimizer and data layout), as
# utils.training caches its compiled step; object.__setattr__ keeps Keras from tracking it.
_RUN_CACHE = "_initialization_matters_fused_runs"


def _fused_keras_run(model: Any, loss: Any, optimizer: str, learning_rate: float,
                     input_spec: Any, target_spec: Any) -> tuple[Any, Any]:
    """A compiled function training on given batches, and its optimizer reset to fresh."""
    import tensorflow as tf

    cache = getattr(model, _RUN_CACHE, None)
    if cache is None:
        cache = {}
        object.__setattr__(model, _RUN_CACHE, cache)
    key = (optimizer, learning_rate, loss if isinstance(loss, str) else id(loss),
           input_spec, target_spec)
    if key in cache:
        run, opt, fresh = cache[key]
        for variable, value in zip(opt.variables, fresh):
            variable.assign(value)
        return run, opt
    opt = keras_optimizer(optimizer, learning_rate)
    opt.build(model.trainable_variables)
    fresh = [np.array(v.numpy()) for v in opt.variables]
    loss_fn = loss_function("keras", loss)
    variables = model.trainable_variables
    index_spec = tf.TensorSpec((None,), tf.int64)

    @tf.function(input_signature=[input_spec, target_spec, index_spec, index_spec])
    def run(inputs: Any, targets: Any, flat_index: Any, offsets: Any) -> Any:
        steps = tf.shape(offsets, out_type=tf.int64)[0] - 1
        losses = tf.TensorArray(tf.float32, size=tf.cast(steps, tf.int32))
        for step in tf.range(steps):
            rows = flat_index[offsets[step]:offsets[step + 1]]
            with tf.GradientTape() as tape:
                value = loss_fn(tf.gather(targets, rows),
                                model(tf.gather(inputs, rows), training=True))
            opt.apply_gradients(zip(tape.gradient(value, variables), variables))
            losses = losses.write(tf.cast(step, tf.int32), tf.cast(value, tf.float32))
        return losses.stack()

    cache[key] = (run, opt, fresh)
    return run, opt


def train_fused(model: Any, x: Any, y: Any, loss: Any, optimizer: str = "sgd", *,
                learning_rate: float = 0.01, epochs: int = 1, batch_size: int = 32,
                seed: int = 0, shuffle: bool = True) -> TrainingHistory:
    """Train a model and record every batch's true loss; a Keras run is one compiled graph.

    Same contract as :func:`utils.training.train` (same batches from
    :func:`utils.training.batch_order`, same optimizer hyperparameters, each batch's loss
    computed on the batch before its update), for the many short runs of a seeded experiment
    (Chapter 5):

    - **Keras:** every step of the run executes inside one ``tf.function`` (a ``tf.range`` loop
      that gathers each batch, takes the gradient step and writes the loss into a
      ``TensorArray``), so Python is entered once per run instead of once per batch. The graph
      is traced once per model, loss and optimizer setting and reused: reuse one model for all
      seeds with :func:`reinitialize`. A named optimizer starts fresh on every call.
    - **torch:** delegates to :func:`utils.training.train_torch`.

    Parameters
    ----------
    model
        A built Keras 3 model or ``torch.nn.Module``, trained in place.
    x, y
        Training inputs and targets, NumPy arrays with the same first axis.
    loss
        A name from :data:`utils.frameworks.LOSS_NAMES` (logits) or a callable in the
        framework's convention (Keras ``loss(y_true, y_pred)``, torch ``loss(pred, target)``),
        e.g. :func:`class_weighted_bce`.
    optimizer
        A name from :data:`utils.training.OPTIMIZER_NAMES`.
    learning_rate, epochs, batch_size, seed, shuffle
        As in :func:`utils.training.train`. ``seed`` sets the batch order, and for torch the
        global generator (its dropout masks). A Keras model's dropout masks come from its
        layers' own seed generators, which :func:`reinitialize` resets from its seed; the
        global TensorFlow seed is not touched (setting it clears TensorFlow's kernel caches,
        which would cost every run time).

    Returns
    -------
    utils.training.TrainingHistory
        Without evaluation data (empty ``eval_losses``).

    Raises
    ------
    ValueError
        If ``model`` is not a built Keras/torch model, ``x`` and ``y`` differ in length or are
        empty, ``loss`` or ``optimizer`` is unknown, ``learning_rate`` is not positive, or an
        integer argument is out of range.
    """
    framework = require_built(model)
    if not isinstance(optimizer, str) or optimizer not in OPTIMIZER_NAMES:
        raise ValueError(f"optimizer must be one of {OPTIMIZER_NAMES}, got {optimizer!r}")
    require_positive(learning_rate, "learning_rate")
    if not callable(loss) and loss not in LOSS_NAMES:
        raise ValueError(f"loss must be one of {LOSS_NAMES} or a callable, got {loss!r}")
    if framework == "torch":
        return train_torch(model, x, y, loss, optimizer, learning_rate=learning_rate,
                           epochs=epochs, batch_size=batch_size, seed=seed, shuffle=shuffle)
    inputs, targets = np.asarray(x), np.asarray(y)
    if inputs.ndim == 0 or targets.ndim == 0 or len(inputs) != len(targets) or not len(inputs):
        raise ValueError(f"x and y must be non-empty arrays with the same number of examples, "
                         f"got shapes {inputs.shape} and {targets.shape}")
    epochs = require_int(epochs, "epochs")
    batches = batch_order(len(inputs), batch_size, epochs, require_seed(seed), shuffle)
    import tensorflow as tf

    # No global seeding here: Keras layers draw their randomness (dropout masks) from their own
    # seed generators, which reinitialize() resets, and tf.random.set_seed would clear
    # TensorFlow's kernel caches, making every run pay to rebuild them.
    if inputs.dtype.kind == "f":
        inputs = inputs.astype(np.float32, copy=False)
    if targets.dtype.kind == "f":
        targets = targets.astype(np.float32, copy=False)
    input_spec = tf.TensorSpec((None,) + inputs.shape[1:], tf.as_dtype(inputs.dtype))
    target_spec = tf.TensorSpec((None,) + targets.shape[1:], tf.as_dtype(targets.dtype))
    run, _ = _fused_keras_run(model, loss, optimizer, float(learning_rate), input_spec,
                              target_spec)
    sizes = np.array([len(b) for b in batches])
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    losses = run(inputs, targets, np.concatenate(batches).astype(np.int64), offsets).numpy()
    return TrainingHistory(losses.astype(np.float64), sizes, epochs, np.array([]), np.array([]))


# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------


def _class_weights(class_weight: Any) -> tuple[float, float]:
    if class_weight is None:
        return 1.0, 1.0
    if not isinstance(class_weight, Mapping) or set(class_weight) != {0, 1}:
        raise ValueError("class_weight must be None or a mapping {0: w_negative, 1: w_positive}"
                         f", got {class_weight!r}")
    return (require_positive(class_weight[0], "class_weight[0]"),
            require_positive(class_weight[1], "class_weight[1]"))


def class_weighted_bce(framework: str, class_weight: Mapping[int, float] | None = None, *,
                       from_logits: bool = False) -> Any:
    """Binary cross-entropy with per-class weights, as a loss callable for either framework.

    The loss is ``mean_i w(y_i) · bce(y_i, p_i)`` with ``w(0) = class_weight[0]`` and
    ``w(1) = class_weight[1]``, which is what Keras' ``fit(..., class_weight=...)`` minimises
    (the weights become sample weights; the mean is over the batch). Chapter 4 shows that
    "balanced" weights ``n / (2 n_k)`` make the matching output bias zero, and Chapter 5
    measures what happens when both are used.

    Parameters
    ----------
    framework
        ``"keras"`` (callable ``loss(y_true, y_pred)``) or ``"torch"`` (``loss(pred, target)``).
    class_weight
        ``{0: w_negative, 1: w_positive}`` with positive weights, or ``None`` for the plain loss.
    from_logits
        Whether the model outputs logits (else probabilities, e.g. from a sigmoid layer).

    Returns
    -------
    callable
        Returns a scalar tensor of the framework.

    Raises
    ------
    ValueError
        If ``framework`` is unknown or ``class_weight`` is not ``None`` or a mapping of the
        labels 0 and 1 to positive finite numbers.
    """
    framework = _framework_name(framework)
    w_negative, w_positive = _class_weights(class_weight)
    logits = bool(from_logits)
    if framework == "keras":
        def keras_loss(y_true: Any, y_pred: Any) -> Any:
            import keras

            target = keras.ops.reshape(keras.ops.cast(y_true, y_pred.dtype),
                                       keras.ops.shape(y_pred))
            per_example = keras.ops.binary_crossentropy(target, y_pred, from_logits=logits)
            weight = w_negative + (w_positive - w_negative) * target
            return keras.ops.mean(weight * per_example)
        return keras_loss

    def torch_loss(pred: Any, target: Any) -> Any:
        import torch.nn.functional as F

        target = target.to(pred.dtype).reshape(pred.shape)
        if logits:
            per_example = F.binary_cross_entropy_with_logits(pred, target, reduction="none")
        else:
            per_example = F.binary_cross_entropy(pred, target, reduction="none")
        weight = w_negative + (w_positive - w_negative) * target
        return (weight * per_example).mean()
    return torch_loss


# --------------------------------------------------------------------------------------------
# Summaries of per-seed results
# --------------------------------------------------------------------------------------------


def _curves(losses: Any) -> np.ndarray:
    try:
        curves = np.asarray(losses, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"losses must be an array of numbers, got {type(losses).__name__}") \
            from None
    if curves.ndim not in (1, 2) or curves.shape[-1] == 0:
        raise ValueError(f"losses must have shape (n_steps,) or (n_runs, n_steps) with "
                         f"n_steps >= 1, got {curves.shape}")
    if not np.all(np.isfinite(curves)):
        raise ValueError("losses must be finite")
    return curves


def trailing_mean(losses: Any, window: int) -> np.ndarray:
    """Smooth loss curves with a trailing mean over ``window`` batches (Chapter 5).

    Point ``t`` is the mean of ``losses[t - window + 1 : t + 1]``; the first ``window - 1``
    points average the batches so far, so nothing is dropped and nothing from the future is
    used. Per-batch losses of a rare class are noisy (one more positive in a batch costs far
    more than the average example), which is why Chapter 5 plots and thresholds them smoothed.

    Parameters
    ----------
    losses
        One curve ``(n_steps,)`` or one per run ``(n_runs, n_steps)``.
    window
        Batches in the mean, a positive integer.

    Returns
    -------
    numpy.ndarray
        Same shape as ``losses``, float64.

    Raises
    ------
    ValueError
        If ``losses`` is not a non-empty 1-D or 2-D array of finite numbers or ``window`` not
        a positive integer.
    """
    curves = _curves(losses)
    window = require_int(window, "window")
    rows = np.atleast_2d(curves)
    totals = np.cumsum(rows, axis=1)
    earlier = np.zeros_like(totals)
    earlier[:, window:] = totals[:, :-window]
    smoothed = (totals - earlier) / np.minimum(np.arange(1, rows.shape[1] + 1), window)
    return smoothed[0] if curves.ndim == 1 else smoothed


def steps_to_threshold(losses: Any, threshold: float, window: int = 1) -> Any:
    """The number of updates after which a (smoothed) loss curve first reaches ``threshold``.

    ``losses[t]`` is the loss of batch ``t`` before its update (as :func:`train_fused` records
    it), so reaching the threshold at index ``t`` means after ``t`` updates. The curve is first
    smoothed by :func:`trailing_mean` over ``window`` batches. Chapter 5 uses it for "steps to
    a loss threshold".

    Parameters
    ----------
    losses
        One curve ``(n_steps,)`` or one per run ``(n_runs, n_steps)``.
    threshold
        The loss to reach (reached means smoothed loss ``<= threshold``).
    window
        Batches in the trailing mean, a positive integer.

    Returns
    -------
    float or numpy.ndarray
        The index of the first point at or below the threshold, as a float, or ``nan`` if the
        curve never gets there; one value per run for 2-D input.

    Raises
    ------
    ValueError
        If ``losses`` is not a non-empty 1-D or 2-D array of finite numbers, ``threshold`` is
        not a finite number or ``window`` not a positive integer.
    """
    curves = _curves(losses)
    require_finite(threshold, "threshold")
    reached = np.atleast_2d(trailing_mean(curves, window)) <= threshold
    steps = np.where(reached.any(axis=1), reached.argmax(axis=1), np.nan).astype(np.float64)
    return float(steps[0]) if curves.ndim == 1 else steps


@dataclass(frozen=True)
class ArmComparison:
    """Each arm's mean with an interval, and paired differences between arms (Chapter 5).

    Attributes
    ----------
    metric
        What was measured, for the printed table.
    intervals
        Arm name -> :class:`utils.stats.Interval` of its per-seed values.
    differences
        ``(arm_a, arm_b)`` -> :class:`utils.stats.PairedComparison` of ``a - b`` over seeds.
    confidence
        Confidence level of the intervals and the significance threshold ``1 - confidence``.
    digits
        Significant digits printed.
    """

    metric: str
    intervals: dict[str, Interval]
    differences: dict[tuple[str, str], PairedComparison]
    confidence: float
    digits: int

    def significant(self, a: str, b: str) -> bool:
        """Whether the interval of the mean difference ``a - b`` excludes zero."""
        difference = self.differences[(a, b)].difference
        return difference.low > 0 or difference.high < 0

    def __str__(self) -> str:
        d = self.digits
        n = next(iter(self.intervals.values())).n
        level = f"{100 * self.confidence:g} %"
        width = max(len(name) for name in self.intervals)
        lines = [f"{self.metric}: mean ({level} CI) over {n} seeds"]
        for name, interval in self.intervals.items():
            lines.append(f"  {name:<{width}}  {interval.mean:.{d}g} "
                         f"({interval.low:.{d}g} to {interval.high:.{d}g})")
        if self.differences:
            lines.append(f"  paired differences ({level} CI, two-sided paired t-test):")
        for (a, b), comparison in self.differences.items():
            difference = comparison.difference
            verdict = "significant" if self.significant(a, b) else "not significant"
            p_value = comparison.p_value
            p_text = "p < 1e-4" if p_value < 1e-4 else f"p = {p_value:.2g}"
            lines.append(f"  {a} - {b}: {difference.mean:+.{d}g} ({difference.low:+.{d}g} to "
                         f"{difference.high:+.{d}g}), {p_text}, {verdict}")
        return "\n".join(lines)


def compare_arms(values: Mapping[str, Any], pairs: Sequence[tuple[str, str]], metric: str, *,
                 confidence: float = 0.95, digits: int = 3) -> ArmComparison:
    """Summarise one metric of a seeded experiment: every arm's mean, and paired differences.

    Each arm must hold one value per seed, in the same seed order, so ``a[i] - b[i]`` compares
    two arms that shared everything but the treatment (data order, initial weights). A
    difference is called *significant* when its ``confidence`` interval (Student t over the
    seeds, :func:`utils.stats.paired_difference`) excludes zero, i.e. a two-sided paired
    t-test at level ``1 - confidence``. ``print`` the result for a table (Chapter 5).

    Parameters
    ----------
    values
        Arm name -> per-seed values (at least two seeds, the same number for every arm).
    pairs
        The comparisons ``(arm_a, arm_b)`` to make, reported as ``a - b``.
    metric
        Name of the metric, for the table.
    confidence
        Level of the intervals, strictly between 0 and 1.
    digits
        Significant digits printed, 1 to 10.

    Returns
    -------
    ArmComparison

    Raises
    ------
    ValueError
        If ``values`` is empty, an arm has fewer than two values or not as many as the others,
        a value is not finite, a pair names an unknown arm or the same arm twice,
        ``confidence`` is not in (0, 1) or ``digits`` not an integer in 1..10.
    """
    if not isinstance(values, Mapping) or not values:
        raise ValueError("values must be a non-empty mapping of arm names to per-seed values")
    arrays = {name: np.asarray(v, dtype=np.float64) for name, v in values.items()}
    sizes = {name: a.size for name, a in arrays.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"values must hold the same number of seeds for every arm, got {sizes}")
    if isinstance(digits, bool) or not isinstance(digits, (int, np.integer)) \
            or not 1 <= digits <= 10:
        raise ValueError(f"digits must be an integer in 1..10, got {digits!r}")
    intervals = {name: mean_ci(a, confidence) for name, a in arrays.items()}
    differences = {}
    for pair in pairs:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"pairs must hold (arm_a, arm_b) tuples, got {pair!r}")
        a, b = pair
        unknown = [name for name in (a, b) if name not in arrays]
        if unknown:
            raise ValueError(f"pairs names unknown arm(s) {unknown}; arms are {list(arrays)}")
        if a == b:
            raise ValueError(f"pairs must compare two different arms, got {pair!r}")
        differences[(a, b)] = paired_difference(arrays[a], arrays[b], confidence)
    return ArmComparison(str(metric), intervals, differences, float(confidence), int(digits))
