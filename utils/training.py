"""Short, seeded training loops that record the true loss of every batch, in both frameworks.

Why not ``model.fit`` and a callback? In Keras, ``logs["loss"]`` in ``on_train_batch_end`` is
the *running mean* of the loss since the start of the epoch, not the batch's own loss, so a
"per-batch" curve built from it is smoothed more and more as the epoch goes on (the unit tests
check this against Keras's own ``fit``). These loops compute each batch's loss on the batch,
before the update, and keep it.

- :func:`train` dispatches on the model's framework to :func:`train_keras` or
  :func:`train_torch`; both take the same arguments and return a :class:`TrainingHistory`.
- The batch order comes from ``numpy.random.default_rng(seed)``, so a Keras model and a torch
  model with identical weights see identical batches and, with the same optimizer name, take
  the same steps (up to float32 rounding).
- ``optimizer`` is a name from :data:`OPTIMIZER_NAMES` (a fresh optimizer on every call,
  hyperparameters matched across frameworks) or the framework's own optimizer object (used as
  is, keeping its state, e.g. to continue training).

**Side effect: global random state.** Every call reseeds the global generators with ``seed``,
through :func:`utils.seeding.seed_everything` for the framework being trained (so that dropout
and other layers that draw from the framework's global generator repeat run for run). For
Keras that is ``keras.utils.set_random_seed``, which also reseeds Python's ``random`` and
NumPy's legacy global generator (``np.random.seed``); for torch, ``torch.manual_seed`` plus
Python's and NumPy's. Code that draws from those global generators *after* a call to
:func:`train` therefore gets the draws that follow ``seed``. The course's notebooks draw their
data from local ``numpy.random.default_rng`` generators, which no call here touches.

Chapter 2 trains 30-layer networks with it; Chapters 5 and 6 reuse it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from utils.frameworks import LOSS_NAMES, framework_of, require_built
from utils.stats import require_int, require_positive, require_seed

__all__ = ["OPTIMIZER_NAMES", "TrainingHistory", "train", "train_keras", "train_torch",
           "batch_order", "keras_optimizer"]

#: Optimizer names both loops understand. ``"momentum"`` is SGD with momentum 0.9. The
#: hyperparameters are matched across frameworks where both expose them: RMSprop uses
#: ``rho = alpha = 0.9`` and Adam ``beta = (0.9, 0.999)``, each with epsilon 1e-7. SGD and
#: momentum take the same steps in both frameworks (up to float rounding). RMSprop and Adam do
#: not quite: Keras's RMSprop divides by ``sqrt(v + eps)`` and torch's by ``sqrt(v) + eps``,
#: and Keras's Adam adds epsilon before its bias correction, torch's after; the steps differ
#: noticeably only for parameters whose mean squared gradient is not much larger than
#: epsilon (RMSprop) or epsilon squared (Adam).
OPTIMIZER_NAMES = ("sgd", "momentum", "rmsprop", "adam")

_EPSILON = 1e-7


@dataclass(frozen=True)
class TrainingHistory:
    """What a training loop recorded.

    Attributes
    ----------
    batch_losses
        The loss of each batch, computed on that batch with the parameters *before* its update
        (so ``batch_losses[0]`` is the loss at initialisation on the first batch).
    batch_sizes
        The number of examples in each batch (the last batch of an epoch may be smaller).
    epochs
        The number of epochs run.
    eval_losses, eval_accuracies
        With ``eval_data``: the loss and the accuracy on it after each epoch (accuracy only
        for the classification losses), else empty arrays.
    """

    batch_losses: np.ndarray
    batch_sizes: np.ndarray
    epochs: int
    eval_losses: np.ndarray
    eval_accuracies: np.ndarray

    @property
    def steps_per_epoch(self) -> int:
        return len(self.batch_losses) // self.epochs if self.epochs else 0

    def epoch_means(self) -> np.ndarray:
        """Each epoch's mean training loss, weighted by batch size (what ``fit`` reports at
        the end of an epoch)."""
        per_epoch = self.steps_per_epoch
        losses = self.batch_losses.reshape(self.epochs, per_epoch)
        sizes = self.batch_sizes.reshape(self.epochs, per_epoch)
        return (losses * sizes).sum(axis=1) / sizes.sum(axis=1)


def batch_order(n_examples: int, batch_size: int, epochs: int, seed: int,
                shuffle: bool = True) -> list[np.ndarray]:
    """The index arrays of every batch, epoch after epoch, as both loops use them.

    Each epoch is a fresh permutation from ``numpy.random.default_rng(seed)`` (or ``0..n-1``
    without ``shuffle``), cut into batches of ``batch_size``; the last one may be smaller.

    Parameters
    ----------
    n_examples
        The number of examples.
    batch_size, epochs
        Examples per batch and passes over the data.
    seed
        Seeds the permutations.
    shuffle
        Permute each epoch (otherwise every epoch is ``0..n-1`` in order).

    Returns
    -------
    list of numpy.ndarray
        One int64 index array per batch, ``epochs * ceil(n_examples / batch_size)`` of them.

    Raises
    ------
    ValueError
        If an argument is not a positive integer (``seed``: an integer in ``[0, 2**32)``).
    """
    n = require_int(n_examples, "n_examples")
    size = require_int(batch_size, "batch_size")
    count = require_int(epochs, "epochs")
    rng = np.random.default_rng(require_seed(seed))
    batches = []
    for _ in range(count):
        order = rng.permutation(n) if shuffle else np.arange(n)
        batches.extend(order[start:start + size] for start in range(0, n, size))
    return batches


def _check_common(model: Any, x: Any, y: Any, loss: Any, optimizer: Any,
                  learning_rate: Any, eval_data: Any) -> tuple[np.ndarray, np.ndarray]:
    require_built(model)
    inputs, targets = np.asarray(x), np.asarray(y)
    if inputs.ndim == 0 or targets.ndim == 0 or len(inputs) != len(targets):
        raise ValueError(
            f"x and y must be arrays with the same number of examples (first axis), got shapes "
            f"{inputs.shape} and {targets.shape}"
        )
    if len(inputs) == 0:
        raise ValueError("x and y must hold at least one example, got none")
    if not callable(loss) and loss not in LOSS_NAMES:
        raise ValueError(f"loss must be one of {LOSS_NAMES} or a callable, got {loss!r}")
    if isinstance(optimizer, str):
        if optimizer not in OPTIMIZER_NAMES:
            raise ValueError(f"optimizer must be one of {OPTIMIZER_NAMES} or the framework's "
                             f"optimizer object, got {optimizer!r}")
        require_positive(learning_rate, "learning_rate")
    elif learning_rate is not None:
        raise ValueError("learning_rate is only used with an optimizer name; an optimizer "
                         "object already has its own (pass learning_rate=None)")
    if eval_data is not None:
        if not isinstance(eval_data, (tuple, list)) or len(eval_data) != 2 \
                or len(np.asarray(eval_data[0])) != len(np.asarray(eval_data[1])):
            raise ValueError("eval_data must be a pair (x_eval, y_eval) with the same number of "
                             "examples in each")
    return inputs, targets


def _accuracy(loss: Any, logits: np.ndarray, targets: np.ndarray) -> float | None:
    if loss == "cross_entropy":
        return float(np.mean(np.argmax(logits, axis=-1) == targets.reshape(-1)))
    if loss == "binary_cross_entropy":
        return float(np.mean((logits.reshape(-1) > 0) == (targets.reshape(-1) > 0.5)))
    return None


# --------------------------------------------------------------------------------------------
# Keras
# --------------------------------------------------------------------------------------------

# Compiled train steps are cached on the model itself (tracing a 30-layer step costs about a
# second, so a model trained several times, with fresh weights and the same optimizer name, is
# traced once). The attribute is set with object.__setattr__ so Keras does not track it; the
# cycle model -> cache -> step -> model is freed with the model by the garbage collector.
_STEP_CACHE = "_initialization_matters_train_steps"


def keras_optimizer(name: str, learning_rate: float) -> Any:
    """A fresh Keras optimizer for one of :data:`OPTIMIZER_NAMES`, hyperparameters matched.

    The same optimizer :func:`train_keras` builds for a name (and
    :func:`utils.experiments.train_fused` too), so loops written elsewhere step alike.

    Parameters
    ----------
    name
        One of :data:`OPTIMIZER_NAMES`.
    learning_rate
        A positive finite number.

    Returns
    -------
    keras.optimizers.Optimizer
        Not yet built: it creates its slot variables on first use, or on ``build``.

    Raises
    ------
    ValueError
        If ``name`` is not in :data:`OPTIMIZER_NAMES` or ``learning_rate`` is not a positive
        finite number.
    """
    if name not in OPTIMIZER_NAMES:
        raise ValueError(f"name must be one of {OPTIMIZER_NAMES}, got {name!r}")
    require_positive(learning_rate, "learning_rate")
    import keras

    if name == "sgd":
        return keras.optimizers.SGD(learning_rate)
    if name == "momentum":
        return keras.optimizers.SGD(learning_rate, momentum=0.9)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(learning_rate, rho=0.9, epsilon=_EPSILON)
    return keras.optimizers.Adam(learning_rate, beta_1=0.9, beta_2=0.999, epsilon=_EPSILON)


def _keras_step(model: Any, loss: Any, optimizer: Any, learning_rate: Any,
                input_spec: Any, target_spec: Any) -> tuple[Any, Any]:
    """A compiled step and its optimizer, cached per model; a named optimizer is reset to its
    freshly-built state on every call, an optimizer object is used as it is."""
    import tensorflow as tf
    from utils.frameworks import loss_function

    cache = getattr(model, _STEP_CACHE, None)
    if cache is None:
        cache = {}
        object.__setattr__(model, _STEP_CACHE, cache)
    named = isinstance(optimizer, str)
    key = (optimizer if named else id(optimizer), learning_rate if named else None,
           loss if isinstance(loss, str) else id(loss), input_spec, target_spec)
    if key in cache:
        step, opt, fresh_state = cache[key]
        if named:
            for variable, value in zip(opt.variables, fresh_state):
                variable.assign(value)
        return step, opt
    opt = keras_optimizer(optimizer, learning_rate) if named else optimizer
    if not opt.built:
        opt.build(model.trainable_variables)
    fresh_state = [np.array(v.numpy()) for v in opt.variables]
    loss_fn = loss_function("keras", loss)
    variables = model.trainable_variables

    @tf.function(input_signature=[input_spec, target_spec], reduce_retracing=True)
    def step(inputs: Any, targets: Any) -> Any:
        with tf.GradientTape() as tape:
            value = loss_fn(targets, model(inputs, training=True))
        opt.apply_gradients(zip(tape.gradient(value, variables), variables))
        return value

    cache[key] = (step, opt, fresh_state)
    return step, opt


def _keras_forward(model: Any, input_spec: Any) -> Any:
    """A compiled inference call of ``model``, cached on the model like the train step (an
    eager call of a 31-layer model costs about as much as ten compiled ones)."""
    import tensorflow as tf

    cache = getattr(model, _STEP_CACHE, None)
    if cache is None:
        cache = {}
        object.__setattr__(model, _STEP_CACHE, cache)
    key = ("forward", input_spec)
    if key not in cache:
        @tf.function(input_signature=[input_spec], reduce_retracing=True)
        def forward(inputs: Any) -> Any:
            return model(inputs, training=False)

        cache[key] = forward
    return cache[key]


def train_keras(model: Any, x: Any, y: Any, loss: Any, optimizer: Any = "sgd", *,
                learning_rate: float | None = 0.01, epochs: int = 1, batch_size: int = 32,
                seed: int = 0, shuffle: bool = True,
                eval_data: tuple[Any, Any] | None = None) -> TrainingHistory:
    """Train a Keras 3 model with a compiled ``GradientTape`` step, recording each batch's loss.

    See :func:`train` for the arguments. The step is a ``tf.function`` cached per model, loss
    and optimizer, so training the same model again (for example after giving it new weights
    with :func:`utils.variance.apply_rule`) does not trace it again; with an optimizer *name*
    the optimizer's state is reset to freshly built on every call.

    Parameters
    ----------
    model, x, y, loss, optimizer, learning_rate, epochs, batch_size, seed, shuffle, eval_data
        As in :func:`train`.

    Returns
    -------
    TrainingHistory
        As :func:`train` returns it.

    Raises
    ------
    ValueError
        As :func:`train`, or if ``model`` is not a Keras model.
    """
    if framework_of(model) != "keras":
        raise ValueError("model must be a Keras model for train_keras; use train_torch or train")
    inputs, targets = _check_common(model, x, y, loss, optimizer, learning_rate, eval_data)
    import tensorflow as tf

    from utils.frameworks import loss_function
    from utils.seeding import seed_everything

    seed_everything(require_seed(seed), frameworks=("keras",), deterministic=False)
    inputs = inputs.astype(np.float32) if inputs.dtype.kind == "f" else inputs
    if targets.dtype.kind == "f":
        targets = targets.astype(np.float32)
    input_spec = tf.TensorSpec((None,) + inputs.shape[1:], tf.as_dtype(inputs.dtype))
    target_spec = tf.TensorSpec((None,) + targets.shape[1:], tf.as_dtype(targets.dtype))
    step, _ = _keras_step(model, loss, optimizer,
                          float(learning_rate) if learning_rate is not None else None,
                          input_spec, target_spec)
    losses, sizes, eval_losses, eval_accuracies = [], [], [], []
    batches = batch_order(len(inputs), batch_size, epochs, seed, shuffle)
    per_epoch = len(batches) // require_int(epochs, "epochs")
    if eval_data is not None:
        eval_x = np.asarray(eval_data[0])
        eval_x = eval_x.astype(np.float32) if eval_x.dtype.kind == "f" else eval_x
        eval_y = np.asarray(eval_data[1])
        forward = _keras_forward(model, tf.TensorSpec((None,) + eval_x.shape[1:],
                                                      tf.as_dtype(eval_x.dtype)))
        eval_loss = loss_function("keras", loss)
    for number, index in enumerate(batches, start=1):
        losses.append(float(step(inputs[index], targets[index])))
        sizes.append(len(index))
        if eval_data is not None and number % per_epoch == 0:
            logits = forward(eval_x)
            eval_losses.append(float(eval_loss(eval_y, logits)))
            accuracy = _accuracy(loss, np.asarray(logits), eval_y)
            if accuracy is not None:
                eval_accuracies.append(accuracy)
    return TrainingHistory(np.array(losses), np.array(sizes), int(epochs),
                           np.array(eval_losses), np.array(eval_accuracies))


# --------------------------------------------------------------------------------------------
# torch
# --------------------------------------------------------------------------------------------

def _torch_optimizer(model: Any, optimizer: Any, learning_rate: Any) -> Any:
    import torch

    if not isinstance(optimizer, str):
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ValueError(f"optimizer must be one of {OPTIMIZER_NAMES} or a "
                             f"torch.optim.Optimizer, got {type(optimizer).__name__}")
        held = {id(p) for group in optimizer.param_groups for p in group["params"]}
        if not any(id(p) in held for p in model.parameters()):
            raise ValueError("optimizer does not hold any of the model's parameters; build it "
                             "from model.parameters()")
        return optimizer
    params = model.parameters()
    # foreach=True: one fused update for all parameters (torch's CPU default is a Python loop
    # over them); the arithmetic is the same, so the steps are bit-for-bit those of the loop
    # (tests/test_training.py checks it) and short runs of deep models are much faster.
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=learning_rate, foreach=True)
    if optimizer == "momentum":
        return torch.optim.SGD(params, lr=learning_rate, momentum=0.9, foreach=True)
    if optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=learning_rate, alpha=0.9, eps=_EPSILON)
    return torch.optim.Adam(params, lr=learning_rate, betas=(0.9, 0.999), eps=_EPSILON)


def train_torch(model: Any, x: Any, y: Any, loss: Any, optimizer: Any = "sgd", *,
                learning_rate: float | None = 0.01, epochs: int = 1, batch_size: int = 32,
                seed: int = 0, shuffle: bool = True,
                eval_data: tuple[Any, Any] | None = None) -> TrainingHistory:
    """Train a torch model with a plain loop, recording each batch's loss.

    See :func:`train` for the arguments. The model is put in training mode for the steps and
    left in the mode it was in.

    Parameters
    ----------
    model
        A ``torch.nn.Module``.
    x, y, loss, optimizer, learning_rate, epochs, batch_size, seed, shuffle, eval_data
        As in :func:`train`; ``optimizer`` may be a ``torch.optim.Optimizer``.

    Returns
    -------
    TrainingHistory
        The per-batch losses (and evaluations), as for :func:`train`.

    Raises
    ------
    ValueError
        As :func:`train`, or if ``model`` is not a torch module, or an optimizer object does
        not hold the model's parameters.
    """
    if framework_of(model) != "torch":
        raise ValueError("model must be a torch.nn.Module for train_torch; use train_keras or "
                         "train")
    inputs, targets = _check_common(model, x, y, loss, optimizer, learning_rate, eval_data)
    import torch

    from utils.frameworks import loss_function
    from utils.seeding import seed_everything

    seed_everything(require_seed(seed), frameworks=("torch",), deterministic=False)
    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    x_all = torch.as_tensor(inputs)
    if x_all.is_floating_point():
        x_all = x_all.to(dtype)
    y_all = torch.as_tensor(targets)
    opt = _torch_optimizer(model, optimizer, learning_rate)
    loss_fn = loss_function("torch", loss)
    was_training = model.training
    losses, sizes, eval_losses, eval_accuracies = [], [], [], []
    batches = batch_order(len(inputs), batch_size, epochs, seed, shuffle)
    per_epoch = len(batches) // require_int(epochs, "epochs")
    try:
        model.train(True)
        for number, index in enumerate(batches, start=1):
            selection = torch.from_numpy(index)
            opt.zero_grad(set_to_none=True)
            value = loss_fn(model(x_all[selection]), y_all[selection])
            value.backward()
            opt.step()
            losses.append(float(value.detach()))
            sizes.append(len(index))
            if eval_data is not None and number % per_epoch == 0:
                model.train(False)
                eval_x = torch.as_tensor(np.asarray(eval_data[0]))
                if eval_x.is_floating_point():
                    eval_x = eval_x.to(dtype)
                eval_y = torch.as_tensor(np.asarray(eval_data[1]))
                with torch.no_grad():
                    logits = model(eval_x)
                    eval_losses.append(float(loss_fn(logits, eval_y)))
                accuracy = _accuracy(loss, logits.numpy(), np.asarray(eval_data[1]))
                if accuracy is not None:
                    eval_accuracies.append(accuracy)
                model.train(True)
    finally:
        model.train(was_training)
    return TrainingHistory(np.array(losses), np.array(sizes), int(epochs),
                           np.array(eval_losses), np.array(eval_accuracies))


def train(model: Any, x: Any, y: Any, loss: Any, optimizer: Any = "sgd", *,
          learning_rate: float | None = 0.01, epochs: int = 1, batch_size: int = 32,
          seed: int = 0, shuffle: bool = True,
          eval_data: tuple[Any, Any] | None = None) -> TrainingHistory:
    """Train a Keras 3 or torch model for a few epochs and return every batch's true loss.

    Parameters
    ----------
    model
        A built Keras 3 model or a ``torch.nn.Module``; its parameters are updated in place.
    x, y
        The training inputs and targets (NumPy arrays or array-likes with the same first axis).
    loss
        A name from ``utils.frameworks.LOSS_NAMES`` (``"cross_entropy"`` takes integer labels
        and logits) or a callable in the framework's convention.
    optimizer
        A name from :data:`OPTIMIZER_NAMES` (a fresh optimizer, the same hyperparameters in
        both frameworks) or the framework's own optimizer object (kept with its state).
    learning_rate
        The learning rate for a named optimizer; must be ``None`` with an optimizer object.
    epochs, batch_size
        How long, and how many examples per step.
    seed
        Seeds the batch order (``numpy.random.default_rng(seed)``) and the framework's global
        generator (dropout); :func:`utils.seeding.seed_everything` is called for that
        framework, which also reseeds Python's and NumPy's global generators.
    shuffle
        Shuffle the examples every epoch (else keep their order).
    eval_data
        Optional ``(x_eval, y_eval)``, evaluated after each epoch.

    Returns
    -------
    TrainingHistory

    Raises
    ------
    ValueError
        If ``model`` is not a built model, ``x`` and ``y`` differ in length or are empty,
        ``loss`` or ``optimizer`` is unknown, ``learning_rate`` is missing for a named
        optimizer (or given with an optimizer object), an integer argument is not positive,
        or ``eval_data`` is not a pair of equal-length arrays.
    """
    runner = train_keras if framework_of(model) == "keras" else train_torch
    return runner(model, x, y, loss, optimizer, learning_rate=learning_rate, epochs=epochs,
                  batch_size=batch_size, seed=seed, shuffle=shuffle, eval_data=eval_data)
