"""Pre-quantized models in onnxruntime's QDQ format run with their own scales: weights,
weight scales and activation scales come from the file, requantization multipliers from
those scales through requant_params, and the device's integers match onnxruntime's own
int8 execution of the same file."""

import logging

import numpy as np
import onnx
import pytest

pytest.importorskip("onnxruntime")
from onnx import numpy_helper  # noqa: E402
from onnx_models import ort_output, quantize_qdq, torch_style  # noqa: E402

from tritile.sw.cli import main  # noqa: E402
from tritile.sw.compiler import compile_model  # noqa: E402
from tritile.sw.config import PRESETS  # noqa: E402
from tritile.sw.executor import GoldenBackend, execute  # noqa: E402
from tritile.sw.numerics import requant_params  # noqa: E402
from tritile.sw.onnx_import import OnnxImportError, import_onnx  # noqa: E402

CONFIG = PRESETS["sim-small"]


def _calib(rng):
    return rng.standard_normal((64, 1, 8, 8)).astype(np.float32)


@pytest.fixture(scope="module")
def float_path(tmp_path_factory):
    logging.getLogger().setLevel(logging.ERROR)     # quantize_static's pre-processing hint
    path = tmp_path_factory.mktemp("qdq") / "mlp.onnx"
    onnx.save(torch_style(), path)
    return path


@pytest.mark.parametrize("per_channel", [True, False], ids=["per-channel", "per-tensor"])
def test_qdq_model_runs_with_its_own_scales(float_path, per_channel, rng):
    path = quantize_qdq(float_path, float_path.with_name(f"q{per_channel}.onnx"), _calib(rng),
                        per_channel=per_channel)
    stored = {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}
    model = import_onnx(path)
    first, last = (layer.quant for layer in model.layers)
    np.testing.assert_array_equal(first.Wq, stored["W1_quantized"].T)
    np.testing.assert_array_equal(first.s_w, np.broadcast_to(stored["W1_scale"], (16,)))
    assert first.s_x == stored["f_scale"] and last.s_x == stored["r_scale"]
    assert first.s_y == stored["r_scale"] and last.s_y == stored["y_scale"]

    program = compile_model(model, CONFIG, "int8")          # no calibration data needed
    hidden, output = program.layers
    mult, shift = requant_params(np.float64(first.s_x) * first.s_w / np.float64(first.s_y))
    np.testing.assert_array_equal(hidden.mult, mult)
    np.testing.assert_array_equal(hidden.shift, shift)
    assert output.s_y == last.s_y and not output.raw_output

    X = rng.standard_normal((300, 1, 8, 8)).astype(np.float32)
    ours = execute(program, GoldenBackend(CONFIG), X).integers[-1].astype(np.int64)
    theirs = np.rint(ort_output(path, X) / np.float32(last.s_y)).astype(np.int64)
    assert np.mean(ours.argmax(axis=1) == theirs.argmax(axis=1)) >= 0.99
    assert np.max(np.abs(ours - theirs)) <= 1


def test_asymmetric_activations_are_refused_naming_the_option(float_path, rng):
    path = quantize_qdq(float_path, float_path.with_name("uint8.onnx"), _calib(rng),
                        symmetric=False)
    with pytest.raises(OnnxImportError) as info:
        import_onnx(path)
    text = str(info.value)
    assert "\n" not in text and "uint8" in text
    assert "extra_options={'ActivationSymmetric': True}" in text


def test_cli_runs_a_qdq_model_without_calibration(float_path, tmp_path, rng, capsys):
    calib = _calib(rng)
    path = quantize_qdq(float_path, tmp_path / "q.onnx", calib)
    np.save(tmp_path / "x.npy", calib[:5])
    assert main(["run", str(path), "--input", str(tmp_path / "x.npy"), "--device", "golden",
                 "--out", str(tmp_path / "y.npy")]) == 0
    assert np.load(tmp_path / "y.npy").shape == (5, 10)
    assert main(["run", str(path), "--input", str(tmp_path / "x.npy"), "--device", "golden",
                 "--engine", "ternary"]) == 2
    assert "pre-quantized (QDQ) to int8" in capsys.readouterr().err
