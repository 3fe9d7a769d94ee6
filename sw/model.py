"""Float models as a list of layers: what the importer produces and the compiler consumes.

A :class:`Model` is a chain of :class:`Dense` layers applied to a batch of samples, one
sample per row. Its float forward pass (float32) is the reference the quantized programs
are measured against. Build one from NumPy arrays directly, or import an ONNX file with
:func:`tritile.sw.onnx_import.import_onnx`.
"""

import dataclasses

import numpy as np

from .numerics import float_array

__all__ = ["ModelError", "Dense", "Model", "Quantization", "rms_norm", "ACTIVATIONS",
           "RMS_NORM_EPS", "OUTPUT_NAME"]

#: Activations a :class:`Dense` layer can apply to its output.
ACTIVATIONS = (None, "relu")

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
        if activation not in ACTIVATIONS:
            raise ModelError(f"activation must be one of {ACTIVATIONS}, not {activation!r}")
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
        return np.maximum(Y, np.float32(0)) if self.activation == "relu" else Y

    def forward(self, X):
        """Return the float32 output for a batch ``X`` of shape (M, K)."""
        return self.activate(self.normalize(X) @ self.W + self.b)

    def __repr__(self):
        extra = "".join([f", activation={self.activation!r}" if self.activation else "",
                         ", norm" if self.norm is not None else "",
                         ", int8 (QDQ)" if self.quant is not None else ""])
        return f"Dense({self.in_features}x{self.out_features}{extra})"


class Model:
    """A chain of :class:`Dense` layers.

    Parameters
    ----------
    layers : sequence of Dense
        Applied in order; each layer's input features equal the previous one's outputs.
    tail : HostTail, optional
        What the host computes from the last layer's output to give the model's named
        outputs (a classifier's probabilities and label); without one, the model has one
        output, :data:`OUTPUT_NAME`, the last layer's.

    Inputs of any rank are accepted by :meth:`forward`: the first axis is the sample, the
    others are flattened in C order (as ONNX ``Flatten`` with ``axis=1`` does).
    """

    def __init__(self, layers, tail=None):
        layers = tuple(layers)
        if not layers:
            raise ModelError("a model needs at least one layer")
        for index, layer in enumerate(layers):
            if not isinstance(layer, Dense):
                raise ModelError(f"layer {index} must be a Dense, not {type(layer).__name__}")
        for index, (prev, layer) in enumerate(zip(layers, layers[1:]), start=1):
            if layer.in_features != prev.out_features:
                raise ModelError(f"layer {index} takes {layer.in_features} features but "
                                 f"layer {index - 1} produces {prev.out_features}")
        self.layers = layers
        self.tail = tail

    @property
    def output_names(self):
        """Names of the model's outputs, in order."""
        return self.tail.outputs if self.tail is not None else (OUTPUT_NAME,)

    @property
    def in_features(self):
        """Features of one input sample."""
        return self.layers[0].in_features

    @property
    def out_features(self):
        """Features of one output sample."""
        return self.layers[-1].out_features

    def flatten_input(self, X):
        """Return ``X`` as a float32 (M, in_features) batch, or raise ModelError."""
        X = np.asarray(X)
        if X.ndim < 1:
            raise ModelError("the input must have a sample axis, not be a scalar")
        X = _float_array("the input", X.reshape(X.shape[0], -1) if X.ndim != 2 else X, 2)
        if X.shape[1] != self.in_features:
            raise ModelError(f"the input has {X.shape[1]} features per sample but the model "
                             f"takes {self.in_features}")
        return X

    def forward(self, X, return_all=False):
        """Return the float32 output for a batch ``X``.

        With ``return_all``, return the list of every layer's output instead.
        """
        X = self.flatten_input(X)
        outputs = []
        for layer in self.layers:
            X = layer.forward(X)
            outputs.append(X)
        return outputs if return_all else X

    def named_outputs(self, Y):
        """Return ``{name: array}``, the model's outputs computed from its last layer's ``Y``."""
        return self.tail(Y) if self.tail is not None else {OUTPUT_NAME: Y}

    def predict(self, X):
        """Return the float reference of every named output for a batch ``X``."""
        return self.named_outputs(self.forward(X))

    def __repr__(self):
        tail = "" if self.tail is None else f", tail={self.tail!r}"
        return f"Model([{', '.join(map(repr, self.layers))}]{tail})"
