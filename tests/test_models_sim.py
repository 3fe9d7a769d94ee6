"""The three routes of docs/models.md on the simulated board: a float model with
calibration (a dynamo-style file with external data), a QDQ model from onnxruntime's
quantizer, and a scikit-learn classifier from skl2onnx. A handful of samples each; every
integer must equal the golden model's, and the QDQ output onnxruntime's within 1 LSB."""

import logging
import warnings

import numpy as np
import onnx
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("skl2onnx")
from onnx_models import (dynamo_style, ort_output, quantize_qdq, sklearn_onnx,  # noqa: E402
                         torch_style)

from tritile.sw.compiler import compile_model  # noqa: E402
from tritile.sw.executor import backend_config, run_checked  # noqa: E402
from tritile.sw.onnx_import import import_onnx  # noqa: E402

SAMPLES = 6


@pytest.mark.slow
def test_three_routes_on_the_simulated_board(tmp_path, rng):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    from tritile.sw.device import Device
    from tritile.sw.digits import load_digits_split

    logging.getLogger().setLevel(logging.ERROR)     # quantize_static's pre-processing hint
    split = load_digits_split()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        classifier = MLPClassifier(hidden_layer_sizes=(16,), max_iter=40, random_state=0)
        classifier.fit(split.X_train, split.y_train)
    onnx.save(torch_style(), tmp_path / "float.onnx")
    calib = rng.standard_normal((64, 1, 8, 8)).astype(np.float32)
    routes = {
        "float": (dynamo_style(tmp_path / "mlp.onnx"), split.X_test[:SAMPLES], split.X_train),
        "qdq": (quantize_qdq(tmp_path / "float.onnx", tmp_path / "qdq.onnx", calib),
                calib[:SAMPLES], None),
        "sklearn": (sklearn_onnx(classifier, split.X_train).SerializeToString(),
                    split.X_test[:SAMPLES], split.X_train),
    }
    with Device.open("sim") as device:
        config = backend_config(device)
        for name, (source, X, calib) in routes.items():
            model = import_onnx(source, config=config)
            program = compile_model(model, config, "int8", calib=calib)
            result, golden, agreement = run_checked(program, device, X)
            assert agreement == 1.0, name
            outputs = model.named_outputs(result.outputs)
            if name == "qdq":
                s_y = np.float32(program.layers[-1].s_y)
                theirs = np.rint(ort_output(source, X) / s_y).astype(np.int64)
                assert np.max(np.abs(result.integers[-1] - theirs)) <= 1
            if name == "sklearn":
                assert outputs["output_label"].shape == (SAMPLES,)
                np.testing.assert_array_equal(
                    outputs["output_label"],
                    model.named_outputs(golden.outputs)["output_label"])
