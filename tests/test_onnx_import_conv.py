"""ONNX import of convolutional models, as both PyTorch exporters write them, checked
against onnxruntime and onnx.reference; every unsupported configuration is one line."""

import numpy as np
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator

from onnx_models import (conv_node, conv_params, dynamo_cnn, graph_model, initializer,
                         ort_run, torch_cnn, weights)
from tritile.sw.model import AvgPool2d, Conv2d, Dense, GlobalAvgPool, MaxPool2d
from tritile.sw.onnx_import import OnnxImportError, import_onnx



def _check_against_references(source, X):
    model = import_onnx(source)
    got = model.predict(X)
    evaluator = ReferenceEvaluator(source if hasattr(source, "graph") else str(source))
    for reference in (ort_run(source, X), dict(zip(got, evaluator.run(None, {"x": X})))):
        assert set(reference) == set(got)
        for name, value in reference.items():
            np.testing.assert_allclose(got[name], value, rtol=1e-4, atol=1e-5)
    return model


@pytest.mark.parametrize("global_pool", [False, True])
def test_torchscript_style_cnn_matches_the_references(global_pool, rng):
    model = _check_against_references(torch_cnn(global_pool),
                                      rng.standard_normal((5, 3, 9, 8)).astype(np.float32))
    kinds = [type(layer) for layer in model.layers]
    assert kinds == [Conv2d, MaxPool2d, Conv2d, AvgPool2d] + \
        ([GlobalAvgPool] if global_pool else []) + [Dense]
    assert model.input_shape == (9, 8, 3) and model.channels_first
    assert model.layers[0].activation == "relu"     # BatchNormalization folded, Relu fused


def test_dynamo_style_cnn_with_external_data_matches_the_references(tmp_path, rng):
    path = dynamo_cnn(tmp_path / "cnn.onnx")
    assert (tmp_path / "cnn.onnx.data").stat().st_size > 0
    model = _check_against_references(path, rng.standard_normal((4, 2, 8, 8)).astype(np.float32))
    assert [layer.activation for layer in model.layers[:2]] == ["relu6", "relu"]
    assert model.layers[1].window.pads == (0, 1, 1, 0)


def test_a_map_output_is_returned_nchw(rng):
    nodes = [conv_node("conv", "x", "c", 3, stride=2, pads=(1, 0, 0, 1)),
             helper.make_node("Relu", ["c"], ["y"])]
    proto = graph_model(nodes, conv_params("conv", 2, 3, 3, rng=rng), ["N", 2, 7, 6],
                        output_shape=("N", 3, 3, 3))
    _check_against_references(proto, rng.standard_normal((2, 2, 7, 6)).astype(np.float32))


def _one_op(rng, node, extra_inits=()):
    nodes = [conv_node("conv", "x", "c", 3, pads=(1, 1, 1, 1)), node]
    return graph_model(nodes, conv_params("conv", 2, 4, 3, rng=rng) + list(extra_inits),
                       ["N", 2, 6, 6], output_shape=("N", 4, 6, 6), opset=18)


def _conv_with(rng, **attrs):
    base = dict(dilations=[1, 1], group=1, kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                strides=[1, 1])
    base.update(attrs)
    node = helper.make_node("Conv", ["x", "conv.weight"], ["y"], name="odd_conv", **base)
    W = weights(4, 1 if attrs.get("group") else 2, 3, 3, rng=rng)
    return graph_model([node], [initializer("conv.weight", W)], ["N", 2, 6, 6],
                       output_shape=("N", 4, 6, 6))


@pytest.mark.parametrize("proto, message", [
    (lambda rng: _conv_with(rng, group=2),
     "node 0 'odd_conv' .Conv.: group=2 is not supported"),
    (lambda rng: _conv_with(rng, dilations=[2, 2]),
     "'odd_conv' .Conv.: dilations=.2, 2. are not"),
    (lambda rng: _conv_with(rng, auto_pad="SAME_UPPER", pads=[0, 0, 0, 0]),
     "auto_pad=SAME_UPPER"),
    (lambda rng: _one_op(rng, helper.make_node("MaxPool", ["c"], ["y"], kernel_shape=[2, 2],
                                               ceil_mode=1, name="pool")),
     "node 1 'pool' .MaxPool.: ceil_mode=1 is not supported"),
    (lambda rng: _one_op(rng, helper.make_node("AveragePool", ["c"], ["y"],
                                               kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                                               name="avg")),
     "'avg' .AveragePool.: count_include_pad=0 with pads .1, 1, 1, 1. is not supported"),
    (lambda rng: _one_op(rng, helper.make_node("Clip", ["c", "lo", "hi"], ["y"], name="clip"),
                              [initializer("lo", 0.0), initializer("hi", 1.0)]),
     "'clip' .Clip.: only Clip.0, 6. .ReLU6. is supported"),
    (lambda rng: _one_op(rng, helper.make_node("ReduceMean", ["c", "axes"], ["y"],
                                               name="mean"),
                              [initializer("axes", [1], np.int64)]),
     "'mean' .ReduceMean.: ReduceMean is supported over the spatial axes"),
    (lambda rng: _one_op(rng, helper.make_node("MaxPool", ["c"], ["y"], kernel_shape=[3, 3],
                                               pads=[3, 0, 0, 0], name="pool")),
     "'pool' .MaxPool.: pads .3, 0, 0, 0. must be below the kernel"),
])
def test_unsupported_configurations_are_one_line_naming_the_node(proto, message, rng):
    with pytest.raises(OnnxImportError, match=message) as info:
        import_onnx(proto(rng))
    assert "\n" not in str(info.value)


def test_batch_norm_must_follow_a_layer(rng):
    nodes = [conv_node("conv", "x", "c", 3, pads=(1, 1, 1, 1)),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("BatchNormalization", ["r", "s", "b", "m", "v"], ["y"],
                              name="bn")]
    inits = [initializer(name, np.ones(4)) for name in "sbmv"]
    proto = graph_model(nodes, conv_params("conv", 2, 4, 3, rng=rng) + inits, ["N", 2, 6, 6],
                        output_shape=("N", 4, 6, 6))
    with pytest.raises(OnnxImportError, match="'bn' .BatchNormalization.: Batch"
                                              "Normalization is supported only right after"):
        import_onnx(proto)


def test_batch_norm_after_gemm_is_folded(rng):
    W, b = weights(5, 6, rng=rng), weights(5, rng=rng)
    nodes = [helper.make_node("Gemm", ["x", "W", "b"], ["g"], transB=1),
             helper.make_node("BatchNormalization", ["g", "s", "bb", "m", "v"], ["y"])]
    inits = [initializer("W", W), initializer("b", b), initializer("s", 1 + weights(5, rng=rng)),
             initializer("bb", weights(5, rng=rng)), initializer("m", weights(5, rng=rng)),
             initializer("v", 1 + np.abs(weights(5, rng=rng)))]
    proto = graph_model(nodes, inits, ["N", 6], output_shape=("N", 5))
    X = rng.standard_normal((3, 6)).astype(np.float32)
    np.testing.assert_allclose(import_onnx(proto).predict(X)["y"], ort_run(proto, X)["y"],
                               rtol=1e-5, atol=1e-5)
