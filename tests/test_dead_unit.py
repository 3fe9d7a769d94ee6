"""Trained models as they are: a channel whose bias does not fit int32 at its weight scale
(a "dead" ReLU unit, weights decayed to ~1e-10 by L2 regularization, bias -0.1) gets a
larger weight scale, so the model compiles and runs."""

import numpy as np
import pytest

from tritile.sw.compiler import compile_model
from tritile.sw.config import PRESETS
from tritile.sw.executor import GoldenBackend, execute
from tritile.sw.model import Dense, Model
from tritile.sw.numerics import BIAS_LIMIT, quantize_bias, quantize_weights_int8

DEAD = 3


def _dead_unit_model(rng):
    W1 = rng.standard_normal((64, 8)).astype(np.float32) * 0.2
    b1 = rng.standard_normal(8).astype(np.float32) * 0.1
    W1[:, DEAD] = rng.uniform(-2e-10, 2e-10, 64)
    b1[DEAD] = -0.1
    W2 = rng.standard_normal((8, 10)).astype(np.float32) * 0.3
    return Model([Dense(W1, b1, activation="relu"), Dense(W2, rng.standard_normal(10) * 0.1)])


def test_dead_channel_gets_a_weight_scale_its_bias_fits(rng):
    layer = _dead_unit_model(rng).layers[0]
    W, b = layer.W, layer.b
    s_x = 1 / 127
    plain_Wq, plain_s_w = quantize_weights_int8(W)
    with pytest.raises(ValueError, match="quantized bias overflows int32"):
        quantize_bias(b, s_x, plain_s_w)
    Wq, s_w = quantize_weights_int8(W, b, s_x)
    alive = np.arange(8) != DEAD
    np.testing.assert_array_equal(Wq[:, alive], plain_Wq[:, alive])
    np.testing.assert_array_equal(s_w[alive], plain_s_w[alive])
    assert np.all(Wq[:, DEAD] == 0)
    assert s_w[DEAD] == pytest.approx(0.1 / (s_x * BIAS_LIMIT), rel=1e-6)
    bq = quantize_bias(b, s_x, s_w)
    assert abs(int(bq[DEAD])) <= BIAS_LIMIT and abs(int(bq[DEAD])) > BIAS_LIMIT // 2


def test_model_with_a_dead_unit_compiles_and_runs(rng):
    model, X = _dead_unit_model(rng), rng.uniform(0, 1, (40, 64)).astype(np.float32)
    config = PRESETS["sim-small"]
    program = compile_model(model, config, "int8", calib=X)
    assert np.all(program.layers[0].Wq[:, DEAD] == 0)
    result = execute(program, GoldenBackend(config), X, mode="layers")  # every layer's integers
    assert np.all(result.integers[0][:, DEAD] == 0)      # ReLU(-0.1 + ~0) is 0
    ref = model.forward(X)
    assert np.max(np.abs(result.outputs - ref)) < 0.03 * np.max(np.abs(ref))


def test_bias_and_scale_come_together():
    with pytest.raises(ValueError, match="give both the bias b and the input scale s_x"):
        quantize_weights_int8(np.ones((2, 2)), b=np.ones(2))
