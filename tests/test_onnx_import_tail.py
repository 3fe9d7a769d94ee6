"""The host tail: output operators after the last layer, with their attributes, evaluated
on the host as onnxruntime evaluates them; structures it cannot take are reported."""

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402
from onnx_models import initializer, ort_run, weights  # noqa: E402

from tritile.sw.host_tail import HostTail, TailNode  # noqa: E402
from tritile.sw.onnx_import import OnnxImportError, import_onnx  # noqa: E402


def _tail_model(rng, tail_nodes, outputs, initializers=()):
    nodes = [helper.make_node("MatMul", ["x", "W"], ["logits"]), *tail_nodes]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
        [helper.make_tensor_value_info(name, kind, shape) for name, kind, shape in outputs],
        initializer=[initializer("W", weights(6, 4, rng=rng)), *initializers])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_operators_and_attributes_match_onnxruntime(rng):
    # Ties in the logits (a repeated weight column) make ArgMax's select_last_index matter.
    proto = _tail_model(
        rng,
        [helper.make_node("Div", ["logits", "t"], ["scaled"]),
         helper.make_node("Softmax", ["scaled"], ["p"], axis=1),
         helper.make_node("Mul", ["p", "hundred"], ["percent"]),
         helper.make_node("Add", ["percent", "offset"], ["shifted"]),
         helper.make_node("ArgMax", ["shifted"], ["first"], axis=1, keepdims=0),
         helper.make_node("ArgMax", ["logits"], ["last"], axis=1, select_last_index=1),
         helper.make_node("Concat", ["p", "p"], ["both"], axis=1),
         helper.make_node("Cast", ["first"], ["first32"], to=TensorProto.INT32)],
        [("shifted", TensorProto.FLOAT, ["N", 4]), ("first32", TensorProto.INT32, ["N"]),
         ("last", TensorProto.INT64, ["N", 1]), ("both", TensorProto.FLOAT, ["N", 8])],
        [initializer("t", 2.0), initializer("hundred", [100.0]),
         initializer("offset", np.zeros((1, 4)))])
    W = proto.graph.initializer[0]
    tied = weights(6, 4, rng=rng)
    tied[:, 3] = tied[:, 1]
    W.CopyFrom(initializer("W", tied))
    X = rng.standard_normal((9, 6)).astype(np.float32)
    ours, reference = import_onnx(proto).predict(X), ort_run(proto, X)
    assert list(ours) == ["shifted", "first32", "last", "both"]
    for name in ours:
        assert ours[name].dtype == reference[name].dtype, name
        np.testing.assert_allclose(ours[name], reference[name], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("nodes, message", [
    ([helper.make_node("Softmax", ["x"], ["y"])], "has no Gemm or MatMul layer"),
    ([helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Softmax", ["h"], ["y"]),
      helper.make_node("TopK", ["y", "k"], ["v", "i"])], "TopK reads 'y', which the host"),
])
def test_tail_structures_reported(nodes, message, rng):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, ["N", None])],
        initializer=[initializer("W", weights(4, 4, rng=rng)),
                     initializer("k", [2], dtype=np.int64)])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(OnnxImportError, match=message):
        import_onnx(proto)


def test_tail_checks_its_order():
    with pytest.raises(ValueError, match="reads 'q' before anything computes it"):
        HostTail("y", [TailNode(("", "Softmax"), ["q"], ["p"], {"axis": -1})])
    with pytest.raises(ValueError, match="output 'z' is not computed"):
        HostTail("y", [], outputs=["z"])
