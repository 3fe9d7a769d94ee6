"""The float layer list: validation, forward pass, input flattening and RMSNorm."""

import numpy as np
import pytest

from tritile.sw.model import Dense, Model, ModelError, rms_norm

RNG = np.random.default_rng(1)


def _mlp():
    W1, b1 = RNG.standard_normal((12, 5)), RNG.standard_normal(5)
    W2 = RNG.standard_normal((5, 3))
    return Model([Dense(W1, b1, activation="relu"), Dense(W2)]), (W1, b1, W2)


def test_forward_is_the_float_mlp():
    model, (W1, b1, W2) = _mlp()
    X = RNG.standard_normal((7, 12)).astype(np.float32)
    expected = np.maximum(X @ W1.astype(np.float32) + b1.astype(np.float32), 0) \
        @ W2.astype(np.float32)
    out = model.forward(X)
    assert out.dtype == np.float32 and out.shape == (7, 3)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    hidden, last = model.forward(X, return_all=True)
    assert np.all(hidden >= 0)
    np.testing.assert_array_equal(last, out)


def test_trailing_axes_are_flattened_in_c_order():
    model, _ = _mlp()
    X = RNG.standard_normal((4, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(model.forward(X), model.forward(X.reshape(4, 12)))


def test_rms_norm_sets_root_mean_square_to_gain():
    X = RNG.standard_normal((6, 10)).astype(np.float32) * 5
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


def test_model_rejects_broken_chains_and_inputs():
    with pytest.raises(ModelError, match="layer 1 takes 4 features but layer 0 produces 5"):
        Model([Dense(np.ones((3, 5))), Dense(np.ones((4, 2)))])
    with pytest.raises(ModelError, match="at least one layer"):
        Model([])
    with pytest.raises(ModelError, match="must be a Dense"):
        Model([np.ones((3, 3))])
    model, _ = _mlp()
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
