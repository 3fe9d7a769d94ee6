"""The 8x8 handwritten digits and a small NumPy MLP trained on them, for the demo.

The data is scikit-learn's bundled copy of the UCI "Optical Recognition of Handwritten
Digits" test set (1797 images, 8x8 pixels of 0..16; read from the installed package, no
download; UCI data is licensed CC BY 4.0, Alpaydin & Kaynak 1998). The split and the
training are seeded; even so, float sums in a different order (another BLAS kernel, another
CPU) train slightly different weights, so the demo does not train: it loads the weights
this module trained once, shipped in ``data/digits_models.npz``, and prints the same
figures on every machine. ``python -m tritile.sw.digits`` trains them again and rewrites
that file.

Two models are trained with the same architecture (64 -> hidden, ReLU -> 10): a float
MLP, which the int8 path quantizes after training, and a ternary MLP trained with
BitLinear quantization in the loop (straight-through estimator): the forward pass uses the
exact quantizers of :mod:`tritile.sw.numerics`, the backward pass treats them as identity.
"""

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from .model import Dense, Model
from .numerics import quantize_activations_absmax, ternarize_weights

__all__ = ["DigitsSplit", "load_digits_split", "train_mlp", "train_demo_models", "accuracy",
           "save_models", "load_models", "load_demo_models", "MODELS_FILE", "SEED", "HIDDEN"]

#: The demo's trained weights, written by ``python -m tritile.sw.digits``.
MODELS_FILE = Path(__file__).parent / "data" / "digits_models.npz"

#: Seed of the split and of the training.
SEED = 0
#: Hidden width of the demo MLP: both layers' weights (64*32 + 32*10) fit the smallest
#: preset's weight memory at once.
HIDDEN = 32
CLASSES = 10


@dataclasses.dataclass(frozen=True)
class DigitsSplit:
    """A fixed train/test split of the digits; pixels scaled to [0, 1] as float32.

    Members
    -------
    X_train, X_test : ndarray of float32, shape (M, 64)
    y_train, y_test : ndarray of int64, shape (M,)
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


def load_digits_split(test_size=0.25, seed=SEED):
    """Return the digits split into stratified train and test sets (450 test samples)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    X = (digits.data / np.float32(16)).astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(
        X, digits.target.astype(np.int64), test_size=test_size, random_state=seed,
        stratify=digits.target)
    return DigitsSplit(X_train, y_train, X_test, y_test)


def accuracy(scores, y):
    """Return the fraction of rows of ``scores`` whose argmax is the label ``y``."""
    return float(np.mean(np.argmax(scores, axis=1) == y))


def _ternary_forward(x, W):
    """BitLinear forward with the contract's quantizers: ``(x_q / s) @ (T * gamma)``."""
    q, s = quantize_activations_absmax(x)
    T, gamma = ternarize_weights(W)
    return (q.astype(np.float32) / s[:, None]) @ (T.astype(np.float32) * gamma)


class _Adam:
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
              seed=SEED):
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
    optimizer = _Adam(params, lr)
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


def train_demo_models(split, hidden=HIDDEN, seed=SEED):
    """Return the demo's ``(float_model, ternary_model)`` trained on ``split``.

    The ternary model is the float one fine-tuned with BitLinear quantization in the loop.
    """
    float_model = train_mlp(split.X_train, split.y_train, hidden=hidden, seed=seed)
    ternary_model = train_mlp(split.X_train, split.y_train, hidden=hidden, epochs=30, lr=1e-3,
                              ternary=True, init=float_model, seed=seed)
    return float_model, ternary_model


def save_models(path, **models):
    """Write float models to a .npz file (no pickle), each under its keyword's name.

    Layer ``i`` of model ``name`` is stored as ``name.i.W``, ``name.i.b``, ``name.i.act``
    (the activation's name, empty for none) and, for a layer with one, ``name.i.norm``.
    """
    arrays = {}
    for name, model in models.items():
        for i, layer in enumerate(model.layers):
            arrays[f"{name}.{i}.W"], arrays[f"{name}.{i}.b"] = layer.W, layer.b
            arrays[f"{name}.{i}.act"] = np.array(layer.activation or "")
            if layer.norm is not None:
                arrays[f"{name}.{i}.norm"] = layer.norm
    np.savez_compressed(path, **arrays)


def load_models(path, *names):
    """Return the models ``names`` stored in ``path`` by :func:`save_models`, in order."""
    with np.load(path, allow_pickle=False) as stored:
        arrays = dict(stored)
    models = []
    for name in names:
        layers = []
        while f"{name}.{len(layers)}.W" in arrays:
            prefix = f"{name}.{len(layers)}."
            layers.append(Dense(arrays[prefix + "W"], arrays[prefix + "b"],
                                activation=str(arrays[prefix + "act"]) or None,
                                norm=arrays.get(prefix + "norm")))
        if not layers:
            raise ValueError(f"{path} holds no model named {name!r}")
        models.append(Model(layers))
    return tuple(models)


def load_demo_models(path=MODELS_FILE):
    """Return the demo's shipped ``(float_model, ternary_model)``."""
    return load_models(path, "float_mlp", "ternary_mlp")


def main(argv=None):
    """Train the demo's models on this machine and write them to ``--out``."""
    parser = argparse.ArgumentParser(
        prog="python -m tritile.sw.digits",
        description="Train the demo's digits models and write their float weights.")
    parser.add_argument("--out", type=Path, default=MODELS_FILE,
                        help=f"the .npz file to write (default {MODELS_FILE})")
    args = parser.parse_args(argv)
    split = load_digits_split()
    float_model, ternary_model = train_demo_models(split)
    save_models(args.out, float_mlp=float_model, ternary_mlp=ternary_model)
    for name, model in (("float", float_model), ("ternary-trained", ternary_model)):
        print(f"{name} MLP: float accuracy {100 * accuracy(model.forward(split.X_test), split.y_test):.2f}% "
              f"on {len(split.X_test)} held-out images")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
