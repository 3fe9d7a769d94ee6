"""ONNX import: each problem a user's model can have is reported by the importer's own
message, naming the node, before anything runs (the error paths test_onnx_import.py and
test_onnx_import_conv.py leave out)."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402
from onnx_models import graph_model, initializer  # noqa: E402

from tritile.sw.config import PRESETS  # noqa: E402
from tritile.sw.onnx_import import OnnxImportError, import_onnx  # noqa: E402


def _const(*shape):
    # The values never matter here: every model is rejected before any arithmetic.
    return np.full(shape, 0.25, np.float32)


def _mlp(nodes, inits=(), input_shape=("N", 4), **kwargs):
    """A graph on input x (samples by 4 features) with a 4x4 weight W and a bias b."""
    return graph_model(nodes, [initializer("W", _const(4, 4)), initializer("b", _const(4)),
                               *inits], list(input_shape), **kwargs)


def _map(nodes, inits=(), channels=2):
    """A graph on an NCHW input x of ``channels`` 4x4 maps with a 3x3 conv weight Wc."""
    return graph_model(nodes, [initializer("Wc", _const(4, channels, 3, 3)), *inits],
                       ["N", channels, 4, 4])


def _matmul(data="x", weight="W", out="y", **attrs):
    return helper.make_node("MatMul", [data, weight], [out], name="fc", **attrs)


CASES = {
    "weight-undefined": (lambda: _mlp([_matmul(weight="V")]),
                         "node 0 'fc' (MatMul): weight 'V' is not defined in the graph"),
    "weight-computed": (lambda: _mlp([helper.make_node("Relu", ["x"], ["r"]),
                                      helper.make_node("MatMul", ["x", "r"], ["y"])]),
                        "'r' is computed at run time; weights, biases and shapes must be "
                        "initializers or Constant nodes"),
    "data-undefined": (lambda: _mlp([_matmul(data="z")]),
                       "node 0 'fc' (MatMul): input 'z' is not defined in the graph"),
    "data-is-constant": (lambda: _mlp([helper.make_node("Relu", ["b"], ["y"], name="act")]),
                         "'act' (Relu): input 'b' is a constant; this operator needs the "
                         "data tensor"),
    "second-input": (lambda: _mlp([_matmul(data="x2")], inputs=[
        helper.make_tensor_value_info("x2", TensorProto.FLOAT, ["N", 4])]),
        "input 'x2' is a second graph input; a model takes one data input"),
    "quantized-int8-read": (lambda: _mlp(
        [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"]), _matmul(data="q")],
        [initializer("s", 0.1), initializer("zp", 0, np.int8)]),
        "input 'q' is the integer output of a QuantizeLinear; only a DequantizeLinear can "
        "read it"),
    "input-not-tensor": (lambda: _with_sequence_input(), "graph input 'x': is not a tensor"),
    "input-no-feature-axis": (lambda: _mlp([_matmul()], input_shape=("N",)),
                              "graph input 'x': needs a shape with a sample axis first and "
                              "at least one feature axis"),
    "output-not-produced": (lambda: _mlp([_matmul(out="h")], output="z"),
                            "graph: output 'z' is not produced by any supported node"),
    "output-samples-in-columns": (lambda: _mlp(
        [helper.make_node("Gemm", ["W", "x"], ["y"], transB=1)]),
        "graph: output 'y' holds samples in columns; transpose the last layer"),
    "output-two-axes": (lambda: _mlp([_matmul(out="h"),
                                      helper.make_node("Reshape", ["h", "s"], ["y"])],
                                     [initializer("s", [0, 2, 2], np.int64)]),
                        "graph: output 'y' has feature shape (2, 2); a model outputs one "
                        "feature axis"),
    "foreign-domain": (lambda: _mlp([_matmul(domain="com.microsoft")]),
                       "operator domain 'com.microsoft' is not supported; only the standard "
                       "ONNX domain is"),
    "constant-string": (lambda: _mlp([helper.make_node("Constant", [], ["c"], name="k",
                                                       value_string="W"), _matmul()]),
                        "'k' (Constant): only value, value_float(s) and value_int(s) "
                        "constants are supported, not value_string"),
    "transpose-data": (lambda: _mlp([helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0]),
                                     _matmul(data="t")]),
                       "Transpose is supported on weights (constants) only"),
    "cast-data": (lambda: _mlp([helper.make_node("Cast", ["x"], ["c"], to=TensorProto.INT32),
                                _matmul(data="c")]),
                  "Cast of the data to element type 6 is not supported; the layers compute "
                  "in float"),
    "dropout-training": (lambda: _mlp(
        [helper.make_node("Dropout", ["x", "ratio", "train"], ["d"]), _matmul(data="d")],
        [initializer("ratio", 0.5), initializer("train", True, np.bool_)]),
        "training_mode is true; only inference is supported"),
    "clip-first": (lambda: _mlp(
        [helper.make_node("Clip", ["x", "lo", "hi"], ["c"]), _matmul(data="c")],
        [initializer("lo", 0.0), initializer("hi", 6.0)]),
        "Clip(0, 6) must follow a Gemm, MatMul or Conv"),
    "pool-of-vector": (lambda: _mlp([helper.make_node("MaxPool", ["x"], ["p"], name="pool",
                                                      kernel_shape=[2, 2]),
                                     _matmul(data="p")]),
                       "'pool' (MaxPool): needs an NCHW feature map (the graph input or the "
                       "output of a Conv or pooling), not features of shape (4,)"),
    "pool-storage-order": (lambda: _map([helper.make_node("MaxPool", ["x"], ["y"],
                                                          kernel_shape=[2, 2],
                                                          storage_order=1)]),
                           "storage_order=1 is not supported"),
    "pool-3d-window": (lambda: _map([helper.make_node("MaxPool", ["x"], ["y"],
                                                      kernel_shape=[2, 2, 2])]),
                       "only 2-D windows are supported, not kernel [2, 2, 2]"),
    "conv-1d-weight": (lambda: graph_model(
        [helper.make_node("Conv", ["x", "W1"], ["y"], kernel_shape=[3])],
        [initializer("W1", _const(4, 2, 3))], ["N", 2, 4, 4]),
        "only 2-D convolutions are supported, not weight shape (4, 2, 3)"),
    "conv-kernel-mismatch": (lambda: _map([helper.make_node("Conv", ["x", "Wc"], ["y"],
                                                            kernel_shape=[2, 2])]),
                             "kernel_shape [2, 2] does not match the weight's [3, 3]"),
    "batchnorm-training": (lambda: _mlp(
        [_matmul(out="h"), helper.make_node("BatchNormalization", ["h", "g", "b", "b", "g"],
                                            ["y"], training_mode=1)],
        [initializer("g", _const(4))]),
        "training_mode=1; only inference is supported"),
    "batchnorm-channels": (lambda: _mlp(
        [_matmul(out="h"), helper.make_node("BatchNormalization", ["h", "g", "g", "g", "g"],
                                            ["y"])],
        [initializer("g", _const(3))]),
        "parameters of shapes [(3,), (3,), (3,), (3,)] do not match the 4 "
        "channels of the layer before"),
    "add-three-inputs": (lambda: _mlp([_matmul(out="h"),
                                       helper.make_node("Add", ["h", "b", "b"], ["y"])]),
                         "needs 2 inputs, not 3"),
    "flatten-columns": (lambda: _mlp([helper.make_node("Gemm", ["W", "x"], ["h"], transB=1),
                                      helper.make_node("Flatten", ["h"], ["y"])]),
                        "the input holds samples in columns; Flatten would mix them"),
    "reshape-allowzero": (lambda: _mlp(
        [helper.make_node("Reshape", ["x", "s"], ["f"], allowzero=1), _matmul(data="f")],
        [initializer("s", [-1, 4], np.int64)]),
        "allowzero=1 is not supported"),
    "reshape-columns": (lambda: _mlp(
        [helper.make_node("Gemm", ["W", "x"], ["h"], transB=1),
         helper.make_node("Reshape", ["h", "s"], ["y"])],
        [initializer("s", [-1, 4], np.int64)]),
        "the input holds samples in columns; Reshape would mix them"),
    "reshape-map": (lambda: _map([helper.make_node("Conv", ["x", "Wc"], ["c"],
                                                   kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
                                  helper.make_node("Reshape", ["c", "s"], ["f"]),
                                  _matmul(data="f", weight="W8")],
                                 [initializer("s", [0, 8, 8], np.int64),
                                  initializer("W8", _const(8, 4))]),
                    "reshapes the feature map (4, 4, 4) (C, H, W) to (8, 8); only its "
                    "flatten to one feature axis is supported"),
    "reshape-samples-moved": (lambda: _mlp(
        [helper.make_node("Reshape", ["x", "s"], ["f"]), _matmul(data="f")],
        [initializer("s", [3, 4], np.int64)]),
        "target shape [3, 4] does not keep the sample axis first with the 4 features of "
        "(4,)"),
    "reshape-negative-sizes": (lambda: _mlp(
        [helper.make_node("Reshape", ["x", "s"], ["f"]), _matmul(data="f")],
        [initializer("s", [0, -2, -2], np.int64)]),
        "target shape [0, -2, -2] does not keep the sample axis first"),
    "conv-group-0": (lambda: _map([helper.make_node("Conv", ["x", "Wc"], ["y"],
                                                    kernel_shape=[3, 3], group=0)]),
                     "group=0 is not supported (only group=1"),
    "weight-zero-point": (lambda: _mlp(
        [helper.make_node("QuantizeLinear", ["x", "s", "z0"], ["xq"]),
         helper.make_node("DequantizeLinear", ["xq", "s", "z0"], ["xd"]),
         helper.make_node("DequantizeLinear", ["Wq", "s", "z3"], ["Wd"]),
         _matmul(data="xd", weight="Wd")],
        [initializer("Wq", np.ones((4, 4)), np.int8), initializer("s", 0.5),
         initializer("z0", 0, np.int8), initializer("z3", 3, np.int8)]),
        "weight 'Wd' is quantized as int8 with zero points [3]; symmetric int8 weights are "
        "needed"),
    "matmul-two-constants": (lambda: _mlp([_matmul(data="b", weight="W")]),
                             "both operands are constants; the layer has no data input"),
    "matmul-3d-weight": (lambda: _mlp([_matmul(weight="W3")], [initializer("W3", _const(2, 4, 4))]),
                         "needs a 2-D weight and a 2-D data tensor, not weight shape "
                         "(2, 4, 4)"),
    "matmul-width": (lambda: _mlp([_matmul(weight="W5")], [initializer("W5", _const(5, 3))]),
                     "features but the data has"),
    "bias-shape": (lambda: _mlp([helper.make_node("Gemm", ["x", "W", "b3"], ["y"])],
                                [initializer("b3", _const(3))]),
                   "bias of shape (3,) does not broadcast to one value per output "
                   "feature (4, samples in rows)"),
    "no-data-input": (lambda: graph_model([_matmul(data="b")], [initializer("x", _const(1, 4)),
                                                                initializer("b", _const(1, 4)),
                                                                initializer("W", _const(4, 4))],
                                          ["N", 4]),
                      "graph: has no data input"),
}


def _with_sequence_input():
    seq = helper.make_tensor_sequence_value_info("x", TensorProto.FLOAT, ["N", 4])
    graph = helper.make_graph([_matmul()], "g", [seq],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
                              initializer=[initializer("W", _const(4, 4))])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_unsupported_model_is_reported_by_its_message(case):
    build, message = CASES[case]
    with pytest.raises(OnnxImportError) as info:
        import_onnx(build())
    assert str(info.value).startswith("cannot import the ONNX model: ")
    assert message in str(info.value)


def test_engine_list_must_match_the_layers():
    proto = _mlp([_matmul(out="h"), helper.make_node("MatMul", ["h", "W"], ["y"])])
    with pytest.raises(OnnxImportError, match="3 engines given for 2 layers; give one "
                                              "engine or one per Gemm, MatMul or Conv"):
        import_onnx(proto, PRESETS["sim-small"], engine=["int8", "ternary", "int8"])
    with pytest.raises(ValueError, match="engine must be one of"):
        import_onnx(proto, PRESETS["sim-small"], engine="int4")
