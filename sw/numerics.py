"""The numerics contract of docs/numerics.md: quantization, requantization and golden matmuls.

Every integer the hardware produces must equal what these functions produce, bit for bit.
Float preprocessing is done in float32 and rounds half to even (``np.rint``); integer paths
are computed exactly in int64 and checked before they are narrowed.
"""

import numpy as np

__all__ = [
    "quantize_weights_int8", "quantize_activations_int8", "quantize_bias",
    "requant_params", "requantize", "gemm_int8",
    "ternarize_weights", "quantize_activations_absmax", "ternary_matmul",
    "MULT_BITS", "SHIFT_MIN", "SHIFT_MAX", "BIAS_LIMIT", "float_array",
]

#: ``mult`` is an unsigned integer below ``2**MULT_BITS``.
MULT_BITS = 15
SHIFT_MIN = 1
SHIFT_MAX = 62
#: Largest magnitude of a quantized bias that ``quantize_weights_int8`` leaves a channel's
#: weight scale alone for: half the int32 range, the other half is the products'.
BIAS_LIMIT = 2 ** 30

_INT32 = np.iinfo(np.int32)


def float_array(name, value, ndim=None):
    """Return ``value`` as a finite float32 array, or raise ValueError naming ``name``."""
    array = np.asarray(value)
    if array.dtype.kind not in "fiu" or array.dtype == np.bool_:
        raise ValueError(f"{name} must be a real-valued array, not dtype {array.dtype}")
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, not shape {array.shape}")
    array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinity")
    return array


def _as_int(name, value, dtype, ndim=None, lo=None, hi=None):
    array = np.asarray(value)
    if array.dtype != np.dtype(dtype):
        raise ValueError(f"{name} must have dtype {np.dtype(dtype)}, not {array.dtype}")
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, not shape {array.shape}")
    if array.size and lo is not None and (array.min() < lo or array.max() > hi):
        bad = array[(array < lo) | (array > hi)].flat[0]
        raise ValueError(f"{name} values must be in [{lo}, {hi}], found {bad}")
    return array


def _check_int32(name, exact):
    if exact.size and (exact.min() < _INT32.min or exact.max() > _INT32.max):
        raise ValueError(f"{name} overflows int32 (range {exact.min()}..{exact.max()})")
    return exact.astype(np.int32)


def quantize_weights_int8(W, b=None, s_x=None):
    """Quantize K x N weights per output channel to int8.

    Returns ``(Wq, s_w)``: ``s_w[n] = max_k |W[k, n]| / 127`` (1.0 for an all-zero column,
    and for one so small that the quotient underflows float32) and
    ``Wq = clip(rint(W / s_w), -127, 127)``.

    Given the layer's bias ``b`` and input scale ``s_x``, a channel whose quantized bias
    ``b[n] / (s_x * s_w[n])`` would exceed ``BIAS_LIMIT`` (2**30) in magnitude gets the
    larger scale ``s_w[n] = |b[n]| / (s_x * 2**30)`` instead: its weights are so small
    next to its bias that they round to (nearly) zero, which is what they contribute,
    and the bias keeps half of the int32 range free for the products.
    """
    W = float_array("W", W, ndim=2)
    absmax = np.max(np.abs(W), axis=0) if W.shape[0] else np.zeros(W.shape[1], np.float32)
    s_w = (absmax / np.float32(127)).astype(np.float32)
    s_w = np.where(s_w > 0, s_w, np.float32(1)).astype(np.float32)
    if (b is None) != (s_x is None):
        raise ValueError("give both the bias b and the input scale s_x, or neither")
    if b is not None:
        b = float_array("b", b, ndim=1)
        if b.shape != s_w.shape:
            raise ValueError(f"b has shape {b.shape} but W has {W.shape[1]} output channels")
        s_x = _positive_scale("s_x", s_x)
        fitting = (np.abs(b) / (s_x * np.float32(BIAS_LIMIT))).astype(np.float32)
        s_w = np.where(np.abs(b) / (s_x * s_w) > BIAS_LIMIT, fitting, s_w).astype(np.float32)
    Wq = np.clip(np.rint(W / s_w), -127, 127).astype(np.int8)
    return Wq, s_w


def _positive_scale(name, value):
    scale = np.float32(value)
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"{name} must be a positive finite number, not {value!r}")
    return scale


def quantize_activations_int8(X, scale=None):
    """Quantize activations per tensor to int8.

    ``scale`` is the calibrated ``s_x``; when None it is ``max|X| / 127`` (1.0 for all
    zeros, and when that quotient underflows float32). Returns ``(Xq, s_x)`` with
    ``Xq = clip(rint(X / s_x), -128, 127)``.
    """
    X = float_array("X", X)
    if scale is None:
        absmax = np.float32(np.max(np.abs(X))) if X.size else np.float32(0)
        s_x = np.float32(absmax / np.float32(127))
        s_x = s_x if s_x > 0 else np.float32(1)    # all zeros, or a max that underflows
    else:
        s_x = np.float32(scale)
        if not (np.isfinite(s_x) and s_x > 0):
            raise ValueError(f"scale must be a positive finite number, not {scale!r}")
    Xq = np.clip(np.rint(X / s_x), -128, 127).astype(np.int8)
    return Xq, float(s_x)


def quantize_bias(b, s_x, s_w):
    """Quantize a float bias to int32 in the accumulator's scale ``s_x * s_w[n]``."""
    b = float_array("b", b, ndim=1)
    s_w = float_array("s_w", s_w, ndim=1)
    if b.shape != s_w.shape:
        raise ValueError(f"b has shape {b.shape} but s_w has shape {s_w.shape}")
    s_x = np.float32(s_x)
    if not (np.isfinite(s_x) and s_x > 0) or np.any(s_w <= 0):
        raise ValueError("s_x and s_w must be positive and finite")
    exact = np.rint(b / (s_x * s_w)).astype(np.float64)
    if exact.size and (exact.min() < _INT32.min or exact.max() > _INT32.max):
        raise ValueError(f"quantized bias overflows int32 (range {exact.min()}..{exact.max()})")
    return exact.astype(np.int32)


def requant_params(real_scale):
    """Turn float requantization scales into integer ``(mult, shift)`` pairs.

    For each ``r``, ``shift`` is the largest value in [1, 62] that keeps
    ``mult = rint(r * 2**shift)`` below ``2**15``; then
    ``|mult * 2**-shift - r| <= 2**-15 * r`` for ``r`` in ``[2**-40, 2**10]``.
    """
    r = np.atleast_1d(np.asarray(real_scale, dtype=np.float64))
    if not np.all(np.isfinite(r)) or np.any(r < 0):
        raise ValueError("real_scale must be non-negative and finite")
    limit = 2.0 ** MULT_BITS
    if np.any(np.rint(r * 2.0 ** SHIFT_MIN) >= limit):
        bad = r[np.rint(r * 2.0 ** SHIFT_MIN) >= limit][0]
        raise ValueError(f"real_scale {bad} is too large: it must be below "
                         f"{(limit - 0.5) / 2 ** SHIFT_MIN}")
    _, exponent = np.frexp(r)               # r = f * 2**exponent, 0.5 <= f < 1
    shift = np.clip(MULT_BITS - exponent, SHIFT_MIN, SHIFT_MAX).astype(np.int64)
    mult = np.rint(r * np.exp2(shift))
    # Rounding can carry into 2**15 (f just below 1): give up one bit of shift.
    carry = mult >= limit
    shift = np.where(carry, shift - 1, shift)
    mult = np.rint(r * np.exp2(shift))
    return mult.astype(np.int32), shift.astype(np.int32)


def requantize(acc, mult, shift, relu=False):
    """Requantize int32 accumulators per output channel (last axis) to int8.

    ``y = clip(((acc * mult) + (1 << (shift - 1))) >> shift, lo, 127)`` with an arithmetic
    (floor) shift, so ties round toward +infinity; ``lo`` is 0 with ``relu``, else -128.
    """
    acc = _as_int("acc", acc, np.int32)
    if acc.ndim < 1:
        raise ValueError("acc must have at least one dimension (channels last)")
    channels = acc.shape[-1]
    mult = _as_int("mult", mult, np.int32, ndim=1, lo=0, hi=(1 << MULT_BITS) - 1)
    shift = _as_int("shift", shift, np.int32, ndim=1, lo=SHIFT_MIN, hi=SHIFT_MAX)
    if mult.shape != (channels,) or shift.shape != (channels,):
        raise ValueError(f"mult and shift must have shape ({channels},) to match acc's "
                         f"last axis, not {mult.shape} and {shift.shape}")
    shift64 = shift.astype(np.int64)
    y = (acc.astype(np.int64) * mult.astype(np.int64) + (np.int64(1) << (shift64 - 1))) >> shift64
    return np.clip(y, 0 if relu else -128, 127).astype(np.int8)


def gemm_int8(Xq, Wq, bias=None):
    """Return the exact int32 product ``Xq @ Wq (+ bias)`` of int8 M x K and K x N."""
    Xq = _as_int("Xq", Xq, np.int8, ndim=2)
    Wq = _as_int("Wq", Wq, np.int8, ndim=2)
    if Xq.shape[1] != Wq.shape[0]:
        raise ValueError(f"Xq is {Xq.shape[0]}x{Xq.shape[1]} but Wq is "
                         f"{Wq.shape[0]}x{Wq.shape[1]}: inner dimensions differ")
    exact = Xq.astype(np.int64) @ Wq.astype(np.int64)
    if bias is not None:
        bias = _as_int("bias", bias, np.int32, ndim=1)
        if bias.shape != (Wq.shape[1],):
            raise ValueError(f"bias must have shape ({Wq.shape[1]},), not {bias.shape}")
        exact = exact + bias.astype(np.int64)
    return _check_int32("gemm_int8 result", exact)


def ternarize_weights(W):
    """Ternarize weights per tensor (BitNet b1.58 absmean).

    ``inv = 1 / max(mean|W|, 1e-5)``, ``T = clip(rint(W * inv), -1, 1)``; returns
    ``(T, gamma)`` with the dequantization scale ``gamma = 1 / inv``.
    """
    W = float_array("W", W, ndim=2)
    mean = np.float32(np.mean(np.abs(W))) if W.size else np.float32(0)
    inv = np.float32(1) / np.maximum(mean, np.float32(1e-5))
    T = np.clip(np.rint(W * inv), -1, 1).astype(np.int8)
    return T, np.float32(np.float32(1) / inv)


def quantize_activations_absmax(X):
    """Quantize activations per token (row) to int8 by absmax.

    ``s = 127 / max(max|x|, 1e-5)`` per row; returns ``(q, s)`` with
    ``q = clip(rint(x * s), -128, 127)``.
    """
    X = float_array("X", X, ndim=2)
    absmax = np.max(np.abs(X), axis=1) if X.shape[1] else np.zeros(X.shape[0], np.float32)
    s = (np.float32(127) / np.maximum(absmax, np.float32(1e-5))).astype(np.float32)
    q = np.clip(np.rint(X * s[:, None]), -128, 127).astype(np.int8)
    return q, s


def ternary_matmul(q, T):
    """Return the exact int32 product ``q @ T`` of int8 M x K and ternary K x N."""
    q = _as_int("q", q, np.int8, ndim=2)
    T = _as_int("T", T, np.int8, ndim=2, lo=-1, hi=1)
    if q.shape[1] != T.shape[0]:
        raise ValueError(f"q is {q.shape[0]}x{q.shape[1]} but T is "
                         f"{T.shape[0]}x{T.shape[1]}: inner dimensions differ")
    return _check_int32("ternary_matmul result", q.astype(np.int64) @ T.astype(np.int64))
