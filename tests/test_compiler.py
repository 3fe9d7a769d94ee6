"""Compilation: int8 quantization per docs/numerics.md with calibration and fused requant,
ternary BitLinear layers, per-layer engine choice, and clear errors."""

import numpy as np
import pytest

from tritile.sw.compiler import CompileError, compile_model
from tritile.sw.config import PRESETS
from tritile.sw.executor import GoldenBackend, execute
from tritile.sw.model import Dense, Model
from tritile.sw.numerics import (quantize_activations_absmax, quantize_activations_int8,
                                 quantize_weights_int8, ternarize_weights)

CONFIG = PRESETS["sim-small"]


def _model(rng, norm=False, sizes=(20, 16, 12, 6)):
    layers = []
    for index, (k, n) in enumerate(zip(sizes, sizes[1:])):
        last = index == len(sizes) - 2
        layers.append(Dense(rng.standard_normal((k, n)) / np.sqrt(k), rng.standard_normal(n) * 0.1,
                            activation=None if last else "relu",
                            norm=np.ones(k) if norm and index else None))
    return Model(layers)


def _data(rng, m=200, k=20):
    return rng.standard_normal((m, k)).astype(np.float32)


def test_int8_chain_keeps_activations_int8_between_layers(rng):
    model, X = _model(rng), _data(rng)
    program = compile_model(model, CONFIG, "int8", calib=X)
    first, middle, last = program.layers
    assert program.config_id == CONFIG.config_id
    assert first.quantize_input and not middle.quantize_input and not last.quantize_input
    assert not first.raw_output and not middle.raw_output and last.raw_output
    # The input scale of a chained layer is the output scale its producer requantizes to.
    assert middle.s_x == first.s_y and last.s_x == middle.s_y
    assert first.s_x == quantize_activations_int8(X)[1]
    Wq, s_w = quantize_weights_int8(model.layers[0].W)
    np.testing.assert_array_equal(first.Wq, Wq)
    np.testing.assert_array_equal(first.s_w, s_w)
    # Calibrated scales cover the float activations: the hidden layer's max maps to 127.
    hidden = model.forward(X, return_all=True)[0]
    assert first.s_y == pytest.approx(float(np.max(np.abs(hidden))) / 127, rel=1e-6)


def test_int8_output_tracks_float_model(rng):
    model, X = _model(rng), _data(rng)
    program = compile_model(model, CONFIG, "int8", calib=X)
    out = execute(program, GoldenBackend(CONFIG), X).outputs
    ref = model.forward(X)
    # Three layers of int8 rounding: a few percent of the output range.
    assert np.max(np.abs(out - ref)) < 0.03 * np.max(np.abs(ref))


def test_ternary_layers_use_absmean_weights(rng):
    model, X = _model(rng, norm=True), _data(rng)
    program = compile_model(model, CONFIG, "ternary")
    for layer, dense in zip(program.layers, model.layers):
        T, gamma = ternarize_weights(dense.W)
        np.testing.assert_array_equal(layer.T, T)
        assert layer.gamma == float(gamma)
        assert (layer.norm is None) == (dense.norm is None)
    out = execute(program, GoldenBackend(CONFIG), X).outputs
    # The BitLinear forward in float: RMSNorm, fake-quantized activations and weights.
    ref = X
    for dense in model.layers:
        q, s = quantize_activations_absmax(dense.normalize(ref))
        T, gamma = ternarize_weights(dense.W)
        ref = dense.activate((q / s[:, None]) @ (T * gamma) + dense.b)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


def test_engine_per_layer_and_norm_break_the_int8_chain(rng):
    model = _model(rng, norm=True)
    program = compile_model(model, CONFIG, ["int8", "ternary", "int8"], calib=_data(rng))
    first, middle, last = program.layers
    assert (first.engine, middle.engine, last.engine) == ("int8", "ternary", "int8")
    # int8 before a ternary layer returns raw accumulators; int8 after it quantizes on host.
    assert first.raw_output and last.quantize_input and last.raw_output
    # With RMSNorm on layers 1 and 2, no int8 layer can take its input straight from another.
    program = compile_model(model, CONFIG, "int8", calib=_data(rng))
    assert all(layer.quantize_input and layer.raw_output for layer in program.layers)
    rows = program.summary()
    assert [row["rms_norm"] for row in rows] == [False, True, True]


def test_errors_name_the_problem(rng):
    model = _model(rng)
    with pytest.raises(CompileError, match="need calibration inputs"):
        compile_model(model, CONFIG, "int8")
    with pytest.raises(CompileError, match="engine of layer 1 must be one of"):
        compile_model(model, CONFIG, ["int8", "float", "int8"], calib=_data(rng))
    with pytest.raises(CompileError, match="one per layer"):
        compile_model(model, CONFIG, ["int8"], calib=_data(rng))
    big = Model([Dense(np.ones((CONFIG.max_k + 1, 4))),
                 Dense(np.ones((4, CONFIG.max_n + 1)))])
    with pytest.raises(CompileError) as info:
        compile_model(big, CONFIG, "ternary")
    assert f"K = {CONFIG.max_k + 1} input features exceed max_k" in str(info.value)
    assert f"N = {CONFIG.max_n + 1} output features exceed max_n" in str(info.value)
    with pytest.raises(CompileError, match="weight_depth"):
        compile_model(Model([Dense(np.ones((64, 64)))]), CONFIG.replace(weight_depth=1024),
                      "int8", calib=np.ones((1, 64)))
