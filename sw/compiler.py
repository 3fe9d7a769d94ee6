"""Compile a float :class:`~tritile.sw.model.Model` into a device program.

Each layer of a model of Dense layers becomes either a :class:`StaticLayer` for the
systolic engine (the static int8 quantization of docs/numerics.md, activation scales
calibrated on sample inputs, bias, requantization and ReLU fused in the engine's output
stage) or a :class:`TernaryLayer` for the ternary engine (BitLinear: per-tensor absmean
weights, per-token absmax activations, optional RMSNorm on the host). Consecutive int8
layers pass int8 activations from one to the next without any float step on the host;
every other boundary goes through float on the host.

A convolutional model compiles every Conv2d and Dense layer to a :class:`StaticLayer` on
either engine: int8 weights per output channel, or ternary weights per tensor, both with
calibrated *static* activation scales, so each layer's requantized int8 output is the next
one's input on both engines. Pooling layers join the convolution before them
(:class:`PoolStep`), and a Dense layer reading a map is the convolution whose window is
the whole map (its rows are already in NHWC order). Each such layer records what the
device's program mode needs (:class:`ConvStep`: GEMM shape with K padded to the engine's
chunk, the :class:`~tritile.sw.conv.Im2colWalk`, the weights in that padded order), and
:meth:`Program.summary` says where its weights and output would live. A
:class:`Program` records the config_id it was compiled for.
"""

import dataclasses

import numpy as np

from .arith import ceil_div
from .config import AcceleratorConfig
from .conv import Im2colWalk, Window, avgpool_requant_params
from .engines import ENGINES as _ENGINE_SPECS, engine_for_numerics
from .model import OUTPUT_NAME, Conv2d, Dense, Model, named_outputs
from .numerics import (quantize_activations_int8, quantize_bias, quantize_weights_int8,
                       requant_params, ternarize_weights)

__all__ = ["CompileError", "StaticLayer", "TernaryLayer", "ConvStep", "PoolStep", "Program",
           "ENGINES", "compile_model", "layer_limit_problems"]

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
class PoolStep:
    """Pooling applied to a convolution's requantized int8 output map.

    Members
    -------
    kind : "max" or "avg"
    window : Window
    mult, shift : ndarray of int32, shape (C,), or None
        Requantization of an average's window sums (:func:`~tritile.sw.conv.avgpool_int8`,
        divisor folded in); None for max pooling.
    s_y : float
        Scale of the pooled int8 map (the convolution's for max pooling).
    out_shape : (int, int, int)
        The pooled map's (H, W, C).
    """

    kind: str
    window: Window
    mult: np.ndarray
    shift: np.ndarray
    s_y: float
    out_shape: tuple


@dataclasses.dataclass(frozen=True, eq=False)
class ConvStep:
    """The convolution geometry of a :class:`StaticLayer`, and what the device needs of it.

    Members
    -------
    window : Window
    in_shape, out_shape : (int, int, int)
        (H, W, C) of the input map and of the convolution's output (before pooling).
    chunk : int
        Channels per activation word: the engine's K tile (``systolic_rows`` or
        ``ternary_fan_in``); input channels are padded to a multiple of it.
    pools : tuple of PoolStep
        Applied in order to the requantized map (usually one; a max pool followed by a
        global average is two).
    """

    window: Window
    in_shape: tuple
    out_shape: tuple
    chunk: int
    pools: tuple = ()

    @property
    def chunks(self):
        """Words per input pixel, ``ceil(C / chunk)``."""
        return ceil_div(self.in_shape[2], self.chunk)

    @property
    def pixels(self):
        """M per image: output pixels of the convolution."""
        return self.out_shape[0] * self.out_shape[1]

    @property
    def padded_k(self):
        """K of the device's GEMM: ``kh * kw * chunks * chunk``."""
        kh, kw = self.window.kernel
        return kh * kw * self.chunks * self.chunk

    def walk(self, images=1):
        """Return the :class:`~tritile.sw.conv.Im2colWalk` over ``images`` input maps."""
        h, w, _ = self.in_shape
        return Im2colWalk.of(self.window, images, h, w, self.chunks)

    def padded_weights(self, W):
        """Return the K x N weights in the padded order the walk reads (zero rows for the
        channels past C)."""
        kh, kw = self.window.kernel
        c = self.in_shape[2]
        W = np.asarray(W).reshape(kh * kw, c, -1)
        W = np.pad(W, ((0, 0), (0, self.chunks * self.chunk - c), (0, 0)))
        return W.reshape(self.padded_k, -1)

    @property
    def result_shape(self):
        """(H, W, C) of the layer's output map, after pooling."""
        return self.pools[-1].out_shape if self.pools else self.out_shape


@dataclasses.dataclass(frozen=True, eq=False)
class StaticLayer:
    """One layer with a static int8 input scale, on the systolic or the ternary engine.

    Members
    -------
    Wq : ndarray of int8, shape (K, N)
        Weights quantized per output channel with scales ``s_w`` (int8 engine), or trits
        with the per-tensor ``gamma`` repeated in ``s_w`` (ternary engine).
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
    activation : None, "relu" or "relu6"
        ReLU is fused in the requantizer (lo = 0), or applied by the host to a raw output.
        ReLU6 is ReLU in the requantizer: the output scale is calibrated after the clip,
        so int8 saturation at 127 stands for a value no larger than 6.
    engine : "int8" or "ternary"
    conv : ConvStep or None
        The convolution's geometry; None for a dense layer over a vector.
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
    activation: str
    engine: str = "int8"
    conv: ConvStep = None

    @property
    def shape(self):
        """``(K, N)``."""
        return self.Wq.shape

    @property
    def relu(self):
        """True when the output is clipped below at 0."""
        return self.activation is not None

    @property
    def out_scale(self):
        """Scale of the layer's int8 result (after pooling), or None for a raw output."""
        if self.conv is not None and self.conv.pools:
            return self.conv.pools[-1].s_y
        return self.s_y

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
    activation : None, "relu" or "relu6"
        Applied by the host after the bias.
    """

    T: np.ndarray
    gamma: float
    bias: np.ndarray
    norm: np.ndarray
    activation: str

    engine = "ternary"
    conv = None
    #: The engine returns int32 accumulators; the host dequantizes them.
    raw_output = True

    @property
    def relu(self):
        """True when the output is clipped below at 0."""
        return self.activation is not None

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
    layers : tuple of StaticLayer and TernaryLayer
        In execution order.
    input_shape : tuple of int
        One sample's feature shape: (K,), or (H, W, C) for a map.
    channels_first : bool
        Map inputs are given NCHW (transposed to NHWC before the first layer).
    output_shape : tuple of int
        One sample's output shape (a map's NHWC).
    tail : HostTail or None
        The model's output operators, run by the host on the last layer's output.
    """

    config: AcceleratorConfig
    config_id: str
    layers: tuple
    input_shape: tuple = None
    channels_first: bool = False
    output_shape: tuple = None
    tail: object = None

    def __post_init__(self):
        if self.input_shape is None:
            object.__setattr__(self, "input_shape", (self.layers[0].shape[0],))
        if self.output_shape is None:
            object.__setattr__(self, "output_shape", (self.layers[-1].shape[1],))

    @property
    def in_features(self):
        """Features of one input sample."""
        return int(np.prod(self.input_shape))

    @property
    def output_names(self):
        """Names of the model's outputs, in order."""
        return self.tail.outputs if self.tail is not None else (OUTPUT_NAME,)

    def named_outputs(self, Y):
        """Return ``{name: array}``, the model's outputs computed from its last layer's ``Y``."""
        return named_outputs(Y, self.tail, self.channels_first)

    @property
    def out_features(self):
        """Features of one output sample."""
        return int(np.prod(self.output_shape))

    def summary(self):
        """Return one dict per layer (engine, shape, fused steps, placement), for display and
        JSON.

        Placement is what the device's program mode does: the weights of each engine's
        layers are laid out one after the other in its weight memory and stay resident;
        an int8 output that the next layer reads without a host step stays on chip
        (ping-pong activation buffers, ``placement`` says where), any other goes to the
        host. On a config with program mode it comes from the lowering
        (:func:`~tritile.sw.program_lowering.lower_program`); when the program does not
        lower, every row says why and that it runs layer by layer. Without program mode
        it says where the weights would live.
        """
        placements = None
        if self.config.max_layers:
            from .program_lowering import lower_program

            try:
                placements = lower_program(self).placements
            except CompileError as exc:
                placements = [{"weights": f"sent per layer (no program mode: {exc})",
                               "output_stays_on_chip": False,
                               "placement": "to the host"}] * len(self.layers)
        rows, offsets = [], {}
        for index, layer in enumerate(self.layers):
            k, n = layer.shape
            spec = engine_for_numerics(layer.engine)
            row = {"layer": index, "engine": layer.engine, "k": k, "n": n,
                   "activation": layer.activation, "rms_norm": layer.norm is not None}
            if isinstance(layer, TernaryLayer):
                row["input"] = "float->int8 per token on host"
                row["output"] = "int32 (raw)"
            else:
                row["input"] = "float->int8 on host" if layer.quantize_input else "int8"
                row["output"] = "int32 (raw)" if layer.raw_output else "int8 (requantized)"
            words = k * n if layer.conv is None else layer.conv.padded_k * n
            if layer.conv is not None:
                conv, (kh, kw) = layer.conv, layer.conv.window.kernel
                row.update(conv=f"{kh}x{kw} stride {conv.window.stride} pads "
                                f"{conv.window.pads}", in_shape=list(conv.in_shape),
                           out_shape=list(conv.result_shape), m_per_image=conv.pixels,
                           k_padded=conv.padded_k, chunk=conv.chunk,
                           pools=[f"{pool.kind} {pool.window.kernel} stride "
                                  f"{pool.window.stride}" for pool in conv.pools])
            offset = offsets.get(layer.engine, 0)
            offsets[layer.engine] = offset + words
            resident = offset + words <= spec.weight_capacity(self.config)
            row["weights"] = (f"resident in {spec.weight_depth_field} at word {offset}"
                              if resident else f"streamed ({spec.weight_depth_field} full)")
            chained = index + 1 < len(self.layers) and isinstance(
                self.layers[index + 1], StaticLayer) and not self.layers[index + 1].quantize_input
            row["output_stays_on_chip"] = chained
            if placements is not None:
                place = placements[index]
                row.update(weights=place["weights"],
                           output_stays_on_chip=place["output_stays_on_chip"],
                           placement=place["placement"])
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


def _gemm_shape(layer):
    """``(K, N)`` of the GEMM a Dense or Conv2d layer runs as."""
    return layer.matrix.shape if isinstance(layer, Conv2d) else layer.W.shape


def _requant(index, s_x, s_w, s_y):
    real = np.float64(s_x) * s_w.astype(np.float64) / np.float64(s_y)
    try:
        return requant_params(real)
    except ValueError as exc:
        raise CompileError(f"layer {index}: output scale out of range: {exc}") from None


def _static_weights(index, W, b, s_x, engine):
    """Return ``(Wq, s_w, bias)``: int8 per channel or trits per tensor, int32 bias."""
    if engine == "int8":
        Wq, s_w = quantize_weights_int8(W, b, s_x)
    else:
        Wq, gamma = ternarize_weights(W)
        s_w = np.full(W.shape[1], gamma, np.float32)
    try:
        return Wq, s_w, quantize_bias(b, s_x, s_w)
    except ValueError as exc:
        raise CompileError(f"layer {index}: {exc}") from None


def compile_model(model, config, engine="int8", calib=None):
    """Compile ``model`` for ``config``.

    Parameters
    ----------
    model : Model
    config : AcceleratorConfig
    engine : "int8", "ternary", or a sequence of these, one per Dense or Conv2d layer
    calib : array_like, optional
        Sample inputs (M, ...) that calibrate the static activation scales; required when
        a layer is int8, and for every layer of a convolutional model.

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
    gemms = [layer for layer in model.layers if isinstance(layer, (Dense, Conv2d))]
    engines = _engines_per_layer(engine, len(gemms))
    problems = [f"layer {index} ({k}x{n}, {name}): {p}"
                for index, (layer, name) in enumerate(zip(gemms, engines))
                for k, n in [_gemm_shape(layer)]
                for p in layer_limit_problems(config, k, n, name)]
    if problems:
        raise CompileError(f"the model does not fit config {config.config_id}:\n  "
                           + "\n  ".join(problems))
    for index, (layer, name) in enumerate(zip(gemms, engines)):
        if getattr(layer, "quant", None) is not None and name != "int8":
            raise CompileError(f"layer {index} is pre-quantized (QDQ) to int8; it runs on "
                               f"the int8 engine, not {name}")
    static, outputs = model.is_convolutional, None
    if static or any(name == "int8" and layer.quant is None
                     for layer, name in zip(model.layers, engines)):
        if calib is None:
            raise CompileError("int8 layers and convolutional models need calibration "
                               "inputs (calib) to set their activation scales")
        outputs = model.forward(calib, return_all=True)
        calib = model.prepare_input(calib)
        if calib.shape[0] == 0:
            raise CompileError("calib must hold at least one sample")
    if static:
        layers = _compile_static(model, config, engines, calib, outputs)
    else:
        layers = _compile_dense(model, engines, None if outputs is None
                                else [calib] + outputs[:-1])
    return Program(config, config.config_id, tuple(layers), model.input_shape,
                   model.channels_first, model.shapes[-1], model.tail)


def _compile_dense(model, engines, inputs):
    """Compile a chain of Dense layers (int8 static, or BitLinear ternary)."""
    layers = []
    for index, (layer, name) in enumerate(zip(model.layers, engines)):
        if name == "ternary":
            T, gamma = ternarize_weights(layer.W)
            layers.append(TernaryLayer(T, float(gamma), layer.b, layer.norm, layer.activation))
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
        if quant is not None:
            Wq, s_w = quant.Wq, quant.s_w
            try:
                bias = quantize_bias(layer.b, s_x, s_w)
            except ValueError as exc:
                raise CompileError(f"layer {index}: {exc}") from None
        else:
            Wq, s_w, bias = _static_weights(index, layer.W, layer.b, s_x, "int8")
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
            mult, shift = _requant(index, s_x, s_w, s_y)
        layers.append(StaticLayer(Wq, bias, s_w, float(s_x), layer.norm, not chained_in,
                                  mult, shift, s_y, layer.activation))
    return layers


def _stages(model):
    """Group the layers of a convolutional model: ``(index, gemm layer, pool indices)``."""
    stages = []
    for index, layer in enumerate(model.layers):
        if isinstance(layer, (Dense, Conv2d)):
            stages.append((index, layer, []))
        elif not stages or not isinstance(stages[-1][1], Conv2d):
            raise CompileError(f"layer {index} ({layer!r}) must follow a Conv2d: pooling "
                               f"runs on a convolution's output before it is stored")
        else:
            stages[-1][2].append(index)
    for index, layer, _ in stages:
        if isinstance(layer, Dense) and (layer.norm is not None or layer.quant is not None):
            raise CompileError(f"layer {index} ({layer!r}): an RMSNorm or a pre-quantized "
                               f"(QDQ) layer cannot be part of a convolutional model")
    return stages


def _pool_steps(model, outputs, indices, s_in):
    """Return the PoolSteps of the pooling layers ``indices``, reading a map at ``s_in``."""
    steps = []
    for index in indices:
        pooling, shape = model.layers[index], model.layer_inputs()[index]
        window = pooling.window_for(shape)
        if pooling.averages:
            s_out = _calibrated_scale(outputs[index])
            mult, shift = avgpool_requant_params(window, s_in, s_out, shape[2])
            steps.append(PoolStep("avg", window, mult, shift, s_out, model.shapes[index]))
        else:
            steps.append(PoolStep("max", window, None, None, s_in, model.shapes[index]))
        s_in = steps[-1].s_y
    return tuple(steps)


def _compile_static(model, config, engines, calib, outputs):
    """Compile a convolutional model: every GEMM static, each output int8 on chip."""
    shapes = model.layer_inputs()
    stages = _stages(model)
    layers, s_x = [], _calibrated_scale(calib)
    for number, ((index, layer, pools), name) in enumerate(zip(stages, engines)):
        in_shape = shapes[index]
        chunk = engine_for_numerics(name).tile_size(config)[0]
        if isinstance(layer, Conv2d):
            W, window = layer.matrix, layer.window
        else:
            W, window = layer.W, Window(in_shape[:2]) if len(in_shape) == 3 else None
        Wq, s_w, bias = _static_weights(index, W, layer.b, s_x, name)
        mult = shift = s_y = None
        if number < len(stages) - 1 or pools:
            s_y = _calibrated_scale(outputs[index])
            mult, shift = _requant(index, s_x, s_w, s_y)
        conv = None if window is None else ConvStep(
            window, tuple(in_shape), window.output_size(*in_shape[:2]) + (W.shape[1],),
            chunk, _pool_steps(model, outputs, pools, s_y))
        layers.append(StaticLayer(Wq, bias, s_w, float(s_x), None, number == 0, mult, shift,
                                  s_y, layer.activation, name, conv))
        s_x = layers[-1].out_scale
    return layers
