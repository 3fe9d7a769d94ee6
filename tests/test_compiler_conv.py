"""Convolutional models compiled to static int8 and ternary layers: the golden model's
conv2d against the device's layer-by-layer im2col GEMMs, the program-mode records (padded
K, walk, weights in padded order, placement), float parity and errors."""

import numpy as np
import pytest

from onnx_models import torch_cnn
from tritile.sw.compiler import CompileError, StaticLayer, compile_model
from tritile.sw.config import PRESETS
from tritile.sw.conv import conv2d_int8, im2col_nhwc
from tritile.sw.executor import GoldenBackend, agreement, execute
from tritile.sw.model import Conv2d, Dense, MaxPool2d, Model
from tritile.sw.onnx_import import import_onnx

CONFIG = PRESETS["sim-small"]


class _EngineCallsOnly:
    """The golden engine calls without its ``conv``: a backend with only the engine-call API
    a device has today, so a program's convolutions take the im2col GEMM route."""

    def __init__(self, config):
        golden = GoldenBackend(config)
        for name in ("info", "upload_int8", "upload_ternary", "gemm", "ternary"):
            setattr(self, name, getattr(golden, name))


@pytest.fixture
def cnn(rng):
    model = import_onnx(torch_cnn())
    return model, rng.standard_normal((40, 3, 9, 8)).astype(np.float32)


@pytest.mark.parametrize("engine", ["int8", "ternary"])
def test_conv_program_is_the_same_by_conv2d_and_by_im2col_gemms(cnn, engine):
    model, X = cnn
    program = compile_model(model, CONFIG, engine, calib=X)
    assert all(isinstance(layer, StaticLayer) and layer.engine == engine
               for layer in program.layers)
    golden = execute(program, GoldenBackend(CONFIG), X)
    by_gemm = execute(program, _EngineCallsOnly(CONFIG), X)
    assert agreement(golden, by_gemm) == 1.0
    assert [layer.m for layer in golden.layers] == [40 * 72, 40 * 9, 40]
    if engine == "int8":    # static int8 stays close to the float model
        Y = model.forward(X)
        assert np.mean(np.argmax(golden.outputs, 1) == np.argmax(Y, 1)) >= 0.9
        assert np.abs(golden.outputs - Y).max() <= 0.1 * np.abs(Y).max()


def test_layer_records_hold_what_the_program_mode_needs(cnn, rng):
    model, X = cnn
    # Without program mode the summary says where the weights would live (this model has
    # no descriptor form: tests/test_program_lowering.py covers the lowered summary).
    program = compile_model(model, CONFIG.replace(max_layers=0), "int8", calib=X)
    first = program.layers[0]
    conv, chunk = first.conv, CONFIG.systolic_rows
    assert conv.chunk == chunk and conv.padded_k == 9 * chunk      # 3 channels -> one chunk
    assert conv.walk(2).rows == 2 * 72 and conv.walk().groups == 9
    # The stored map has its channels padded to the chunk; the padded weights read it.
    Xq = rng.integers(-128, 128, (2, 9, 8, 3), dtype=np.int8)
    stored = np.pad(Xq, ((0, 0), (0, 0), (0, 0), (0, chunk - 3)))
    np.testing.assert_array_equal(
        im2col_nhwc(stored, conv.window).astype(np.int32) @ conv.padded_weights(first.Wq),
        conv2d_int8(Xq, first.Wq, conv.window).reshape(-1, first.shape[1]))
    assert [[pool.kind for pool in layer.conv.pools]
            for layer in program.layers] == [["max"], ["avg"], []]
    dense = program.layers[2]
    assert dense.conv.window.kernel == (4, 4) and dense.conv.pixels == 1
    rows = program.summary()
    assert [row["output_stays_on_chip"] for row in rows] == [True, True, False]
    assert all(row["weights"].startswith("resident") for row in rows)
    assert rows[0]["k_padded"] == 9 * chunk and rows[0]["m_per_image"] == 72


def test_convolutional_models_need_calibration_and_pools_after_convs(cnn):
    model, _ = cnn
    with pytest.raises(CompileError, match="need calibration inputs"):
        compile_model(model, CONFIG, "ternary")
    pool_first = Model([MaxPool2d(2), Conv2d(np.ones((2, 1, 1, 1)))], input_shape=(4, 4, 1))
    with pytest.raises(CompileError, match="layer 0 .MaxPool2d.* must follow a Conv2d"):
        compile_model(pool_first, CONFIG, "int8", calib=np.ones((1, 16)))


@pytest.mark.parametrize("engine", ["int8", "ternary"])
def test_dense_layers_after_the_flatten_chain(engine, rng):
    conv = Conv2d(rng.standard_normal((4, 2, 3, 3)), rng.standard_normal(4), pads=1,
                  activation="relu")
    model = Model([conv, MaxPool2d(2), Dense(rng.standard_normal((16, 8)), activation="relu6"),
                   Dense(rng.standard_normal((8, 3)))], input_shape=(4, 4, 2))
    X = rng.standard_normal((10, 32)).astype(np.float32)
    program = compile_model(model, CONFIG, engine, calib=X)
    assert [layer.conv is None for layer in program.layers] == [False, False, True]
    golden = execute(program, GoldenBackend(CONFIG), X)
    assert agreement(golden, execute(program, _EngineCallsOnly(CONFIG), X)) == 1.0
    assert golden.outputs.shape == (10, 3)
