"""One place that tells a Keras model from a torch model and walks it uniformly.

Every other module that must "work on any model" goes through here instead of growing its own
``isinstance`` chains. Neither framework is imported by this module: the type of the object is
recognised from its class hierarchy, and the framework is imported only by code that already
holds one of its objects.

Used from Chapter 1 on (parameter audits), Chapters 2 and 3 (per-layer activations and
gradients, via :func:`trace`) and Chapter 4 (setting the output bias: :func:`output_graph`
finds the layers that compute a model's outputs from what the model computes, never from the
order its layers were defined in).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from collections.abc import Callable
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
    "STEP_KINDS",
    "Step",
    "OutputSource",
    "OutputGraph",
    "model_outputs",
    "NeedsInputError",
    "output_graph",
    "forward",
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


def _shapes_text(x: Any) -> str:
    """``x``'s shape, or the shapes of a tuple/list of inputs, for messages."""
    if isinstance(x, (tuple, list)) and x and all(hasattr(part, "shape") for part in x):
        return str([tuple(int(d) for d in part.shape) for part in x])
    try:
        return str(tuple(np.shape(x)))
    except ValueError:
        return "(ragged)"


def _selected_output(model: Any, prediction: Any, output: Any, loss: Any) -> Any:
    """The prediction the loss applies to: the one output ``output`` names, the only output,
    or (a callable loss and no ``output``) everything the model returned."""
    named = model_outputs(model, prediction)
    names = [name for name, _ in named]
    if output is not None:
        index = OutputGraph(tuple(names), (), "").index(output)
        return named[index][1]
    if len(named) > 1 and not callable(loss):
        raise ValueError(
            f"output must be given: the model has {len(named)} outputs {names} and "
            f"loss={loss!r} applies to one; pass output= one of those names (or its position), "
            "or a callable loss that takes all of them"
        )
    if callable(loss) or not named:
        return prediction
    return named[0][1]


def _keras_trace(model: Any, x: Any, y: Any, loss: Any, training: bool,
                 output: Any = None) -> Trace:
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
                    f"x with shape {_shapes_text(x)} could not be passed through the model: "
                    f"{type(err).__name__}: {err}"
                ) from err
            loss_value = None
            if loss is not None:
                loss_value = _keras_loss(loss)(y, _selected_output(model, prediction, output,
                                                                   loss))
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


def _torch_trace(model: Any, x: Any, y: Any, loss: Any, training: bool,
                 output: Any = None) -> Trace:
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
        inputs = _torch_inputs(model, x)
        with torch.set_grad_enabled(want_grad):
            try:
                prediction = model(*inputs)
            except Exception as err:
                shapes = [tuple(t.shape) for t in inputs]
                raise ValueError(
                    f"x with shape{'s' if len(shapes) > 1 else ''} "
                    f"{shapes if len(shapes) > 1 else shapes[0]} could not be passed through "
                    f"the model: {type(err).__name__}: {err}"
                ) from err
            loss_value = None
            if want_grad:
                target = torch.as_tensor(np.asarray(y)) if not torch.is_tensor(y) else y
                loss_value = _torch_loss(loss)(_selected_output(model, prediction, output, loss),
                                               target)
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


def trace(model: Any, x: Any, y: Any = None, loss: Any = None, training: bool = False,
          output: Any = None) -> Trace:
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
        A batch of inputs (NumPy array or the framework's tensor); a tuple of them for a model
        with several inputs (torch: passed as positional arguments, ``model(*x)``).
    y, loss
        Give both for a backward pass. ``loss`` is ``"mse"``, ``"cross_entropy"`` (integer labels,
        the model outputs logits) or ``"binary_cross_entropy"`` (the model outputs one logit), or
        a callable in the framework's own convention (Keras ``loss(y_true, y_pred)``, torch
        ``loss(prediction, target)``).
    training
        Run layers such as dropout and batch normalisation in training mode.
    output
        For a model with several outputs: the one ``loss`` applies to, by name or position
        (:func:`model_outputs` names them). Required there with a named ``loss``; without it a
        callable ``loss`` gets everything the model returned.

    Returns
    -------
    Trace
        ``layers``: a :class:`LayerRecord` per leaf-layer call, in call order; ``param_grads``:
        ``(ParamInfo, gradient)`` pairs; ``loss``: the loss value (None without ``loss``).

    Raises
    ------
    ValueError
        If ``model`` is not a built Keras/torch model; if only one of ``y`` and ``loss`` is
        given; if ``loss`` is an unknown name; if the model has several outputs and a named
        ``loss`` but no ``output``, or ``output`` names none of them; or if ``x`` cannot pass
        through the model (the message gives ``x``'s shape and the framework's error).
    """
    framework = require_built(model)
    if (y is None) != (loss is None):
        raise ValueError("y and loss must be given together (both for a backward pass, "
                         f"neither for a forward pass); got y={'set' if y is not None else None}, "
                         f"loss={loss!r}")
    if loss is not None and not callable(loss) and loss not in LOSS_NAMES:
        raise ValueError(f"loss must be one of {LOSS_NAMES} or a callable, got {loss!r}")
    if framework == "keras":
        return _keras_trace(model, x, y, loss, training, output)
    return _torch_trace(model, x, y, loss, training, output)


# --------------------------------------------------------------------------------------------
# Model outputs, and the layers that compute them (Chapter 4's output bias, init_report)
# --------------------------------------------------------------------------------------------

#: What a :class:`Step` between a layer and a model output does to the layer's values:
#: an activation (``"softmax"``, ``"log_softmax"``, ``"sigmoid"``), nothing to the values
#: (``"same"``: dropout at inference, identity, flatten, reshape, view, squeeze, a dtype cast),
#: or anything else (``"other"``: a ReLU, a normalisation, an addition, a slice, ...).
STEP_KINDS = ("softmax", "log_softmax", "sigmoid", "same", "other")

# Parameter-free layers (either framework's class names) that leave the values as they are at
# inference, and the activation layers, by class name.
_SAME_LAYERS = frozenset({
    "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout", "FeatureAlphaDropout",
    "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout",
    "GaussianNoise", "ActivityRegularization", "Identity", "Flatten", "Unflatten", "Reshape",
    "Permute",
})
_ACTIVATION_LAYERS = {"Softmax": "softmax", "LogSoftmax": "log_softmax", "Sigmoid": "sigmoid"}
# Operations (torch autograd nodes, torch.fx functions and methods, Keras ops), by their name
# lower-cased without underscores or a "Backward<n>" suffix.
_SAME_OPS = frozenset({
    "view", "unsafeview", "reshape", "reshapealias", "flatten", "squeeze", "unsqueeze",
    "expanddims", "permute", "transpose", "t", "clone", "contiguous", "alias", "tocopy", "to",
    "float", "double", "half", "bfloat16", "typeas", "cast", "identity", "copy",
})
_ACTIVATION_OPS = {"softmax": "softmax", "logsoftmax": "log_softmax", "sigmoid": "sigmoid"}
_KERAS_ACTIVATION_FUNCTIONS = {"softmax": "softmax", "log_softmax": "log_softmax",
                               "sigmoid": "sigmoid", "linear": "same"}


@dataclass(frozen=True)
class Step:
    """One operation between a layer's output and a model output (see :class:`OutputSource`).

    Attributes
    ----------
    name
        What it is: a layer as ``"'name' (Class)"``, or an operation's name (``"view"``,
        ``"log_softmax"``, ``"add"``, ...).
    kind
        One of :data:`STEP_KINDS`.
    is_layer
        True for a layer (then ``name`` is ``"'name' (Class)"``), False for an operation.
    """

    name: str
    kind: str
    is_layer: bool = False


@dataclass(frozen=True)
class OutputSource:
    """A layer with parameters whose output becomes one of the model's outputs.

    Found by following the model's computation backwards from the output (see
    :func:`output_graph`) through parameter-free layers and operations, up to the first layer
    that owns parameters on each path.

    Attributes
    ----------
    output
        The position of the output among the model's outputs (:attr:`OutputGraph.outputs`).
    output_name
        Its name: the Keras output's name (the layer that produces it, or its key in a dict of
        outputs); for torch the key or index in the returned tuple/dict, or ``"output"`` for a
        single tensor.
    layer
        The layer's name as :func:`leaf_layers` names it (Keras: ``layer.name``; torch: the
        ``named_modules`` path, ``"(root)"`` for the model itself).
    layer_type
        The layer's class name.
    layer_object
        The layer/module object.
    after
        The steps from the layer's output to the model output, in the order they are applied.
        A Keras layer's own fused ``activation=`` is not a step: it is part of the layer.
    """

    output: int
    output_name: str
    layer: str
    layer_type: str
    layer_object: Any
    after: tuple[Step, ...]

    @property
    def activations(self) -> tuple[str, ...]:
        """The kinds of the activation steps (softmax, log_softmax, sigmoid), in order."""
        return tuple(s.kind for s in self.after if s.kind in ("softmax", "log_softmax",
                                                               "sigmoid"))

    @property
    def first_other(self) -> Step | None:
        """The first step of kind ``"other"``, or None if every step is known."""
        return next((s for s in self.after if s.kind == "other"), None)


@dataclass(frozen=True)
class OutputGraph:
    """The result of :func:`output_graph`: a model's outputs and the layers that feed them.

    Attributes
    ----------
    outputs
        The names of the model's outputs, in order (see :attr:`OutputSource.output_name`).
    sources
        Every (output, layer) pair, in output order; an output fed by several layers (heads
        added or concatenated) has several, an output computed from the input alone none.
    method
        How the computation was followed: ``"keras graph"``, ``"torch autograd trace"`` (a
        forward pass on the sample input, with hooks) or ``"torch.fx"`` (symbolic tracing).
    """

    outputs: tuple[str, ...]
    sources: tuple[OutputSource, ...]
    method: str

    def index(self, output: Any, argument: str = "output") -> int:
        """The position of ``output``, given as a position or as a name.

        Parameters
        ----------
        output
            An ``int`` in ``[0, len(outputs))`` or one of :attr:`outputs`.
        argument
            The caller's argument name, for the error message.

        Returns
        -------
        int
            The position in :attr:`outputs`.

        Raises
        ------
        ValueError
            If ``output`` is neither.
        """
        if isinstance(output, (int, np.integer)) and not isinstance(output, bool) \
                and 0 <= output < len(self.outputs):
            return int(output)
        if isinstance(output, str) and output in self.outputs:
            return self.outputs.index(output)
        raise ValueError(
            f"{argument} must name one of the model's outputs {list(self.outputs)} or be its "
            f"position (0 to {len(self.outputs) - 1}), got {output!r}"
        )


class NeedsInputError(ValueError):
    """Raised by :func:`output_graph` when the model's computation cannot be followed without
    a sample input ``x`` (a ``ValueError``, so callers that expect one still catch it)."""


def _normalised(name: str) -> str:
    name = name.rsplit("::", 1)[-1].rsplit(".", 1)[-1]
    name = re.sub(r"Backward\d*$", "", name)
    return name.replace("_", "").lower()


def _op_step(name: str) -> Step:
    key = _normalised(name)
    shown = re.sub(r"Backward\d*$", "", name.rsplit("::", 1)[-1])
    if key in _ACTIVATION_OPS:
        return Step(shown, _ACTIVATION_OPS[key])
    return Step(shown, "same" if key in _SAME_OPS else "other")


def _layer_step(name: str, layer: Any) -> Step:
    kind_name = type(layer).__name__
    label = f"{name!r} ({kind_name})"
    if kind_name in _ACTIVATION_LAYERS:
        return Step(label, _ACTIVATION_LAYERS[kind_name], True)
    if kind_name == "Activation" and hasattr(layer, "activation"):  # Keras
        function = getattr(layer.activation, "__name__", "")
        return Step(label, _KERAS_ACTIVATION_FUNCTIONS.get(function, "other"), True)
    return Step(label, "same" if kind_name in _SAME_LAYERS else "other", True)


def _walk_back(starts: list[Any], expand: Any) -> list[tuple[Any, str, tuple[Step, ...]]]:
    """Follow a computation backwards from ``starts`` up to the first layer with parameters.

    ``expand(node)`` returns ``("layer", name, layer)`` for a layer with parameters (a
    source: the walk stops there), ``("step", Step, predecessors)`` for a layer without
    parameters or an operation (``Step`` None for a container that adds no step of its own),
    or ``("stop",)`` for an input, a parameter or a constant.
    Returns ``(layer, name, steps in application order)``, one per layer object, in the
    order they are found.
    """
    found: dict[int, tuple[Any, str, tuple[Step, ...]]] = {}
    stack = [(node, ()) for node in reversed(starts)]
    seen: set[Any] = set()
    while stack:
        node, steps = stack.pop()
        key = _node_key(node)
        if key in seen:
            continue
        seen.add(key)
        what = expand(node)
        if what[0] == "layer":
            _, name, layer = what
            found.setdefault(id(layer), (layer, name, tuple(reversed(steps))))
            continue
        if what[0] == "stop":
            continue
        _, step, predecessors = what
        for predecessor in reversed(list(predecessors)):
            stack.append((predecessor, steps if step is None else steps + (step,)))
    return list(found.values())


def _node_key(node: Any) -> Any:
    if isinstance(node, tuple):
        return tuple(id(part) if not isinstance(part, (int, float)) else part for part in node)
    return id(node)


def _tensor_leaves(value: Any, path: str = "") -> list[tuple[str, Any]]:
    """``(name, tensor)`` for every tensor in a nested output: tuple/list positions, dict keys
    (in their order) and namedtuple fields, joined with dots; ``"output"`` for a lone tensor."""
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return [(path or "output", value)]
    items: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        items = [(str(key), item) for key, item in value.items()]
    elif isinstance(value, tuple) and hasattr(value, "_fields"):
        items = list(zip(value._fields, value))
    elif isinstance(value, (tuple, list)):
        items = [(str(i), item) for i, item in enumerate(value)]
    leaves = []
    for key, item in items:
        leaves += _tensor_leaves(item, f"{path}.{key}" if path else key)
    return leaves


def _keras_flat(model: Any, value: Any) -> list[tuple[str, Any]]:
    """A Keras model's outputs flattened in ``keras.tree`` order (the order of
    ``model.outputs``), named by dict key, or by the layer producing each output."""
    import keras

    flat = keras.tree.flatten(value)
    if isinstance(value, dict):
        names = [".".join(str(p) for p in path)
                 for path, _ in keras.tree.flatten_with_path(value)]
        return list(zip(names, flat))
    names = []
    for position, tensor in enumerate(flat):
        history = getattr(tensor, "_keras_history", None)
        names.append(history[0].name if history is not None else str(position))
    if not any(getattr(t, "_keras_history", None) is not None for t in flat):
        try:
            symbolic = list(getattr(model, "outputs", None) or [])
        except (AttributeError, ValueError):
            symbolic = []
        if len(symbolic) == len(flat):
            names = [t._keras_history[0].name for t in symbolic]
    if len(flat) == 1 and names == ["0"]:
        names = ["output"]
    if len(set(names)) != len(names):
        names = [str(i) for i in range(len(flat))]
    return list(zip(names, flat))


def model_outputs(model: Any, value: Any) -> list[tuple[str, Any]]:
    """A model's returned value as a flat list of ``(output name, tensor)``.

    The order and names are those of :attr:`OutputGraph.outputs`: Keras outputs in
    ``keras.tree`` order (``model.outputs``), named by their dict key or the layer that produces
    them; torch tensors in a returned tuple, list, dict or namedtuple in order, named by
    position, key or field (nested containers join names with dots), a lone tensor
    ``"output"``.

    Parameters
    ----------
    model
        The model that returned ``value``.
    value
        What ``model(x)`` returned.

    Returns
    -------
    list of (str, tensor)
        One entry per tensor; empty if ``value`` holds none.

    Raises
    ------
    ValueError
        If ``model`` is not a Keras/torch model.
    """
    if framework_of(model) == "keras":
        return _keras_flat(model, value)
    return _tensor_leaves(value)


def _keras_owns_variables(layer: Any) -> bool:
    if not getattr(layer, "_layers", None):
        return bool(layer.weights)
    return bool(layer._trainable_variables or layer._non_trainable_variables)


def _keras_symbolic_inputs(model: Any, x: Any) -> Any:
    import keras

    def one(array: Any) -> Any:
        array = np.asarray(array) if not hasattr(array, "shape") else array
        dtype = str(getattr(array, "dtype", "float32")).rsplit(".", 1)[-1]
        return keras.Input(tuple(int(d) for d in array.shape[1:]), dtype=dtype)

    if x is not None:
        if isinstance(x, (tuple, list)):
            return [one(item) for item in x]
        if isinstance(x, dict):
            return {key: one(item) for key, item in x.items()}
        return one(x)
    shapes = getattr(model, "_build_shapes_dict", None) or {}
    if len(shapes) == 1:
        shape = next(iter(shapes.values()))
        if isinstance(shape, (tuple, list)) and all(d is None or isinstance(d, int)
                                                     for d in shape):
            return keras.Input(tuple(shape[1:]))
    raise NeedsInputError(
        "x must be given for this Keras model: it has no symbolic outputs (a subclassed "
        "model) and its input shape is not recorded; pass x= a sample batch of inputs (a few "
        "rows are enough)"
    )


def _keras_output_graph(model: Any, x: Any, through: Any) -> OutputGraph:
    import keras

    layers = list(model._flatten_layers(include_self=True, recursive=True))
    saved = [(layer, len(layer._inbound_nodes), len(layer._outbound_nodes)) for layer in layers]
    try:
        try:
            symbolic = list(model.outputs) if getattr(model, "outputs", None) else None
            structure = model._functional._outputs_struct if hasattr(model, "_functional") \
                and model._functional is not None else getattr(model, "_outputs_struct", None)
        except (AttributeError, ValueError):
            symbolic, structure = None, None
        if symbolic is None:
            inputs = _keras_symbolic_inputs(model, x)
            try:
                structure = model.call(inputs)
            except Exception as err:
                raise ValueError(
                    f"model's call could not be run on symbolic inputs (Keras: "
                    f"{type(err).__name__}: {err}); pass layer= to name the output layer"
                ) from err
        named = _keras_flat(model, structure if structure is not None else symbolic)

        def expand(tensor: Any) -> tuple:
            history = getattr(tensor, "_keras_history", None)
            if history is None:
                return ("stop",)
            operation, node_index, tensor_index = history
            if type(operation).__name__ == "InputLayer":
                return ("stop",)
            node = operation._inbound_nodes[node_index]
            if isinstance(operation, keras.layers.Layer):
                if getattr(operation, "_layers", None) and not _keras_owns_variables(operation):
                    # a nested model or composite layer: run its call on the same symbolic
                    # inputs, which links its inner layers to the outer graph
                    try:
                        inner = operation.call(*node.arguments.args, **node.arguments.kwargs)
                        return ("step", None, [keras.tree.flatten(inner)[tensor_index]])
                    except Exception:  # not callable symbolically: one opaque step
                        return ("step", Step(f"{operation.name!r} ({type(operation).__name__})",
                                             "other", True), node.input_tensors)
                if _keras_owns_variables(operation) and not through(operation):
                    return ("layer", operation.name, operation)
                return ("step", _layer_step(operation.name, operation), node.input_tensors)
            return ("step", _op_step(type(operation).__name__), node.input_tensors)

        sources = []
        for position, (name, tensor) in enumerate(named):
            for layer, layer_name, steps in _walk_back([tensor], expand):
                sources.append(OutputSource(position, name, layer_name, type(layer).__name__,
                                            layer, steps))
        return OutputGraph(tuple(n for n, _ in named), tuple(sources), "keras graph")
    finally:
        for layer, inbound, outbound in saved:  # forget the nodes the symbolic calls added
            del layer._inbound_nodes[inbound:]
            del layer._outbound_nodes[outbound:]


def _torch_owns_parameters(module: Any) -> bool:
    return any(True for _ in module.parameters(recurse=False))


def _torch_is_layer(module: Any) -> bool:
    """Leaves, and modules that own parameters directly (``MultiheadAttention``)."""
    return not any(True for _ in module.children()) or _torch_owns_parameters(module)


def _torch_inputs(model: Any, x: Any) -> tuple[Any, ...]:
    """``x`` as a tuple of tensors on the model's device, floats in the model's dtype (a tuple
    ``x`` is several positional inputs)."""
    import torch

    reference = next(iter(model.parameters()), None)
    parts = x if isinstance(x, tuple) else (x,)
    tensors = []
    for part in parts:
        tensor = part if torch.is_tensor(part) else torch.as_tensor(np.asarray(part))
        if reference is not None:
            tensor = tensor.to(reference.device)
            if tensor.is_floating_point():
                tensor = tensor.to(reference.dtype)
        tensors.append(tensor)
    return tuple(tensors)


def _torch_autograd_graph(model: Any, x: Any, through: Any) -> OutputGraph:
    import torch

    names = {id(module): name or "(root)" for name, module in model.named_modules()}
    calls: list[dict[str, Any]] = []
    pending: dict[int, list[dict[str, Any]]] = {}
    counter = [0]

    def grad_nodes(value: Any) -> list[Any]:
        return [t.grad_fn for _, t in _tensor_leaves(value) if torch.is_tensor(t)
                and t.grad_fn is not None]

    def pre_hook(module: Any, args: Any, kwargs: Any) -> None:
        call = {"module": module, "start": counter[0], "inputs": grad_nodes(args)
                + grad_nodes(dict(kwargs))}
        counter[0] += 1
        pending.setdefault(id(module), []).append(call)

    def hook(module: Any, args: Any, kwargs: Any, output: Any) -> None:
        call = pending[id(module)].pop()
        call["end"] = counter[0]
        counter[0] += 1
        call["outputs"] = grad_nodes(output)
        calls.append(call)

    hooked = [m for name, m in model.named_modules()
              if _torch_is_layer(m) and (name or not any(True for _ in m.children()))]
    handles = []
    for module in hooked:
        handles.append(module.register_forward_pre_hook(pre_hook, with_kwargs=True))
        handles.append(module.register_forward_hook(hook, with_kwargs=True))
    was_training = model.training
    model.eval()
    inputs = _torch_inputs(model, x)
    try:
        with torch.enable_grad():
            for attempt in range(2):
                calls.clear()
                pending.clear()
                if attempt:  # nothing required a gradient: let the inputs require one
                    inputs = tuple(t.detach().clone().requires_grad_(True)
                                   if t.is_floating_point() else t for t in inputs)
                try:
                    value = model(*inputs)
                except Exception as err:
                    shapes = [tuple(t.shape) for t in inputs]
                    raise ValueError(
                        f"x with shape{'s' if len(shapes) > 1 else ''} "
                        f"{shapes if len(shapes) > 1 else shapes[0]} could not be passed "
                        f"through the model: {type(err).__name__}: {err}") from err
                named = _tensor_leaves(value)
                if all(t.grad_fn is not None for _, t in named if torch.is_tensor(t)):
                    break
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)

    producers: dict[int, list[int]] = {}
    for index, call in enumerate(calls):
        for node in call["outputs"]:
            producers.setdefault(id(node), []).append(index)

    def expand(state: tuple[Any, float]) -> tuple:
        node, limit = state
        if node is None:
            return ("stop",)
        candidates = [i for i in producers.get(id(node), []) if calls[i]["end"] < limit]
        if candidates:
            call = calls[max(candidates, key=lambda i: calls[i]["start"])]
            module = call["module"]
            name = names.get(id(module), type(module).__name__)
            if _torch_owns_parameters(module) and not through(module):
                return ("layer", name, module)
            return ("step", _layer_step(name, module),
                    [(n, call["start"]) for n in call["inputs"]])
        if type(node).__name__ == "AccumulateGrad":  # a parameter or an input
            return ("stop",)
        return ("step", _op_step(type(node).__name__),
                [(n, limit) for n, _ in node.next_functions if n is not None])

    sources = []
    for position, (name, tensor) in enumerate(named):
        if not torch.is_tensor(tensor) or tensor.grad_fn is None:
            continue
        for layer, layer_name, steps in _walk_back([(tensor.grad_fn, math.inf)], expand):
            sources.append(OutputSource(position, name, layer_name, type(layer).__name__,
                                        layer, steps))
    # `calls` and `named` keep the autograd nodes alive until here
    return OutputGraph(tuple(n for n, _ in named), tuple(sources), "torch autograd trace")


def _torch_fx_graph(model: Any, through: Any) -> OutputGraph:
    import torch.fx

    class LayerTracer(torch.fx.Tracer):
        def is_leaf_module(self, module: Any, qualified_name: str) -> bool:
            return _torch_is_layer(module)

    if not any(True for _ in model.children()):  # the model is one layer
        sources = []
        if _torch_owns_parameters(model) and not through(model):
            sources.append(OutputSource(0, "output", "(root)", type(model).__name__, model, ()))
        return OutputGraph(("output",), tuple(sources), "torch.fx")
    try:
        graph = LayerTracer().trace(model)
    except Exception as err:
        raise NeedsInputError(
            f"x must be given for this model: its forward could not be traced symbolically "
            f"(torch.fx: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
            "pass x= a sample batch of inputs (a few rows are enough) so that the layers "
            "feeding the output can be found by running it"
        ) from err
    output_node = next(node for node in graph.nodes if node.op == "output")
    graph_outputs = [(name, node) for name, node in _fx_leaves(output_node.args[0])]

    def expand(node: Any) -> tuple:
        if node.op in ("placeholder", "get_attr"):
            return ("stop",)
        if node.op == "call_module":
            module = model.get_submodule(node.target)
            if _torch_owns_parameters(module) and not through(module):
                return ("layer", node.target, module)
            return ("step", _layer_step(node.target, module), node.all_input_nodes)
        target = node.target if isinstance(node.target, str) else getattr(
            node.target, "__name__", str(node.target))
        return ("step", _op_step(target), node.all_input_nodes)

    sources = []
    for position, (name, node) in enumerate(graph_outputs):
        for layer, layer_name, steps in _walk_back([node], expand):
            sources.append(OutputSource(position, name, layer_name, type(layer).__name__,
                                        layer, steps))
    return OutputGraph(tuple(n for n, _ in graph_outputs), tuple(sources), "torch.fx")


def _fx_leaves(value: Any, path: str = "") -> list[tuple[str, Any]]:
    import torch.fx

    if isinstance(value, torch.fx.Node):
        return [(path or "output", value)]
    items: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        items = [(str(key), item) for key, item in value.items()]
    elif isinstance(value, tuple) and hasattr(value, "_fields"):
        items = list(zip(value._fields, value))
    elif isinstance(value, (tuple, list)):
        items = [(str(i), item) for i, item in enumerate(value)]
    leaves = []
    for key, item in items:
        leaves += _fx_leaves(item, f"{path}.{key}" if path else key)
    return leaves


def output_graph(model: Any, x: Any = None,
                 through: Callable[[Any], bool] | None = None) -> OutputGraph:
    """Which layers compute each of a model's outputs, found from what the model computes.

    The computation is followed backwards from each output, through parameter-free layers
    (dropout, softmax, flatten, ...) and operations (``view``, ``log_softmax``, an addition,
    ...), to the first layer that owns parameters on each path: that layer is a *source* of
    the output (:class:`OutputSource`), and the steps between are recorded. Registration
    order plays no part.

    * Keras: the model's own graph (``model.outputs``), with nested models expanded; a
      subclassed model is called once on symbolic inputs shaped like ``x`` (or like the
      input it was built with).
    * torch with ``x``: one forward pass on ``x`` in eval mode with forward hooks on the
      layers, followed back through the autograd graph of the outputs.
    * torch without ``x``: symbolic tracing with ``torch.fx``, which needs no input but fails
      on forwards whose control flow depends on the values or shapes of tensors (for example
      ``torch.nn.Transformer``); pass ``x`` then.

    Parameters
    ----------
    model
        A built Keras 3 model or a ``torch.nn.Module``.
    x
        A sample batch of inputs (a tuple for several positional inputs); a few rows are
        enough. Needed for torch models that ``torch.fx`` cannot trace and for subclassed
        Keras models built without a recorded input shape.
    through
        Layers with parameters for which this returns True are followed through, as steps of
        kind ``"other"``, instead of being sources (e.g. ``lambda layer: not dense(layer)``
        finds the dense layer behind a final normalisation). Default: none.

    Returns
    -------
    OutputGraph
        The outputs' names and every (output, source layer) pair.

    Raises
    ------
    ValueError
        If ``model`` is not a built Keras/torch model, ``through`` is not callable, or ``x``
        cannot pass through the model. :class:`NeedsInputError` (a ``ValueError``) if ``x`` is needed and missing.
    """
    framework = require_built(model)
    if through is not None and not callable(through):
        raise ValueError(f"through must be None or a callable of a layer, got {through!r}")
    through = through or (lambda layer: False)
    if framework == "keras":
        return _keras_output_graph(model, x, through)
    if x is None:
        return _torch_fx_graph(model, through)
    return _torch_autograd_graph(model, x, through)


def forward(model: Any, x: Any) -> list[tuple[str, np.ndarray]]:
    """Run ``x`` through ``model`` once in inference mode; every output as NumPy, named.

    Dropout is off and batch normalisation uses its moving statistics (torch: ``eval()``
    under ``no_grad``, the training mode restored after; Keras: ``training=False``).
    Floating-point inputs are cast to the dtype of the model's first parameter (float64 data
    into a float32 model).

    Parameters
    ----------
    model
        A built Keras 3 model or a ``torch.nn.Module``.
    x
        A batch of inputs; a tuple of them for a model with several inputs.

    Returns
    -------
    list of (str, numpy.ndarray)
        The outputs in :func:`model_outputs` order and names, each as float64 if it is a
        floating-point tensor.

    Raises
    ------
    ValueError
        If ``model`` is not a built Keras/torch model or ``x`` cannot pass through it.
    """
    framework = require_built(model)
    if framework == "keras":
        weights = list(model.weights)
        dtype = np.dtype(str(weights[0].dtype)) if weights else None

        def cast(part: Any) -> Any:
            array = np.asarray(part) if not hasattr(part, "shape") else part
            if dtype is not None and isinstance(array, np.ndarray) \
                    and np.issubdtype(array.dtype, np.floating):
                return array.astype(dtype, copy=False)
            return array

        inputs = tuple(cast(p) for p in x) if isinstance(x, tuple) else cast(x)
        try:
            value = model(inputs, training=False)
        except Exception as err:
            raise ValueError(f"x with shape {_shapes_text(x)} could not be passed through the "
                             f"model: {type(err).__name__}: {err}") from err
    else:
        import torch

        tensors = _torch_inputs(model, x)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                value = model(*tensors)
        except Exception as err:
            raise ValueError(f"x with shape {_shapes_text(x)} could not be passed through the "
                             f"model: {type(err).__name__}: {err}") from err
        finally:
            model.train(was_training)
    named = []
    for name, tensor in model_outputs(model, value):
        array = to_numpy(tensor)
        if np.issubdtype(array.dtype, np.floating):
            array = array.astype(np.float64)
        named.append((name, array))
    return named
