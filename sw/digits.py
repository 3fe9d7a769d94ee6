"""The 8x8 handwritten digits and a small NumPy MLP trained on them, for the demo.

The data is scikit-learn's bundled copy of the UCI "Optical Recognition of Handwritten
Digits" test set (1797 images, 8x8 pixels of 0..16; read from the installed package, no
download; UCI data is licensed CC BY 4.0, Alpaydin & Kaynak 1998). The split and the
training are seeded; even so, float sums in a different order (another BLAS kernel, another
CPU) train slightly different weights, so the demo does not train: it loads the weights
this module trained once, shipped in ``data/digits_models.npz``, and prints the same
figures on every machine. ``python -m tritile.sw.digits`` trains them again and rewrites
that file.

Two MLPs are trained with the same architecture (64 -> hidden, ReLU -> 10) by
:mod:`tritile.sw.training`: a float MLP, which the int8 path quantizes after training, and a
ternary MLP fine-tuned from it with BitLinear quantization in the loop. Two CNNs likewise
(8x8x1 image, two blocks of 3x3 pad-1 convolution, ReLU and 2x2 max pooling with 8 and 16
channels, a dense layer over the 2x2x16 map): a float one, and one fine-tuned from it with
ternary weights in the loop.
"""

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from .model import AvgPool2d, Conv2d, Dense, GlobalAvgPool, MaxPool2d, Model
from .training import train_cnn, train_mlp

__all__ = ["DigitsSplit", "load_digits_split", "train_mlp", "train_demo_models",
           "train_demo_cnns", "accuracy", "save_models", "load_models", "load_demo_models",
           "load_demo_cnns", "image_batch", "MODELS_FILE", "SEED", "HIDDEN", "CNN_CHANNELS",
           "IMAGE_SHAPE"]

#: The demo's trained weights, written by ``python -m tritile.sw.digits``.
MODELS_FILE = Path(__file__).parent / "data" / "digits_models.npz"

#: Seed of the split and of the training.
SEED = 0
#: Hidden width of the demo MLP: both layers' weights (64*32 + 32*10) fit the smallest
#: preset's weight memory at once.
HIDDEN = 32
#: Output channels of the demo CNN's two conv blocks.
CNN_CHANNELS = (8, 16)
#: One digit as an NHWC map.
IMAGE_SHAPE = (8, 8, 1)


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


def train_demo_cnns(split, channels=CNN_CHANNELS, seed=SEED):
    """Return the demo's ``(float_cnn, ternary_cnn)`` trained on ``split``, as Models.

    The ternary CNN is the float one fine-tuned with ternary weights in the loop.
    """
    X = image_batch(split.X_train)
    float_params = train_cnn(X, split.y_train, channels=channels, seed=seed)
    ternary_params = train_cnn(X, split.y_train, channels=channels, epochs=40, lr=1e-3,
                               ternary=True, init=float_params, seed=seed)
    return float_params.to_model(IMAGE_SHAPE), ternary_params.to_model(IMAGE_SHAPE)


def image_batch(X):
    """Return flat 64-pixel digits as an NHWC batch of 8x8x1 maps."""
    return np.asarray(X, np.float32).reshape(-1, *IMAGE_SHAPE)


_POOLS = {"maxpool": MaxPool2d, "avgpool": AvgPool2d}


def save_models(path, **models):
    """Write float models to a .npz file (no pickle), each under its keyword's name.

    Layer ``i`` of model ``name`` is stored under ``name.i.``: its ``kind`` (dense, conv,
    maxpool, avgpool, globalavgpool); ``W``, ``b`` and ``act`` (the activation's name, empty
    for none) of a dense or conv layer, and ``norm`` for a dense layer with one; ``stride``
    and ``pads`` of a conv or pooling layer, and ``kernel`` of a pooling one. A model over
    maps stores ``name.input_shape`` (H, W, C) and ``name.channels_first``.
    """
    arrays = {}
    for name, model in models.items():
        if model.is_convolutional:
            arrays[f"{name}.input_shape"] = np.array(model.input_shape)
            arrays[f"{name}.channels_first"] = np.array(model.channels_first)
        for i, layer in enumerate(model.layers):
            prefix = f"{name}.{i}."
            kind = {Dense: "dense", Conv2d: "conv", MaxPool2d: "maxpool", AvgPool2d: "avgpool",
                    GlobalAvgPool: "globalavgpool"}[type(layer)]
            arrays[prefix + "kind"] = np.array(kind)
            if kind in ("dense", "conv"):
                arrays[prefix + "W"], arrays[prefix + "b"] = layer.W, layer.b
                arrays[prefix + "act"] = np.array(layer.activation or "")
            if getattr(layer, "norm", None) is not None:
                arrays[prefix + "norm"] = layer.norm
            if kind in ("conv", "maxpool", "avgpool"):
                arrays[prefix + "stride"] = np.array(layer.window.stride)
                arrays[prefix + "pads"] = np.array(layer.window.pads)
            if kind in _POOLS:
                arrays[prefix + "kernel"] = np.array(layer.window.kernel)
    np.savez_compressed(path, **arrays)


def _load_layer(arrays, prefix):
    kind = str(arrays.get(prefix + "kind", "dense"))
    window = {key: tuple(int(v) for v in arrays[prefix + key])
              for key in ("kernel", "stride", "pads") if prefix + key in arrays}
    if kind == "dense":
        return Dense(arrays[prefix + "W"], arrays[prefix + "b"],
                     activation=str(arrays[prefix + "act"]) or None,
                     norm=arrays.get(prefix + "norm"))
    if kind == "conv":
        return Conv2d(arrays[prefix + "W"], arrays[prefix + "b"], window["stride"],
                      window["pads"], str(arrays[prefix + "act"]) or None)
    if kind == "globalavgpool":
        return GlobalAvgPool()
    if kind in _POOLS:
        return _POOLS[kind](window["kernel"], window["stride"], window["pads"])
    raise ValueError(f"layer {prefix[:-1]} has unknown kind {kind!r}")


def load_models(path, *names):
    """Return the models ``names`` stored in ``path`` by :func:`save_models`, in order."""
    with np.load(path, allow_pickle=False) as stored:
        arrays = dict(stored)
    models = []
    for name in names:
        layers = []
        while f"{name}.{len(layers)}.W" in arrays or f"{name}.{len(layers)}.kind" in arrays:
            layers.append(_load_layer(arrays, f"{name}.{len(layers)}."))
        if not layers:
            raise ValueError(f"{path} holds no model named {name!r}")
        shape = arrays.get(f"{name}.input_shape")
        models.append(Model(layers, input_shape=None if shape is None else tuple(shape),
                            channels_first=bool(arrays.get(f"{name}.channels_first", False))))
    return tuple(models)


def load_demo_models(path=MODELS_FILE):
    """Return the demo's shipped ``(float_model, ternary_model)``."""
    return load_models(path, "float_mlp", "ternary_mlp")


def load_demo_cnns(path=MODELS_FILE):
    """Return the demo's shipped ``(float_cnn, ternary_cnn)``, over 8x8x1 NHWC maps."""
    return load_models(path, "float_cnn", "ternary_cnn")


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
    float_cnn, ternary_cnn = train_demo_cnns(split)
    save_models(args.out, float_mlp=float_model, ternary_mlp=ternary_model,
                float_cnn=float_cnn, ternary_cnn=ternary_cnn)
    for name, model in (("float MLP", float_model), ("ternary-trained MLP", ternary_model),
                        ("float CNN", float_cnn), ("ternary-trained CNN", ternary_cnn)):
        print(f"{name}: float accuracy "
              f"{100 * accuracy(model.forward(split.X_test), split.y_test):.2f}% "
              f"on {len(split.X_test)} held-out images")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
