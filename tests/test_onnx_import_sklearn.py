"""scikit-learn exports as produced by skl2onnx: the dense layers on the device, the
classifier's tail (Softmax, ArgMax, label lookup, ZipMap) on the host, every output
written under the model's name for it; float references equal onnxruntime's outputs."""

import numpy as np
import onnx
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("skl2onnx")
from onnx import helper  # noqa: E402
from onnx_models import (initializer, ort_probabilities, ort_run, sklearn_digits_mlp,  # noqa: E402
                         sklearn_onnx)

from tritile.sw.cli import main  # noqa: E402
from tritile.sw.compiler import compile_model  # noqa: E402
from tritile.sw.config import PRESETS  # noqa: E402
from tritile.sw.executor import GoldenBackend, execute  # noqa: E402
from tritile.sw.onnx_import import OnnxImportError, import_onnx  # noqa: E402

CONFIG = PRESETS["sim-small"]


@pytest.fixture(scope="module")
def digits_mlp():
    return sklearn_digits_mlp()


@pytest.mark.parametrize("zipmap, names", [(True, ("output_label", "output_probability")),
                                           (False, ("label", "probabilities"))])
def test_classifier_float_reference_is_onnxruntime(digits_mlp, zipmap, names):
    classifier, split = digits_mlp
    proto = sklearn_onnx(classifier, split.X_train, zipmap=zipmap)
    model = import_onnx(proto.SerializeToString(), config=CONFIG)
    assert [(l.in_features, l.out_features) for l in model.layers] == \
        [(64, 48), (48, 24), (24, 10)]
    assert model.output_names == names
    X = split.X_test[:100]
    ours, reference = model.predict(X), ort_run(proto, X)
    label, probabilities = names
    np.testing.assert_array_equal(ours[label], reference[label])
    np.testing.assert_allclose(ours[probabilities], ort_probabilities(reference[probabilities]),
                               rtol=1e-5, atol=1e-6)


def test_classifier_int8_accuracy_matches_scikit_learn(digits_mlp):
    classifier, split = digits_mlp
    model = import_onnx(sklearn_onnx(classifier, split.X_train).SerializeToString())
    program = compile_model(model, CONFIG, "int8", calib=split.X_train)
    result = execute(program, GoldenBackend(CONFIG), split.X_test)
    labels = model.named_outputs(result.outputs)["output_label"]
    ours = np.mean(labels == split.y_test)
    assert ours >= classifier.score(split.X_test, split.y_test) - 0.015
    # The dead unit of this training: weights decayed to nothing, bias about -0.13.
    dead = np.max(np.abs(classifier.coefs_[0]), axis=0) < 2e-10
    assert np.all(program.layers[0].Wq[:, dead] == 0)


def test_regressor_and_binary_classifier_match_onnxruntime(digits_mlp):
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    _, split = digits_mlp
    X = split.X_test[:50]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        regressor = MLPRegressor(hidden_layer_sizes=(16,), max_iter=50, random_state=0)
        binary = MLPClassifier(hidden_layer_sizes=(8,), max_iter=50, random_state=0)
        regressor.fit(split.X_train, split.y_train.astype(np.float32))
        binary.fit(split.X_train, split.y_train % 2)
    for estimator in (regressor, binary):
        proto = sklearn_onnx(estimator, split.X_train, zipmap=estimator is regressor)
        ours, reference = import_onnx(proto).predict(X), ort_run(proto, X)
        assert list(ours) == list(reference)
        for name in ours:
            np.testing.assert_allclose(ours[name], reference[name], rtol=1e-5, atol=1e-6)


def test_cli_writes_outputs_by_name(digits_mlp, tmp_path, capsys):
    classifier, split = digits_mlp
    path = tmp_path / "digits.onnx"
    onnx.save(sklearn_onnx(classifier, split.X_train), path)
    np.save(tmp_path / "x.npy", split.X_test[:20])
    np.save(tmp_path / "calib.npy", split.X_train)
    argv = ["run", str(path), "--input", str(tmp_path / "x.npy"), "--calib",
            str(tmp_path / "calib.npy"), "--device", "golden"]
    assert main(argv + ["--out", str(tmp_path / "y.npy")]) == 2
    assert "has 2 outputs (output_label, output_probability); give --out a .npz" in \
        capsys.readouterr().err
    assert not (tmp_path / "y.npy").exists()
    assert main(argv + ["--out", str(tmp_path / "missing" / "y.npz")]) == 2
    assert "directory" in capsys.readouterr().err
    assert main(argv + ["--out", str(tmp_path / "y.npz")]) == 0
    written = np.load(tmp_path / "y.npz")
    assert sorted(written) == ["output_label", "output_probability"]
    assert written["output_label"].shape == (20,) and written["output_label"].dtype == np.int64
    assert np.mean(written["output_label"] == classifier.predict(split.X_test[:20])) >= 0.9
    np.testing.assert_allclose(written["output_probability"].sum(axis=1), 1, rtol=1e-5)


def test_layers_cannot_follow_the_output_operators(rng):
    from onnx_models import graph_model, weights

    nodes = [helper.make_node("MatMul", ["x", "W1"], ["h"]),
             helper.make_node("Softmax", ["h"], ["p"]),
             helper.make_node("MatMul", ["p", "W2"], ["y"])]
    proto = graph_model(nodes, [initializer("W1", weights(4, 4, rng=rng)),
                                initializer("W2", weights(4, 2, rng=rng))], ["N", 4])
    with pytest.raises(OnnxImportError,
                       match="MatMul reads 'p', which the host computes after the last layer"):
        import_onnx(proto)
