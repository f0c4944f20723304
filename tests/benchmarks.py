"""Benchmarks run by ``make bench`` (after the notebooks): how long the plotting helpers take.

The issue's budget: a 25-million-parameter model draws in at most 3 s on the 2-core machine.
"Draws" means the whole figure, rendered to PNG at the notebooks' resolution (90 dpi), not only the
call that builds it. ``python -m tests.benchmarks`` runs this file alone.
"""
from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

BUDGET_S = 3.0


def _torch_mlp_25m() -> Any:
    import torch.nn as nn

    return nn.Sequential(nn.Linear(784, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(),
                         nn.Linear(4096, 1024), nn.ReLU(), nn.Linear(1024, 1000))


def _keras_mlp_25m() -> Any:
    import keras

    return keras.Sequential([keras.Input((784,)), keras.layers.Dense(4096, activation="relu"),
                             keras.layers.Dense(4096, activation="relu"),
                             keras.layers.Dense(1024, activation="relu"),
                             keras.layers.Dense(1000)])


def _torch_deep_blocks() -> Any:
    import torch.nn as nn

    return nn.Sequential(*[nn.Sequential(nn.Linear(512, 512), nn.LayerNorm(512))
                           for _ in range(48)])


def _timed(draw: Callable[[], Any]) -> float:
    import matplotlib.pyplot as plt

    start = time.perf_counter()
    fig = draw()
    fig.savefig(io.BytesIO(), format="png", dpi=90)
    elapsed = time.perf_counter() - start
    plt.close(fig)
    return elapsed


def main() -> int:
    """Print seconds per plotting call for large models; return 1 if a budget is exceeded."""
    import matplotlib

    matplotlib.use("Agg")
    from utils.frameworks import parameters
    from utils.plotting import weight_histograms, weight_summary

    _timed(lambda: weight_histograms(_torch_mlp_25m()[-1]))  # warm-up: imports, font cache
    models = [("torch MLP", _torch_mlp_25m()), ("keras MLP", _keras_mlp_25m()),
              ("torch 48 blocks", _torch_deep_blocks())]
    rows = []
    for name, model in models:
        infos = parameters(model)
        size = sum(p.size for p in infos)
        rows.append((name, "weight_histograms", size, len(infos),
                     _timed(lambda m=model: weight_histograms(m))))
        rows.append((name, "weight_summary", size, len(infos),
                     _timed(lambda m=model: weight_summary(m))))
    print(f"{'model':<16} {'function':<18} {'parameters':>12} {'tensors':>7} {'seconds':>8}  budget")
    over = False
    for name, function, size, tensors, seconds in rows:
        verdict = "ok" if seconds <= BUDGET_S else "OVER"
        over |= verdict == "OVER"
        print(f"{name:<16} {function:<18} {size:>12,} {tensors:>7} {seconds:>8.2f}  "
              f"{verdict} (<= {BUDGET_S:.0f} s)")
    return 1 if over else 0


if __name__ == "__main__":
    raise SystemExit(main())
