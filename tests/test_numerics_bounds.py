"""The golden model at the edges of its ranges: the int32 bounds themselves are results, one
past them is an error; a bad value is named; shapes that do not chain are refused."""

import numpy as np
import pytest

from tritile.sw.numerics import gemm_int8, requant_params, requantize, ternary_matmul

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


@pytest.mark.parametrize("bias", [INT32_MIN, INT32_MAX])
def test_gemm_result_at_an_int32_bound_is_exact(bias):
    Xq = np.zeros((1, 2), np.int8)
    Wq = np.ones((2, 1), np.int8)
    assert gemm_int8(Xq, Wq, np.array([bias], np.int32)).tolist() == [[bias]]


@pytest.mark.parametrize("bias, x", [(INT32_MAX, 1), (INT32_MIN, -1)])
def test_gemm_result_one_past_an_int32_bound_is_refused(bias, x):
    Xq = np.array([[x]], np.int8)
    with pytest.raises(ValueError, match="gemm_int8 result overflows int32"):
        gemm_int8(Xq, np.ones((1, 1), np.int8), np.array([bias], np.int32))


def test_ternary_product_needs_equal_inner_dimensions():
    q, T = np.ones((2, 3), np.int8), np.ones((4, 2), np.int8)
    with pytest.raises(ValueError, match="q is 2x3 but T is 4x2: inner dimensions differ"):
        ternary_matmul(q, T)


def test_out_of_range_parameter_names_the_first_bad_value():
    acc = np.zeros((1, 3), np.int32)
    with pytest.raises(ValueError, match=r"mult values must be in \[0, 32767\], found -3"):
        requantize(acc, np.array([1, -3, 40000], np.int32), np.ones(3, np.int32))
    with pytest.raises(ValueError, match=r"shift values must be in \[1, 62\], found 63"):
        requantize(acc, np.ones(3, np.int32), np.array([1, 63, 0], np.int32))


def test_largest_real_scale_is_named_in_its_error():
    # mult < 2**15 at the smallest shift (1): r * 2 must round below 32768.
    mult, shift = requant_params([16383.7])
    assert (mult.tolist(), shift.tolist()) == ([32767], [1])
    with pytest.raises(ValueError, match="real_scale 16384.0 is too large: it must be below "
                                         "16383.75"):
        requant_params([1.0, 16384.0])
