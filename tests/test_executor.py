"""Execution on the golden backend: integer outputs equal the numerics, costs follow the
planner, programs for another config are refused, agreement counts per sample.

These are the layer-by-layer mode's tests (each layer an engine call, so every layer's
integers are seen); program mode is tests/test_program_lowering.py's."""

import copy

import numpy as np
import pytest

from tritile.sw.compiler import compile_model
from tritile.sw.config import PRESETS
from tritile.sw.engines import engine
from tritile.sw.executor import GoldenBackend, ProgramMismatchError, agreement, execute
from tritile.sw.model import Dense, Model
from tritile.sw.numerics import (gemm_int8, quantize_activations_absmax,
                                 quantize_activations_int8, requantize, ternary_matmul)
from tritile.sw.planner import plan_gemm, plan_ternary
from tritile.sw.protocol import param_records
from tritile.sw.tiling import tile_problem

CONFIG = PRESETS["sim-small"]


def _model(rng):
    return Model([Dense(rng.standard_normal((24, 16)) * 0.3, rng.standard_normal(16) * 0.1,
                        activation="relu"),
                  Dense(rng.standard_normal((16, 5)) * 0.3, rng.standard_normal(5) * 0.1)])


def test_int8_integers_are_the_numerics(rng):
    model, X = _model(rng), rng.standard_normal((30, 24)).astype(np.float32)
    program = compile_model(model, CONFIG, "int8", calib=X)
    result = execute(program, GoldenBackend(CONFIG), X, mode="layers")
    first, last = program.layers
    Xq = quantize_activations_int8(X, scale=first.s_x)[0]
    hidden = requantize(gemm_int8(Xq, first.Wq, first.bias), first.mult, first.shift, relu=True)
    acc = gemm_int8(hidden, last.Wq, last.bias)
    np.testing.assert_array_equal(result.integers[0], hidden)
    np.testing.assert_array_equal(result.integers[1], acc)
    np.testing.assert_array_equal(result.outputs,
                                  acc.astype(np.float32) * (np.float32(last.s_x) * last.s_w))


def test_ternary_integers_are_the_numerics(rng):
    model, X = _model(rng), rng.standard_normal((9, 24)).astype(np.float32)
    program = compile_model(model, CONFIG, "ternary")
    result = execute(program, GoldenBackend(CONFIG), X, mode="layers")
    q, _ = quantize_activations_absmax(X)
    np.testing.assert_array_equal(result.integers[0], ternary_matmul(q, program.layers[0].T))


def test_costs_follow_the_planner(rng):
    model = _model(rng)
    config = CONFIG.replace(max_m=7)                # the batch of 50 takes 8 calls
    X = rng.standard_normal((50, 24)).astype(np.float32)
    program = compile_model(model, config, "int8", calib=X)
    first_layer = program.layers[0]
    result = execute(program, GoldenBackend(config), X, mode="layers")
    assert tile_problem(engine("systolic"), config, 50, 24, 16).tile_m == 7
    first, last = result.layers
    assert first.calls == 8
    assert first.predicted_cycles == 7 * plan_gemm(config, 7, 24, 16).cycles \
        + plan_gemm(config, 1, 24, 16).cycles
    assert (first.weight_bytes, last.weight_bytes) == (24 * 16, 16 * 5)
    # int8 in, int8 requantized out, and the PARAMS records as the protocol packs them
    # (the driver writes them once: they are the same for every call of the layer).
    records = param_records(first_layer.bias, first_layer.mult, first_layer.shift)
    assert first.stream_bytes == 50 * 24 + 50 * 16 + len(records)
    ternary = execute(compile_model(model, config, "ternary"), GoldenBackend(config), X,
                      mode="layers")
    assert ternary.layers[1].predicted_cycles == 7 * plan_ternary(config, 7, 16, 5).cycles \
        + plan_ternary(config, 1, 16, 5).cycles
    assert ternary.layers[0].weight_bytes == -(-24 * 16 // 5)   # base-3: 5 trits per byte
    summary = result.to_dict()
    assert summary["predicted_cycles"] == first.predicted_cycles + last.predicted_cycles
    assert summary["bytes_streamed"] == result.bytes_streamed


def test_program_for_another_config_is_refused(rng):
    model, X = _model(rng), rng.standard_normal((4, 24)).astype(np.float32)
    program = compile_model(model, CONFIG, "int8", calib=X)
    other = GoldenBackend(PRESETS["icebreaker"])
    with pytest.raises(ProgramMismatchError, match=f"compiled for config {CONFIG.config_id} "
                                                   f"but the device runs config "
                                                   f"{PRESETS['icebreaker'].config_id}"):
        execute(program, other, X)
    handle = GoldenBackend(CONFIG).upload_int8(program.layers[0].Wq)
    with pytest.raises(ProgramMismatchError, match="for config"):
        other.gemm(np.zeros((1, 24), np.int8), handle)


def test_agreement_counts_samples(rng):
    model, X = _model(rng), rng.standard_normal((20, 24)).astype(np.float32)
    program = compile_model(model, CONFIG, "int8", calib=X)
    a = execute(program, GoldenBackend(CONFIG), X, mode="layers")
    b = execute(program, GoldenBackend(CONFIG), X, mode="layers")
    assert agreement(a, b) == 1.0
    c = copy.deepcopy(b)
    c.integers[0][3, 0] ^= 1
    c.integers[1][3, 1] += 1
    c.integers[1][17, 4] -= 1
    assert agreement(a, c) == 18 / 20


def test_bad_inputs(rng):
    model = _model(rng)
    program = compile_model(model, CONFIG, "ternary")
    with pytest.raises(ValueError, match="has 23 features per sample but the model takes 24"):
        execute(program, GoldenBackend(CONFIG), np.zeros((2, 23)))
    with pytest.raises(ValueError, match="at least one sample"):
        execute(program, GoldenBackend(CONFIG), np.zeros((0, 24)))


@pytest.mark.slow
def test_simulated_board_matches_golden_and_refuses_other_configs(rng):
    device_module = pytest.importorskip("tritile.sw.device")
    from tritile.sw.executor import backend_config, run_checked

    model = Model([Dense(rng.standard_normal((24, 16)) * 0.3, rng.standard_normal(16) * 0.1,
                         activation="relu"),
                   Dense(rng.standard_normal((16, 16)) * 0.3, activation="relu"),
                   Dense(rng.standard_normal((16, 5)) * 0.3, rng.standard_normal(5) * 0.1)])
    X = rng.standard_normal((40, 24)).astype(np.float32)
    with device_module.Device.open("sim") as device:
        config = backend_config(device)
        for engine in ("int8", "ternary", ["int8", "ternary", "int8"]):
            program = compile_model(model, config, engine, calib=X)
            _, _, agreed = run_checked(program, device, X)
            assert agreed == 1.0, f"engine={engine}"
        other = compile_model(model, config.replace(max_m=config.max_m - 1), "int8", calib=X)
        with pytest.raises(ProgramMismatchError, match="compiled for config"):
            execute(other, device, X)
