"""The maximal-update parameterisation (μP) for any Keras or torch model, and the sweep that
tests whether a learning rate tuned on a narrow model transfers to a wide one (Chapter 6).

μP was introduced by Yang and Hu (Tensor Programs IV, ICML 2021); Tensor Programs V (Yang et
al., 2021) showed that its tuned hyperparameters transfer across widths and gives its rules per
optimizer (their Table 3). Each parameter is classified by which of its dimensions grow with
the width, found by comparing the model with the same architecture at a *base* width ``n0``:

================  ============================  ========================  ========================
role              dimensions that grow          SGD learning rate         Adam learning rate
================  ============================  ========================  ========================
``input``         fan-out only (first layer's   ``× fan_out ratio``       ``× 1``
                  weight, every width-n bias)
``hidden``        fan-in and fan-out            ``× 1``                   ``× 1 / fan_in ratio``
``output``        fan-in only (the readout)     ``× 1 / fan_in ratio``    ``× 1 / fan_in ratio``
``fixed``         none                          ``× 1``                   ``× 1``
================  ============================  ========================  ========================

A ratio is the parameter's fan divided by the same parameter's fan in the base model
(``n / n0`` for a width-``n`` MLP). Every parameter keeps the standard parameterisation's
(SP's) initial standard deviation except the readout, whose is multiplied by
``1 / sqrt(fan_in ratio)``: variance ``∝ 1/n²`` instead of ``1/n`` (a zero readout is also μP).
At the base width every multiplier is 1, so μP *is* the SP model there, and a learning rate
tuned at ``n0`` means the same thing at every width.

- :func:`mup_rule` gives the multipliers for one parameter from its fans and its base fans;
  :data:`MUP_RECIPES` also names the standard parameterisation (``"sp"``) and the readout-only
  recipe (``"readout_only"``: μP's readout, everything else SP), for comparison.
- :func:`mup_param_groups` applies it to every parameter of a Keras or torch model, with the
  same model built at the base width, and returns :class:`MupGroup` s;
  :func:`mup_rescale_` applies the initialisation multipliers, :func:`torch_mup_optimizer`
  makes a ``torch.optim`` optimizer with one parameter group per :class:`MupGroup`, and
  :func:`keras_mup_optimizers` one Keras optimizer per group (Keras optimizers have no groups).
- :func:`train_side_by_side` trains ``R`` plain MLPs at once (one batched matrix product per
  layer), in Keras (TensorFlow) or torch, each run with its own data, batches and learning
  rates; Chapter 6 uses it for every sweep it trains.
- :func:`transfer_sweep` trains many MLPs ``d -> n -> n -> k`` side by side (one batched
  matrix product per layer for every run of one width) over recipes, widths, learning rates
  and seeds, in Keras (TensorFlow) or torch, and records each run's final training loss and the
  size of every layer's output at every step (the *coord check*). :func:`optimum_log10_lr`
  locates a loss curve's best learning rate between grid points.

Only NumPy is imported at module level; Keras, TensorFlow and torch inside the functions that
use them.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from utils.frameworks import ParamInfo, parameters, require_built
from utils.initializers import compute_fans
from utils.stats import require_int, require_positive, require_seed
from utils.training import batch_order

__all__ = ["MUP_OPTIMIZERS", "MUP_RECIPES", "MUP_ROLES", "MupRule", "mup_rule", "MupGroup",
           "mup_param_groups", "mup_rescale_", "torch_mup_optimizer", "keras_mup_optimizers",
           "SideBySideRun", "train_side_by_side", "SweepResult", "transfer_sweep",
           "optimum_log10_lr"]

#: The optimizers whose μP rules this module knows, plain SGD and Adam (Tensor Programs V,
#: Table 3); SGD with momentum follows SGD's rules, RMSprop and Adagrad Adam's.
MUP_OPTIMIZERS = ("sgd", "adam")
#: ``"sp"`` the standard parameterisation (every multiplier 1); ``"mup"`` full μP (the table
#: above); ``"readout_only"`` μP's readout (initial std and learning rate ``÷ fan_in ratio``)
#: with every other parameter left at SP.
MUP_RECIPES = ("sp", "mup", "readout_only")
#: The roles a parameter can have, by which of its fans grow with the width.
MUP_ROLES = ("input", "hidden", "output", "fixed")

_ADAM_BETAS, _ADAM_EPSILON = (0.9, 0.999), 1e-7  # utils.training's Adam, in both frameworks


def _require_choice(value: Any, choices: tuple[str, ...], argument: str) -> str:
    if value not in choices:
        raise ValueError(f"{argument} must be one of {choices}, got {value!r}")
    return value


@dataclass(frozen=True)
class MupRule:
    """What μP (or another recipe) does to one parameter.

    Attributes
    ----------
    role
        One of :data:`MUP_ROLES`.
    fan_in_ratio, fan_out_ratio
        The parameter's fans divided by the base model's.
    lr_multiplier
        Multiply the base learning rate by this for the parameter.
    init_multiplier
        Multiply the parameter's standard-parameterisation initial standard deviation by this.
    """

    role: str
    fan_in_ratio: float
    fan_out_ratio: float
    lr_multiplier: float
    init_multiplier: float


def mup_rule(fan_in: int, fan_out: int, base_fan_in: int, base_fan_out: int,
             optimizer: str = "adam", recipe: str = "mup") -> MupRule:
    """The learning-rate and initialisation multipliers of one parameter (Chapter 6, "Width").

    Parameters
    ----------
    fan_in, fan_out
        The parameter's fans in the model being trained (a bias has fan-in 1 and fan-out its
        length).
    base_fan_in, base_fan_out
        The same parameter's fans in the model at the base width.
    optimizer
        One of :data:`MUP_OPTIMIZERS`.
    recipe
        One of :data:`MUP_RECIPES`.

    Returns
    -------
    MupRule
        The parameter's role and multipliers, per the table in the module docstring.

    Raises
    ------
    ValueError
        If a fan is not a positive integer, or ``optimizer`` or ``recipe`` is unknown.
    """
    fans = [require_int(value, name, 1) for value, name in (
        (fan_in, "fan_in"), (fan_out, "fan_out"), (base_fan_in, "base_fan_in"),
        (base_fan_out, "base_fan_out"))]
    _require_choice(optimizer, MUP_OPTIMIZERS, "optimizer")
    _require_choice(recipe, MUP_RECIPES, "recipe")
    ratio_in, ratio_out = fans[0] / fans[2], fans[1] / fans[3]
    grows_in, grows_out = ratio_in != 1, ratio_out != 1
    role = ("hidden" if grows_out else "output") if grows_in else \
        ("input" if grows_out else "fixed")
    lr, init = 1.0, 1.0
    if role == "output" and recipe in ("mup", "readout_only"):
        lr, init = 1 / ratio_in, 1 / math.sqrt(ratio_in)
    elif recipe == "mup":
        if role == "input" and optimizer == "sgd":
            lr = ratio_out
        elif role == "hidden" and optimizer == "adam":
            lr = 1 / ratio_in
    return MupRule(role, ratio_in, ratio_out, lr, init)


@dataclass(frozen=True)
class MupGroup:
    """Parameters that share a role and multipliers (see :func:`mup_param_groups`).

    Attributes
    ----------
    role
        One of :data:`MUP_ROLES`.
    lr_multiplier, init_multiplier
        As in :class:`MupRule`.
    params
        The :class:`utils.frameworks.ParamInfo` of each parameter in the group.
    """

    role: str
    lr_multiplier: float
    init_multiplier: float
    params: tuple[ParamInfo, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """``"layer/name"`` of each parameter."""
        return tuple(p.label for p in self.params)

    @property
    def handles(self) -> list[Any]:
        """The framework objects (``torch.nn.Parameter`` or ``keras.Variable``)."""
        return [p.handle for p in self.params]


def _fans(param: ParamInfo, framework: str) -> tuple[int, int]:
    if len(param.shape) == 0:
        return 1, 1
    if len(param.shape) == 1:
        return 1, int(param.shape[0])
    return compute_fans(param.shape, framework)


def mup_param_groups(model: Any, base_model: Any, optimizer: str = "adam",
                     recipe: str = "mup") -> list[MupGroup]:
    """Group a model's trainable parameters by their μP learning-rate and init multipliers.

    The model and ``base_model`` must be the same architecture, built at two widths (only the
    sizes differ); parameters are paired in the order :func:`utils.frameworks.parameters`
    lists them, and each gets :func:`mup_rule` from its fans and its twin's. Chapter 6 trains
    with these groups in both frameworks.

    Parameters
    ----------
    model, base_model
        Built Keras 3 models or ``torch.nn.Module`` s of the same framework and architecture.
    optimizer
        One of :data:`MUP_OPTIMIZERS`.
    recipe
        One of :data:`MUP_RECIPES`.

    Returns
    -------
    list of MupGroup
        One group per distinct (role, learning-rate multiplier, init multiplier), in the order
        their first parameter appears.

    Raises
    ------
    ValueError
        If either model is not built, the frameworks differ, the two models do not have the
        same parameters in the same order (names and numbers of dimensions), or ``optimizer``
        or ``recipe`` is unknown.
    """
    framework = require_built(model)
    base_framework = require_built(base_model, "base_model")
    if framework != base_framework:
        raise ValueError(f"model is a {framework} model but base_model a {base_framework} one")
    _require_choice(optimizer, MUP_OPTIMIZERS, "optimizer")
    _require_choice(recipe, MUP_RECIPES, "recipe")
    params = [p for p in parameters(model) if p.trainable]
    base = [p for p in parameters(base_model) if p.trainable]
    if [(p.name, len(p.shape)) for p in params] != [(p.name, len(p.shape)) for p in base]:
        raise ValueError("model and base_model must have the same parameters in the same order "
                         f"(the same architecture at two widths); got {len(params)} and "
                         f"{len(base)} parameters")
    groups: dict[tuple[str, float, float], list[ParamInfo]] = {}
    for param, twin in zip(params, base):
        rule = mup_rule(*_fans(param, framework), *_fans(twin, framework), optimizer, recipe)
        groups.setdefault((rule.role, rule.lr_multiplier, rule.init_multiplier), []).append(param)
    return [MupGroup(role, lr, init, tuple(members))
            for (role, lr, init), members in groups.items()]


def mup_rescale_(groups: Sequence[MupGroup]) -> None:
    """Multiply every parameter by its group's init multiplier, in place.

    A parameter drawn with the standard parameterisation's zero-mean distribution then has
    μP's: for the readout, its standard deviation times ``1 / sqrt(fan_in ratio)``.

    Parameters
    ----------
    groups
        What :func:`mup_param_groups` returned.

    Raises
    ------
    ValueError
        If ``groups`` holds something other than :class:`MupGroup` s.
    """
    from utils.frameworks import assign, to_numpy

    if any(not isinstance(group, MupGroup) for group in groups):
        raise ValueError("groups must be the MupGroup list mup_param_groups returns")
    for group in groups:
        if group.init_multiplier != 1:
            for param in group.params:
                assign(param, to_numpy(param.handle).astype(np.float64) * group.init_multiplier)


def _require_optimizer_args(groups: Sequence[Any], optimizer: str, learning_rate: float,
                            handle_type: type, framework: str) -> None:
    """Validate an optimizer factory's arguments: a known optimizer, a positive learning rate,
    and :class:`MupGroup` s holding ``handle_type`` parameters only."""
    _require_choice(optimizer, MUP_OPTIMIZERS, "optimizer")
    require_positive(learning_rate, "learning_rate")
    if any(not isinstance(group, MupGroup) for group in groups) or any(
            not isinstance(h, handle_type) for group in groups for h in group.handles):
        raise ValueError(f"groups must be the MupGroup list mup_param_groups returns for a "
                         f"{framework} model")


def torch_mup_optimizer(groups: Sequence[MupGroup], optimizer: str,
                        learning_rate: float) -> Any:
    """A ``torch.optim`` optimizer with one parameter group per :class:`MupGroup`.

    ``"sgd"`` is ``torch.optim.SGD`` and ``"adam"`` ``torch.optim.Adam`` with
    ``utils.training``'s settings (betas 0.9 and 0.999, epsilon 1e-7); each group's learning
    rate is ``learning_rate * lr_multiplier``.

    Parameters
    ----------
    groups
        What :func:`mup_param_groups` returned for a torch model.
    optimizer
        One of :data:`MUP_OPTIMIZERS` (the one the groups were made for).
    learning_rate
        The base learning rate, the one tuned at the base width.

    Returns
    -------
    torch.optim.Optimizer

    Raises
    ------
    ValueError
        If ``optimizer`` is unknown, ``learning_rate`` is not positive, or a group holds
        anything but torch parameters.
    """
    import torch

    _require_optimizer_args(groups, optimizer, learning_rate, torch.nn.Parameter, "torch")
    settings = [{"params": group.handles, "lr": learning_rate * group.lr_multiplier}
                for group in groups]
    if optimizer == "sgd":
        return torch.optim.SGD(settings, lr=learning_rate)
    return torch.optim.Adam(settings, lr=learning_rate, betas=_ADAM_BETAS, eps=_ADAM_EPSILON)


def keras_mup_optimizers(groups: Sequence[MupGroup], optimizer: str,
                         learning_rate: float) -> list[tuple[Any, list[Any]]]:
    """One Keras optimizer per :class:`MupGroup`, each with its group's learning rate.

    Keras optimizers have no parameter groups: apply each optimizer to its own variables,
    ``opt.apply_gradients(zip(grads_of(variables), variables))``, in the training step.

    Parameters
    ----------
    groups
        What :func:`mup_param_groups` returned for a Keras model.
    optimizer
        One of :data:`MUP_OPTIMIZERS`: ``keras.optimizers.SGD`` or ``keras.optimizers.Adam``
        (betas 0.9 and 0.999, epsilon 1e-7, as ``utils.training``).
    learning_rate
        The base learning rate.

    Returns
    -------
    list of (keras.optimizers.Optimizer, list of keras.Variable)
        Each group's optimizer and variables.

    Raises
    ------
    ValueError
        If ``optimizer`` is unknown, ``learning_rate`` is not positive, or a group holds
        anything but Keras variables.
    """
    import keras

    _require_optimizer_args(groups, optimizer, learning_rate, keras.Variable, "Keras")
    result = []
    for group in groups:
        rate = learning_rate * group.lr_multiplier
        opt = keras.optimizers.SGD(rate) if optimizer == "sgd" else keras.optimizers.Adam(
            rate, beta_1=_ADAM_BETAS[0], beta_2=_ADAM_BETAS[1], epsilon=_ADAM_EPSILON)
        result.append((opt, group.handles))
    return result


# ---------------------------------------------------------------------------------------------
# The transfer sweep: many MLPs side by side
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SweepResult:
    """What :func:`transfer_sweep` measured.

    Attributes
    ----------
    recipes, widths, learning_rates, seeds
        The grid, in the order of the axes below.
    optimizer
        ``"sgd"`` or ``"adam"``.
    losses
        Shape ``(recipes, widths, learning_rates, seeds)``: each run's mean cross-entropy on its
        whole training split after the last step; a run whose loss is not finite (it diverged)
        counts as :attr:`diverged_loss`.
    coords
        Shape ``(recipes, widths, learning_rates, seeds, steps + 1, 3)``: the root mean square
        of each layer's output (the two hidden pre-activations and the logits) on the batch of
        each step, before the step's update, and after the last update on the first batch.
    diverged_loss
        The loss given to a diverged run.
    """

    recipes: tuple[str, ...]
    widths: tuple[int, ...]
    learning_rates: tuple[float, ...]
    seeds: tuple[int, ...]
    optimizer: str
    losses: np.ndarray
    coords: np.ndarray
    diverged_loss: float


def _initial_weights(sizes: list[int], base_sizes: list[int], recipe: str, seed: int,
                     width: int) -> list[np.ndarray]:
    """Kernels in Keras's (in, out) layout: standard normals from one generator per (seed,
    width, layer), shared by every recipe and learning rate (so they are paired), scaled by He's
    std after a ReLU and LeCun's before it, and by the recipe's readout multiplier."""
    kernels = []
    for layer, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        rng = np.random.default_rng(np.random.SeedSequence([seed, width, layer]))
        std = (1.0 if layer == 0 else math.sqrt(2.0)) / math.sqrt(n_in)
        if layer == len(sizes) - 2:  # the readout: LeCun's 1/n (SP), times the recipe's
            rule = mup_rule(n_in, n_out, base_sizes[layer], base_sizes[layer + 1], "sgd", recipe)
            std = rule.init_multiplier / math.sqrt(n_in)
        kernels.append(std * rng.standard_normal((n_in, n_out)))
    return kernels


def _multipliers(sizes: list[int], base_sizes: list[int], optimizer: str,
                 recipe: str) -> list[float]:
    """Learning-rate multipliers of the kernels, then of the biases, of an MLP."""
    kernels, biases = [], []
    for layer, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        base_in, base_out = base_sizes[layer], base_sizes[layer + 1]
        kernels.append(mup_rule(n_in, n_out, base_in, base_out, optimizer, recipe).lr_multiplier)
        biases.append(mup_rule(1, n_out, 1, base_out, optimizer, recipe).lr_multiplier)
    return kernels + biases


def transfer_sweep(framework: str, x: Any, y: Any, *, widths: Sequence[int],
                   learning_rates: Sequence[float], seeds: Sequence[int], optimizer: str = "adam",
                   recipes: Sequence[str] = MUP_RECIPES, base_width: int | None = None,
                   steps: int = 100, batch_size: int = 32, train_size: int | None = None,
                   diverged_loss: float = 10.0) -> SweepResult:
    """Train MLPs ``d -> n -> n -> k`` (ReLU) over recipes, widths, learning rates and seeds.

    Every run of one width is trained in one computation: the runs' kernels are stacked, and
    layer ``l`` of every run is one batched matrix product. The loss is the sum of the runs'
    mean cross-entropies, whose gradient with respect to one run's parameters is that run's
    own gradient, and the updates are per parameter (SGD, or Adam in torch's form with
    betas 0.9 and 0.999 and epsilon 1e-7), each run with its own learning rate times its
    recipe's multiplier (:func:`mup_rule`): the runs are separate runs computed together.
    Chapter 6's checks compare them with runs of real models under
    :func:`torch_mup_optimizer` and :func:`keras_mup_optimizers`.

    Each seed draws its own training split (the first ``train_size`` examples of a
    permutation from ``numpy.random.default_rng(seed)``), batch order
    (:func:`utils.training.batch_order` with the seed, epochs enough for ``steps``) and initial
    weights: kernel ``l`` (0, 1, 2, in Keras's ``(in, out)`` layout) is a standard normal draw
    from ``numpy.random.default_rng(numpy.random.SeedSequence([seed, width, l]))`` times He's
    std ``sqrt(2 / fan_in)`` after a ReLU, LeCun's ``sqrt(1 / fan_in)`` for the first layer and
    the readout, the readout's also times the recipe's init multiplier; biases are zero. Drawn
    in NumPy, so both frameworks start alike; recipes and learning rates share them, so every
    comparison is paired by seed.

    Parameters
    ----------
    framework
        ``"keras"`` (Keras 3 operations, gradients by TensorFlow) or ``"torch"``.
    x, y
        Inputs ``(N, d)`` (float) and integer labels ``(N,)`` in ``0..k-1``.
    widths
        Hidden widths ``n``, increasing; the first is the base width unless ``base_width``.
    learning_rates
        The base learning rates tried (each multiplied by the recipe's multipliers).
    seeds
        One run per seed at every grid point.
    optimizer
        One of :data:`MUP_OPTIMIZERS`.
    recipes
        A subset of :data:`MUP_RECIPES`.
    base_width
        The width ``n0`` at which every recipe is SP; default ``widths[0]``.
    steps, batch_size
        Updates per run, examples per batch.
    train_size
        Examples in each seed's training split; default all of ``x``.
    diverged_loss
        The final loss recorded for a run whose loss is not finite.

    Returns
    -------
    SweepResult

    Raises
    ------
    ValueError
        If ``framework``, ``optimizer`` or a recipe is unknown, a width, step count or size is
        not a positive integer, a learning rate is not positive, ``x`` and ``y`` do not match,
        ``train_size`` exceeds the data, or a seed is not an integer in ``[0, 2**32)``.
    """
    _require_choice(framework, ("keras", "torch"), "framework")
    _require_choice(optimizer, MUP_OPTIMIZERS, "optimizer")
    recipes = tuple(_require_choice(r, MUP_RECIPES, "recipes") for r in recipes)
    widths = tuple(require_int(w, "widths", 1) for w in widths)
    if not widths or list(widths) != sorted(set(widths)):
        raise ValueError(f"widths must be increasing positive integers, got {widths}")
    rates = tuple(float(require_positive(r, "learning_rates")) for r in learning_rates)
    seeds = tuple(require_seed(s) for s in seeds)
    if not rates or not seeds or not recipes:
        raise ValueError("learning_rates, seeds and recipes must not be empty")
    base = widths[0] if base_width is None else require_int(base_width, "base_width", 1)
    steps = require_int(steps, "steps", 1)
    batch_size = require_int(batch_size, "batch_size", 1)
    inputs = np.asarray(x, dtype=np.float32)
    labels = np.asarray(y).astype(np.int64)
    if inputs.ndim != 2 or labels.shape != (len(inputs),):
        raise ValueError(f"x must be (N, d) and y (N,) with the same N, got shapes "
                         f"{inputs.shape} and {labels.shape}")
    n_train = len(inputs) if train_size is None else require_int(train_size, "train_size", 1)
    if n_train > len(inputs):
        raise ValueError(f"train_size must be at most len(x) = {len(inputs)}, got {n_train}")
    n_classes = int(labels.max()) + 1
    runs = [(recipe, rate, seed) for recipe in recipes for rate in rates for seed in seeds]
    splits = {seed: np.random.default_rng(seed).permutation(len(inputs))[:n_train]
              for seed in seeds}
    orders = {seed: batch_order(n_train, batch_size, -(-steps * batch_size // n_train), seed)
              for seed in seeds}
    # every run's batch indices into x, step by step: (steps, runs, batch)
    batches = np.stack([np.stack([splits[seed][orders[seed][t]] for _, _, seed in runs])
                        for t in range(steps)]).astype(np.int64)
    whole = np.stack([splits[seed] for _, _, seed in runs]).astype(np.int64)
    losses = np.empty((len(recipes), len(widths), len(rates), len(seeds)))
    coords = np.empty((len(recipes), len(widths), len(rates), len(seeds), steps + 1, 3))
    for w, width in enumerate(widths):
        sizes = [inputs.shape[1], width, width, n_classes]
        base_sizes = [inputs.shape[1], base, base, n_classes]
        kernels = [np.stack(layer).astype(np.float32) for layer in zip(*[
            _initial_weights(sizes, base_sizes, recipe, seed, width) for recipe, _, seed in runs])]
        rate_of = np.array([[rate * m for m in _multipliers(sizes, base_sizes, optimizer, recipe)]
                            for recipe, rate, _ in runs], dtype=np.float32)
        run = train_side_by_side(framework, inputs, labels, kernels, optimizer=optimizer,
                                 learning_rates=rate_of, batches=batches, evaluate=[whole])
        final, sizes_seen = run.final_losses[0], run.sizes
        final = np.where(np.isfinite(final), final, diverged_loss)
        shape = (len(recipes), len(rates), len(seeds))
        losses[:, w] = np.minimum(final, diverged_loss).reshape(shape)
        coords[:, w] = sizes_seen.reshape(shape + sizes_seen.shape[1:])
    return SweepResult(recipes, widths, rates, seeds, optimizer, losses, coords,
                       float(diverged_loss))


@dataclass(frozen=True)
class SideBySideRun:
    """What :func:`train_side_by_side` recorded for ``R`` runs trained together.

    Attributes
    ----------
    batch_losses
        Shape ``(steps, R)``: each run's loss on its batch, before the step's update.
    final_losses
        One array of shape ``(R,)`` per entry of ``evaluate``: each run's mean loss on its
        examples after the last step (not finite if the run diverged).
    sizes
        Shape ``(R, steps + 1, layers)``: the root mean square of every layer's output
        (before its activation) on each step's batch before the update, then on the first
        batch after the last update.
    """

    batch_losses: np.ndarray
    final_losses: tuple[np.ndarray, ...]
    sizes: np.ndarray


_SIDE_BY_SIDE_OPTIMIZERS = ("sgd", "momentum", "adam")
_ACTIVATIONS = ("relu", "tanh")


def train_side_by_side(framework: str, x: Any, y: Any, kernels: Sequence[Any],
                       biases: Sequence[Any] | None = None, *, activation: str = "relu",
                       optimizer: str = "sgd", learning_rates: Any, batches: Any,
                       evaluate: Sequence[Any] = (), residual: bool = False) -> SideBySideRun:
    """Train ``R`` plain MLPs at once: layer ``l`` of every run is one batched matrix product.

    Run ``r`` computes ``h_l = act(h_{l-1} @ kernels[l][r] + biases[l][r])`` (no activation
    after the last layer, whose outputs are logits) and minimises the mean cross-entropy on
    its own batches. With ``residual``, the layers are an input layer (no activation), then
    pairs of layers that form residual blocks ``h = h + act(h @ W_a + b_a) @ W_b + b_b``, then
    the readout: ``2 N + 2`` kernels for ``N`` blocks. The loss summed over runs has, for each run's parameters, that run's own
    gradient, and every update is per parameter, with the run's own learning rate: plain SGD,
    SGD with momentum 0.9 (torch's form: ``v = 0.9 v + g``, ``w -= lr v``) or Adam (torch's
    form, betas 0.9 and 0.999, epsilon 1e-7, as ``utils.training``). So the runs are separate
    runs, computed together; the unit tests compare them with models trained one at a time.
    Chapter 6 trains its sweeps with it (and :func:`transfer_sweep` is built on it).

    Parameters
    ----------
    framework
        ``"keras"`` (Keras 3 operations, gradients by TensorFlow) or ``"torch"``.
    x, y
        All examples ``(N, d)`` (float) and their integer labels ``(N,)``.
    kernels
        One array per layer, shape ``(R, n_in, n_out)`` (Keras's layout, run first).
    biases
        One array per layer, shape ``(R, n_out)``; default zeros.
    activation
        ``"relu"`` or ``"tanh"``.
    optimizer
        ``"sgd"``, ``"momentum"`` or ``"adam"``.
    learning_rates
        Shape ``(R,)``, one rate per run, or ``(R, 2 L)``: per run, one rate for each kernel
        then for each bias.
    batches
        Integer array ``(steps, R, batch)``: the indices into ``x`` of each run's batch at each
        step.
    evaluate
        Integer arrays ``(R, m)``: after training, each run's mean loss on its ``m`` examples.
    residual
        Residual blocks between an input layer and the readout, as above. :attr:`SideBySideRun.sizes`
        then holds the stream after the input layer and after every block, then the logits.

    Returns
    -------
    SideBySideRun

    Raises
    ------
    ValueError
        If ``framework``, ``activation`` or ``optimizer`` is unknown, the kernels do not chain
        or disagree on ``R`` (or, with ``residual``, are not an input layer, pairs and a
        readout), or the shapes of ``biases``, ``learning_rates``, ``batches`` or ``evaluate``
        do not match.
    """
    _require_choice(framework, ("keras", "torch"), "framework")
    _require_choice(activation, _ACTIVATIONS, "activation")
    _require_choice(optimizer, _SIDE_BY_SIDE_OPTIMIZERS, "optimizer")
    inputs = np.asarray(x, dtype=np.float32)
    labels = np.asarray(y).astype(np.int64)
    if inputs.ndim != 2 or labels.shape != (len(inputs),):
        raise ValueError(f"x must be (N, d) and y (N,) with the same N, got shapes "
                         f"{inputs.shape} and {labels.shape}")
    weights = [np.asarray(k, dtype=np.float32) for k in kernels]
    if not weights or any(w.ndim != 3 for w in weights):
        raise ValueError("kernels must be a non-empty sequence of (R, n_in, n_out) arrays")
    n_runs = weights[0].shape[0]
    width = inputs.shape[1]
    if residual and (len(weights) < 4 or len(weights) % 2):
        raise ValueError(f"residual needs an input layer, pairs of block layers and a readout "
                         f"(an even number >= 4 of kernels), got {len(weights)}")
    for index, w in enumerate(weights):
        if w.shape[0] != n_runs or w.shape[1] != width:
            raise ValueError(f"kernels[{index}] has shape {w.shape}; expected ({n_runs}, "
                             f"{width}, ...) to chain with the layer before")
        width = w.shape[2]
        if residual and 0 < index < len(weights) - 1 and index % 2 == 0 \
                and width != weights[0].shape[2]:
            raise ValueError(f"kernels[{index}] must map back to the stream's width "
                             f"{weights[0].shape[2]}, got {width}")
    offsets = [np.zeros((n_runs, w.shape[2]), np.float32) for w in weights] if biases is None \
        else [np.asarray(b, dtype=np.float32) for b in biases]
    if [b.shape for b in offsets] != [(n_runs, w.shape[2]) for w in weights]:
        raise ValueError("biases must hold one (R, n_out) array per kernel")
    rates = np.asarray(learning_rates, dtype=np.float32)
    if rates.shape == (n_runs,):
        rates = np.repeat(rates[:, None], 2 * len(weights), axis=1)
    if rates.shape != (n_runs, 2 * len(weights)):
        raise ValueError(f"learning_rates must have shape ({n_runs},) or ({n_runs}, "
                         f"{2 * len(weights)}), got {rates.shape}")
    steps = np.asarray(batches)
    if steps.ndim != 3 or steps.shape[1] != n_runs or steps.dtype.kind not in "iu":
        raise ValueError(f"batches must be an integer array (steps, {n_runs}, batch), got "
                         f"shape {steps.shape}")
    checks = [np.asarray(e) for e in evaluate]
    if any(e.ndim != 2 or e.shape[0] != n_runs or e.dtype.kind not in "iu" for e in checks):
        raise ValueError(f"evaluate must hold integer arrays of shape ({n_runs}, m)")
    train = _train_torch if framework == "torch" else _train_keras
    return train(inputs, labels, weights, [b[:, None, :] for b in offsets], rates,
                 steps.astype(np.int64), [e.astype(np.int64) for e in checks], activation,
                 optimizer, bool(residual))


def _train_torch(inputs: np.ndarray, labels: np.ndarray, kernels: list[np.ndarray],
                 offsets: list[np.ndarray], rates: np.ndarray, batches: np.ndarray,
                 checks: list[np.ndarray], activation: str, optimizer: str,
                 residual: bool) -> SideBySideRun:
    import torch

    x_all, y_all = torch.from_numpy(inputs), torch.from_numpy(labels)
    weights = [torch.tensor(k, requires_grad=True) for k in kernels]
    biases = [torch.tensor(b, requires_grad=True) for b in offsets]
    params = weights + biases
    rate_of = [torch.from_numpy(np.ascontiguousarray(rates[:, j]))[:, None, None]
               for j in range(len(params))]
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
    beta1, beta2 = _ADAM_BETAS
    act = torch.relu if activation == "relu" else torch.tanh

    def forward(index: Any) -> tuple[Any, list[Any]]:
        h, outputs = x_all[index], []
        if residual:
            h = torch.baddbmm(biases[0], h, weights[0])
            outputs.append(h)
            for a in range(1, len(weights) - 1, 2):
                branch = act(torch.baddbmm(biases[a], h, weights[a]))
                h = h + torch.baddbmm(biases[a + 1], branch, weights[a + 1])
                outputs.append(h)
            h = torch.baddbmm(biases[-1], h, weights[-1])
            outputs.append(h)
        else:
            for layer, (w, b) in enumerate(zip(weights, biases)):
                h = torch.baddbmm(b, h, w)
                outputs.append(h)
                h = act(h) if layer < len(weights) - 1 else h
        losses = torch.nn.functional.cross_entropy(h.transpose(1, 2), y_all[index],
                                                   reduction="none").mean(dim=1)
        return losses, outputs

    def rms(outputs: list[Any]) -> np.ndarray:
        return torch.stack([o.detach().pow(2).mean(dim=(1, 2)).sqrt() for o in outputs],
                           dim=1).numpy()

    sizes, batch_losses = [], []
    for step, index in enumerate(torch.from_numpy(batches), start=1):
        losses, outputs = forward(index)
        sizes.append(rms(outputs))
        batch_losses.append(losses.detach().numpy())
        grads = torch.autograd.grad(losses.sum(), params)
        with torch.no_grad():
            for p, g, rate, (m, v) in zip(params, grads, rate_of, moments):
                if optimizer == "sgd":
                    p.sub_(rate * g)
                elif optimizer == "momentum":
                    m.mul_(0.9).add_(g)
                    p.sub_(rate * m)
                else:
                    m.mul_(beta1).add_(g, alpha=1 - beta1)
                    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                    denom = (v / (1 - beta2**step)).sqrt_().add_(_ADAM_EPSILON)
                    p.sub_(rate / (1 - beta1**step) * m / denom)
    with torch.no_grad():
        sizes.append(rms(forward(torch.from_numpy(batches[0]))[1]))
        finals = tuple(forward(torch.from_numpy(c))[0].numpy().astype(np.float64)
                       for c in checks)
    return SideBySideRun(np.array(batch_losses, dtype=np.float64), finals,
                         np.stack(sizes, axis=1).astype(np.float64))


def _train_keras(inputs: np.ndarray, labels: np.ndarray, kernels: list[np.ndarray],
                 offsets: list[np.ndarray], rates: np.ndarray, batches: np.ndarray,
                 checks: list[np.ndarray], activation: str, optimizer: str,
                 residual: bool) -> SideBySideRun:
    import keras
    import tensorflow as tf

    ops = keras.ops
    x_all, y_all = ops.convert_to_tensor(inputs), ops.convert_to_tensor(labels)
    n_runs = len(rates)
    weights = [keras.Variable(k, name=f"kernel_{i}") for i, k in enumerate(kernels)]
    biases = [keras.Variable(b, name=f"bias_{i}") for i, b in enumerate(offsets)]
    params = weights + biases
    rate_of = [ops.convert_to_tensor(rates[:, j][:, None, None]) for j in range(len(params))]
    moments = [(keras.Variable(np.zeros(p.shape, np.float32)),
                keras.Variable(np.zeros(p.shape, np.float32))) for p in params]
    beta1, beta2 = _ADAM_BETAS
    act = ops.relu if activation == "relu" else ops.tanh

    def rms_of(h: Any) -> Any:
        return ops.sqrt(ops.mean(ops.square(h), axis=(1, 2)))

    def forward(index: Any) -> tuple[Any, Any]:
        h, outputs = ops.take(x_all, index, axis=0), []
        if residual:
            h = ops.matmul(h, weights[0]) + biases[0]
            outputs.append(rms_of(h))
            for a in range(1, len(weights) - 1, 2):
                branch = act(ops.matmul(h, weights[a]) + biases[a])
                h = h + ops.matmul(branch, weights[a + 1]) + biases[a + 1]
                outputs.append(rms_of(h))
            h = ops.matmul(h, weights[-1]) + biases[-1]
            outputs.append(rms_of(h))
        else:
            for layer, (w, b) in enumerate(zip(weights, biases)):
                h = ops.matmul(h, w) + b
                outputs.append(rms_of(h))
                h = act(h) if layer < len(weights) - 1 else h
        losses = ops.mean(ops.sparse_categorical_crossentropy(
            ops.take(y_all, index, axis=0), h, from_logits=True), axis=1)
        return losses, ops.stack(outputs, axis=1)

    index_spec = tf.TensorSpec((n_runs, None), tf.int64)

    @tf.function(input_signature=[index_spec, tf.TensorSpec((), tf.float32)])
    def step(index: Any, t: Any) -> Any:
        with tf.GradientTape() as tape:
            losses, sizes = forward(index)
            total = ops.sum(losses)
        grads = tape.gradient(total, [p.value for p in params])
        for p, g, rate, (m, v) in zip(params, grads, rate_of, moments):
            if optimizer == "sgd":
                p.assign(p - rate * g)
            elif optimizer == "momentum":
                m.assign(0.9 * m + g)
                p.assign(p - rate * m)
            else:
                m.assign(beta1 * m + (1 - beta1) * g)
                v.assign(beta2 * v + (1 - beta2) * ops.square(g))
                denom = ops.sqrt(v / (1 - beta2**t)) + _ADAM_EPSILON
                p.assign(p - rate / (1 - beta1**t) * m / denom)
        return losses, sizes

    @tf.function(input_signature=[index_spec])
    def evaluate(index: Any) -> Any:
        return forward(index)

    sizes, batch_losses = [], []
    for t, index in enumerate(batches, start=1):
        losses, size = step(tf.constant(index), tf.constant(float(t), tf.float32))
        batch_losses.append(np.asarray(losses))
        sizes.append(np.asarray(size))
    sizes.append(np.asarray(evaluate(tf.constant(batches[0]))[1]))
    finals = tuple(np.asarray(evaluate(tf.constant(c))[0]).astype(np.float64) for c in checks)
    return SideBySideRun(np.array(batch_losses, dtype=np.float64), finals,
                         np.stack(sizes, axis=1).astype(np.float64))


def optimum_log10_lr(losses: Any, learning_rates: Sequence[float]) -> float:
    """The best learning rate of a loss curve, between grid points, as ``log10``.

    Fits a parabola to ``log(loss)`` against ``log10(learning rate)`` through the grid's best
    point and its two neighbours (the two innermost points when the best is at an end) and
    returns its vertex, kept within those three points; where the parabola opens downwards, the
    best grid point itself.

    Parameters
    ----------
    losses
        One loss per learning rate, positive.
    learning_rates
        The grid, increasing, evenly spaced in ``log10``, at least three points.

    Returns
    -------
    float
        ``log10`` of the estimated best learning rate.

    Raises
    ------
    ValueError
        If the lengths differ, there are fewer than three points, a loss or rate is not
        positive and finite, or the rates are not increasing.
    """
    values = np.asarray(losses, dtype=np.float64)
    grid = np.log10(np.asarray(learning_rates, dtype=np.float64))
    if values.shape != grid.shape or values.ndim != 1 or values.size < 3:
        raise ValueError(f"losses and learning_rates must be 1-D of the same length >= 3, got "
                         f"shapes {values.shape} and {grid.shape}")
    if not np.all(np.isfinite(values) & (values > 0)) or not np.all(np.isfinite(grid)):
        raise ValueError("losses and learning_rates must be positive and finite")
    if np.any(np.diff(grid) <= 0):
        raise ValueError("learning_rates must be increasing")
    y = np.log(values)
    best = int(np.argmin(y))
    centre = min(max(best, 1), len(y) - 2)
    a, b, _ = np.polyfit(grid[centre - 1:centre + 2], y[centre - 1:centre + 2], 2)
    if a <= 0:
        return float(grid[best])
    return float(np.clip(-b / (2 * a), grid[centre - 1], grid[centre + 1]))
