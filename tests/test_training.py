"""utils.training: true per-batch losses, the same steps in Keras and torch, honest seeding."""
from __future__ import annotations

import math

import numpy as np
import pytest

from utils.frameworks import parameters, trace
from utils.training import OPTIMIZER_NAMES, TrainingHistory, batch_order, train, train_keras, train_torch
from utils.variance import apply_rule, deep_mlp

EPS32 = float(np.finfo(np.float32).eps)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 6)).astype(np.float32)
    y = rng.integers(0, 3, size=100)
    return x, y


def twins(seed: int = 1):
    keras_net = deep_mlp("keras", [6, 8, 3], "tanh")
    torch_net = deep_mlp("torch", [6, 8, 3], "tanh")
    apply_rule(keras_net, "glorot", "uniform", seed=seed)
    apply_rule(torch_net, "glorot", "uniform", seed=seed)
    return keras_net, torch_net


def test_batch_order():
    batches = batch_order(10, 4, epochs=2, seed=0)
    assert [len(b) for b in batches] == [4, 4, 2, 4, 4, 2]
    for epoch in (batches[:3], batches[3:]):
        assert sorted(np.concatenate(epoch)) == list(range(10))
    assert not np.array_equal(np.concatenate(batches[:3]), np.concatenate(batches[3:]))
    in_order = batch_order(5, 2, epochs=1, seed=0, shuffle=False)
    assert [list(b) for b in in_order] == [[0, 1], [2, 3], [4]]
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        batch_order(5, 0, 1, 0)
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*32\)"):
        batch_order(5, 2, 1, -1)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
def test_keras_and_torch_take_the_same_steps(data, optimizer):
    x, y = data
    keras_net, torch_net = twins()
    keras_history = train(keras_net, x, y, "cross_entropy", optimizer, learning_rate=0.1,
                          epochs=3, batch_size=16, seed=4)
    torch_history = train(torch_net, x, y, "cross_entropy", optimizer, learning_rate=0.1,
                          epochs=3, batch_size=16, seed=4)
    assert len(keras_history.batch_losses) == 21
    # Same weights, same batches, same update rule: the only differences are float32 rounding
    # in each framework's sums, which compound over 21 steps; 1e-5 is about 80 eps32.
    np.testing.assert_allclose(keras_history.batch_losses, torch_history.batch_losses, rtol=1e-5)
    for k, t in zip(parameters(keras_net), parameters(torch_net)):
        values = t.numpy().T if t.name == "weight" else t.numpy()
        np.testing.assert_allclose(k.numpy(), values, atol=1e-5)


@pytest.mark.parametrize("optimizer", ["rmsprop", "adam"])
def test_adaptive_optimizers_run_and_roughly_agree(data, optimizer):
    x, y = data
    keras_net, torch_net = twins()
    initial = trace(keras_net, x, y, "cross_entropy").loss
    histories = [train(net, x, y, "cross_entropy", optimizer, learning_rate=0.01, epochs=2,
                       batch_size=25, seed=0, eval_data=(x, y)) for net in (keras_net, torch_net)]
    losses = [h.batch_losses for h in histories]
    assert losses[0][0] == pytest.approx(losses[1][0], rel=1e-6)  # the same first batch
    # epsilon enters differently (see OPTIMIZER_NAMES); the curves stay close, not identical
    np.testing.assert_allclose(losses[0], losses[1], rtol=0.02)
    assert all(h.eval_losses[-1] < initial for h in histories)


@pytest.mark.parametrize("framework", ["keras", "torch"])
def test_recorded_losses_are_each_batch_before_its_update(data, framework):
    x, y = data
    net = deep_mlp(framework, [6, 8, 3], "relu")
    apply_rule(net, "he", seed=2)
    first_batch = batch_order(len(x), 32, 1, seed=5)[0]
    before = trace(net, x[first_batch], y[first_batch], "cross_entropy").loss
    history = train(net, x, y, "cross_entropy", "sgd", learning_rate=0.05, epochs=1,
                    batch_size=32, seed=5)
    assert history.batch_losses[0] == pytest.approx(before, rel=10 * EPS32)
    assert list(history.batch_sizes) == [32, 32, 32, 4]


def test_keras_callback_reports_a_running_mean_not_the_batch_loss(data):
    """The pitfall the module exists for: logs["loss"] averages since the epoch started."""
    import keras

    x, y = data
    fit_net, loop_net = twins(seed=3)
    logged = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            logged.append(logs["loss"])

    fit_net.compile(optimizer=keras.optimizers.SGD(0.1),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    fit_net.fit(x, y, batch_size=20, epochs=1, shuffle=False, verbose=0, callbacks=[Record()])
    history = train(loop_net, x, y, "cross_entropy", "sgd", learning_rate=0.1, epochs=1,
                    batch_size=20, seed=0, shuffle=False)
    running_mean = np.cumsum(history.batch_losses * history.batch_sizes) / np.cumsum(history.batch_sizes)
    np.testing.assert_allclose(logged, running_mean, rtol=1e-5)
    assert not np.allclose(logged[1:], history.batch_losses[1:], rtol=1e-3)


def test_named_keras_optimizer_starts_fresh_and_the_step_is_reused(data):
    x, y = data
    net, _ = twins()
    start = [p.numpy() for p in parameters(net)]
    first = train(net, x, y, "cross_entropy", "adam", learning_rate=0.01, epochs=1, seed=0)
    for p, values in zip(parameters(net), start):
        p.handle.assign(values)
    second = train(net, x, y, "cross_entropy", "adam", learning_rate=0.01, epochs=1, seed=0)
    np.testing.assert_array_equal(first.batch_losses, second.batch_losses)


def test_optimizer_objects_keep_their_state(data):
    import torch

    x, y = data
    _, net = twins()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    train(net, x, y, "cross_entropy", optimizer, learning_rate=None, epochs=1, seed=0)
    assert optimizer.state  # momentum buffers exist and are carried into the next call
    with pytest.raises(ValueError, match="optimizer does not hold any of the model's parameters"):
        train(deep_mlp("torch", [6, 3], "relu"), x, y, "cross_entropy", optimizer, learning_rate=None)


@pytest.mark.parametrize("framework", ["keras", "torch"])
def test_eval_metrics_and_regression_losses(data, framework):
    x, y = data
    net = deep_mlp(framework, [6, 8, 3], "relu")
    history = train(net, x, y, "cross_entropy", "sgd", learning_rate=0.05, epochs=2,
                    batch_size=50, seed=0, eval_data=(x[:40], y[:40]))
    assert history.eval_losses.shape == (2,) and history.eval_accuracies.shape == (2,)
    logits = trace(net, x[:40]).layers[-1].output
    assert history.eval_accuracies[-1] == pytest.approx(np.mean(logits.argmax(axis=1) == y[:40]))
    assert history.eval_losses[-1] == pytest.approx(trace(net, x[:40], y[:40], "cross_entropy").loss, rel=1e-5)
    regression = deep_mlp(framework, [6, 4, 1], "tanh")
    targets = x[:, :1] * 2.0
    mse = train(regression, x, targets, "mse", "sgd", learning_rate=0.05, epochs=5, seed=0)
    assert mse.epoch_means()[-1] < mse.epoch_means()[0]
    assert len(mse.eval_accuracies) == 0
    binary = deep_mlp(framework, [6, 4, 1], "relu")
    labels = (x[:, 0] > 0).astype(np.float32).reshape(-1, 1)
    history = train(binary, x, labels, "binary_cross_entropy", "sgd", learning_rate=0.1,
                    epochs=1, seed=0, eval_data=(x, labels))
    assert 0 <= history.eval_accuracies[0] <= 1


def test_same_seed_same_history_and_different_seed_different_order(data):
    x, y = data
    results = []
    for seed in (0, 0, 1):
        _, net = twins()
        results.append(train(net, x, y, "cross_entropy", "sgd", learning_rate=0.1, seed=seed).batch_losses)
    np.testing.assert_array_equal(results[0], results[1])
    assert not np.array_equal(results[0], results[2])


def test_dropout_is_seeded(data):
    import torch.nn as nn

    x, y = data
    losses = []
    for _ in range(2):
        net = nn.Sequential(nn.Linear(6, 16), nn.Dropout(0.5), nn.Linear(16, 3))
        apply_rule(net, "he", seed=0)
        losses.append(train(net, x, y, "cross_entropy", "sgd", learning_rate=0.1, seed=7).batch_losses)
    np.testing.assert_array_equal(losses[0], losses[1])


@pytest.mark.parametrize("framework", ["keras", "torch"])
def test_train_reseeds_the_global_generators_as_documented(data, framework):
    """The module docstring's side effect: after train(seed=s), Python's random and NumPy's
    global generator continue from seed s (and local default_rng generators are untouched)."""
    import random

    x, y = data
    net = deep_mlp(framework, [6, 4, 3], "relu")
    local = np.random.default_rng(11)
    expected_local = np.random.default_rng(11).random(3)
    train(net, x, y, "cross_entropy", "sgd", learning_rate=0.1, seed=5)
    after = (random.random(), np.random.random())
    random.seed(5)
    np.random.seed(5)
    assert after == (random.random(), np.random.random())
    np.testing.assert_array_equal(local.random(3), expected_local)


def test_keras_compiled_evaluation_matches_an_eager_call(data):
    # The eval pass is a cached tf.function; it must give what calling the model gives. Both
    # run the same float32 kernels, so they agree to a few ulps of the logits' scale.
    x, y = data
    net, _ = twins()
    history = train(net, x, y, "cross_entropy", "sgd", learning_rate=0.1, epochs=2, seed=0,
                    eval_data=(x[:50], y[:50]))
    eager = np.asarray(net(x[:50], training=False))
    assert history.eval_accuracies[-1] == np.mean(eager.argmax(axis=1) == y[:50])
    reference = trace(net, x[:50], y[:50], "cross_entropy").loss
    assert history.eval_losses[-1] == pytest.approx(reference, rel=16 * EPS32)


def test_epoch_means_weight_by_batch_size():
    history = TrainingHistory(np.array([1.0, 3.0, 2.0, 2.0]), np.array([3, 1, 3, 1]), 2,
                              np.array([]), np.array([]))
    np.testing.assert_allclose(history.epoch_means(), [1.5, 2.0])
    assert history.steps_per_epoch == 2


def test_errors(data):
    x, y = data
    _, net = twins()
    with pytest.raises(ValueError, match="x and y must be arrays with the same number of examples"):
        train(net, x, y[:10], "cross_entropy")
    with pytest.raises(ValueError, match="loss must be one of"):
        train(net, x, y, "hinge")
    with pytest.raises(ValueError, match=r"optimizer must be one of \('sgd'"):
        train(net, x, y, "cross_entropy", "lbfgs")
    with pytest.raises(ValueError, match="learning_rate must be a positive finite number"):
        train(net, x, y, "cross_entropy", "sgd", learning_rate=None)
    with pytest.raises(ValueError, match="learning_rate is only used with an optimizer name"):
        import torch

        train(net, x, y, "cross_entropy", torch.optim.SGD(net.parameters(), lr=0.1), learning_rate=0.1)
    with pytest.raises(ValueError, match="eval_data must be a pair"):
        train(net, x, y, "cross_entropy", eval_data=(x, y[:3]))
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        train(net, x, y, "cross_entropy", epochs=0)
    with pytest.raises(ValueError, match="model must be a Keras model for train_keras"):
        train_keras(net, x, y, "cross_entropy")
    keras_net, _ = twins()
    with pytest.raises(ValueError, match="model must be a torch.nn.Module for train_torch"):
        train_torch(keras_net, x, y, "cross_entropy")
    assert OPTIMIZER_NAMES == ("sgd", "momentum", "rmsprop", "adam")
    assert math.isfinite(train(net, x, y, "cross_entropy").batch_losses[0])


def test_keras_optimizer_names_and_errors():
    from utils.training import OPTIMIZER_NAMES, keras_optimizer

    built = {name: keras_optimizer(name, 0.05) for name in OPTIMIZER_NAMES}
    assert [type(o).__name__ for o in built.values()] == ["SGD", "SGD", "RMSprop", "Adam"]
    assert built["momentum"].momentum == 0.9 and built["sgd"].momentum == 0.0
    assert all(float(o.learning_rate) == pytest.approx(0.05) for o in built.values())
    with pytest.raises(ValueError, match="name must be one of"):
        keras_optimizer("lbfgs", 0.1)
    with pytest.raises(ValueError, match="learning_rate must be a positive finite number"):
        keras_optimizer("sgd", 0)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
def test_torch_named_optimizer_steps_are_bit_for_bit_torchs_loop(data, optimizer):
    # train_torch builds SGD with foreach=True (one fused update, for speed); the arithmetic is
    # the same as torch's default per-parameter loop, so the parameters must be identical.
    import torch

    x, y = data
    _, fused_net = twins()
    _, loop_net = twins()
    train(fused_net, x, y, "cross_entropy", optimizer, learning_rate=0.1, epochs=3,
          batch_size=16, seed=4)
    momentum = 0.9 if optimizer == "momentum" else 0.0
    loop = torch.optim.SGD(loop_net.parameters(), lr=0.1, momentum=momentum, foreach=False)
    train(loop_net, x, y, "cross_entropy", loop, learning_rate=None, epochs=3, batch_size=16,
          seed=4)
    for fused, looped in zip(fused_net.parameters(), loop_net.parameters()):
        assert torch.equal(fused, looped)
