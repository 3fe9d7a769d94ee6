"""The NumPy trainer of the demo's models: the CNN's backward pass against finite differences."""

import numpy as np
import pytest

from tritile.sw.training import CnnParams, cnn_forward, cnn_gradients, train_cnn


def test_cnn_gradients_match_finite_differences(rng):
    x = rng.standard_normal((3, 6, 6, 2)).astype(np.float64)
    onehot = np.eye(10)[rng.integers(0, 10, 3)]
    params = CnnParams([(rng.standard_normal((18, 3)), rng.standard_normal(3) * 0.1)],
                       (rng.standard_normal((27, 10)), rng.standard_normal(10) * 0.1))
    params.convs = [(W.astype(np.float64), b.astype(np.float64)) for W, b in params.convs]
    params.dense = tuple(a.astype(np.float64) for a in params.dense)
    _, grads = cnn_gradients(params, x, onehot)
    for array, grad in zip(params.arrays(), grads):
        for flat in rng.choice(array.size, min(array.size, 6), replace=False):
            index = np.unravel_index(flat, array.shape)
            saved = array[index]
            array[index] = saved + 1e-6
            up = cnn_gradients(params, x, onehot)[0]
            array[index] = saved - 1e-6
            down = cnn_gradients(params, x, onehot)[0]
            array[index] = saved
            assert grad[index] == pytest.approx((up - down) / 2e-6, rel=1e-3, abs=1e-6)


def test_training_lowers_the_loss_and_learns_a_separable_task(rng):
    # Class 0: a bright left half; class 1: a bright right half.
    labels = rng.integers(0, 2, 64)
    X = rng.random((64, 4, 4, 1)).astype(np.float32) * 0.2
    X[labels == 0, :, :2] += 1
    X[labels == 1, :, 2:] += 1
    params = train_cnn(X, labels, channels=(4,), epochs=20, lr=1e-2, seed=1)
    assert np.mean(cnn_forward(params, X).argmax(axis=1) == labels) == 1.0
    ternary = train_cnn(X, labels, channels=(4,), epochs=10, lr=3e-3, ternary=True,
                        init=params, seed=1)
    assert np.mean(cnn_forward(ternary, X, ternary=True).argmax(axis=1) == labels) >= 0.95
