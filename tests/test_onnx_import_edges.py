"""ONNX import at the edges of what it supports: the operator forms an exporter may write
(negative and late Flatten axes, -1 and size-1 axes in a Reshape, an empty optional input,
per-axis and zero-pointed quantized constants, tensors in external data) import and
compute as onnxruntime does, and a convolution is checked against the config's K limit
with its K = kh * kw * C."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, external_data_helper, helper  # noqa: E402
from onnx_models import graph_model, initializer, ort_output  # noqa: E402

from tritile.sw import PRESETS  # noqa: E402
from tritile.sw.onnx_import import OnnxImportError, import_onnx  # noqa: E402


def _matches_onnxruntime(proto, X):
    np.testing.assert_allclose(import_onnx(proto).forward(X), ort_output(proto, X),
                               rtol=1e-5, atol=1e-5)


def _head(data, features, rng, nodes=(), inits=()):
    """``nodes`` then a MatMul of ``data`` (``features`` wide) by a 3-column weight Wh."""
    return [*nodes, helper.make_node("MatMul", [data, "Wh"], ["y"])], \
        [*inits, initializer("Wh", rng.standard_normal((features, 3)))]


@pytest.mark.parametrize("to", [TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16,
                                TensorProto.BFLOAT16])
def test_cast_of_the_data_to_a_float_type_is_transparent(rng, to):
    # onnxruntime has no MatMul of float32 by float16: the expected value is numpy's.
    W = rng.standard_normal((4, 3)).astype(np.float32)
    proto = graph_model([helper.make_node("Cast", ["x"], ["c"], to=to),
                         helper.make_node("MatMul", ["c", "W"], ["y"])],
                        [initializer("W", W)], ["N", 4])
    X = rng.standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(import_onnx(proto).forward(X), X @ W, rtol=1e-5, atol=1e-5)


def _conv(c_in, inputs=("x", "Wc", "bc"), **attrs):
    return helper.make_node("Conv", list(inputs), ["c"], kernel_shape=[3, 3], **attrs)


def _conv_inits(rng, c_in, c_out=4):
    return [initializer("Wc", rng.standard_normal((c_out, c_in, 3, 3))),
            initializer("bc", rng.standard_normal(c_out))]


def test_conv_k_is_kernel_area_times_channels_against_the_config(rng):
    # 3 x 3 x 29 = 261 > 256 = max_k of sim-small; 3 x 3 x 28 = 252 fits.
    config = PRESETS["sim-small"]
    for c_in, fits in ((28, True), (29, False)):
        nodes, inits = _head("f", 4 * 2 * 2, rng, [
            _conv(c_in), helper.make_node("Flatten", ["c"], ["f"])], _conv_inits(rng, c_in))
        proto = graph_model(nodes, inits, ["N", c_in, 4, 4])
        if fits:
            import_onnx(proto, config)
            continue
        with pytest.raises(OnnxImportError, match=r"layer 0 \(261x4\) does not fit config "
                                                  f"{config.config_id} "):
            import_onnx(proto, config)


def test_conv_with_an_empty_bias_name_has_no_bias(rng):
    nodes, inits = _head("f", 16, rng, [_conv(2, ("x", "Wc", "")),
                                        helper.make_node("Flatten", ["c"], ["f"])],
                         _conv_inits(rng, 2)[:1])
    proto = graph_model(nodes, inits, ["N", 2, 4, 4])
    _matches_onnxruntime(proto, rng.standard_normal((3, 2, 4, 4)).astype(np.float32))


@pytest.mark.parametrize("axis, shape", [(-3, ["N", 2, 3, 3]), (-1, ["N", 6]),
                                         (2, ["N", 1, 3, 3])])
def test_flatten_with_a_negative_or_late_axis_of_a_map(rng, axis, shape):
    # axis -3 of NCHW is axis 1; axis 2 merges only a channel axis of size 1.
    features = int(np.prod(shape[1:]))
    nodes, inits = _head("f", features, rng, [
        helper.make_node("Flatten", ["x"], ["f"], axis=axis)])
    proto = graph_model(nodes, inits, shape)
    _matches_onnxruntime(proto, rng.standard_normal((3, *shape[1:])).astype(np.float32))


@pytest.mark.parametrize("target, input_shape", [
    ([0, -1], ["N", 4, 4]),          # the feature count left to the importer
    ([0, 1, 16], ["N", 4, 4]),       # a feature axis of size 1, flattened after
    ([1, 16], [1, 4, 4]),            # a fixed batch of one kept by its size
])
def test_reshape_forms_an_exporter_writes(rng, target, input_shape):
    nodes = [helper.make_node("Reshape", ["x", "s"], ["r"])]
    if len(target) == 3:
        nodes.append(helper.make_node("Flatten", ["r"], ["f"]))
    nodes, inits = _head("f" if len(target) == 3 else "r", 16, rng, nodes,
                         [initializer("s", target, np.int64)])
    proto = graph_model(nodes, inits, input_shape)
    samples = 1 if input_shape[0] == 1 else 3
    _matches_onnxruntime(proto, rng.standard_normal((samples, 4, 4)).astype(np.float32))


def test_reshape_of_a_conv_map_to_one_axis_feeds_a_gemm(rng):
    nodes, inits = _head("f", 4 * 2 * 2, rng, [
        _conv(2), helper.make_node("Reshape", ["c", "s"], ["f"])],
        [*_conv_inits(rng, 2), initializer("s", [0, -1], np.int64)])
    proto = graph_model(nodes, inits, ["N", 2, 4, 4])
    _matches_onnxruntime(proto, rng.standard_normal((3, 2, 4, 4)).astype(np.float32))


def test_per_channel_quantized_weight_takes_axis_1_by_default(rng):
    # DequantizeLinear of a K x N int8 weight with N scales and no axis attribute, read
    # by a MatMul of quantized data: the layer keeps the integers and one scale a column.
    Wq = rng.integers(-127, 128, (4, 3)).astype(np.int8)
    scales = np.array([0.5, 0.25, 0.125], np.float32)
    proto = graph_model([helper.make_node("QuantizeLinear", ["x", "sx", "zx"], ["xq"]),
                         helper.make_node("DequantizeLinear", ["xq", "sx", "zx"], ["xd"]),
                         helper.make_node("DequantizeLinear", ["Wq", "sw"], ["W"]),
                         helper.make_node("MatMul", ["xd", "W"], ["y"])],
                        [initializer("Wq", Wq, np.int8), initializer("sw", scales),
                         initializer("sx", 0.5), initializer("zx", 0, np.int8)], ["N", 4])
    layer, = import_onnx(proto).layers
    np.testing.assert_array_equal(layer.quant.Wq, Wq)
    np.testing.assert_array_equal(layer.quant.s_w, scales)
    np.testing.assert_array_equal(layer.W, Wq * scales)


def test_quantized_constant_with_a_zero_point_round_trips(rng):
    # A bias quantized and dequantized in the graph around its zero point 3.
    proto = graph_model([helper.make_node("QuantizeLinear", ["b", "s", "zp"], ["bq"]),
                         helper.make_node("DequantizeLinear", ["bq", "s", "zp"], ["bd"]),
                         helper.make_node("Gemm", ["x", "W", "bd"], ["y"])],
                        [initializer("b", [1.0, -2.0, 0.5]), initializer("s", 0.25),
                         initializer("zp", 3, np.int8),
                         initializer("W", rng.standard_normal((4, 3)))], ["N", 4])
    _matches_onnxruntime(proto, rng.standard_normal((5, 4)).astype(np.float32))


def test_a_model_of_ir_version_1_reaches_the_checker(rng):
    # IR version 1 is a version (the loader refuses only 0, an unset field): the checker
    # says what is wrong with it.
    nodes, inits = _head("x", 4, rng)
    proto = graph_model(nodes, inits, ["N", 4])
    proto.ir_version = 1
    with pytest.raises(OnnxImportError, match="the ONNX checker rejects the model"):
        import_onnx(proto.SerializeToString())


def test_constant_node_tensor_in_external_data_is_loaded(tmp_path, rng):
    # The only external tensor is a Constant node's value, not an initializer.
    W = rng.standard_normal((4, 3)).astype(np.float32)
    proto = graph_model([helper.make_node("Constant", [], ["W"], value=initializer("w", W)),
                         helper.make_node("MatMul", ["x", "W"], ["y"])], [], ["N", 4])
    external_data_helper.convert_model_to_external_data(
        proto, location="m.data", size_threshold=0, convert_attribute=True)
    path = tmp_path / "m.onnx"
    onnx.save(proto, path)
    assert (tmp_path / "m.data").stat().st_size == W.nbytes
    X = rng.standard_normal((5, 4)).astype(np.float32)
    np.testing.assert_allclose(import_onnx(path).forward(X), X @ W, rtol=1e-5, atol=1e-5)


def test_external_data_outside_the_model_directory_is_refused(tmp_path, rng):
    nodes, inits = _head("x", 4, rng)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    onnx.save(graph_model(nodes, inits, ["N", 4]), model_dir / "m.onnx",
              save_as_external_data=True, location="w.data", size_threshold=0)
    proto = onnx.load(model_dir / "m.onnx", load_external_data=False)
    (model_dir / "w.data").rename(tmp_path / "w.data")
    for entry in proto.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = "../w.data"
    onnx.save(proto, model_dir / "m.onnx")
    with pytest.raises(OnnxImportError, match=r"tensor 'Wh' is stored in external data file "
                                              r"'\.\./w\.data', outside the model's "
                                              f"directory {model_dir}"):
        import_onnx(model_dir / "m.onnx")
