"""ONNX import: models built with onnx.helper in two exporter styles, checked against
onnxruntime (the ONNX reference), and every kind of problem reported in one error."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx_models import (graph_model, initializer, keras_style, ort_output,  # noqa: E402
                         torch_style, weights)

from tritile.sw.config import PRESETS  # noqa: E402
from tritile.sw.onnx_import import OnnxImportError, import_onnx  # noqa: E402

@pytest.mark.parametrize("build, shape", [(torch_style, (5, 1, 8, 8)),
                                          (keras_style, (5, 8, 8))])
def test_exporter_styles_match_onnxort_output(build, shape, rng):
    proto = build()
    model = import_onnx(proto)
    assert [(l.in_features, l.out_features, l.activation) for l in model.layers] == \
        [(64, 16, "relu"), (16, 10, None)]
    X = rng.standard_normal(shape).astype(np.float32)
    np.testing.assert_allclose(model.forward(X), ort_output(proto, X), rtol=1e-5, atol=1e-5)


def test_file_and_bytes_sources(tmp_path, rng):
    proto = keras_style()
    path = tmp_path / "m.onnx"
    onnx.save(proto, path)
    X = rng.standard_normal((3, 64)).astype(np.float32)
    for source in (path, str(path), proto.SerializeToString()):
        np.testing.assert_allclose(import_onnx(source).forward(X),
                                   ort_output(proto, X.reshape(3, 8, 8)), rtol=1e-5,
                                   atol=1e-5)


def test_transposed_gemm_attributes_alpha_beta(rng):
    # Layer 1 puts the weight first: h = W1 @ x^T (samples in columns), bias C of (16, 1).
    # Layer 2 takes h with transA=1 and a (10, 16) weight with transB=1; alpha and beta
    # scale the product and the bias.
    W1, b1, W2, b2 = (weights(16, 64, rng=rng), weights(16, 1, rng=rng),
                      weights(10, 16, rng=rng), weights(10, rng=rng))
    nodes = [
        helper.make_node("Gemm", ["W1", "x", "b1"], ["h"], transB=1, alpha=0.5, beta=2.0),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "W2", "b2"], ["y"], transA=1, transB=1, alpha=1.5,
                         beta=-1.0),
    ]
    proto = graph_model(nodes, [initializer("W1", W1), initializer("b1", b1),
                                initializer("W2", W2), initializer("b2", b2)], ["N", 64])
    model = import_onnx(proto)
    X = rng.standard_normal((4, 64)).astype(np.float32)
    np.testing.assert_allclose(model.forward(X), ort_output(proto, X), rtol=1e-5, atol=1e-5)


def test_transpose_that_mixes_samples_is_reported(rng):
    nodes = [helper.make_node("Gemm", ["x", "W"], ["y"], transA=1)]
    proto = graph_model(nodes, [initializer("W", weights(4, 3, rng=rng))], ["N", 4])
    with pytest.raises(OnnxImportError, match=r"transA=1, operand A 'x' would hold samples"):
        import_onnx(proto)


def test_all_problems_in_one_error(rng):
    config = PRESETS["sim-small"]
    too_wide = config.max_n + 1
    nodes = [
        helper.make_node("Gemm", ["x", "W1"], ["h"], name="big"),
        helper.make_node("Tanh", ["h"], ["s"], name="act"),
        helper.make_node("MatMul", ["s", "Wdyn"], ["m"], name="dyn"),
        helper.make_node("Gemm", ["h2", "W3"], ["y"], name="fc3"),
    ]
    proto = graph_model(nodes, [initializer("W1", weights(8, too_wide, rng=rng)),
                                initializer("W3", weights(4, 2, rng=rng))],
                   ["N", 8],
                   inputs=[helper.make_tensor_value_info("Wdyn", TensorProto.FLOAT, [4, 4])])
    with pytest.raises(OnnxImportError) as info:
        import_onnx(proto, config=config)
    text = str(info.value)
    assert "operator Tanh is not supported" in text
    assert "'Wdyn' is a graph input, not an initializer" in text
    assert f"N = {too_wide} output features exceed max_n = {config.max_n}" in text
    assert "'h2' is not defined" in text
    assert len(info.value.problems) >= 4


def test_ternary_limits_use_trit_memory(rng):
    config = PRESETS["sim-small"].replace(weight_depth=64)
    proto = graph_model([helper.make_node("MatMul", ["x", "W"], ["y"])],
                        [initializer("W", weights(16, 8, rng=rng))], ["N", 16])
    with pytest.raises(OnnxImportError, match="weight_depth = 64"):
        import_onnx(proto, config=config, engine="int8")
    assert import_onnx(proto, config=config, engine="ternary").layers[0].W.shape == (16, 8)


@pytest.mark.parametrize("nodes, message", [
    ([helper.make_node("Relu", ["x"], ["y"])], "Relu must follow a Gemm, MatMul or Conv"),
    ([helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
      helper.make_node("Add", ["r", "b"], ["y"])], "before its activation"),
    ([helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Add", ["h", "h"], ["y"])],
     "one data input and one constant"),
    ([helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
      helper.make_node("Add", ["r", "h"], ["y"])], "feeds 2 nodes"),
    ([helper.make_node("Flatten", ["x"], ["y"], axis=0)], "merges the sample axis"),
    ([helper.make_node("Dropout", ["x"], ["h", "mask"]),
      helper.make_node("MatMul", ["h", "W"], ["m"]), helper.make_node("Add", ["m", "mask"], ["y"])],
     "training-time mask"),
], ids=["relu-first", "add-after-relu", "add-two-data", "branch", "flatten-axis0",
        "dropout-mask"])
def test_unsupported_structures(nodes, message, rng):
    proto = graph_model(nodes, [initializer("W", weights(4, 4, rng=rng)),
                                initializer("b", weights(4, rng=rng))],
                        ["N", 4])
    with pytest.raises(OnnxImportError, match=message):
        import_onnx(proto)


def test_reshape_keeps_sample_axis(rng):
    shape = numpy_helper.from_array(np.array([0, 16], np.int64), "shape")
    bad = numpy_helper.from_array(np.array([4, 4], np.int64), "bad")
    good = graph_model([helper.make_node("Reshape", ["x", "shape"], ["f"]),
                        helper.make_node("MatMul", ["f", "W"], ["y"])],
                       [shape, initializer("W", weights(16, 2, rng=rng))], ["N", 4, 4])
    X = rng.standard_normal((3, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(import_onnx(good).forward(X), ort_output(good, X), rtol=1e-5)
    wrong = graph_model([helper.make_node("Reshape", ["x", "bad"], ["f"]),
                         helper.make_node("MatMul", ["f", "W"], ["y"])],
                        [bad, initializer("W", weights(4, 2, rng=rng))], ["N", 4, 4])
    with pytest.raises(OnnxImportError, match=r"target shape \[4, 4\] does not keep"):
        import_onnx(wrong)


def test_malformed_files(tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(OnnxImportError, match="not an ONNX model"):
        import_onnx(garbage)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(torch_style().SerializeToString()[:200])
    with pytest.raises(OnnxImportError, match="not an ONNX model"):
        import_onnx(truncated)
    with pytest.raises(OnnxImportError, match="cannot read the file"):
        import_onnx(tmp_path / "missing.onnx")
    text = tmp_path / "text.onnx"
    text.write_text("hello, this is not a model\n")
    with pytest.raises(OnnxImportError, match="not an ONNX model"):
        import_onnx(text)


def test_non_float_or_dynamic_feature_input(rng):
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.INT32, ["N", "F"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "out"])],
        initializer=[initializer("W", weights(4, 2, rng=rng))])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(OnnxImportError) as info:
        import_onnx(proto)
    assert "element type 6" in str(info.value)
    assert "axis 1 has no fixed size (F)" in str(info.value)


def test_demo_model_matches_onnxruntime():
    from tritile.sw.digits import load_digits_split, train_demo_models

    split = load_digits_split()
    float_model, _ = train_demo_models(split)
    nodes, inits, data = [], [], "x"
    for index, layer in enumerate(float_model.layers):
        inits += [initializer(f"W{index}", layer.W), initializer(f"b{index}", layer.b)]
        nodes += [helper.make_node("MatMul", [data, f"W{index}"], [f"m{index}"]),
                  helper.make_node("Add", [f"m{index}", f"b{index}"], [f"h{index}"])]
        data = f"h{index}"
        if layer.activation == "relu":
            nodes.append(helper.make_node("Relu", [data], [f"r{index}"]))
            data = f"r{index}"
    nodes[-1].output[0] = "y"
    proto = graph_model(nodes, inits, ["N", 64])
    reference = ort_output(proto, split.X_test)
    np.testing.assert_allclose(float_model.forward(split.X_test), reference, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(import_onnx(proto).forward(split.X_test), reference, rtol=1e-5,
                               atol=1e-6)
