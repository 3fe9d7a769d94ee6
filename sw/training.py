"""NumPy training of the demo's models: Adam, softmax cross-entropy, ternary in the loop.

Small enough to run on a CPU in seconds, with no framework. ``ternary=True`` trains with
the weights ternarized in the forward pass by the contract's own quantizers
(:mod:`tritile.sw.numerics`) and the straight-through estimator in the backward pass (the
quantizer's gradient taken as identity), so the ternary program of the result is what was
trained. Everything is seeded; results still depend, in the last bits, on the order in
which the machine's BLAS sums (which is why the demo ships its weights).
"""

import numpy as np

from .conv import Window, im2col_nhwc
from .model import Conv2d, Dense, MaxPool2d, Model
from .numerics import quantize_activations_absmax, ternarize_weights

__all__ = ["Adam", "train_mlp", "train_cnn", "cnn_forward", "cnn_gradients", "CnnParams", "CLASSES"]

#: Classes of the digits.
CLASSES = 10


def _ternary_forward(x, W):
    """BitLinear forward with the contract's quantizers: ``(x_q / s) @ (T * gamma)``."""
    q, s = quantize_activations_absmax(x)
    T, gamma = ternarize_weights(W)
    return (q.astype(np.float32) / s[:, None]) @ (T.astype(np.float32) * gamma)


class Adam:
    """The Adam optimizer over a list of float32 arrays, updated in place."""

    def __init__(self, params, lr):
        self.params, self.lr, self.t = params, lr, 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]

    def step(self, grads, beta1=0.9, beta2=0.999, eps=1e-8):
        self.t += 1
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m *= beta1
            m += (1 - beta1) * g
            v *= beta2
            v += (1 - beta2) * g * g
            m_hat = m / (1 - beta1 ** self.t)
            v_hat = v / (1 - beta2 ** self.t)
            p -= self.lr * m_hat / (np.sqrt(v_hat) + eps)


def train_mlp(X, y, hidden=32, epochs=60, lr=3e-3, batch=32, ternary=False, init=None,
              seed=0):
    """Train a 2-layer ReLU MLP with softmax cross-entropy and Adam; return a Model.

    Parameters
    ----------
    X, y : training inputs (M, K) and integer labels (M,)
    hidden : int
        Hidden width.
    ternary : bool
        Train with BitLinear quantization in the forward pass (straight-through
        estimator), so that the ternary program of the result is what was trained.
    init : Model, optional
        Start from these weights (e.g. a float model, before ternary fine-tuning).
    seed : int
        Seeds initialization and batch order.
    """
    rng = np.random.default_rng(seed)
    X = np.asarray(X, np.float32)
    if init is None:
        W1 = (rng.standard_normal((X.shape[1], hidden)) * np.sqrt(2 / X.shape[1]))
        W2 = (rng.standard_normal((hidden, CLASSES)) * np.sqrt(2 / hidden))
        params = [W1.astype(np.float32), np.zeros(hidden, np.float32),
                  W2.astype(np.float32), np.zeros(CLASSES, np.float32)]
    else:
        params = [a.copy() for layer in init.layers for a in (layer.W, layer.b)]
    W1, b1, W2, b2 = params
    linear = _ternary_forward if ternary else (lambda x, W: x @ W)
    optimizer = Adam(params, lr)
    onehot = np.eye(CLASSES, dtype=np.float32)[y]
    for _ in range(epochs):
        order = rng.permutation(len(X))
        for start in range(0, len(X), batch):
            idx = order[start:start + batch]
            x, t = X[idx], onehot[idx]
            pre = linear(x, W1) + b1
            h = np.maximum(pre, 0)
            logits = linear(h, W2) + b2
            p = np.exp(logits - logits.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            # Straight-through: the quantized forward's gradient is that of x @ W.
            d_logits = (p - t) / len(idx)
            d_h = (d_logits @ W2.T) * (pre > 0)
            optimizer.step([x.T @ d_h, d_h.sum(axis=0), h.T @ d_logits, d_logits.sum(axis=0)])
    return Model([Dense(W1, b1, activation="relu"), Dense(W2, b2)])




class CnnParams:
    """Float parameters of the demo CNN, a stack of conv-ReLU-maxpool blocks and a dense layer.

    Parameters
    ----------
    convs : list of (W, b)
        Per block, the K x N im2col weight matrix (rows in (kh, kw, c) order, see
        :func:`tritile.sw.conv.conv_weight_matrix`) and the bias; every block is a 3 x 3
        convolution with padding 1, ReLU, and 2 x 2 max pooling with stride 2.
    dense : (W, b)
        The classifier over the last block's map flattened in NHWC order.
    """

    KERNEL = Window(3, 1, 1)
    POOL = 2

    def __init__(self, convs, dense):
        self.convs = [(np.asarray(W, np.float32), np.asarray(b, np.float32)) for W, b in convs]
        self.dense = tuple(np.asarray(a, np.float32) for a in dense)

    def arrays(self):
        """Every array, in the order the optimizer updates them."""
        return [a for pair in (*self.convs, self.dense) for a in pair]

    def to_model(self, input_shape):
        """Return the CNN as a float :class:`~tritile.sw.model.Model` over NHWC maps of
        ``input_shape`` (H, W, C): Conv2d (ONNX weight layout), ReLU, MaxPool2d per block,
        then the Dense classifier (its rows already in NHWC-flatten order)."""
        layers, c_in = [], input_shape[2]
        for W, b in self.convs:
            kh, kw = self.KERNEL.kernel
            onnx_W = W.reshape(kh, kw, c_in, -1).transpose(3, 2, 0, 1)
            layers += [Conv2d(onnx_W, b, self.KERNEL.stride, self.KERNEL.pads, "relu"),
                       MaxPool2d(self.POOL)]
            c_in = W.shape[1]
        return Model([*layers, Dense(*self.dense)], input_shape=input_shape)


def _conv_forward(x, W, b):
    rows = im2col_nhwc(x, CnnParams.KERNEL)
    oh, ow = CnnParams.KERNEL.output_size(x.shape[1], x.shape[2])
    return (rows @ W + b).reshape(x.shape[0], oh, ow, -1), rows


def _conv_backward(d_out, rows, W, x_shape):
    """Return the gradients of the input, the weights and the bias of a convolution."""
    d = d_out.reshape(-1, d_out.shape[-1])
    d_rows = d @ W.T
    # Scatter each im2col entry's gradient back to the map position it was read from:
    # im2col of a map of its own (1-based) indices says where, 0 for padding.
    index = im2col_nhwc(np.arange(1, np.prod(x_shape) + 1).reshape(x_shape),
                        CnnParams.KERNEL) - 1
    inside = index >= 0
    d_x = np.bincount(index[inside], weights=d_rows[inside], minlength=int(np.prod(x_shape)))
    return d_x.reshape(x_shape).astype(np.float32), rows.T @ d, d.sum(axis=0)


def _pool_forward(x):
    """2 x 2 max pooling, stride 2; return the map and the mask of the maxima."""
    b, h, w, c = x.shape
    view = x[:, :h - h % 2, :w - w % 2].reshape(b, h // 2, 2, w // 2, 2, c)
    out = view.max(axis=(2, 4))
    return out, view == out[:, :, None, :, None, :]


def _pool_backward(d_out, mask, x_shape):
    share = mask / np.maximum(mask.sum(axis=(2, 4), keepdims=True), 1)
    d = (share * d_out[:, :, None, :, None, :]).reshape(
        d_out.shape[0], 2 * d_out.shape[1], 2 * d_out.shape[2], d_out.shape[3])
    d_x = np.zeros(x_shape, np.float32)
    d_x[:, :d.shape[1], :d.shape[2]] = d
    return d_x


def _ternary_weights(W):
    T, gamma = ternarize_weights(W)
    return T.astype(np.float32) * gamma


def train_cnn(X, y, channels=(8, 16), epochs=30, lr=3e-3, batch=32, ternary=False,
              init=None, seed=0):
    """Train the demo CNN on NHWC images ``X`` with softmax cross-entropy and Adam.

    Parameters
    ----------
    X, y : (M, H, W, C) float inputs and integer labels (M,)
    channels : output channels of each conv block
    ternary : bool
        Ternarize every weight matrix in the forward pass (straight-through estimator).
    init : CnnParams, optional
        Start from these parameters (e.g. the float CNN, before ternary fine-tuning).

    Returns :class:`CnnParams`.
    """
    rng = np.random.default_rng(seed)
    X = np.asarray(X, np.float32)
    if init is None:
        convs, c_in, (h, w) = [], X.shape[3], X.shape[1:3]
        for c_out in channels:
            fan_in = 9 * c_in
            convs.append((rng.standard_normal((fan_in, c_out)) * np.sqrt(2 / fan_in),
                          np.zeros(c_out)))
            c_in, h, w = c_out, h // 2, w // 2
        features = h * w * c_in
        params = CnnParams(convs, (rng.standard_normal((features, CLASSES))
                                   * np.sqrt(2 / features), np.zeros(CLASSES)))
    else:
        params = CnnParams([(W.copy(), b.copy()) for W, b in init.convs],
                           [a.copy() for a in init.dense])
    optimizer = Adam(params.arrays(), lr)
    onehot = np.eye(CLASSES, dtype=np.float32)[y]
    for _ in range(epochs):
        order = rng.permutation(len(X))
        for start in range(0, len(X), batch):
            idx = order[start:start + batch]
            optimizer.step(cnn_gradients(params, X[idx], onehot[idx], ternary)[1])
    return params


def cnn_gradients(params, x, onehot, ternary=False):
    """Return the mean cross-entropy of a batch and its gradients, in ``params.arrays()`` order.

    With ``ternary``, the forward pass uses ternarized weights and the gradients are the
    straight-through estimator's.
    """
    weights = _ternary_weights if ternary else (lambda W: W)
    saved = []
    for W, b in params.convs:
        pre, rows = _conv_forward(x, weights(W), b)
        pooled, mask = _pool_forward(np.maximum(pre, 0))
        saved.append((x.shape, rows, pre, mask))
        x = pooled
    flat = x.reshape(len(x), -1)
    W3, b3 = params.dense
    logits = flat @ weights(W3) + b3
    shifted = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(shifted)
    p /= p.sum(axis=1, keepdims=True)
    loss = float(-np.mean(np.sum(onehot * (shifted - np.log(np.exp(shifted).sum(axis=1,
                                                                           keepdims=True))),
                                 axis=1)))
    d_logits = (p - onehot) / len(x)
    grads = [flat.T @ d_logits, d_logits.sum(axis=0)]
    d = (d_logits @ weights(W3).T).reshape(x.shape)
    for (W, _), (x_shape, rows, pre, mask) in zip(params.convs[::-1], saved[::-1]):
        d = _pool_backward(d, mask, pre.shape) * (pre > 0)
        d, d_W, d_b = _conv_backward(d, rows, weights(W), x_shape)
        grads[:0] = [d_W, d_b]
    return loss, grads


def cnn_forward(params, X, ternary=False):
    """Return the float logits of the CNN ``params`` for NHWC images ``X``."""
    weights = _ternary_weights if ternary else (lambda W: W)
    x = np.asarray(X, np.float32)
    for W, b in params.convs:
        x = _pool_forward(np.maximum(_conv_forward(x, weights(W), b)[0], 0))[0]
    W3, b3 = params.dense
    return x.reshape(len(x), -1) @ weights(W3) + b3
