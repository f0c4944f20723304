"""One place that tells a Keras model from a torch model and walks it uniformly.

Every other module that must "work on any model" goes through here instead of growing its own
``isinstance`` chains. Neither framework is imported by this module: the type of the object is
recognised from its class hierarchy, and the framework is imported only by code that already
holds one of its objects.

Used from Chapter 1 on (parameter audits), Chapters 2 and 3 (per-layer activations and
gradients, via :func:`trace`) and Chapter 4 (setting the output bias).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

__all__ = [
    "Framework",
    "ParamInfo",
    "framework_of",
    "parameters",
    "leaf_layers",
    "to_numpy",
    "assign",
    "require_built",
    "WeightLayer",
    "weight_layers",
    "keras_layout",
    "from_keras_layout",
    "LayerRecord",
    "Trace",
    "trace",
    "LOSS_NAMES",
    "loss_function",
]

Framework = Literal["keras", "torch"]


def _class_modules(obj: Any) -> list[str]:
    return [getattr(cls, "__module__", "") or "" for cls in type(obj).__mro__]


def framework_of(model: Any, argument: str = "model") -> Framework:
    """Return ``"keras"`` or ``"torch"`` for a Keras 3 layer/model or a ``torch.nn.Module``.

    Parameters
    ----------
    model
        The object to classify. Any Keras layer (a model is a layer) or torch module works.
    argument
        The name of the caller's argument, used in the error message.

    Returns
    -------
    str
        ``"keras"`` or ``"torch"``.

    Raises
    ------
    ValueError
        If ``model`` is neither, with its type in the message.
    """
    modules = _class_modules(model)
    if any(m == "torch.nn.modules.module" for m in modules):
        return "torch"
    if any(m.startswith("keras.") or m == "keras" for m in modules):
        if hasattr(model, "weights") and hasattr(model, "built"):
            return "keras"
    raise ValueError(
        f"{argument} must be a Keras 3 layer/model or a torch.nn.Module, "
        f"got {type(model).__module__}.{type(model).__qualname__}"
    )


@dataclass(frozen=True)
class ParamInfo:
    """One parameter tensor of a model, described the same way in both frameworks.

    Attributes
    ----------
    layer
        The owning layer's name relative to the model (Keras: its path without the model's
        name, e.g. ``"dense_1"``; torch: the ``named_modules`` path, e.g. ``"net.0"``, or
        ``"(root)"`` for parameters owned by the model itself).
    layer_type
        The owning layer's class name, e.g. ``"Dense"`` or ``"Linear"``.
    name
        The parameter's own name: ``"kernel"``/``"bias"`` in Keras, ``"weight"``/``"bias"``
        in torch.
    shape
        The tensor's shape in the framework's own layout (Keras kernels are ``(in, out)``,
        torch weights ``(out, in)``).
    trainable
        False for Keras non-trainable variables and torch buffers.
    handle
        The framework object (``keras.Variable``, ``torch.nn.Parameter`` or buffer tensor).
    layer_object
        The owning layer/module object.
    """

    layer: str
    layer_type: str
    name: str
    shape: tuple[int, ...]
    trainable: bool
    handle: Any
    layer_object: Any

    @property
    def size(self) -> int:
        """Number of scalars in the tensor."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def label(self) -> str:
        """``"layer/name"``, the label used in tables and plot titles."""
        return f"{self.layer}/{self.name}"

    def numpy(self) -> np.ndarray:
        """A NumPy copy of the current values."""
        return to_numpy(self.handle)


def to_numpy(tensor: Any) -> np.ndarray:
    """Copy a Keras variable, TensorFlow/torch tensor or array-like to a NumPy array.

    Parameters
    ----------
    tensor
        A ``keras.Variable``, a TensorFlow or torch tensor (any device; bfloat16 becomes
        float32), or anything ``numpy.array`` accepts.

    Returns
    -------
    numpy.ndarray
        A copy: changing it does not change ``tensor``.

    Raises
    ------
    ValueError
        If ``tensor`` is not a tensor and NumPy cannot make an array of it (for example a
        ragged nested list).
    """
    if hasattr(tensor, "detach"):  # torch tensors and parameters
        values = tensor.detach().cpu()
        if str(values.dtype) == "torch.bfloat16":  # NumPy has no bfloat16
            values = values.float()
        return values.numpy().copy()
    if hasattr(tensor, "numpy"):  # keras.Variable, tf.Tensor
        return np.array(tensor.numpy(), copy=True)
    return np.array(tensor, copy=True)


def require_built(model: Any, argument: str = "model") -> Framework:
    """Check ``model`` is a supported model whose parameters exist; return its framework.

    Parameters
    ----------
    model, argument
        As in :func:`framework_of`.

    Returns
    -------
    str
        The framework, as :func:`framework_of` names it.

    Raises
    ------
    ValueError
        If ``model`` is not a Keras/torch model, or is a Keras model that has not been built
        yet (its weights do not exist until it knows its input shape).
    """
    framework = framework_of(model, argument)
    if framework == "keras" and not model.built:
        raise ValueError(
            f"{argument} is a Keras model that has not been built, so it has no weights yet. "
            "Build it first: give it an input (`keras.Input(shape)` as its first layer), call "
            "it once on a batch, or call `model.build((None, n_features))`."
        )
    return framework


def _keras_parameters(model: Any, include_non_trainable: bool) -> list[ParamInfo]:
    prefix = f"{model.name}/"
    owners: dict[int, tuple[Any, bool]] = {}
    for layer in model._flatten_layers(include_self=True, recursive=True):
        for variable in layer._trainable_variables:
            owners.setdefault(id(variable), (layer, True))
        for variable in layer._non_trainable_variables:
            owners.setdefault(id(variable), (layer, False))
    infos = []
    for variable in model.weights:
        layer, trainable = owners.get(id(variable), (model, bool(variable.trainable)))
        if not trainable and not include_non_trainable:
            continue
        path = variable.path
        layer_path = path.rsplit("/", 1)[0] if "/" in path else model.name
        if layer_path.startswith(prefix):
            layer_path = layer_path[len(prefix):]
        elif layer_path == model.name:
            layer_path = "(root)"
        infos.append(
            ParamInfo(
                layer=layer_path,
                layer_type=type(layer).__name__,
                name=variable.name,
                shape=tuple(int(d) for d in variable.shape),
                trainable=trainable,
                handle=variable,
                layer_object=layer,
            )
        )
    return infos


def _torch_parameters(model: Any, include_non_trainable: bool) -> list[ParamInfo]:
    infos = []
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        tensors = [(name, p, True) for name, p in module.named_parameters(recurse=False)]
        if include_non_trainable:
            tensors += [(name, b, False) for name, b in module.named_buffers(recurse=False)
                        if b is not None and b.is_floating_point()]
        for name, tensor, trainable in tensors:
            if id(tensor) in seen:  # shared (tied) parameters are listed once
                continue
            seen.add(id(tensor))
            infos.append(
                ParamInfo(
                    layer=module_name or "(root)",
                    layer_type=type(module).__name__,
                    name=name,
                    shape=tuple(int(d) for d in tensor.shape),
                    trainable=trainable,
                    handle=tensor,
                    layer_object=module,
                )
            )
    return infos


def parameters(model: Any, include_non_trainable: bool = False) -> list[ParamInfo]:
    """List a model's parameter tensors in layer order, the same way for Keras and torch.

    Parameters
    ----------
    model
        A built Keras 3 model/layer or a ``torch.nn.Module``.
    include_non_trainable
        Also list Keras non-trainable variables (e.g. batch-norm moving statistics) and torch
        floating-point buffers (e.g. ``running_mean``). Off by default: initialisation is about
        the parameters an optimiser will move.

    Returns
    -------
    list of ParamInfo
        One entry per tensor; tied torch parameters appear once.

    Raises
    ------
    ValueError
        If ``model`` is not a supported model, or an unbuilt Keras model.
    """
    framework = require_built(model)
    if framework == "keras":
        return _keras_parameters(model, include_non_trainable)
    return _torch_parameters(model, include_non_trainable)


def leaf_layers(model: Any) -> list[tuple[str, Any]]:
    """The layers that compute something, in order: ``(name, layer)`` for layers with no sublayers.

    Keras ``InputLayer`` objects are skipped (they hold no computation); the torch names are the
    ``named_modules`` paths.

    Parameters
    ----------
    model
        A Keras 3 layer/model or a ``torch.nn.Module``.

    Returns
    -------
    list of (str, layer)
        In the order the model applies them (Keras) or ``named_modules`` order (torch).

    Raises
    ------
    ValueError
        If ``model`` is not a supported model.
    """
    framework = framework_of(model)
    leaves: list[tuple[str, Any]] = []
    if framework == "torch":
        for name, module in model.named_modules():
            if not any(True for _ in module.children()):
                leaves.append((name or "(root)", module))
        return leaves
    # Layer._flatten_layers reverses the sublayers of a nested model (it pushes them onto the
    # left of a deque), so walk `_layers` depth-first, in the order the model applies them.
    seen: set[int] = set()

    def walk(layer: Any) -> None:
        for sub in getattr(layer, "_layers", []):
            if id(sub) in seen or type(sub).__name__ == "InputLayer":
                continue
            seen.add(id(sub))
            if getattr(sub, "_layers", None):
                walk(sub)
            else:
                leaves.append((sub.name, sub))

    walk(model)
    if not leaves and type(model).__name__ != "InputLayer":
        leaves.append((model.name, model))
    return leaves


def assign(param: ParamInfo, values: Any) -> None:
    """Overwrite a parameter in place with ``values`` (same shape), in either framework.

    Parameters
    ----------
    param
        A :class:`ParamInfo` from :func:`parameters`.
    values
        An array-like of the parameter's shape; cast to the parameter's dtype.

    Raises
    ------
    ValueError
        If ``values`` does not have the parameter's shape.
    """
    array = np.asarray(values)
    if tuple(array.shape) != param.shape:
        raise ValueError(
            f"values must have shape {param.shape} to fill {param.label}, got {array.shape}"
        )
    handle = param.handle
    if hasattr(handle, "detach"):
        import torch

        with torch.no_grad():
            handle.copy_(torch.as_tensor(array, dtype=handle.dtype))
    else:
        handle.assign(array.astype(np.dtype(handle.dtype)))


@dataclass(frozen=True)
class WeightLayer:
    """A layer with a weight matrix or convolution kernel, as :func:`weight_layers` lists it.

    Attributes
    ----------
    name
        The layer's name as :func:`trace` names its records: the Keras layer's ``name``, the
        torch ``named_modules`` path.
    layer
        The layer/module object.
    weight
        Its kernel (Keras) or weight (torch), two or more dimensions.
    bias
        Its bias, or None if it has none.
    """

    name: str
    layer: Any
    weight: ParamInfo
    bias: ParamInfo | None


def _dense_conv_classes(framework: Framework) -> tuple[type, ...]:
    if framework == "keras":
        import keras

        layers = keras.layers
        return (layers.Dense, layers.Conv1D, layers.Conv2D, layers.Conv3D,
                layers.Conv1DTranspose, layers.Conv2DTranspose, layers.Conv3DTranspose)
    import torch.nn as nn
    from torch.nn.modules.conv import _ConvNd

    return (nn.Linear, _ConvNd)


def weight_layers(model: Any, kinds: Literal["all", "dense_conv"] = "all") -> list[WeightLayer]:
    """The layers of ``model`` that own a weight matrix or kernel, with that weight and bias.

    The one walker over "the weights an initialisation scheme draws": Chapter 2's
    :func:`utils.variance.apply_rule` and Chapter 6's :func:`utils.initializers.orthogonal_`
    and :func:`utils.initializers.lsuv_` all go through it.

    Parameters
    ----------
    model
        A built Keras 3 model or a ``torch.nn.Module``.
    kinds
        ``"all"``: every layer owning a trainable parameter named ``kernel`` (Keras) or
        ``weight`` (torch) with two or more dimensions (dense, convolution, embedding,
        recurrent cells, ...). ``"dense_conv"``: only Keras ``Dense``, ``Conv1D/2D/3D`` and
        their ``Transpose`` variants, and torch ``Linear``, ``Conv1d/2d/3d`` and
        ``ConvTranspose1d/2d/3d``.

    Returns
    -------
    list of WeightLayer
        In the order :func:`parameters` lists the weights; empty if the model has none.

    Raises
    ------
    ValueError
        If ``model`` is not a supported model or an unbuilt Keras model, or ``kinds`` is
        neither ``"all"`` nor ``"dense_conv"``.
    """
    framework = require_built(model)
    if kinds not in ("all", "dense_conv"):
        raise ValueError(f"kinds must be 'all' or 'dense_conv', got {kinds!r}")
    classes = _dense_conv_classes(framework) if kinds == "dense_conv" else (object,)
    weight_name = "kernel" if framework == "keras" else "weight"
    found: dict[int, list[Any]] = {}
    for param in parameters(model):
        layer = param.layer_object
        if not isinstance(layer, classes):
            continue
        entry = found.setdefault(id(layer), [layer, None, None])
        if param.name == weight_name and len(param.shape) >= 2:
            entry[1] = param
        elif param.name == "bias":
            entry[2] = param
    names = {id(layer): name for name, layer in leaf_layers(model)}
    result = []
    for layer, weight, bias in found.values():
        if weight is None:
            continue
        name = layer.name if framework == "keras" else names.get(id(layer), weight.layer)
        result.append(WeightLayer(name, layer, weight, bias))
    return result


def keras_layout(shape: tuple[int, ...], framework: Framework) -> tuple[int, ...]:
    """The shape a weight of ``shape`` has in Keras's layout ``(*kernel_size, in, out)``.

    A torch weight ``(out, in, *kernel_size)`` is reordered; a Keras shape is returned as is.
    Drawing every weight in this one layout, then :func:`from_keras_layout`, is how Chapters 2
    and 6 give a Keras model and its torch twin identical parameters.

    Parameters
    ----------
    shape
        The weight's shape as ``framework`` stores it, two or more dimensions.
    framework
        ``"keras"`` or ``"torch"``.

    Returns
    -------
    tuple of int
        The shape in Keras's layout.

    Raises
    ------
    ValueError
        If ``framework`` is unknown or ``shape`` has fewer than two dimensions.
    """
    shape = tuple(shape)
    if framework not in ("keras", "torch"):
        raise ValueError(f"framework must be 'keras' or 'torch', got {framework!r}")
    if len(shape) < 2:
        raise ValueError(f"shape must have at least 2 dimensions, got {shape!r}")
    # torch (out, in, *k) -> Keras (*k, in, out); Keras shapes are already in that layout.
    return shape if framework == "keras" else shape[2:] + (shape[1], shape[0])


def from_keras_layout(kernel: np.ndarray, framework: Framework) -> np.ndarray:
    """A kernel drawn in Keras's layout, transposed to ``framework``'s layout.

    Parameters
    ----------
    kernel
        An array of shape ``(*kernel_size, in, out)``, two or more dimensions.
    framework
        ``"keras"`` (returned as is) or ``"torch"`` (returned as ``(out, in, *kernel_size)``).

    Returns
    -------
    numpy.ndarray
        The kernel in ``framework``'s layout (a view, not a copy).

    Raises
    ------
    ValueError
        If ``framework`` is unknown or ``kernel`` has fewer than two dimensions.
    """
    kernel = np.asarray(kernel)
    if framework not in ("keras", "torch"):
        raise ValueError(f"framework must be 'keras' or 'torch', got {framework!r}")
    if kernel.ndim < 2:
        raise ValueError(f"kernel must have at least 2 dimensions, got shape {kernel.shape}")
    if framework == "keras":
        return kernel
    ndim = kernel.ndim
    return np.transpose(kernel, (ndim - 1, ndim - 2) + tuple(range(ndim - 2)))


# --------------------------------------------------------------------------------------------
# Forward and backward traces: what each layer outputs, and the gradients (Chapters 2 and 3)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerRecord:
    """One leaf layer's output during a traced forward pass (and its gradient, if traced).

    Attributes
    ----------
    name
        The layer's name (Keras) or ``named_modules`` path (torch); a layer called more than
        once appears once per call, the later calls suffixed ``#2``, ``#3``, ...
    layer_type
        The layer's class name.
    output
        What the layer returned (for layers returning tuples, e.g. an LSTM, the first tensor).
        Keras layers with a fused ``activation=`` return the activated values.
    output_grad
        The loss's gradient with respect to ``output``, or None for a forward-only trace or a
        layer the loss does not depend on.
    """

    name: str
    layer_type: str
    output: np.ndarray
    output_grad: np.ndarray | None = None


@dataclass(frozen=True)
class Trace:
    """The result of :func:`trace`: per-layer records, per-parameter gradients and the loss."""

    layers: list[LayerRecord]
    param_grads: list[tuple[ParamInfo, np.ndarray]]
    loss: float | None


#: The loss names :func:`loss_function` and :func:`trace` understand, the same in both
#: frameworks (see :func:`loss_function`).
LOSS_NAMES = ("mse", "cross_entropy", "binary_cross_entropy")


def _first_tensor(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        for item in value:
            found = _first_tensor(item)
            if found is not None:
                return found
        return None
    return value if hasattr(value, "shape") else None


def _unique_names(names: list[str]) -> list[str]:
    counts: dict[str, int] = {}
    unique = []
    for name in names:
        counts[name] = counts.get(name, 0) + 1
        unique.append(name if counts[name] == 1 else f"{name}#{counts[name]}")
    return unique


def loss_function(framework: Framework, loss: Any) -> Any:
    """The framework's loss callable for a course loss name (or ``loss`` itself if callable).

    The names mean the same in both frameworks, so a Keras model and its torch twin trained or
    traced with ``"cross_entropy"`` compute the same number.

    Parameters
    ----------
    framework
        ``"keras"`` (the callable takes ``(y_true, y_pred)``) or ``"torch"`` (it takes
        ``(prediction, target)``).
    loss
        One of :data:`LOSS_NAMES`: ``"mse"``; ``"cross_entropy"`` (integer labels, logits
        out); ``"binary_cross_entropy"`` (one logit per output); or a callable, returned as is.

    Returns
    -------
    callable
        The framework's loss object or function (``loss`` itself if it is callable).

    Raises
    ------
    ValueError
        If ``framework`` or ``loss`` is unknown.
    """
    if framework not in ("keras", "torch"):
        raise ValueError(f"framework must be 'keras' or 'torch', got {framework!r}")
    if not callable(loss) and loss not in LOSS_NAMES:
        raise ValueError(f"loss must be one of {LOSS_NAMES} or a callable, got {loss!r}")
    return _keras_loss(loss) if framework == "keras" else _torch_loss(loss)


def _keras_loss(loss: Any) -> Any:
    import keras

    if callable(loss):
        return loss
    return {
        "mse": keras.losses.MeanSquaredError(),
        "cross_entropy": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        "binary_cross_entropy": keras.losses.BinaryCrossentropy(from_logits=True),
    }[loss]


def _torch_loss(loss: Any) -> Any:
    import torch.nn.functional as F

    if callable(loss):
        return loss
    return {
        "mse": lambda pred, target: F.mse_loss(pred, target.to(pred.dtype).reshape(pred.shape)),
        "cross_entropy": lambda pred, target: F.cross_entropy(pred, target.long().reshape(-1)),
        "binary_cross_entropy": lambda pred, target: F.binary_cross_entropy_with_logits(
            pred, target.to(pred.dtype).reshape(pred.shape)),
    }[loss]


def _keras_trace(model: Any, x: Any, y: Any, loss: Any, training: bool) -> Trace:
    import tensorflow as tf

    leaves = leaf_layers(model)
    calls: list[tuple[str, str, Any]] = []
    for _, layer in leaves:
        original = layer.call

        def recording_call(*args: Any, _original: Any = original, _layer: Any = layer,
                           **kwargs: Any) -> Any:
            out = _original(*args, **kwargs)
            calls.append((_layer.name, type(_layer).__name__, _first_tensor(out)))
            return out

        layer.call = recording_call  # instance attribute shadows the class method
    try:
        with tf.GradientTape(persistent=False) as tape:
            try:
                prediction = model(x, training=training)
            except Exception as err:  # a wrong input shape surfaces as many error types
                raise ValueError(
                    f"x with shape {tuple(np.shape(x))} could not be passed through the model: "
                    f"{type(err).__name__}: {err}"
                ) from err
            loss_value = None
            if loss is not None:
                loss_value = _keras_loss(loss)(y, prediction)
    finally:
        for _, layer in leaves:
            del layer.call
    params = parameters(model)
    outputs = [c[2] for c in calls if c[2] is not None]
    records_src = [c for c in calls if c[2] is not None]
    names = _unique_names([c[0] for c in records_src])
    if loss_value is None:
        layers = [LayerRecord(n, c[1], to_numpy(c[2])) for n, c in zip(names, records_src)]
        return Trace(layers, [], None)
    grads = tape.gradient(loss_value, outputs + [p.handle for p in params],
                          unconnected_gradients=tf.UnconnectedGradients.NONE)
    out_grads, param_grads = grads[:len(outputs)], grads[len(outputs):]
    layers = [LayerRecord(n, c[1], to_numpy(c[2]), None if g is None else to_numpy(g))
              for n, c, g in zip(names, records_src, out_grads)]
    pgrads = [(p, to_numpy(g)) for p, g in zip(params, param_grads) if g is not None]
    return Trace(layers, pgrads, float(loss_value))


def _torch_trace(model: Any, x: Any, y: Any, loss: Any, training: bool) -> Trace:
    import torch

    calls: list[tuple[str, str, Any]] = []
    hooks = []
    want_grad = loss is not None

    def make_hook(name: str) -> Any:
        def hook(module: Any, inputs: Any, output: Any) -> None:
            tensor = _first_tensor(output)
            if tensor is not None and want_grad and tensor.requires_grad:
                tensor.retain_grad()
            calls.append((name, type(module).__name__, tensor))
        return hook

    for name, module in leaf_layers(model):
        hooks.append(module.register_forward_hook(make_hook(name)))
    was_training = model.training
    model.train(training)
    try:
        model.zero_grad(set_to_none=True)
        inputs = torch.as_tensor(np.asarray(x)) if not torch.is_tensor(x) else x
        if inputs.is_floating_point():
            inputs = inputs.to(next((p.dtype for p in model.parameters()), torch.float32))
        with torch.set_grad_enabled(want_grad):
            try:
                prediction = model(inputs)
            except Exception as err:
                raise ValueError(
                    f"x with shape {tuple(inputs.shape)} could not be passed through the model: "
                    f"{type(err).__name__}: {err}"
                ) from err
            loss_value = None
            if want_grad:
                target = torch.as_tensor(np.asarray(y)) if not torch.is_tensor(y) else y
                loss_value = _torch_loss(loss)(prediction, target)
                loss_value.backward()
    finally:
        for handle in hooks:
            handle.remove()
        model.train(was_training)
    records_src = [c for c in calls if c[2] is not None]
    names = _unique_names([c[0] for c in records_src])
    layers = [LayerRecord(n, c[1], to_numpy(c[2]),
                          None if (not want_grad or c[2].grad is None) else to_numpy(c[2].grad))
              for n, c in zip(names, records_src)]
    if not want_grad:
        return Trace(layers, [], None)
    pgrads = [(p, to_numpy(p.handle.grad)) for p in parameters(model)
              if p.handle.grad is not None]
    model.zero_grad(set_to_none=True)
    return Trace(layers, pgrads, float(loss_value.detach()))


def trace(model: Any, x: Any, y: Any = None, loss: Any = None, training: bool = False) -> Trace:
    """Run ``x`` through ``model`` once, recording every leaf layer's output (and gradients).

    One function for both frameworks: Keras layers are traced by wrapping their ``call`` for the
    duration of one eager forward pass under a ``tf.GradientTape``; torch modules by forward
    hooks, with ``retain_grad`` on their outputs. The model is left exactly as it was.

    Parameters
    ----------
    model
        A built Keras 3 model or a ``torch.nn.Module`` (any architecture: sequential, functional,
        subclassed, nested).
    x
        A batch of inputs (NumPy array or the framework's tensor).
    y, loss
        Give both for a backward pass. ``loss`` is ``"mse"``, ``"cross_entropy"`` (integer labels,
        the model outputs logits) or ``"binary_cross_entropy"`` (the model outputs one logit), or
        a callable in the framework's own convention (Keras ``loss(y_true, y_pred)``, torch
        ``loss(prediction, target)``).
    training
        Run layers such as dropout and batch normalisation in training mode.

    Returns
    -------
    Trace
        ``layers``: a :class:`LayerRecord` per leaf-layer call, in call order; ``param_grads``:
        ``(ParamInfo, gradient)`` pairs; ``loss``: the loss value (None without ``loss``).

    Raises
    ------
    ValueError
        If ``model`` is not a built Keras/torch model; if only one of ``y`` and ``loss`` is
        given; if ``loss`` is an unknown name; or if ``x`` cannot pass through the model (the
        message gives ``x``'s shape and the framework's error).
    """
    framework = require_built(model)
    if (y is None) != (loss is None):
        raise ValueError("y and loss must be given together (both for a backward pass, "
                         f"neither for a forward pass); got y={'set' if y is not None else None}, "
                         f"loss={loss!r}")
    if loss is not None and not callable(loss) and loss not in LOSS_NAMES:
        raise ValueError(f"loss must be one of {LOSS_NAMES} or a callable, got {loss!r}")
    if framework == "keras":
        return _keras_trace(model, x, y, loss, training)
    return _torch_trace(model, x, y, loss, training)
