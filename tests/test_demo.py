"""`tritile demo` and `tritile run` on the golden model (fast) and on the simulated board
(slow, once the host driver exists): accuracy targets, golden agreement, clear errors."""

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from tritile.sw.cli import main  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

from tritile.sw.digits import (accuracy, load_demo_models, load_digits_split,  # noqa: E402
                               load_models, save_models, train_demo_models)


@pytest.fixture(scope="module")
def digits():
    split = load_digits_split()
    return split, load_demo_models()


def _run_cli(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_demo_meets_accuracy_targets_on_golden(capsys):
    status, out, err = _run_cli(capsys, "demo", "--device", "golden", "--json")
    assert status == 0
    report = json.loads(out)
    assert report["samples"] == 450
    assert report["float_accuracy"] > 0.95
    assert report["int8"]["accuracy"] >= report["float_accuracy"] - 0.01
    assert report["ternary"]["accuracy"] >= report["float_accuracy"] - 0.03
    assert report["int8"]["cycles_per_inference"] > 0
    cnn = report["cnn"]     # the CNN targets: int8 within 1 point of float, ternary 3
    assert cnn["float_accuracy"] > 0.97 and cnn["device_samples"] == 450
    assert cnn["int8"]["accuracy"] >= cnn["float_accuracy"] - 0.01
    assert cnn["ternary"]["accuracy"] >= cnn["float_accuracy"] - 0.03
    assert cnn["int8"]["golden_agreement"] == cnn["ternary"]["golden_agreement"] == 1.0
    assert "loading the trained 64-32-10 MLPs" in err      # progress goes to stderr


def test_demo_runs_programs_on_a_config_with_program_mode(capsys, tmp_path):
    """Every row runs as a device program (on the program model), with the figures of the
    layer-by-layer runs, 100 % golden agreement and the link target per inference."""
    config = tmp_path / "programs.json"
    config.write_text(json.dumps({"max_layers": 16}))
    status, out, _ = _run_cli(capsys, "demo", "--device", "golden", "--config", str(config),
                              "--json")
    assert status == 0
    report = json.loads(out)
    cnn = report["cnn"]
    runs = [report["int8"], report["ternary"], cnn["int8"], cnn["ternary"]]
    assert all(run["mode"] == "program" and run["golden_agreement"] == 1.0 for run in runs)
    assert cnn["device_samples"] == 450
    assert round(100 * cnn["int8"]["accuracy"], 2) == 98.22
    assert round(100 * cnn["ternary"]["accuracy"], 2) == 96.44
    for run in (report["int8"], cnn["int8"], cnn["ternary"]):   # 64 bytes in, 10 int32 out
        assert run["link_bytes_per_inference"] <= (64 + 40) * 1.1 + 128
        assert run["bytes_source"] == "protocol model, framing included"


def _assert_same_accuracy(shipped, retrained, split):
    for old, new in zip(shipped, retrained):
        assert abs(accuracy(old.forward(split.X_test), split.y_test)
                   - accuracy(new.forward(split.X_test), split.y_test)) <= 0.01


def test_shipped_models_are_what_this_machine_trains(digits, tmp_path):
    """The shipped weights are the seeded training's result (up to float summation order):
    retraining here gives the same accuracy within a point, and a save/load round trip is
    exact."""
    split, shipped = digits
    # Figures of the shipped file (docs/models.md); they do not depend on the machine.
    assert accuracy(shipped[0].forward(split.X_test), split.y_test) == pytest.approx(0.9733, abs=1e-4)
    retrained = train_demo_models(split)
    _assert_same_accuracy(shipped, retrained, split)
    save_models(tmp_path / "m.npz", a=retrained[1])
    (loaded,) = load_models(tmp_path / "m.npz", "a")
    for layer, back in zip(retrained[1].layers, loaded.layers):
        np.testing.assert_array_equal(layer.W, back.W)
        np.testing.assert_array_equal(layer.b, back.b)
        assert layer.activation == back.activation
    with pytest.raises(ValueError, match="holds no model named 'b'"):
        load_models(tmp_path / "m.npz", "b")


def test_demo_table_and_bad_sample_count(capsys):
    status, out, _ = _run_cli(capsys, "demo", "--device", "golden", "--samples", "30")
    assert status == 0
    for row in ("accuracy", "golden agreement", "cycles / inference", "bytes streamed",
                "wall time", "CNN 8-16", "ternary (static)"):
        assert row in out
    assert "30 held-out images" in out
    status, _, err = _run_cli(capsys, "demo", "--device", "golden", "--samples", "0")
    assert status == 2 and "--samples must be between 1 and 450, not 0" in err
    status, _, err = _run_cli(capsys, "demo", "--device", "golden", "--samples", "30",
                              "--cnn-samples", "31")
    assert status == 2 and "--cnn-samples must be between 1 and 30, not 31" in err


def _init(name, array):
    return numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name)


def _export(model, style, path):
    """Write the digits MLP as PyTorch (Gemm, transB=1) or tf2onnx (MatMul + Add) would."""
    (l1, l2) = model.layers
    if style == "gemm":
        nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], transB=1),
                 helper.make_node("Relu", ["h"], ["r"]),
                 helper.make_node("Gemm", ["r", "W2", "b2"], ["y"], transB=1)]
        weights = [_init("W1", l1.W.T), _init("W2", l2.W.T)]
    else:
        nodes = [helper.make_node("MatMul", ["x", "W1"], ["m1"]),
                 helper.make_node("Add", ["m1", "b1"], ["h"]),
                 helper.make_node("Relu", ["h"], ["r"]),
                 helper.make_node("MatMul", ["r", "W2"], ["m2"]),
                 helper.make_node("Add", ["m2", "b2"], ["y"])]
        weights = [_init("W1", l1.W), _init("W2", l2.W)]
    graph = helper.make_graph(
        nodes, "digits", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        initializer=weights + [_init("b1", l1.b), _init("b2", l2.b)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


@pytest.mark.parametrize("style", ["gemm", "matmul"])
@pytest.mark.parametrize("engine", ["int8", "ternary"])
def test_run_onnx_from_two_exporter_styles(tmp_path, capsys, digits, style, engine):
    split, (float_model, ternary_model) = digits
    model = float_model if engine == "int8" else ternary_model
    _export(model, style, tmp_path / "m.onnx")
    np.save(tmp_path / "x.npy", split.X_test)
    np.save(tmp_path / "c.npy", split.X_train)
    status, out, _ = _run_cli(capsys, "run", str(tmp_path / "m.onnx"), "--input",
                              str(tmp_path / "x.npy"), "--calib", str(tmp_path / "c.npy"),
                              "--engine", engine, "--device", "golden",
                              "--out", str(tmp_path / "y.npy"), "--json")
    assert status == 0
    report = json.loads(out)
    assert report["samples"] == len(split.X_test)
    assert [layer["k"] for layer in report["layers"]] == [64, 32]
    # The quantized outputs follow the float model as the ONNX project's own evaluator runs
    # the file: the same class on nearly every image, logits within the quantization error.
    Y = np.load(tmp_path / "y.npy")
    (Y_float,) = ReferenceEvaluator(str(tmp_path / "m.onnx")).run(
        None, {"x": split.X_test.astype(np.float32)})
    same_class = np.mean(Y.argmax(axis=1) == Y_float.argmax(axis=1))
    spread = np.max(np.abs(Y_float))
    if engine == "int8":
        assert same_class >= 0.97 and np.max(np.abs(Y - Y_float)) <= 0.05 * spread
    else:       # BitLinear: ternary weights and per-token activations, a coarser model
        assert same_class >= 0.90
    assert accuracy(Y, split.y_test) >= accuracy(Y_float, split.y_test) - 0.03


def test_run_reports_import_problems_before_running(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    np.save(tmp_path / "x.npy", np.zeros((2, 4), np.float32))
    status, _, err = _run_cli(capsys, "run", str(bad), "--input", str(tmp_path / "x.npy"))
    assert status == 2 and "cannot import" in err and "not an ONNX model" in err
    status, _, err = _run_cli(capsys, "run", str(bad), "--input", str(tmp_path / "no.npy"))
    assert status == 2 and "cannot read input" in err


@pytest.mark.slow
def test_demo_on_simulated_board(capsys):
    pytest.importorskip("tritile.sw.device")
    status, out, _ = _run_cli(capsys, "demo", "--samples", "60", "--cnn-samples", "12",
                              "--json")
    report = json.loads(out)
    assert status == 0
    cnn = report["cnn"]
    assert report["int8"]["golden_agreement"] == report["ternary"]["golden_agreement"] == 1.0
    assert cnn["int8"]["golden_agreement"] == cnn["ternary"]["golden_agreement"] == 1.0
    assert cnn["device_samples"] == 12 and cnn["int8"]["cycles_source"] == "device counters"


@pytest.mark.slow
def test_shipped_cnns_are_what_this_machine_trains(digits, tmp_path):
    """The shipped CNNs are the seeded training's result (up to float summation order), and
    a save/load round trip of conv and pooling layers is exact."""
    from tritile.sw.digits import image_batch, load_demo_cnns, train_demo_cnns

    split, _ = digits
    shipped = load_demo_cnns()
    assert accuracy(shipped[0].forward(split.X_test), split.y_test) == pytest.approx(0.9822, abs=1e-4)
    retrained = train_demo_cnns(split)
    _assert_same_accuracy(shipped, retrained, split)
    save_models(tmp_path / "m.npz", cnn=retrained[0])
    (loaded,) = load_models(tmp_path / "m.npz", "cnn")
    np.testing.assert_array_equal(loaded.forward(image_batch(split.X_test)),
                                  retrained[0].forward(split.X_test))
    assert repr(loaded) == repr(retrained[0])
