"""The numerics contract of docs/numerics.md: properties and corner cases of the golden
model."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from tritile.sw import (
    quantize_weights_int8, quantize_activations_int8, quantize_bias,
    requant_params, requantize, gemm_int8, ternarize_weights, quantize_activations_absmax,
    ternary_matmul, PRESETS,
)

finite = st.floats(-1e3, 1e3, allow_nan=False, width=32)


def small_matrix(rows=st.integers(1, 8), cols=st.integers(1, 8)):
    return st.tuples(rows, cols).flatmap(
        lambda s: hnp.arrays(np.float32, s, elements=finite))


# --- requantization -------------------------------------------------------------------

@given(st.floats(2.0 ** -40, 2.0 ** 10, allow_nan=False))
def test_requant_params_error_bound(r):
    mult, shift = requant_params(np.array([r]))
    assert 0 <= mult[0] < 2 ** 15 and 1 <= shift[0] <= 62
    assert abs(int(mult[0]) * 2.0 ** -int(shift[0]) - r) <= 2.0 ** -15 * r


@given(st.floats(2.0 ** -40, 2.0 ** 10, allow_nan=False))
def test_requant_params_uses_largest_shift(r):
    mult, shift = requant_params(np.array([r]))
    if shift[0] < 62:
        assert np.rint(r * 2.0 ** (int(shift[0]) + 1)) >= 2 ** 15


def test_requant_params_rejects_bad_scales():
    for bad in (-1.0, np.nan, np.inf, 2.0 ** 15):
        with pytest.raises(ValueError):
            requant_params(np.array([bad]))


@given(st.integers(-2 ** 31, 2 ** 31 - 1), st.integers(0, 2 ** 15 - 1), st.integers(1, 62),
       st.booleans())
def test_requantize_matches_rational_rounding(acc, mult, shift, relu):
    y = requantize(np.array([[acc]], np.int32), np.array([mult], np.int32),
                   np.array([shift], np.int32), relu=relu)
    # floor(acc * mult / 2**shift + 1/2): round half toward +infinity, then saturate.
    exact = (acc * mult + (1 << (shift - 1))) >> shift
    assert y[0, 0] == min(max(exact, 0 if relu else -128), 127)


def test_requantize_ties_round_up():
    mult = np.array([1, 1, 1, 1], np.int32)
    shift = np.array([1, 1, 1, 1], np.int32)
    y = requantize(np.array([[1, -1, 3, -3]], np.int32), mult, shift)
    np.testing.assert_array_equal(y, [[1, 0, 2, -1]])    # 0.5 -> 1, -0.5 -> 0, -1.5 -> -1


def test_requantize_rejects_bad_params():
    acc = np.zeros((2, 3), np.int32)
    with pytest.raises(ValueError, match="shift"):
        requantize(acc, np.ones(3, np.int32), np.zeros(3, np.int32))
    with pytest.raises(ValueError, match="mult"):
        requantize(acc, np.full(3, 2 ** 15, np.int32), np.ones(3, np.int32))
    with pytest.raises(ValueError, match="shape"):
        requantize(acc, np.ones(2, np.int32), np.ones(2, np.int32))
    with pytest.raises(ValueError, match="int32"):
        requantize(acc.astype(np.int64), np.ones(3, np.int32), np.ones(3, np.int32))


# --- int8 path ------------------------------------------------------------------------

@given(small_matrix())
def test_weight_quantization_properties(W):
    Wq, s_w = quantize_weights_int8(W)
    assert Wq.dtype == np.int8 and s_w.dtype == np.float32 and Wq.shape == W.shape
    assert Wq.min() >= -127
    # Columns whose scale max|W| / 127 is a positive float32 (not zero, not so small that
    # the quotient underflows): their largest magnitude maps to +-127.
    nonzero = np.abs(W).max(axis=0) / np.float32(127) > 0
    assert np.all(np.abs(Wq).max(axis=0)[nonzero] == 127)
    assert np.all(s_w[~nonzero] == 1.0)
    assert np.all(np.abs(Wq * s_w - W) <= s_w / 2 * (1 + 1e-5) + 1e-30)


@given(small_matrix())
def test_activation_quantization_properties(X):
    Xq, s_x = quantize_activations_int8(X)
    assert Xq.dtype == np.int8 and isinstance(s_x, float)
    assert np.all(np.abs(Xq * np.float32(s_x) - X) <= s_x / 2 * (1 + 1e-5) + 1e-30)
    Xq2, s2 = quantize_activations_int8(X * 4, scale=s_x)     # calibrated scale clips
    assert s2 == s_x and Xq2.min() >= -128 and Xq2.max() <= 127


def test_quantize_rejects_nan_inf_and_shapes():
    with pytest.raises(ValueError, match="NaN"):
        quantize_weights_int8(np.array([[np.nan]]))
    with pytest.raises(ValueError, match="NaN"):
        quantize_activations_int8(np.array([np.inf]))
    with pytest.raises(ValueError, match="2-D"):
        quantize_weights_int8(np.ones(3))
    with pytest.raises(ValueError, match="scale"):
        quantize_activations_int8(np.ones(3), scale=0.0)


def test_quantize_bias():
    s_w = np.array([0.5, 0.25], np.float32)
    np.testing.assert_array_equal(quantize_bias(np.array([1.0, -1.0]), 0.1, s_w), [20, -40])
    with pytest.raises(ValueError, match="overflows"):
        quantize_bias(np.array([1e9, 0.0]), 1e-3, s_w)
    with pytest.raises(ValueError, match="shape"):
        quantize_bias(np.ones(3), 0.1, s_w)


@settings(max_examples=50)
@given(st.integers(1, 6), st.integers(1, 40), st.integers(1, 6), st.integers(0, 2 ** 32 - 1))
def test_gemm_int8_is_exact(m, k, n, seed):
    rng = np.random.default_rng(seed)
    X = rng.integers(-128, 128, (m, k), dtype=np.int8)
    W = rng.integers(-128, 128, (k, n), dtype=np.int8)
    b = rng.integers(-2 ** 20, 2 ** 20, n, dtype=np.int32)
    acc = gemm_int8(X, W, b)
    assert acc.dtype == np.int32
    expect = [[sum(int(X[i, j]) * int(W[j, c]) for j in range(k)) + int(b[c])
               for c in range(n)] for i in range(m)]
    np.testing.assert_array_equal(acc, expect)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_gemm_exact_at_config_k_limit(name):
    config = PRESETS[name]
    k = config.max_k
    X = np.full((2, k), -128, np.int8)
    W = np.full((k, 3), -128, np.int8)
    acc = gemm_int8(X, W)
    assert np.all(acc == k * 16384)
    assert int(acc.max()).bit_length() + 1 <= config.int8_acc_bits <= config.acc_width


def test_gemm_rejects_overflow_and_mismatch():
    with pytest.raises(ValueError, match="overflows int32"):
        gemm_int8(np.full((1, 2), -128, np.int8), np.full((2, 1), -128, np.int8),
                  np.array([2 ** 31 - 1], np.int32))
    with pytest.raises(ValueError, match="inner dimensions"):
        gemm_int8(np.zeros((2, 3), np.int8), np.zeros((2, 3), np.int8))
    with pytest.raises(ValueError, match="int8"):
        gemm_int8(np.zeros((2, 3), np.int16), np.zeros((3, 3), np.int8))


def test_corner_cases_zero_column_k1_m1():
    W = np.array([[0.0, 1.0], [0.0, -2.0]], np.float32)
    Wq, s_w = quantize_weights_int8(W)
    assert s_w[0] == 1.0 and np.all(Wq[:, 0] == 0)
    X = np.zeros((1, 2), np.float32)
    Xq, s_x = quantize_activations_int8(X)
    assert s_x == 1.0 and np.all(Xq == 0)
    acc = gemm_int8(np.array([[3]], np.int8), np.array([[-5]], np.int8))
    assert acc.shape == (1, 1) and acc[0, 0] == -15


@settings(max_examples=40)
@given(st.integers(1, 8), st.integers(1, 64), st.integers(1, 8), st.integers(0, 2 ** 32 - 1))
def test_int8_path_agrees_with_float(m, k, n, seed):
    """Integer gemm + requant stays within the quantization error bound of float math."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, k)).astype(np.float32)
    W = rng.standard_normal((k, n)).astype(np.float32)
    Xq, s_x = quantize_activations_int8(X)
    Wq, s_w = quantize_weights_int8(W)
    Y = X @ W
    acc = gemm_int8(Xq, Wq)
    deq = acc * (s_x * s_w)
    # |x w - xq wq s| <= sum_k (|x| e_w + |w| e_x + e_x e_w) with e = s / 2.
    bound = (np.abs(X) @ np.ones((k, n)) * s_w / 2 + s_x / 2 * np.abs(W).sum(0)
             + k * s_x * s_w / 4)
    assert np.all(np.abs(deq - Y) <= bound * (1 + 1e-4) + 1e-4)
    s_y = max(float(np.abs(Y).max()), 1e-3) / 127
    mult, shift = requant_params(s_x * s_w / s_y)
    y = requantize(acc, mult, shift)
    # Requantized output is within one output step (plus the rescale error) of deq / s_y.
    assert np.all(np.abs(y - np.clip(deq / s_y, -128, 127)) <= 0.5 + 2 ** -15 * np.abs(deq / s_y) + 1e-3)


# --- ternary path ---------------------------------------------------------------------

@given(small_matrix())
def test_ternarize_properties(W):
    T, gamma = ternarize_weights(W)
    assert T.dtype == np.int8 and set(np.unique(T)) <= {-1, 0, 1}
    inv = np.float32(1) / np.maximum(np.float32(np.mean(np.abs(W))), np.float32(1e-5))
    np.testing.assert_array_equal(T, np.clip(np.rint(W * inv), -1, 1))
    assert gamma == np.float32(np.float32(1) / inv)


@given(small_matrix())
def test_absmax_activation_properties(X):
    q, s = quantize_activations_absmax(X)
    assert q.dtype == np.int8 and s.dtype == np.float32 and s.shape == (X.shape[0],)
    rows = np.abs(X).max(axis=1) > 1e-5
    assert np.all(np.abs(q).max(axis=1)[rows] == 127)


@settings(max_examples=50)
@given(st.integers(1, 6), st.integers(1, 50), st.integers(1, 6), st.integers(0, 2 ** 32 - 1))
def test_ternary_matmul_is_exact(m, k, n, seed):
    rng = np.random.default_rng(seed)
    q = rng.integers(-128, 128, (m, k), dtype=np.int8)
    T = rng.integers(-1, 2, (k, n), dtype=np.int8)
    expect = [[sum(int(q[i, j]) * int(T[j, c]) for j in range(k)) for c in range(n)]
              for i in range(m)]
    np.testing.assert_array_equal(ternary_matmul(q, T), expect)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_ternary_exact_at_k_limit(name):
    config = PRESETS[name]
    k = config.max_k
    acc = ternary_matmul(np.full((1, k), -128, np.int8), np.full((k, 2), -1, np.int8))
    assert np.all(acc == 128 * k)
    assert int(acc.max()).bit_length() + 1 <= config.ternary_acc_bits


def test_ternary_rejects_non_trits():
    with pytest.raises(ValueError, match="-1, 1"):
        ternary_matmul(np.zeros((1, 2), np.int8), np.full((2, 1), 2, np.int8))


@settings(max_examples=30)
@given(st.integers(1, 4), st.integers(8, 64), st.integers(1, 4), st.integers(0, 2 ** 32 - 1))
def test_ternary_path_agrees_with_float(m, k, n, seed):
    """acc * gamma / s equals the float product of the quantized operands."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, k)).astype(np.float32)
    W = rng.standard_normal((k, n)).astype(np.float32)
    T, gamma = ternarize_weights(W)
    q, s = quantize_activations_absmax(X)
    y = ternary_matmul(q, T) * gamma / s[:, None]
    ref = (q / s[:, None]) @ (T * gamma)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-4)
    # and the activation quantization error is at most half a step per element
    assert np.all(np.abs(q / s[:, None] - X) <= 0.5 / s[:, None] * (1 + 1e-5))


def test_scales_of_subnormal_inputs_do_not_underflow_to_zero():
    # max|X| / 127 underflows float32 for a subnormal maximum: the scale must stay usable.
    X = np.array([[6e-45]], np.float32)
    Xq, s_x = quantize_activations_int8(X)
    assert s_x == 1 and Xq[0, 0] == 0
    assert quantize_activations_int8(X * 4, scale=s_x)[0][0, 0] == 0
    Wq, s_w = quantize_weights_int8(np.array([[6e-45, 1.0]], np.float32))
    assert s_w[0] == 1 and Wq[0, 0] == 0 and Wq[0, 1] == 127
