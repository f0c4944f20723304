"""One place that tells a Keras model from a torch model and walks it uniformly.

Every other module that must "work on any model" goes through here instead of growing its own
``isinstance`` chains. Neither framework is imported by this module: the type of the object is
recognised from its class hierarchy, and the framework is imported only by code that already
holds one of its objects.

Used from Chapter 1 on (parameter audits), Chapter 3 (histograms) and Chapter 4 (setting the
output bias).
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
    """Copy a Keras variable, TensorFlow/torch tensor or array-like to a NumPy array."""
    if hasattr(tensor, "detach"):  # torch tensors and parameters
        return tensor.detach().cpu().numpy().copy()
    if hasattr(tensor, "numpy"):  # keras.Variable, tf.Tensor
        return np.array(tensor.numpy(), copy=True)
    return np.array(tensor, copy=True)


def require_built(model: Any, argument: str = "model") -> Framework:
    """Check ``model`` is a supported model whose parameters exist; return its framework.

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
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if type(layer).__name__ == "InputLayer":
            continue
        if any(True for _ in layer._flatten_layers(include_self=False, recursive=False)):
            continue
        leaves.append((layer.name, layer))
    if not leaves and type(model).__name__ != "InputLayer":
        leaves.append((model.name, model))
    return leaves


def assign(param: ParamInfo, values: Any) -> None:
    """Overwrite a parameter in place with ``values`` (same shape), in either framework.

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
