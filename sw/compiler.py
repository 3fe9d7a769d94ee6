"""Compile a float :class:`~tritile.sw.model.Model` into a device program.

Each layer becomes either an :class:`Int8Layer` for the systolic engine (the static int8
quantization of docs/numerics.md, activation scales calibrated on sample inputs, bias,
requantization and ReLU fused in the engine's output stage) or a :class:`TernaryLayer` for
the ternary engine (BitLinear: per-tensor absmean weights, per-token absmax activations,
optional RMSNorm on the host). Consecutive int8 layers pass int8 activations from one to the
next without any float step on the host; every other boundary goes through float on the
host. A :class:`Program` records the config_id it was compiled for.
"""

import dataclasses

import numpy as np

from .config import AcceleratorConfig
from .engines import ENGINES as _ENGINE_SPECS, engine_for_numerics
from .model import Model
from .numerics import (quantize_activations_int8, quantize_bias, quantize_weights_int8,
                       requant_params, ternarize_weights)

__all__ = ["CompileError", "Int8Layer", "TernaryLayer", "Program", "ENGINES",
           "compile_model", "layer_limit_problems"]

#: Numerics a layer can be compiled for, one per engine of :mod:`tritile.sw.engines`.
ENGINES = tuple(spec.numerics for spec in _ENGINE_SPECS.values())


class CompileError(ValueError):
    """A model cannot be compiled for a config (layer too large, missing calibration...)."""


def layer_limit_problems(config, k, n, engine):
    """Return why a K x N layer cannot run on ``engine`` of ``config`` (empty if it can).

    ``engine`` is a layer's numerics (``"int8"`` or ``"ternary"``); the rule is the
    engine's :meth:`~tritile.sw.engines.EngineSpec.layer_problems`: one engine call per
    batch of rows, the batch (M) split into calls by the driver.
    """
    return engine_for_numerics(engine).layer_problems(config, k, n)


@dataclasses.dataclass(frozen=True, eq=False)
class Int8Layer:
    """One layer on the systolic engine.

    Members
    -------
    Wq : ndarray of int8, shape (K, N)
        Weights quantized per output channel with scales ``s_w``.
    bias : ndarray of int32, shape (N,)
        Bias in the accumulator's scale ``s_x * s_w``.
    s_w : ndarray of float32, shape (N,)
        Weight scales.
    s_x : float
        Scale of the int8 input activations.
    norm : ndarray of float32, shape (K,) or None
        RMSNorm gain the host applies to the float input before quantizing it.
    quantize_input : bool
        True when the host quantizes a float input with ``s_x``; False when the input is
        the previous layer's int8 output, whose scale is ``s_x``.
    mult, shift : ndarray of int32, shape (N,), or None
        Requantization to int8 with scale ``s_y`` in the engine; None for a raw int32
        output that the host dequantizes with ``s_x * s_w``.
    s_y : float or None
        Scale of the requantized int8 output (with which the host dequantizes it when the
        layer is the last, as in a pre-quantized model).
    relu : bool
        ReLU, fused in the requantizer, or applied by the host to a raw output.
    """

    Wq: np.ndarray
    bias: np.ndarray
    s_w: np.ndarray
    s_x: float
    norm: np.ndarray
    quantize_input: bool
    mult: np.ndarray
    shift: np.ndarray
    s_y: float
    relu: bool

    engine = "int8"

    @property
    def shape(self):
        """``(K, N)``."""
        return self.Wq.shape

    @property
    def raw_output(self):
        """True when the engine returns int32 accumulators, not requantized int8."""
        return self.mult is None


@dataclasses.dataclass(frozen=True, eq=False)
class TernaryLayer:
    """One BitLinear layer on the ternary engine.

    Members
    -------
    T : ndarray of int8 in {-1, 0, 1}, shape (K, N)
        Ternary weights (per-tensor absmean).
    gamma : float
        Weight dequantization scale.
    bias : ndarray of float32, shape (N,)
        Bias, added by the host to the dequantized output (the ternary numerics have none).
    norm : ndarray of float32, shape (K,) or None
        RMSNorm gain the host applies before the per-token absmax quantization.
    relu : bool
        ReLU, applied by the host after the bias.
    """

    T: np.ndarray
    gamma: float
    bias: np.ndarray
    norm: np.ndarray
    relu: bool

    engine = "ternary"
    #: The engine returns int32 accumulators; the host dequantizes them.
    raw_output = True

    @property
    def shape(self):
        """``(K, N)``."""
        return self.T.shape


@dataclasses.dataclass(frozen=True, eq=False)
class Program:
    """A model compiled for one accelerator config.

    Members
    -------
    config : AcceleratorConfig
        The config the program was compiled for.
    config_id : str
        Its id; a device reporting another id refuses the program.
    layers : tuple of Int8Layer and TernaryLayer
        In execution order.
    """

    config: AcceleratorConfig
    config_id: str
    layers: tuple

    @property
    def in_features(self):
        """Features of one input sample."""
        return self.layers[0].shape[0]

    @property
    def out_features(self):
        """Features of one output sample."""
        return self.layers[-1].shape[1]

    def summary(self):
        """Return one dict per layer (engine, shape, fused steps), for display and JSON."""
        rows = []
        for index, layer in enumerate(self.layers):
            k, n = layer.shape
            row = {"layer": index, "engine": layer.engine, "k": k, "n": n,
                   "relu": layer.relu, "rms_norm": layer.norm is not None}
            if layer.engine == "int8":
                row["input"] = "float->int8 on host" if layer.quantize_input else "int8"
                row["output"] = "int32 (raw)" if layer.raw_output else "int8 (requantized)"
            else:
                row["input"] = "float->int8 per token on host"
                row["output"] = "int32 (raw)"
            rows.append(row)
        return rows


def _engines_per_layer(engine, count):
    engines = (engine,) * count if isinstance(engine, str) else tuple(engine)
    if len(engines) != count:
        raise CompileError(f"engine must be one of {ENGINES} or a list of one per layer "
                           f"({count}), not a list of {len(engines)}")
    for index, name in enumerate(engines):
        if name not in ENGINES:
            raise CompileError(f"engine of layer {index} must be one of {ENGINES}, "
                               f"not {name!r}")
    return engines


def _calibrated_scale(X):
    """Return the per-tensor scale ``max|X| / 127`` of docs/numerics.md (1.0 for all zeros)."""
    return quantize_activations_int8(X)[1]


def compile_model(model, config, engine="int8", calib=None):
    """Compile ``model`` for ``config``.

    Parameters
    ----------
    model : Model
    config : AcceleratorConfig
    engine : "int8", "ternary", or a sequence of these, one per layer
    calib : array_like, optional
        Sample inputs (M, ...) that calibrate the int8 activation scales; required when a
        layer is int8.

    Returns
    -------
    Program
    """
    if not isinstance(model, Model):
        raise CompileError(f"model must be a tritile.sw.model.Model, not "
                           f"{type(model).__name__}")
    if not isinstance(config, AcceleratorConfig):
        raise CompileError(f"config must be an AcceleratorConfig, not "
                           f"{type(config).__name__}")
    engines = _engines_per_layer(engine, len(model.layers))
    problems = [f"layer {index} ({layer.in_features}x{layer.out_features}, {name}): {p}"
                for index, (layer, name) in enumerate(zip(model.layers, engines))
                for p in layer_limit_problems(config, layer.in_features,
                                              layer.out_features, name)]
    if problems:
        raise CompileError(f"the model does not fit config {config.config_id}:\n  "
                           + "\n  ".join(problems))
    for index, (layer, name) in enumerate(zip(model.layers, engines)):
        if layer.quant is not None and name != "int8":
            raise CompileError(f"layer {index} is pre-quantized (QDQ) to int8; it runs on "
                               f"the int8 engine, not {name}")
    if any(name == "int8" and layer.quant is None
           for layer, name in zip(model.layers, engines)):
        if calib is None:
            raise CompileError("int8 layers need calibration inputs (calib) to set their "
                               "activation scales")
        calib = model.prepare_input(calib)
        if calib.shape[0] == 0:
            raise CompileError("calib must hold at least one sample")
        inputs = [calib] + model.forward(calib, return_all=True)[:-1]

    layers = []
    for index, (layer, name) in enumerate(zip(model.layers, engines)):
        relu = layer.activation == "relu"
        if name == "ternary":
            T, gamma = ternarize_weights(layer.W)
            layers.append(TernaryLayer(T, float(gamma), layer.b, layer.norm, relu))
            continue
        # An int8 input comes straight from the previous int8 layer unless a float step
        # (a norm, or a ternary layer's host-side dequantization) sits in between.
        chained_in = index > 0 and engines[index - 1] == "int8" and layer.norm is None
        quant = layer.quant     # a pre-quantized layer brings its own scales
        if chained_in:
            s_x = layers[-1].s_y
        elif quant is not None:
            s_x = quant.s_x
        else:
            s_x = _calibrated_scale(layer.normalize(inputs[index]))
        Wq, s_w = (quant.Wq, quant.s_w) if quant is not None else \
            quantize_weights_int8(layer.W, layer.b, s_x)
        try:
            bias = quantize_bias(layer.b, s_x, s_w)
        except ValueError as exc:
            raise CompileError(f"layer {index}: {exc}") from None
        chained_out = (index + 1 < len(engines) and engines[index + 1] == "int8"
                       and model.layers[index + 1].norm is None)
        mult = shift = s_y = None
        following = model.layers[index + 1].quant if chained_out else None
        if following is not None:
            s_y = following.s_x
        elif chained_out:
            s_y = _calibrated_scale(inputs[index + 1])
        elif quant is not None and index == len(engines) - 1:
            s_y = quant.s_y     # the model's own int8 output, dequantized by the host
        if s_y is not None:
            real = np.float64(s_x) * s_w.astype(np.float64) / np.float64(s_y)
            try:
                mult, shift = requant_params(real)
            except ValueError as exc:
                raise CompileError(f"layer {index}: output scale out of range: {exc}") from None
        layers.append(Int8Layer(Wq, bias, s_w, float(s_x), layer.norm, not chained_in,
                                mult, shift, s_y, relu))
    return Program(config, config.config_id, tuple(layers))
