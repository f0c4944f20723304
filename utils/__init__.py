"""Shared code for *Initialization Matters*.

One module per concern; each public function's docstring names the chapter that explains it.
Importing :mod:`utils` is cheap: no module imports TensorFlow, Keras or torch until a function
that needs them is called, so the NumPy-only parts (for example :mod:`utils.seeding` with
``frameworks=()``) work in a session without either framework.

Modules
-------
frameworks
    Tell a Keras model from a torch model; walk its layers and parameters uniformly.
seeding
    ``seed_everything`` and the determinism switches (Chapter 0).
colab
    The bootstrap cell every chapter starts with, and the environment report (Chapter 0).
stats
    Means with Student-t intervals, paired comparisons, Monte-Carlo tolerances (Chapter 2).
variance
    Gains, variance-scaling rules, mean-field predictions, per-layer statistics (Chapter 2).
training
    Seeded training loops recording true per-batch losses, Keras and torch (Chapter 2).
initializers
    Fans in both weight layouts; PyTorch's default written out, bit for bit (Chapter 1);
    orthogonal starts, LSUV, Jacobians of deep stacks and residual MLPs (Chapter 6).
audit
    ``default_initializers``: each framework's defaults, found from the installed versions
    (Chapter 1).
distributions
    Which distribution a parameter was drawn from; check values against it (Chapter 3).
plotting
    Weight/activation/gradient histograms, mean-with-band plots, one palette (Chapter 3).
interactive
    Figures with controls (sliders, drop-downs) that work offline in the book and in Colab
    (Chapter 1).
priors
    Prior-logit output biases and the initial-loss check (Chapter 4).
report
    ``init_report``: one call that checks an initialisation before training (Chapters 2-4).
experiments
    Seeded multi-arm experiments: twin small models, a fused Keras training loop,
    class-weighted losses, smoothed curves, arm comparisons with intervals (Chapter 5).
data
    Generated stand-ins and real-data loaders for the prior-bias experiments (Chapter 5).
"""
from __future__ import annotations

import importlib.util
import sys

#: The marker the notebooks' bootstrap cell checks: this ``utils`` is the course's, not another
#: module of the same name (Chapter 0, :mod:`utils.colab`).
COURSE = "initialization-matters"
__version__ = "0.4.0"
__all__ = ["COURSE", "__version__"]


def _import_triton_before_tensorflow() -> None:
    """Import Triton now if it is installed and TensorFlow is not loaded yet.

    torch's default (CUDA) wheels ship Triton, and ``torch.use_deterministic_algorithms`` imports
    it. Imported after TensorFlow, Triton crashes the interpreter (a segmentation fault, seen with
    TensorFlow 2.21, torch 2.14.1 and Triton 3.8); imported first, both work. Every chapter's
    first cell imports :mod:`utils` before TensorFlow, so doing it here protects them.
    :func:`utils.seeding.seed_everything` covers a session that loaded TensorFlow first.
    """
    if "triton" in sys.modules or "tensorflow" in sys.modules:
        return
    try:
        if importlib.util.find_spec("triton") is None:
            return
        import triton  # noqa: F401
    except Exception:  # a broken Triton is torch's business, not a reason to fail here
        return


_import_triton_before_tensorflow()
