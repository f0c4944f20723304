"""utils.mup (Chapter 6): μP's rules per optimizer, the parameter groups for Keras and torch
models, and the side-by-side transfer sweep, checked against real models trained with the
frameworks' own optimizers."""
from __future__ import annotations

import math

import numpy as np
import pytest

from utils.frameworks import parameters
from utils.mup import (MUP_OPTIMIZERS, MUP_RECIPES, MupGroup, keras_mup_optimizers,
                       mup_param_groups, mup_rescale_, mup_rule, optimum_log10_lr,
                       torch_mup_optimizer, transfer_sweep)
from utils.training import batch_order

EPS32 = float(np.finfo(np.float32).eps)


def torch_mlp(width, d=6, k=3):
    import torch.nn as nn

    return nn.Sequential(nn.Linear(d, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, k))


def keras_mlp(width, d=6, k=3):
    import keras

    return keras.Sequential([keras.Input((d,)), keras.layers.Dense(width, activation="relu"),
                             keras.layers.Dense(width, activation="relu"), keras.layers.Dense(k)])


# --------------------------------------------------------------------------------- mup_rule

# (fans, base fans) -> role; Tensor Programs V, Table 3, with ratios r = n / n0 = 4
ROLES = {(6, 32, 6, 8): "input", (32, 32, 8, 8): "hidden", (32, 3, 8, 3): "output",
         (6, 3, 6, 3): "fixed", (1, 32, 1, 8): "input", (1, 3, 1, 3): "fixed"}
# role -> (SGD lr, Adam lr, init) multipliers under full μP at r = 4
MUP_TABLE = {"input": (4, 1, 1), "hidden": (1, 1 / 4, 1), "output": (1 / 4, 1 / 4, 1 / 2),
             "fixed": (1, 1, 1)}


@pytest.mark.parametrize("fans", list(ROLES))
def test_mup_rule_follows_tensor_programs_v_table_3(fans):
    role = ROLES[fans]
    for optimizer, column in (("sgd", 0), ("adam", 1)):
        rule = mup_rule(*fans, optimizer, "mup")
        assert rule.role == role
        assert rule.lr_multiplier == MUP_TABLE[role][column]
        assert rule.init_multiplier == MUP_TABLE[role][2]
        sp = mup_rule(*fans, optimizer, "sp")
        assert (sp.role, sp.lr_multiplier, sp.init_multiplier) == (role, 1, 1)
        readout = mup_rule(*fans, optimizer, "readout_only")
        expected = MUP_TABLE[role][1:] if role == "output" else (1, 1)
        assert (readout.lr_multiplier, readout.init_multiplier) == expected


def test_at_the_base_width_every_recipe_is_the_standard_parameterisation():
    for optimizer in MUP_OPTIMIZERS:
        for recipe in MUP_RECIPES:
            for fan_in, fan_out in ((6, 8), (8, 8), (8, 3), (1, 8)):
                rule = mup_rule(fan_in, fan_out, fan_in, fan_out, optimizer, recipe)
                assert (rule.role, rule.lr_multiplier, rule.init_multiplier) == ("fixed", 1, 1)


def test_the_readout_variance_is_n0_over_n_squared():
    # SP's readout std is 1/sqrt(n); μP's is sqrt(n0)/n, i.e. SP's times 1/sqrt(n/n0)
    for n0, n in ((8, 32), (64, 1024)):
        rule = mup_rule(n, 10, n0, 10, "adam", "mup")
        assert math.isclose((rule.init_multiplier / math.sqrt(n)) ** 2, n0 / n**2, rel_tol=1e-12)


@pytest.mark.parametrize("kwargs, message", [
    (dict(fan_in=0), "fan_in"), (dict(base_fan_out=2.5), "base_fan_out"),
    (dict(optimizer="rmsprop"), "optimizer must be one of"),
    (dict(recipe="ntk"), "recipe must be one of")])
def test_mup_rule_errors(kwargs, message):
    arguments = dict(fan_in=4, fan_out=4, base_fan_in=2, base_fan_out=2)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        mup_rule(**arguments)


# ------------------------------------------------------------------------- mup_param_groups

@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_param_groups_of_a_model_and_its_base(framework):
    make = torch_mlp if framework == "torch" else keras_mlp
    model, base = make(32), make(8)
    groups = mup_param_groups(model, base, "adam")
    by_role = {g.role: g for g in groups}
    assert set(by_role) == {"input", "hidden", "output", "fixed"}
    weight = "weight" if framework == "torch" else "kernel"
    assert [p.name for p in by_role["hidden"].params] == [weight]
    assert (by_role["hidden"].lr_multiplier, by_role["output"].lr_multiplier) == (1 / 4, 1 / 4)
    assert by_role["output"].init_multiplier == 1 / 2
    # input: the first layer's weight and the two width-32 biases; fixed: the readout's bias
    assert len(by_role["input"].params) == 3 and len(by_role["fixed"].params) == 1
    sgd = {g.role: g.lr_multiplier for g in mup_param_groups(model, base, "sgd")}
    assert sgd == {"input": 4, "hidden": 1, "output": 1 / 4, "fixed": 1}
    assert sum(len(g.params) for g in groups) == len(parameters(model)) == 6
    assert all(isinstance(g, MupGroup) and len(g.names) == len(g.handles) for g in groups)


def test_param_groups_errors():
    with pytest.raises(ValueError, match="same parameters"):
        mup_param_groups(torch_mlp(16), torch_mlp(8, k=3)[:3])
    with pytest.raises(ValueError, match="torch model but base_model a keras"):
        mup_param_groups(torch_mlp(16), keras_mlp(8))
    with pytest.raises(ValueError, match="optimizer"):
        mup_param_groups(torch_mlp(16), torch_mlp(8), "lamb")
    with pytest.raises(ValueError, match="recipe"):
        mup_param_groups(torch_mlp(16), torch_mlp(8), "sgd", "ntk")


def test_rescale_multiplies_only_the_readout():
    import torch

    torch.manual_seed(0)
    model = torch_mlp(32)
    before = [p.detach().clone() for p in model.parameters()]
    mup_rescale_(mup_param_groups(model, torch_mlp(8), "adam"))
    after = list(model.parameters())
    for index, (old, new) in enumerate(zip(before, after)):
        factor = 0.5 if index == 4 else 1.0  # the readout's weight
        assert torch.allclose(new.detach(), factor * old, rtol=1e-6, atol=0)
    with pytest.raises(ValueError, match="MupGroup"):
        mup_rescale_(["not a group"])


def test_optimizers_get_each_group_its_learning_rate():
    import keras
    import torch

    groups = mup_param_groups(torch_mlp(32), torch_mlp(8), "adam")
    opt = torch_mup_optimizer(groups, "adam", 0.01)
    assert isinstance(opt, torch.optim.Adam)
    assert [g["lr"] for g in opt.param_groups] == [0.01 * g.lr_multiplier for g in groups]
    assert opt.defaults["eps"] == 1e-7
    assert isinstance(torch_mup_optimizer(groups, "sgd", 0.1), torch.optim.SGD)
    keras_groups = mup_param_groups(keras_mlp(32), keras_mlp(8), "sgd")
    pairs = keras_mup_optimizers(keras_groups, "sgd", 0.1)
    assert [float(o.learning_rate) for o, _ in pairs] == pytest.approx(
        [0.1 * g.lr_multiplier for g in keras_groups], rel=1e-6)
    assert all(isinstance(o, keras.optimizers.SGD) for o, _ in pairs)
    with pytest.raises(ValueError, match="torch model"):
        torch_mup_optimizer(keras_groups, "sgd", 0.1)
    with pytest.raises(ValueError, match="Keras model"):
        keras_mup_optimizers(groups, "adam", 0.1)
    with pytest.raises(ValueError, match="learning_rate"):
        torch_mup_optimizer(groups, "adam", 0.0)


# ----------------------------------------------------------------------------- the sweep

def data(n=96, d=6, k=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)


def initial_kernels(sizes, recipe, seed, width, base):
    """The documented draw: standard normals per (seed, width, layer), He after a ReLU, LeCun
    before it and at the readout, the readout times the recipe's init multiplier."""
    kernels = []
    for layer, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        rng = np.random.default_rng(np.random.SeedSequence([seed, width, layer]))
        std = math.sqrt(2 / n_in) if layer == 1 else math.sqrt(1 / n_in)
        if layer == 2 and recipe != "sp":
            std *= math.sqrt(base / width)
        kernels.append(std * rng.standard_normal((n_in, n_out)))
    return kernels


@pytest.mark.parametrize("optimizer", MUP_OPTIMIZERS)
@pytest.mark.parametrize("recipe", ["mup", "readout_only"])
def test_the_sweep_trains_what_a_real_torch_model_with_mup_groups_trains(optimizer, recipe):
    # One run of the sweep, and the same run made with a torch model, mup_param_groups and
    # torch.optim: the same losses to float32 rounding (a few steps, so rounding stays small).
    import torch

    x, y = data()
    width, base, rate, seed, steps = 16, 4, 0.05 if optimizer == "adam" else 0.5, 3, 6
    sweep = transfer_sweep("torch", x, y, widths=[base, width], learning_rates=[rate],
                           seeds=[seed], optimizer=optimizer, recipes=[recipe], steps=steps,
                           batch_size=16, train_size=64)
    model, base_model = torch_mlp(width), torch_mlp(base)
    with torch.no_grad():
        for layer, kernel in zip((0, 2, 4), initial_kernels([6, width, width, 3], recipe, seed,
                                                             width, base)):
            model[layer].weight.copy_(torch.from_numpy(kernel.T))
            model[layer].bias.zero_()
    opt = torch_mup_optimizer(mup_param_groups(model, base_model, optimizer, recipe), optimizer,
                              rate)
    split = np.random.default_rng(seed).permutation(len(x))[:64]
    for index in batch_order(64, 16, 2, seed)[:steps]:
        opt.zero_grad()
        logits = model(torch.from_numpy(x[split[index]]))
        torch.nn.functional.cross_entropy(logits, torch.from_numpy(y[split[index]])).backward()
        opt.step()
    with torch.no_grad():
        final = float(torch.nn.functional.cross_entropy(model(torch.from_numpy(x[split])),
                                                        torch.from_numpy(y[split])))
    assert math.isclose(sweep.losses[0, 1, 0, 0], final, rel_tol=1e-4)


def test_keras_and_torch_sweeps_agree_and_the_shapes_are_the_grid():
    x, y = data()
    kwargs = dict(widths=[4, 8], learning_rates=[0.01, 0.03], seeds=[1, 2], optimizer="adam",
                  steps=5, batch_size=16, train_size=64)
    by_torch = transfer_sweep("torch", x, y, **kwargs)
    by_keras = transfer_sweep("keras", x, y, **kwargs)
    assert by_torch.losses.shape == (3, 2, 2, 2)
    assert by_torch.coords.shape == (3, 2, 2, 2, 6, 3)
    # five steps of float32 training with sums of at most 16 terms: agreement to 1e-4
    assert np.allclose(by_torch.losses, by_keras.losses, rtol=1e-4)
    assert np.allclose(by_torch.coords, by_keras.coords, rtol=1e-4)
    # at the base width every recipe is SP: identical runs
    assert np.array_equal(by_torch.losses[0, 0], by_torch.losses[1, 0])
    assert np.array_equal(by_torch.losses[0, 0], by_torch.losses[2, 0])


def test_a_diverged_run_gets_the_diverged_loss():
    x, y = data()
    sweep = transfer_sweep("torch", x, y, widths=[8], learning_rates=[1e6], seeds=[0],
                           optimizer="sgd", recipes=["sp"], steps=5, diverged_loss=7.0)
    assert sweep.losses.item() == 7.0


@pytest.mark.parametrize("kwargs, message", [
    (dict(framework="jax"), "framework"), (dict(optimizer="lamb"), "optimizer"),
    (dict(recipes=["ntk"]), "recipes"), (dict(widths=[8, 4]), "increasing"),
    (dict(learning_rates=[-1.0]), "learning_rates"), (dict(seeds=[-3]), "seed"),
    (dict(train_size=10_000), "train_size"), (dict(steps=0), "steps"),
    (dict(seeds=[]), "must not be empty")])
def test_sweep_errors(kwargs, message):
    x, y = data()
    arguments = dict(framework="torch", widths=[4, 8], learning_rates=[0.01], seeds=[0])
    arguments.update(kwargs)
    framework = arguments.pop("framework")
    with pytest.raises(ValueError, match=message):
        transfer_sweep(framework, x, y, **arguments)
    with pytest.raises(ValueError, match="x must be"):
        transfer_sweep("torch", x, y[:-1], widths=[4], learning_rates=[0.1], seeds=[0])


# ------------------------------------------------------------------------- optimum_log10_lr

def test_the_optimum_of_an_exact_parabola_is_its_vertex():
    grid = 10 ** np.arange(-3.0, -0.5, 0.5)
    for vertex in (-2.3, -1.9, -2.0):
        losses = np.exp(0.7 * (np.log10(grid) - vertex) ** 2 + 0.1)
        assert math.isclose(optimum_log10_lr(losses, grid), vertex, abs_tol=1e-9)
    # at an end, the vertex stays within the three points used
    rising = np.exp(np.log10(grid) + 4)
    assert optimum_log10_lr(rising, grid) == pytest.approx(-3.0)
    # a curve that opens downwards around its best point: the best grid point
    assert optimum_log10_lr([1.0, 2.0, 3.0, 2.0, 0.5], grid) == pytest.approx(-1.0)


@pytest.mark.parametrize("losses, rates, message", [
    ([1, 2], [0.1, 1], "length >= 3"), ([1, 0, 2], [0.1, 1, 10], "positive"),
    ([1, 2, 3], [1, 0.1, 10], "increasing"), ([1, 2, 3], [0.1, 1], "same length")])
def test_optimum_errors(losses, rates, message):
    with pytest.raises(ValueError, match=message):
        optimum_log10_lr(losses, rates)


# ----------------------------------------------------------------------- train_side_by_side

def test_side_by_side_momentum_runs_are_those_of_single_torch_models():
    # tanh, biases, SGD with momentum: two runs together = two torch models trained alone
    import torch

    from utils.mup import train_side_by_side

    x, y = data()
    rng = np.random.default_rng(5)
    sizes = [6, 8, 8, 3]
    kernels = [rng.standard_normal((2, a, b)) / math.sqrt(a) for a, b in zip(sizes, sizes[1:])]
    biases = [0.1 * rng.standard_normal((2, b)) for b in sizes[1:]]
    rates = np.array([0.05, 0.2])
    batches = np.stack([rng.choice(len(x), size=(2, 16)) for _ in range(5)])
    run = train_side_by_side("torch", x, y, kernels, biases, activation="tanh",
                             optimizer="momentum", learning_rates=rates, batches=batches,
                             evaluate=[np.tile(np.arange(40), (2, 1))])
    for r in range(2):
        model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 8),
                                    torch.nn.Tanh(), torch.nn.Linear(8, 3))
        with torch.no_grad():
            for layer, (k, b) in zip((0, 2, 4), zip(kernels, biases)):
                model[layer].weight.copy_(torch.from_numpy(k[r].T))
                model[layer].bias.copy_(torch.from_numpy(b[r]))
        opt = torch.optim.SGD(model.parameters(), lr=rates[r], momentum=0.9)
        for step, index in enumerate(batches[:, r]):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x[index])),
                                                     torch.from_numpy(y[index]))
            assert math.isclose(float(loss), run.batch_losses[step, r], rel_tol=1e-5)
            loss.backward()
            opt.step()
        with torch.no_grad():
            final = torch.nn.functional.cross_entropy(model(torch.from_numpy(x[:40])),
                                                      torch.from_numpy(y[:40]))
        assert math.isclose(float(final), run.final_losses[0][r], rel_tol=1e-5)
    assert run.sizes.shape == (2, 6, 3)
    keras_run = train_side_by_side("keras", x, y, kernels, biases, activation="tanh",
                                   optimizer="momentum", learning_rates=rates, batches=batches)
    assert np.allclose(keras_run.batch_losses, run.batch_losses, rtol=1e-5)


@pytest.mark.parametrize("kwargs, message", [
    (dict(activation="gelu"), "activation"), (dict(optimizer="rmsprop"), "optimizer"),
    (dict(learning_rates=np.ones(3)), "learning_rates"),
    (dict(batches=np.zeros((2, 3, 4))), "batches"),
    (dict(batches=np.zeros((2, 2, 4))), "batches"),
    (dict(evaluate=[np.zeros((3, 4), int)]), "evaluate"),
    (dict(biases=[np.zeros((2, 5))]), "biases")])
def test_side_by_side_errors(kwargs, message):
    from utils.mup import train_side_by_side

    x, y = data()
    arguments = dict(kernels=[np.zeros((2, 6, 5)), np.zeros((2, 5, 3))], learning_rates=[0.1, 0.1],
                     batches=np.zeros((2, 2, 4), int))
    arguments.update(kwargs)
    kernels = arguments.pop("kernels")
    with pytest.raises(ValueError, match=message):
        train_side_by_side("torch", x, y, kernels, **arguments)
    with pytest.raises(ValueError, match="chain"):
        train_side_by_side("torch", x, y, [np.zeros((2, 5, 3))], learning_rates=[0.1, 0.1],
                           batches=np.zeros((2, 2, 4), int))


def test_side_by_side_residual_blocks_are_those_of_a_torch_residual_network():
    import torch

    from utils.mup import train_side_by_side

    x, y = data()
    rng = np.random.default_rng(6)
    shapes = [(6, 8), (8, 5), (5, 8), (8, 5), (5, 8), (8, 3)]  # input, two blocks, readout
    kernels = [rng.standard_normal((2,) + s) / math.sqrt(s[0]) for s in shapes]
    batches = np.stack([rng.choice(len(x), size=(2, 16)) for _ in range(4)])
    run = train_side_by_side("torch", x, y, kernels, activation="relu", optimizer="sgd",
                             learning_rates=[0.1, 0.3], batches=batches, residual=True)
    assert run.sizes.shape == (2, 5, 4)  # input layer, two blocks, logits
    for r, rate in enumerate((0.1, 0.3)):
        weights = [torch.tensor(k[r], dtype=torch.float32, requires_grad=True) for k in kernels]
        weights += [torch.zeros(s[1], requires_grad=True) for s in shapes]  # biases, trained
        w, b = weights[:6], weights[6:]
        for step, index in enumerate(batches[:, r]):
            h = torch.from_numpy(x[index]) @ w[0] + b[0]
            stream = [h]
            for a in (1, 3):
                h = h + torch.relu(h @ w[a] + b[a]) @ w[a + 1] + b[a + 1]
                stream.append(h)
            loss = torch.nn.functional.cross_entropy(h @ w[5] + b[5], torch.from_numpy(y[index]))
            assert math.isclose(float(loss), run.batch_losses[step, r], rel_tol=1e-5)
            assert math.isclose(float(stream[-1].pow(2).mean().sqrt()), run.sizes[r, step, 2],
                                rel_tol=1e-5)
            grads = torch.autograd.grad(loss, weights)
            with torch.no_grad():
                for param, g in zip(weights, grads):
                    param -= rate * g
    keras_run = train_side_by_side("keras", x, y, kernels, activation="relu", optimizer="sgd",
                                   learning_rates=[0.1, 0.3], batches=batches, residual=True)
    assert np.allclose(keras_run.batch_losses, run.batch_losses, rtol=1e-5)
    with pytest.raises(ValueError, match="even number"):
        train_side_by_side("torch", x, y, kernels[:5], learning_rates=[0.1, 0.3],
                           batches=batches, residual=True)
    with pytest.raises(ValueError, match="back to the stream"):
        bad = kernels[:2] + [rng.standard_normal((2, 5, 7)), rng.standard_normal((2, 7, 3))]
        train_side_by_side("torch", x, y, bad, learning_rates=[0.1, 0.3], batches=batches,
                           residual=True)
