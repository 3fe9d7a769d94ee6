"""The float layer list: validation, forward pass, input flattening and RMSNorm."""

import numpy as np
import pytest

from tritile.sw.conv import conv_weight_matrix
from tritile.sw.model import (AvgPool2d, Conv2d, Dense, GlobalAvgPool, MaxPool2d, Model,
                              ModelError, nchw_flatten_rows, rms_norm)

def _mlp(rng):
    W1, b1 = rng.standard_normal((12, 5)), rng.standard_normal(5)
    W2 = rng.standard_normal((5, 3))
    return Model([Dense(W1, b1, activation="relu"), Dense(W2)]), (W1, b1, W2)


def test_forward_is_the_float_mlp(rng):
    model, (W1, b1, W2) = _mlp(rng)
    X = rng.standard_normal((7, 12)).astype(np.float32)
    expected = np.maximum(X @ W1.astype(np.float32) + b1.astype(np.float32), 0) \
        @ W2.astype(np.float32)
    out = model.forward(X)
    assert out.dtype == np.float32 and out.shape == (7, 3)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    hidden, last = model.forward(X, return_all=True)
    assert np.all(hidden >= 0)
    np.testing.assert_array_equal(last, out)


def test_trailing_axes_are_flattened_in_c_order(rng):
    model, _ = _mlp(rng)
    X = rng.standard_normal((4, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(model.forward(X), model.forward(X.reshape(4, 12)))


def test_rms_norm_sets_root_mean_square_to_gain(rng):
    X = rng.standard_normal((6, 10)).astype(np.float32) * 5
    Y = rms_norm(X, np.ones(10, np.float32))
    np.testing.assert_allclose(np.sqrt(np.mean(Y * Y, axis=1)), 1.0, rtol=1e-4)
    gain = np.linspace(0.5, 2, 10).astype(np.float32)
    np.testing.assert_allclose(rms_norm(X, gain), Y * gain, rtol=1e-5)
    layer = Dense(np.eye(10), norm=gain)
    np.testing.assert_allclose(layer.forward(X), Y * gain, rtol=1e-5)


@pytest.mark.parametrize("kwargs, message", [
    (dict(W=np.ones(3)), r"W must be 2-D, not shape \(3,\)"),
    (dict(W=np.ones((3, 2)), b=np.ones(3)), r"b must have shape \(2,\)"),
    (dict(W=np.ones((3, 2)), activation="tanh"), "activation must be one of"),
    (dict(W=np.full((3, 2), np.nan)), "W contains NaN"),
    (dict(W=np.ones((3, 2)), norm=np.ones(2)), r"norm must have shape \(3,\)"),
    (dict(W=np.array([["a"]])), "real-valued"),
    (dict(W=np.ones((0, 2))), "at least one row"),
])
def test_dense_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ModelError, match=message):
        Dense(**kwargs)


def test_model_rejects_broken_chains_and_inputs(rng):
    with pytest.raises(ModelError, match="layer 1: Dense.4x2. takes 4 features, not the 5 of its input"):
        Model([Dense(np.ones((3, 5))), Dense(np.ones((4, 2)))])
    with pytest.raises(ModelError, match="at least one layer"):
        Model([])
    with pytest.raises(ModelError, match="must be one of Dense, Conv2d"):
        Model([np.ones((3, 3))])
    model, _ = _mlp(rng)
    with pytest.raises(ModelError, match="has 11 features per sample but the model takes 12"):
        model.forward(np.ones((2, 11)))


def test_quantization_is_validated():
    from tritile.sw.model import OUTPUT_NAME, Quantization

    Wq = np.array([[1, -2], [3, 127]], np.int8)
    quant = Quantization(Wq, [0.5, 0.25], 0.1, 0.2)
    layer = Dense(Wq * np.float32([0.5, 0.25]), quant=quant)
    assert layer.quant is quant and "int8 (QDQ)" in repr(layer)
    assert Model([layer]).named_outputs(np.ones((1, 2))).keys() == {OUTPUT_NAME}
    with pytest.raises(ModelError, match="Wq must be a 2-D int8 array"):
        Quantization(Wq.astype(np.int16), [0.5, 0.25], 0.1)
    with pytest.raises(ModelError, match="s_w must hold 2 positive scales"):
        Quantization(Wq, [0.5, 0.0], 0.1)
    with pytest.raises(ModelError, match="s_x must be a positive finite scale"):
        Quantization(Wq, [0.5, 0.25], None)
    with pytest.raises(ModelError, match="s_y must be a positive finite scale"):
        Quantization(Wq, [0.5, 0.25], 0.1, -1.0)
    with pytest.raises(ModelError, match=r"quant must be a Quantization of int8 weights of "
                                         r"shape \(3, 2\)"):
        Dense(np.ones((3, 2)), quant=quant)


def _direct_conv(X, W, b, stride, pads):
    """Convolution of an NHWC batch by the definition: a sum over taps and channels."""
    top, left, bottom, right = pads
    Xp = np.pad(X, ((0, 0), (top, bottom), (left, right), (0, 0)))
    n, c, kh, kw = W.shape
    oh = (Xp.shape[1] - kh) // stride + 1
    ow = (Xp.shape[2] - kw) // stride + 1
    Y = np.zeros((len(X), oh, ow, n))
    for y in range(oh):
        for x in range(ow):
            patch = Xp[:, y * stride:y * stride + kh, x * stride:x * stride + kw, :]
            Y[:, y, x] = np.einsum("bijc,ncij->bn", patch, W) + b
    return Y


def test_conv2d_is_the_convolution_by_definition(rng):
    W, b, X = rng.standard_normal((5, 3, 3, 2)), rng.standard_normal(5), \
        rng.standard_normal((2, 7, 6, 3)).astype(np.float32)
    layer = Conv2d(W, b, stride=2, pads=(1, 0, 2, 1), activation="relu6")
    expected = np.clip(_direct_conv(X, W, b, 2, (1, 0, 2, 1)), 0, 6)
    np.testing.assert_allclose(layer.forward(X), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(layer.matrix, conv_weight_matrix(W.astype(np.float32)))
    assert layer.output_shape((7, 6, 3)) == expected.shape[1:]


def test_pools_by_definition(rng):
    X = rng.standard_normal((2, 5, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(MaxPool2d(2).forward(X),
                               X[:, :4, :4].reshape(2, 2, 2, 2, 2, 3).max(axis=(2, 4)))
    padded = np.pad(X, ((0, 0), (1, 1), (1, 1), (0, 0)))
    avg = AvgPool2d(3, 2, 1).forward(X)     # padding counts in the divisor
    np.testing.assert_allclose(avg[:, 0, 0], padded[:, :3, :3].sum(axis=(1, 2)) / 9,
                               rtol=1e-5)
    assert MaxPool2d(3, 2, 1).forward(-np.abs(X))[0, 0, 0, 0] == \
        (-np.abs(X))[0, :2, :2, 0].max()            # padding never wins
    np.testing.assert_allclose(GlobalAvgPool().forward(X)[:, 0, 0], X.mean(axis=(1, 2)),
                               rtol=1e-5)
    assert GlobalAvgPool().output_shape((5, 5, 3)) == (1, 1, 3)


def test_nchw_flatten_rows_keep_the_nchw_product(rng):
    shape, W = (3, 4, 5), rng.standard_normal((60, 2))
    X = rng.standard_normal((2, *shape))
    nchw = X.transpose(0, 3, 1, 2).reshape(2, -1)
    np.testing.assert_allclose(X.reshape(2, -1) @ nchw_flatten_rows(W, shape), nchw @ W)


def test_conv_model_takes_nchw_or_nhwc_inputs(rng):
    conv = Conv2d(rng.standard_normal((4, 2, 3, 3)), pads=1, activation="relu")
    dense = Dense(rng.standard_normal((16, 3)))
    X = rng.standard_normal((2, 2, 4, 4)).astype(np.float32)     # NCHW
    nhwc = Model([conv, MaxPool2d(2), dense], input_shape=(4, 4, 2))
    nchw = Model([conv, MaxPool2d(2), dense], input_shape=(4, 4, 2), channels_first=True)
    np.testing.assert_allclose(nchw.forward(X), nhwc.forward(X.transpose(0, 2, 3, 1)))
    assert nchw.shapes == [(4, 4, 4), (2, 2, 4), (3,)] and nchw.is_convolutional
    out = Model([conv], input_shape=(4, 4, 2), channels_first=True)
    assert out.named_outputs(out.forward(X))["output"].shape == (2, 4, 4, 4)


@pytest.mark.parametrize("build, message", [
    (lambda: Model([Conv2d(np.ones((4, 2, 3, 3)))]), "needs its input_shape"),
    (lambda: Model([Conv2d(np.ones((4, 2, 3, 3)))], input_shape=(4, 4, 3)),
     "takes 2 channels, not 3"),
    (lambda: Model([Conv2d(np.ones((4, 2, 3, 3)))], input_shape=(2, 2, 2)),
     "smaller than the 3x3 window"),
    (lambda: Model([Dense(np.ones((4, 2))), MaxPool2d(2)]), "needs a feature map"),
    (lambda: Conv2d(np.ones((4, 2, 3, 3)), pads=3), "pads"),
    (lambda: Conv2d(np.ones((4, 2, 3, 3)), activation="tanh"), "activation must be one of"),
])
def test_conv_models_reject_bad_shapes(build, message):
    with pytest.raises(ModelError, match=message):
        build()
