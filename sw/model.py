"""Float models as a list of layers: what the importer produces and the compiler consumes.

A :class:`Model` is a chain of layers applied to a batch of samples: :class:`Dense` layers
on feature vectors, and :class:`Conv2d`, :class:`MaxPool2d`, :class:`AvgPool2d` and
:class:`GlobalAvgPool` on feature maps held channels-last (NHWC: sample, row, column,
channel), the layout the device stores them in. A Dense layer after a map reads it
flattened in NHWC order; :func:`nchw_flatten_rows` permutes the rows of weights written for
an NCHW flatten (ONNX's, PyTorch's) into that order. Its float forward pass (float32) is the
reference the quantized programs are measured against. Build one from NumPy arrays
directly, or import an ONNX file with :func:`tritile.sw.onnx_import.import_onnx`.
"""

import dataclasses

import numpy as np

from .conv import Window, conv_weight_matrix, im2col_nhwc
from .numerics import float_array

__all__ = ["ModelError", "Dense", "Conv2d", "MaxPool2d", "AvgPool2d", "GlobalAvgPool",
           "Model", "Quantization", "rms_norm", "nchw_flatten_rows", "activate", "input_batch",
           "named_outputs",
           "ACTIVATIONS", "RMS_NORM_EPS", "OUTPUT_NAME"]

#: Activations a :class:`Dense` or :class:`Conv2d` layer can apply to its output
#: (``relu6`` is ``min(max(y, 0), 6)``, ONNX's ``Clip(0, 6)``).
ACTIVATIONS = (None, "relu", "relu6")

#: The epsilon of the host-side RMSNorm (docs/numerics.md).
RMS_NORM_EPS = 1e-6

#: Name of the output of a model that has no :class:`~tritile.sw.host_tail.HostTail`.
OUTPUT_NAME = "output"


class ModelError(ValueError):
    """A layer or model is malformed (shapes, dtypes, activation)."""


def _float_array(name, value, ndim):
    try:
        return float_array(name, value, ndim)
    except ValueError as exc:
        raise ModelError(str(exc)) from None


def activate(Y, activation):
    """Return ``Y`` after ``activation`` (one of :data:`ACTIVATIONS`), in float32."""
    if activation is None:
        return Y
    Y = np.maximum(Y, np.float32(0))
    return np.minimum(Y, np.float32(6)) if activation == "relu6" else Y


def _check_activation(activation):
    if activation not in ACTIVATIONS:
        raise ModelError(f"activation must be one of {ACTIVATIONS}, not {activation!r}")


def nchw_flatten_rows(W, shape):
    """Return the rows of ``W`` reordered from an NCHW flatten to the NHWC flatten.

    ``W`` (K x N) was written for a (C, H, W) map flattened channel-major, as ONNX's
    ``Flatten`` of an NCHW tensor does; ``shape`` is the map's (H, W, C). Row
    ``(y*W + x)*C + c`` of the result is row ``(c*H + y)*W + x`` of ``W``, so that
    ``flatten_nhwc(map) @ result == flatten_nchw(map) @ W``.
    """
    h, w, c = shape
    W = np.asarray(W)
    if W.shape[0] != h * w * c:
        raise ModelError(f"W has {W.shape[0]} rows but a {h}x{w}x{c} map has {h * w * c} "
                         f"features")
    return np.ascontiguousarray(W.reshape(c, h, w, -1).transpose(1, 2, 0, 3).reshape(W.shape))


def rms_norm(X, gain):
    """Return ``X * gain / sqrt(mean(X**2, axis=1) + 1e-6)``, per row, in float32."""
    X = np.asarray(X, dtype=np.float32)
    rms = np.sqrt(np.mean(X * X, axis=1, keepdims=True) + np.float32(RMS_NORM_EPS))
    return (X * np.asarray(gain, dtype=np.float32) / rms).astype(np.float32)


@dataclasses.dataclass(frozen=True, eq=False)
class Quantization:
    """The int8 quantization a pre-quantized (QDQ) model fixes for one :class:`Dense` layer.

    Zero points are 0 (symmetric int8), so a value is its integer times its scale.

    Members
    -------
    Wq : ndarray of int8, shape (K, N)
        The model's quantized weights.
    s_w : ndarray of float32, shape (N,)
        Weight scale per output channel (one value repeated for a per-tensor scale).
    s_x : float
        Scale of the int8 input.
    s_y : float or None
        Scale of the int8 tensor the layer's output (after its activation) is quantized
        to; None when the model leaves the output in float.
    """

    Wq: np.ndarray
    s_w: np.ndarray
    s_x: float
    s_y: float = None

    def __post_init__(self):
        Wq, s_w = np.asarray(self.Wq), np.asarray(self.s_w)
        if Wq.dtype != np.int8 or Wq.ndim != 2:
            raise ModelError(f"Wq must be a 2-D int8 array, not {Wq.dtype} of shape "
                             f"{Wq.shape}")
        if s_w.shape != (Wq.shape[1],) or not np.all(np.isfinite(s_w) & (s_w > 0)):
            raise ModelError(f"s_w must hold {Wq.shape[1]} positive scales, not {s_w!r}")
        for name, value in (("s_x", self.s_x), ("s_y", self.s_y)):
            if (value is not None or name == "s_x") and not 0 < float(value or 0) < np.inf:
                raise ModelError(f"{name} must be a positive finite scale, not {value!r}")
        object.__setattr__(self, "s_w", s_w.astype(np.float32))


class Dense:
    """A fully connected layer ``y = activation(norm(x) @ W + b)``.

    Parameters
    ----------
    W : array_like, shape (K, N)
        Weights, input features by output features (the layout of ``x @ W``; a PyTorch
        ``Linear.weight`` is its transpose).
    b : array_like, shape (N,), optional
        Bias; zeros when omitted.
    activation : None or "relu"
        Applied to the output.
    norm : array_like, shape (K,), optional
        Gain of an RMSNorm applied to the input first (BitLinear style); no norm when None.
    quant : Quantization, optional
        The int8 quantization of a pre-quantized model, used instead of calibrating; ``W``
        is then its dequantized weight ``Wq * s_w``.
    """

    def __init__(self, W, b=None, activation=None, norm=None, quant=None):
        self.W = _float_array("W", W, 2)
        if self.W.shape[0] < 1 or self.W.shape[1] < 1:
            raise ModelError(f"W must have at least one row and one column, "
                             f"not shape {self.W.shape}")
        k, n = self.W.shape
        self.b = np.zeros(n, np.float32) if b is None else _float_array("b", b, 1)
        if self.b.shape != (n,):
            raise ModelError(f"b must have shape ({n},) to match W's {n} output features, "
                             f"not {self.b.shape}")
        _check_activation(activation)
        self.activation = activation
        self.norm = None if norm is None else _float_array("norm", norm, 1)
        if self.norm is not None and self.norm.shape != (k,):
            raise ModelError(f"norm must have shape ({k},) to match W's {k} input features, "
                             f"not {self.norm.shape}")
        if quant is not None and (not isinstance(quant, Quantization)
                                  or quant.Wq.shape != self.W.shape):
            raise ModelError(f"quant must be a Quantization of int8 weights of shape "
                             f"{self.W.shape}, not {quant!r}")
        self.quant = quant

    @property
    def in_features(self):
        """Input features K."""
        return self.W.shape[0]

    @property
    def out_features(self):
        """Output features N."""
        return self.W.shape[1]

    def normalize(self, X):
        """Return the input as the matmul sees it: RMS-normalized if the layer has a norm."""
        return X if self.norm is None else rms_norm(X, self.norm)

    def activate(self, Y):
        """Apply the layer's activation to its pre-activation output."""
        return activate(Y, self.activation)

    def output_shape(self, shape):
        """Return the feature shape of the output for an input of feature ``shape``."""
        if int(np.prod(shape)) != self.in_features:
            raise ModelError(f"{self!r} takes {self.in_features} features, not the "
                             f"{'x'.join(map(str, shape))} of its input")
        return (self.out_features,)

    def forward(self, X):
        """Return the float32 output for a batch ``X`` (M, K), or a map flattened NHWC."""
        X = X.reshape(len(X), -1)
        return self.activate(self.normalize(X) @ self.W + self.b)

    def __repr__(self):
        extra = "".join([f", activation={self.activation!r}" if self.activation else "",
                         ", norm" if self.norm is not None else "",
                         ", int8 (QDQ)" if self.quant is not None else ""])
        return f"Dense({self.in_features}x{self.out_features}{extra})"


def input_batch(X, input_shape, channels_first=False):
    """Return the batch ``X`` (M, ...) as float32 (M, K), or as an (M, H, W, C) map when
    ``input_shape`` is (H, W, C); trailing axes are taken in C order, NCHW when
    ``channels_first``. Raise ModelError if the sizes differ."""
    X = np.asarray(X)
    if X.ndim < 1:
        raise ModelError("the input must have a sample axis, not be a scalar")
    X = _float_array("the input", X.reshape(X.shape[0], int(np.prod(X.shape[1:]))), 2)
    features = int(np.prod(input_shape))
    if X.shape[1] != features:
        raise ModelError(f"the input has {X.shape[1]} features per sample but the model "
                         f"takes {features}")
    if len(input_shape) != 3:
        return X
    h, w, c = input_shape
    if channels_first:
        return np.ascontiguousarray(X.reshape(-1, c, h, w).transpose(0, 2, 3, 1))
    return X.reshape(-1, h, w, c)


def named_outputs(Y, tail, channels_first):
    """Return ``{name: array}`` computed by ``tail`` (a HostTail or None) from a last layer's
    output ``Y``, an NHWC map given back NCHW when the model took NCHW inputs."""
    if Y.ndim == 4 and channels_first:
        Y = np.ascontiguousarray(Y.transpose(0, 3, 1, 2))
    return tail(Y) if tail is not None else {OUTPUT_NAME: Y}


def _map_shape(layer, shape):
    if len(shape) != 3:
        raise ModelError(f"{layer!r} needs a feature map (height, width, channels), not "
                         f"features of shape {shape}")
    return shape


class Conv2d:
    """A 2-D convolution ``y = activation(conv(x, W) + b)`` over NHWC maps (group 1).

    Parameters
    ----------
    W : array_like, shape (N, C, kh, kw)
        Weights in ONNX's (and PyTorch's) layout: output channels, input channels, kernel.
    b : array_like, shape (N,), optional
        Bias; zeros when omitted.
    stride : int or (int, int)
    pads : int or (top, left, bottom, right)
        Zero padding, as in :class:`tritile.sw.conv.Window`.
    activation : None, "relu" or "relu6"
    """

    def __init__(self, W, b=None, stride=1, pads=0, activation=None):
        self.W = _float_array("W", W, 4)
        n = self.W.shape[0]
        self.b = np.zeros(n, np.float32) if b is None else _float_array("b", b, 1)
        if self.b.shape != (n,):
            raise ModelError(f"b must have shape ({n},) to match W's {n} output channels, "
                             f"not {self.b.shape}")
        try:
            self.window = Window(self.W.shape[2:], stride, pads)
        except ValueError as exc:
            raise ModelError(str(exc)) from None
        _check_activation(activation)
        self.activation = activation

    @property
    def in_channels(self):
        """Input channels C."""
        return self.W.shape[1]

    @property
    def out_channels(self):
        """Output channels N."""
        return self.W.shape[0]

    @property
    def matrix(self):
        """The K x N im2col weight matrix, rows in (kh, kw, c) order."""
        return conv_weight_matrix(self.W)

    def output_shape(self, shape):
        """Return ``(OH, OW, N)`` for an input map of ``shape`` (H, W, C)."""
        h, w, c = _map_shape(self, shape)
        if c != self.in_channels:
            raise ModelError(f"{self!r} takes {self.in_channels} channels, not {c}")
        try:
            return (*self.window.output_size(h, w), self.out_channels)
        except ValueError as exc:
            raise ModelError(f"{self!r}: {exc}") from None

    def forward(self, X):
        """Return the float32 output map for an NHWC batch ``X``."""
        oh, ow, n = self.output_shape(X.shape[1:])
        Y = im2col_nhwc(X, self.window) @ self.matrix + self.b
        return activate(Y.reshape(len(X), oh, ow, n).astype(np.float32), self.activation)

    def __repr__(self):
        (kh, kw), extra = self.window.kernel, f", activation={self.activation!r}" \
            if self.activation else ""
        return (f"Conv2d({self.in_channels}->{self.out_channels}, {kh}x{kw}, "
                f"stride={self.window.stride}, pads={self.window.pads}{extra})")


class _Pool:
    #: True when the layer averages (the device sums and requantizes), False for a maximum.
    averages = False

    def __init__(self, kernel, stride=None, pads=0):
        try:
            self.window = Window(kernel, kernel if stride is None else stride, pads)
        except ValueError as exc:
            raise ModelError(str(exc)) from None

    def window_for(self, shape):
        """The pooling window over a map of ``shape``."""
        return self.window

    def output_shape(self, shape):
        h, w, c = _map_shape(self, shape)
        try:
            return (*self.window_for(shape).output_size(h, w), c)
        except ValueError as exc:
            raise ModelError(f"{self!r}: {exc}") from None

    def __repr__(self):
        w = self.window
        return f"{type(self).__name__}({w.kernel}, stride={w.stride}, pads={w.pads})"


class MaxPool2d(_Pool):
    """Max pooling over NHWC maps; padded positions never win.

    Parameters
    ----------
    kernel, stride, pads
        As in :class:`tritile.sw.conv.Window`; ``stride`` defaults to the kernel.
    """

    def forward(self, X):
        """Return the pooled float32 map."""
        return self.window.windows(X, -np.inf).max(axis=(3, 4)).astype(np.float32)


class AvgPool2d(_Pool):
    """Average pooling over NHWC maps, the divisor the whole window (padding included).

    That is ONNX's ``count_include_pad=1``, the form the device computes exactly (an
    integer window sum and one requantization). Parameters as :class:`MaxPool2d`.
    """

    averages = True

    def forward(self, X):
        """Return the pooled float32 map."""
        kh, kw = self.window.kernel
        return (self.window.windows(X, 0).sum(axis=(3, 4)) / np.float32(kh * kw)
                ).astype(np.float32)


class GlobalAvgPool(_Pool):
    """The average of each channel over the whole map: an (H, W, C) map becomes (1, 1, C)."""

    averages = True

    def __init__(self):
        # The window is the whole map, known once the input's shape is (window_for).
        self.window = None

    def window_for(self, shape):
        """The pooling window over a map of ``shape``: all of it."""
        return Window(tuple(shape[:2]))

    def forward(self, X):
        """Return the (M, 1, 1, C) float32 means."""
        return X.mean(axis=(1, 2), keepdims=True, dtype=np.float32)

    def __repr__(self):
        return "GlobalAvgPool()"


#: The layer types a :class:`Model` chains.
LAYERS = (Dense, Conv2d, MaxPool2d, AvgPool2d, GlobalAvgPool)


class Model:
    """A chain of layers over feature vectors or NHWC feature maps.

    Parameters
    ----------
    layers : sequence of Dense, Conv2d, MaxPool2d, AvgPool2d, GlobalAvgPool
        Applied in order; each layer accepts the shape the previous one produces (a Dense
        after a map reads it flattened in NHWC order).
    tail : HostTail, optional
        What the host computes from the last layer's output to give the model's named
        outputs (a classifier's probabilities and label); without one, the model has one
        output, :data:`OUTPUT_NAME`, the last layer's.
    input_shape : tuple of int, optional
        One sample's feature shape: (H, W, C) for a map, (K,) for a vector; defaults to
        the first layer's (K,), and is required when the first layer takes a map.
    channels_first : bool
        Inputs are given NCHW (as ONNX models take them) and are transposed to NHWC;
        an output map is returned NCHW.

    Inputs of any rank are accepted by :meth:`forward`: the first axis is the sample, the
    others are reshaped to the input (as ONNX ``Flatten`` with ``axis=1`` does for vectors).
    """

    def __init__(self, layers, tail=None, input_shape=None, channels_first=False):
        layers = tuple(layers)
        if not layers:
            raise ModelError("a model needs at least one layer")
        for index, layer in enumerate(layers):
            if not isinstance(layer, LAYERS):
                raise ModelError(f"layer {index} must be one of "
                                 f"{', '.join(t.__name__ for t in LAYERS)}, not "
                                 f"{type(layer).__name__}")
        if input_shape is None:
            if not isinstance(layers[0], Dense):
                raise ModelError(f"a model whose first layer is {layers[0]!r} needs its "
                                 f"input_shape (height, width, channels)")
            input_shape = (layers[0].in_features,)
        shape = self.input_shape = tuple(int(d) for d in input_shape)
        self.shapes = []
        for index, layer in enumerate(layers):
            try:
                shape = layer.output_shape(shape)
            except ModelError as exc:
                raise ModelError(f"layer {index}: {exc}") from None
            self.shapes.append(shape)
        self.layers = layers
        self.tail = tail
        self.channels_first = bool(channels_first)

    @property
    def output_names(self):
        """Names of the model's outputs, in order."""
        return self.tail.outputs if self.tail is not None else (OUTPUT_NAME,)

    @property
    def in_features(self):
        """Features of one input sample."""
        return int(np.prod(self.input_shape))

    @property
    def out_features(self):
        """Features of one output sample."""
        return int(np.prod(self.shapes[-1]))

    @property
    def is_convolutional(self):
        """True when the model takes a feature map."""
        return len(self.input_shape) == 3

    def layer_inputs(self):
        """Return the feature shape of each layer's input, in order."""
        return [self.input_shape] + self.shapes[:-1]

    def prepare_input(self, X):
        """Return ``X`` as a float32 batch of the input shape (NHWC maps), or raise ModelError."""
        return input_batch(X, self.input_shape, self.channels_first)

    def forward(self, X, return_all=False):
        """Return the float32 output for a batch ``X`` (a map NHWC).

        With ``return_all``, return the list of every layer's output instead.
        """
        X = self.prepare_input(X)
        outputs = []
        for layer in self.layers:
            X = layer.forward(X)
            outputs.append(X)
        return outputs if return_all else X

    def named_outputs(self, Y):
        """Return ``{name: array}``, the model's outputs computed from its last layer's ``Y``."""
        return named_outputs(Y, self.tail, self.channels_first)

    def predict(self, X):
        """Return the float reference of every named output for a batch ``X``."""
        return self.named_outputs(self.forward(X))

    def __repr__(self):
        tail = "" if self.tail is None else f", tail={self.tail!r}"
        shape = f", input_shape={self.input_shape}" if self.is_convolutional else ""
        return f"Model([{', '.join(map(repr, self.layers))}]{shape}{tail})"
