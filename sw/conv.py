"""Convolution and pooling in the numerics contract (docs/numerics.md), over NHWC maps.

A convolution is a matrix product over im2col rows: output pixel (b, y, x) becomes row
``(b * OH + y) * OW + x`` of an M x K matrix whose K = kh * kw * C entries are the input
window in (kh, kw, c) order, zero where the window hangs over the padding. The weights are
the K x N matrix in the same order, so ``conv2d_int8`` is exactly ``gemm_int8`` of those two
matrices and the device can run it as a GEMM whose activation rows it addresses in the
stored NHWC map (implicit im2col). Pooling works on the requantized int8 map: max pooling
is a plain maximum, average pooling an exact int32 window sum followed by the ordinary
per-channel requantization, with the divisor folded into the multiplier.
"""

from dataclasses import dataclass

import numpy as np

from .numerics import _as_int, gemm_int8, requant_params, requantize, ternary_matmul

__all__ = [
    "Window", "im2col_nhwc", "conv_weight_matrix", "conv2d_int8", "conv2d_ternary",
    "maxpool_int8", "sumpool_int32", "avgpool_int8", "avgpool_requant_params",
    "Im2colWalk", "im2col_word_addresses",
]


def _ints(name, value, count, lo, what):
    """Return ``value`` (one integer, or ``count`` of them) as a tuple of ``count`` ints."""
    is_int = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    items = (value,) * count if is_int else tuple(value) if isinstance(value, (tuple, list)) else ()
    if len(items) != count or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= lo for v in items):
        raise ValueError(f"{name} must be an integer >= {lo} or {what}, not {value!r}")
    return tuple(int(v) for v in items)


@dataclass(frozen=True)
class Window:
    """A 2-D sliding window over an NHWC map: kernel, stride and padding.

    Parameters
    ----------
    kernel : int or (int, int)
        Window height and width, each >= 1.
    stride : int or (int, int)
        Step between windows, vertically and horizontally, each >= 1.
    pads : int or (int, int, int, int)
        Rows and columns added around the map, as (top, left, bottom, right) like ONNX's
        ``pads`` of a 2-D operator; each below the kernel's size in its direction, so every
        window holds at least one position of the map.
    """

    kernel: tuple
    stride: tuple = (1, 1)
    pads: tuple = (0, 0, 0, 0)

    def __post_init__(self):
        kernel = _ints("kernel", self.kernel, 2, 1, "a pair of them")
        stride = _ints("stride", self.stride, 2, 1, "a pair of them")
        pads = _ints("pads", self.pads, 4, 0, "four of them (top, left, bottom, right)")
        if max(pads[0], pads[2]) >= kernel[0] or max(pads[1], pads[3]) >= kernel[1]:
            raise ValueError(f"pads {pads} must be below the kernel {kernel} in each "
                             f"direction (a window of padding alone has no value)")
        object.__setattr__(self, "kernel", kernel)
        object.__setattr__(self, "stride", stride)
        object.__setattr__(self, "pads", pads)

    def output_size(self, height, width):
        """Return ``(OH, OW)`` for an input of ``height`` x ``width``; ValueError if empty."""
        (kh, kw), (sh, sw), (top, left, bottom, right) = self.kernel, self.stride, self.pads
        oh = (height + top + bottom - kh) // sh + 1
        ow = (width + left + right - kw) // sw + 1
        if height < 1 or width < 1 or oh < 1 or ow < 1:
            raise ValueError(f"a {height}x{width} map is smaller than the {kh}x{kw} window "
                             f"with pads {self.pads}")
        return oh, ow

    def windows(self, X, fill):
        """Return the windows of the NHWC array ``X`` as (B, OH, OW, kh, kw, C).

        Padded positions hold ``fill``.
        """
        oh, ow = self.output_size(X.shape[1], X.shape[2])
        (kh, kw), (sh, sw), (top, left, bottom, right) = self.kernel, self.stride, self.pads
        padded = np.pad(X, ((0, 0), (top, bottom), (left, right), (0, 0)),
                        constant_values=fill)
        view = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(1, 2))
        view = view[:, :sh * (oh - 1) + 1:sh, :sw * (ow - 1) + 1:sw]
        return view.transpose(0, 1, 2, 4, 5, 3)     # (B, OH, OW, C, kh, kw) -> (.., kh, kw, C)


def _nhwc(name, X, dtype):
    return _as_int(name, X, dtype, ndim=4)


def im2col_nhwc(X, window):
    """Return the im2col rows of the NHWC map ``X``: (B*OH*OW) x (kh*kw*C), zero-padded.

    Row ``(b*OH + y)*OW + x`` is the window of output pixel (b, y, x) in (kh, kw, c) order.
    """
    X = np.asarray(X)
    if X.ndim != 4:
        raise ValueError(f"X must be a 4-D NHWC array, not shape {X.shape}")
    view = window.windows(X, 0)
    return view.reshape(view.shape[0] * view.shape[1] * view.shape[2], -1)


def conv_weight_matrix(W):
    """Return ONNX-layout (N, C, kh, kw) convolution weights as the K x N im2col matrix.

    Row ``(i*kw + j)*C + c`` holds tap (i, j) of input channel c, matching
    :func:`im2col_nhwc`; column n is output channel n.
    """
    W = np.asarray(W)
    if W.ndim != 4:
        raise ValueError(f"W must be 4-D (N, C, kh, kw), not shape {W.shape}")
    return np.ascontiguousarray(W.transpose(2, 3, 1, 0).reshape(-1, W.shape[0]))


def _conv(X, W, window, matmul, bias=None):
    if W.ndim != 2 or W.shape[0] != window.kernel[0] * window.kernel[1] * X.shape[3]:
        raise ValueError(f"weights must be a {window.kernel[0]}*{window.kernel[1]}*{X.shape[3]}"
                         f" x N matrix for a {window.kernel} window over {X.shape[3]} "
                         f"channels, not shape {W.shape}")
    oh, ow = window.output_size(X.shape[1], X.shape[2])
    rows = im2col_nhwc(X, window)
    acc = matmul(rows, W) if bias is None else matmul(rows, W, bias)
    return acc.reshape(X.shape[0], oh, ow, W.shape[1])


def conv2d_int8(Xq, Wq, window, bias=None):
    """Return the exact int32 convolution of an int8 NHWC map with int8 K x N weights.

    ``Wq`` is the im2col weight matrix (see :func:`conv_weight_matrix`); the result is
    (B, OH, OW, N) and equals ``gemm_int8(im2col_nhwc(Xq, window), Wq, bias)``: padded
    positions contribute 0.
    """
    Xq = _nhwc("Xq", Xq, np.int8)
    return _conv(Xq, np.asarray(Wq), window, gemm_int8, bias)


def conv2d_ternary(q, T, window):
    """Return the exact int32 convolution of an int8 NHWC map with ternary K x N weights.

    The twin of :func:`conv2d_int8` on the ternary engine: ``ternary_matmul`` over the
    im2col rows (static activation scale, so the rows need no per-token scale).
    """
    q = _nhwc("q", q, np.int8)
    return _conv(q, np.asarray(T), window, ternary_matmul)


def maxpool_int8(Y, window):
    """Return the max pooling of the int8 NHWC map ``Y``; padded positions never win.

    Requantization is monotonic, so pooling the requantized map equals requantizing the
    pooled accumulators: the device pools after it requantizes.
    """
    Y = _nhwc("Y", Y, np.int8)
    return window.windows(Y, -128).max(axis=(3, 4)).astype(np.int8)


def sumpool_int32(Y, window):
    """Return the exact int32 window sums of the int8 NHWC map ``Y`` (padding counts 0)."""
    Y = _nhwc("Y", Y, np.int8)
    return window.windows(Y.astype(np.int32), 0).sum(axis=(3, 4), dtype=np.int64).astype(np.int32)


def avgpool_requant_params(window, s_in, s_out, channels):
    """Return per-channel ``(mult, shift)`` that turn window sums into the average at ``s_out``.

    The real scale is ``s_in / (s_out * kh * kw)``: the divisor is the whole window, padded
    positions included (ONNX ``count_include_pad=1``; a global average pool has no padding).
    """
    kh, kw = window.kernel
    if not (np.isfinite(s_in) and np.isfinite(s_out) and s_in > 0 and s_out > 0):
        raise ValueError(f"scales must be positive and finite, not s_in={s_in}, s_out={s_out}")
    return requant_params(np.full(channels, float(s_in) / (float(s_out) * kh * kw)))


def avgpool_int8(Y, window, mult, shift):
    """Return the average pooling of the int8 NHWC map ``Y`` as int8.

    Defined as :func:`sumpool_int32` followed by :func:`requantize` with the per-channel
    ``mult`` and ``shift`` (from :func:`avgpool_requant_params`), so the device computes it
    exactly with the requantizer it already has.
    """
    return requantize(sumpool_int32(Y, window), mult, shift)


@dataclass(frozen=True)
class Im2colWalk:
    """The registers of the device's implicit-im2col walk over one NHWC activation map.

    The activation memory holds the map as words of ``chunk`` channels: pixel (b, y, x),
    channel chunk ct is word ``((b*H + y)*W + x)*CT + ct`` with ``CT = ceil(C / chunk)``
    (channels past C are zero). Column group ``g`` of im2col row ``m`` (``chunk``
    consecutive K entries: tap (i, j), chunk ct with ``g = (i*kw + j)*CT + ct``) is then
    one word, or padding. The hardware walks rows and column groups with adders only; the
    steps it adds are computed here, once per layer, from the geometry.

    Build one with :meth:`of`; :func:`im2col_word_addresses` is the reference it must
    reproduce.
    """

    images: int
    in_h: int
    in_w: int
    chunks: int
    out_h: int
    out_w: int
    kernel_h: int
    kernel_w: int
    stride_y: int
    stride_x: int
    pad_top: int
    pad_left: int
    #: Word offset of output pixel (0, 0, 0)'s window origin (negative under padding).
    base0: int
    #: Added to the window origin when x advances, when y advances (x back to 0), and
    #: when the image advances (x and y back to 0).
    x_step: int
    row_step: int
    image_step: int
    #: Added to the tap offset when the kernel row advances (j back to 0, ct back to 0).
    tap_row_step: int

    @classmethod
    def of(cls, window, images, height, width, chunks):
        """Return the walk of ``window`` over ``images`` maps of height x width x chunks."""
        oh, ow = window.output_size(height, width)
        (kh, kw), (sh, sw), (top, left, _, _) = window.kernel, window.stride, window.pads
        row = width * chunks
        x_step = sw * chunks
        row_step = sh * row - (ow - 1) * x_step
        image_step = height * row - (oh - 1) * sh * row - (ow - 1) * x_step
        return cls(images, height, width, chunks, oh, ow, kh, kw, sh, sw, top, left,
                   base0=-(top * row + left * chunks), x_step=x_step, row_step=row_step,
                   image_step=image_step, tap_row_step=(width - kw) * chunks + 1)

    @property
    def rows(self):
        """M: im2col rows (output pixels of every image)."""
        return self.images * self.out_h * self.out_w

    @property
    def groups(self):
        """Column groups of a row: kh * kw * CT words."""
        return self.kernel_h * self.kernel_w * self.chunks

    @property
    def words(self):
        """Words the stored input map occupies."""
        return self.images * self.in_h * self.in_w * self.chunks


def im2col_word_addresses(window, images, height, width, chunks):
    """Return the M x groups word addresses of the im2col rows, -1 where they are padding.

    The reference of :class:`Im2colWalk`: the im2col rows of a map whose every word holds
    its own address (computed by :func:`im2col_nhwc`, not by the walk's steps).
    """
    words = images * height * width * chunks
    addresses = np.arange(1, words + 1, dtype=np.int64).reshape(images, height, width, chunks)
    return im2col_nhwc(addresses, window) - 1
