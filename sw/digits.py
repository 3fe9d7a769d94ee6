"""The 8x8 handwritten digits and a small NumPy MLP trained on them, for the demo.

The data is scikit-learn's bundled copy of the UCI "Optical Recognition of Handwritten
Digits" test set (1797 images, 8x8 pixels of 0..16; read from the installed package, no
download; UCI data is licensed CC BY 4.0, Alpaydin & Kaynak 1998). The split and the
training are seeded; even so, float sums in a different order (another BLAS kernel, another
CPU) train slightly different weights, so the demo does not train: it loads the weights
this module trained once, shipped in ``data/digits_models.npz``, and prints the same
figures on every machine. ``python -m tritile.sw.digits`` trains them again and rewrites
that file.

Two models are trained with the same architecture (64 -> hidden, ReLU -> 10) by
:mod:`tritile.sw.training`: a float MLP, which the int8 path quantizes after training, and a
ternary MLP fine-tuned from it with BitLinear quantization in the loop.
"""

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from .model import Dense, Model
from .training import train_mlp

__all__ = ["DigitsSplit", "load_digits_split", "train_mlp", "train_demo_models", "accuracy",
           "save_models", "load_models", "load_demo_models", "MODELS_FILE", "SEED", "HIDDEN"]

#: The demo's trained weights, written by ``python -m tritile.sw.digits``.
MODELS_FILE = Path(__file__).parent / "data" / "digits_models.npz"

#: Seed of the split and of the training.
SEED = 0
#: Hidden width of the demo MLP: both layers' weights (64*32 + 32*10) fit the smallest
#: preset's weight memory at once.
HIDDEN = 32


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
