"""Convolution and pooling numerics (tritile.sw.conv) against direct loops and onnx.reference.

The direct loops below index the unpadded map position by position, so they share nothing
with the implementation's padding and sliding windows; onnx.reference (the ONNX project's
own Python evaluator) is the independent reference for the operators the importer maps.
"""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from tritile.sw.conv import (
    Window, avgpool_int8, avgpool_requant_params, conv2d_int8, conv2d_ternary,
    conv_weight_matrix, im2col_nhwc, maxpool_int8, sumpool_int32,
)
from tritile.sw.numerics import requant_params, requantize


@st.composite
def conv_cases(draw, max_side=7, max_channels=4):
    """A map, a window and weights: shapes, strides and (asymmetric) pads drawn at random."""
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    pads = (draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1)),
            draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1)))
    window = Window((kh, kw), (draw(st.integers(1, 3)), draw(st.integers(1, 3))), pads)
    h = draw(st.integers(max(1, kh - pads[0] - pads[2]), max_side))
    w = draw(st.integers(max(1, kw - pads[1] - pads[3]), max_side))
    b, c, n = draw(st.integers(1, 2)), draw(st.integers(1, max_channels)), draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    X = rng.integers(-128, 128, (b, h, w, c)).astype(np.int8)
    W = rng.integers(-127, 128, (n, c, kh, kw)).astype(np.int8)
    return X, W, window


def direct_conv(X, W, window):
    """Convolution by the definition: sum over taps that land inside the map."""
    (kh, kw), (sh, sw), (top, left, _, _) = window.kernel, window.stride, window.pads
    oh, ow = window.output_size(X.shape[1], X.shape[2])
    out = np.zeros((X.shape[0], oh, ow, W.shape[0]), np.int64)
    for y in range(oh):
        for x in range(ow):
            for i in range(kh):
                for j in range(kw):
                    r, c = y * sh + i - top, x * sw + j - left
                    if 0 <= r < X.shape[1] and 0 <= c < X.shape[2]:
                        out[:, y, x] += X[:, r, c].astype(np.int64) @ W[:, :, i, j].T.astype(np.int64)
    return out


def onnx_2d(op, X_nhwc, window, weights=None, **attrs):
    """Run the 2-D ONNX operator ``op`` on an NHWC map with onnx.reference, in float64."""
    inputs = [helper.make_tensor_value_info("x", TensorProto.DOUBLE, None)]
    feeds = {"x": X_nhwc.transpose(0, 3, 1, 2).astype(np.float64)}
    if weights is not None:
        inputs.append(helper.make_tensor_value_info("w", TensorProto.DOUBLE, None))
        feeds["w"] = weights.astype(np.float64)
    node = helper.make_node(op, [i.name for i in inputs], ["y"], kernel_shape=list(window.kernel),
                            strides=list(window.stride), pads=list(window.pads), **attrs)
    graph = helper.make_graph([node], "g", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)])
    (y,) = ReferenceEvaluator(helper.make_model(graph)).run(None, feeds)
    return y.transpose(0, 2, 3, 1)


@settings(max_examples=60, deadline=None)
@given(conv_cases())
def test_conv2d_int8_equals_direct_convolution(case):
    X, W, window = case
    got = conv2d_int8(X, conv_weight_matrix(W), window)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, direct_conv(X, W, window))


@settings(max_examples=25, deadline=None)
@given(conv_cases())
def test_conv2d_int8_equals_onnx_reference_conv(case):
    X, W, window = case
    bias = np.arange(W.shape[0], dtype=np.int32) * 1000 - 2000
    got = conv2d_int8(X, conv_weight_matrix(W), window, bias=bias)
    expected = onnx_2d("Conv", X, window, W) + bias
    np.testing.assert_array_equal(got, expected.astype(np.int64))


@settings(max_examples=40, deadline=None)
@given(conv_cases())
def test_conv2d_is_gemm_over_im2col_rows(case):
    X, W, window = case
    rows = im2col_nhwc(X, window)
    oh, ow = window.output_size(X.shape[1], X.shape[2])
    assert rows.shape == (X.shape[0] * oh * ow, window.kernel[0] * window.kernel[1] * X.shape[3])
    # Row (b*OH + y)*OW + x, column (i*kw + j)*C + c: the tap at map position (r, c') or 0.
    b, y, x = X.shape[0] - 1, oh - 1, ow // 2
    i, j, c = window.kernel[0] - 1, 0, X.shape[3] - 1
    r, col = y * window.stride[0] + i - window.pads[0], x * window.stride[1] + j - window.pads[1]
    inside = 0 <= r < X.shape[1] and 0 <= col < X.shape[2]
    value = rows[(b * oh + y) * ow + x, (i * window.kernel[1] + j) * X.shape[3] + c]
    assert value == (X[b, r, col, c] if inside else 0)


@settings(max_examples=30, deadline=None)
@given(conv_cases())
def test_conv2d_ternary_equals_int8_conv_with_trit_weights(case):
    X, W, window = case
    T = np.sign(W).astype(np.int8)
    np.testing.assert_array_equal(conv2d_ternary(X, conv_weight_matrix(T), window),
                                  conv2d_int8(X, conv_weight_matrix(T), window))


def unpadded(window):
    """The same window without padding: onnx.reference 1.23's pools misread 2-D ``pads``
    (as top, bottom, left, right), so padded pools are checked against the direct loops."""
    return Window(window.kernel, window.stride)


@settings(max_examples=40, deadline=None)
@given(conv_cases())
def test_maxpool_equals_direct_loops_and_onnx_reference(case):
    X, _, window = case
    np.testing.assert_array_equal(maxpool_int8(X, window), direct_pool(X, window, np.maximum))
    plain = unpadded(window)
    if min(X.shape[1] - plain.kernel[0], X.shape[2] - plain.kernel[1]) >= 0:
        np.testing.assert_array_equal(maxpool_int8(X, plain), onnx_2d("MaxPool", X, plain))


@settings(max_examples=40, deadline=None)
@given(conv_cases(), st.booleans())
def test_maxpool_commutes_with_requantization(case, relu):
    X, W, window = case
    acc = conv2d_int8(X, conv_weight_matrix(W[:, :, :1, :1]), Window(1))   # an int32 map
    mult, shift = requant_params(np.linspace(1e-3, 2e-2, acc.shape[-1]))
    pooled_then_requant = requantize(direct_pool(acc, window, np.maximum).astype(np.int32), mult, shift, relu)
    np.testing.assert_array_equal(maxpool_int8(requantize(acc, mult, shift, relu), window),
                                  pooled_then_requant)


def direct_pool(acc, window, reduce):
    """Pool by the definition: ``reduce`` over the positions of each window inside the map."""
    (kh, kw), (sh, sw), (top, left, _, _) = window.kernel, window.stride, window.pads
    oh, ow = window.output_size(acc.shape[1], acc.shape[2])
    out = [[None] * ow for _ in range(oh)]
    for y in range(oh):
        for x in range(ow):
            for i in range(kh):
                for j in range(kw):
                    r, c = y * sh + i - top, x * sw + j - left
                    if 0 <= r < acc.shape[1] and 0 <= c < acc.shape[2]:
                        tap = acc[:, r, c].astype(np.int64)
                        out[y][x] = tap if out[y][x] is None else reduce(out[y][x], tap)
    return np.stack([np.stack(row, axis=1) for row in out], axis=1)


@settings(max_examples=40, deadline=None)
@given(conv_cases())
def test_sumpool_equals_direct_loops_and_onnx_average_pool_times_window(case):
    X, _, window = case
    np.testing.assert_array_equal(sumpool_int32(X, window), direct_pool(X, window, np.add))
    plain = unpadded(window)
    if min(X.shape[1] - plain.kernel[0], X.shape[2] - plain.kernel[1]) >= 0:
        mean = onnx_2d("AveragePool", X, plain)
        np.testing.assert_array_equal(sumpool_int32(X, plain),
                                      np.rint(mean * plain.kernel[0] * plain.kernel[1]))


@settings(max_examples=40, deadline=None)
@given(conv_cases(), st.floats(0.01, 1.0), st.floats(0.01, 1.0))
def test_avgpool_is_within_one_lsb_of_the_float_mean(case, s_in, s_out):
    X, _, window = case
    mult, shift = avgpool_requant_params(window, s_in, s_out, X.shape[3])
    got = avgpool_int8(X, window, mult, shift).astype(np.float64)
    mean = direct_pool(X, window, np.add) / (window.kernel[0] * window.kernel[1]) * s_in / s_out
    assert np.all(np.abs(got - np.clip(mean, -128, 127)) <= 0.5 + 2 ** -14 * np.abs(mean) + 1e-9)


def test_global_average_pool_is_a_window_over_the_whole_map(rng):
    X = rng.integers(-128, 128, (2, 5, 6, 3)).astype(np.int8)
    sums = sumpool_int32(X, Window((5, 6)))
    assert sums.shape == (2, 1, 1, 3)
    np.testing.assert_array_equal(sums[:, 0, 0], X.astype(np.int64).sum(axis=(1, 2)))


@pytest.mark.parametrize("kwargs, message", [
    ({"kernel": 0}, "kernel must be an integer >= 1"),
    ({"kernel": (3, 3), "stride": (1, 0)}, "stride must be an integer >= 1"),
    ({"kernel": 3, "pads": (0, 0, 3, 0)}, "must be below the kernel"),
    ({"kernel": 3, "pads": (1, 1)}, "four of them"),
    ({"kernel": 3, "pads": -1}, "pads must be an integer >= 0"),
    ({"kernel": True}, "kernel must be an integer"),
    ({"kernel": 2.5}, "kernel must be an integer"),
])
def test_window_rejects_bad_geometry(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Window(**kwargs)


def test_bad_maps_and_weights_are_named():
    X = np.zeros((1, 4, 4, 2), np.int8)
    with pytest.raises(ValueError, match="smaller than the 5x5 window"):
        conv2d_int8(X, np.zeros((50, 1), np.int8), Window(5))
    with pytest.raises(ValueError, match=r"must be a 3\*3\*2 x N matrix"):
        conv2d_int8(X, np.zeros((9, 4), np.int8), Window(3))
    with pytest.raises(ValueError, match="Xq must have dtype int8"):
        conv2d_int8(X.astype(np.int16), np.zeros((18, 4), np.int8), Window(3))
    with pytest.raises(ValueError, match="Y must be 4-D"):
        maxpool_int8(X[0], Window(2))
    with pytest.raises(ValueError, match="scales must be positive"):
        avgpool_requant_params(Window(2), 0.0, 1.0, 2)
