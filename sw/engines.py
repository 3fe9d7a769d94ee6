"""The engine registry: every fact about each compute engine, in one place.

Each engine has one :class:`EngineSpec`: its name (``"systolic"``, ``"ternary"``, as in
:attr:`AcceleratorConfig.engines <tritile.sw.config.AcceleratorConfig.engines>`), its
protocol id (:class:`~tritile.sw.protocol.Engine`), the numerics its layers use
(``"int8"`` or ``"ternary"``, the compiler's word for a layer), its memory targets and
their byte layouts, its size parameters, its planner, its weight capacity, how a problem
is split into engine calls (:func:`tritile.sw.tiling.tile_problem`) and where its
gateware lives. The driver, the executor, the compiler, the protocol, the SoC, the
simulation harness and the ``tritile sim`` command ask the registry instead of branching
on the engine::

    spec = engine("ternary")
    spec.plan(config, m, k, n).cycles
    spec.memory_image(config, X, W, "base3")      # {core target: bytes}

Per-engine code lives in the two subclasses here and in the engines themselves. This
module is numpy-only; :meth:`EngineSpec.make_core` and :meth:`EngineSpec.make_engine`
import the gateware when called.
"""

import importlib

import numpy as np

from .arith import ceil_div
from .conv import Im2colWalk, Window
from .numerics import gemm_int8, ternary_matmul
from .packing import packed_size
from .planner import plan_gemm, plan_ternary
from .protocol import ENGINE_TARGETS, Engine
from .systolic_layout import (systolic_act_image, systolic_geometry, systolic_memory_image,
                              systolic_weight_image)
from .ternary_layout import (PACKINGS, ternary_act_image, ternary_geometry,
                             ternary_memory_image, ternary_weight_image, weight_target)

__all__ = ["EngineSpec", "ENGINES", "engine", "engine_for_numerics", "engine_of_target",
           "present_engines"]


class EngineSpec:
    """The facts of one compute engine.

    Members
    -------
    name : str
        The engine's one name.
    protocol_id : Engine
        Its RUN ``engine`` argument and capability bit.
    numerics : str
        ``"int8"`` or ``"ternary"``: the quantization of the layers it runs, and the kind
        of a weight handle made for it.
    size_fields : (str, str)
        The config fields of one tile's reduction (K) and output-channel (N) extent.
    weight_depth_field : str
        The config field that bounds ``K * N`` of one call.
    weight_values : (int, int)
        The least and the greatest weight value.
    packings : tuple of str
        Weight packings the engine accepts; the first is the default.
    targets : tuple of Target
        The protocol's write targets of its memories, in the order of the core's
        ``write.target`` numbering: activations first, then weights (one per packing).
    core_class, engine_class : str
        ``module:Class`` of the gateware core (for a SoC) and the standalone engine.
    """

    name = None
    protocol_id = None
    numerics = None
    size_fields = None
    weight_depth_field = None
    weight_values = None
    packings = None
    core_class = None
    engine_class = None

    @property
    def targets(self):
        """The protocol targets of the engine's memories, in its core's numbering."""
        return ENGINE_TARGETS[self.protocol_id]

    def __repr__(self):
        return f"<EngineSpec {self.name}>"

    # --- config -----------------------------------------------------------------------

    def present(self, config):
        """Return whether a device built from ``config`` has this engine."""
        return self.name in config.engines

    def tile_size(self, config):
        """Return ``(tile_k, tile_n)``: the K and N extent of one tile on ``config``."""
        return tuple(getattr(config, field) for field in self.size_fields)

    def sized(self, config, tile_k=None, tile_n=None):
        """Return ``config`` with this engine's tile resized (None keeps a size)."""
        changes = {field: value for field, value in zip(self.size_fields, (tile_k, tile_n))
                   if value is not None}
        return config.replace(**changes) if changes else config

    def peak_macs_per_cycle(self, config):
        """Return the MACs per cycle the engine does at full rate."""
        tile_k, tile_n = self.tile_size(config)
        return tile_k * tile_n

    def chunk(self, config):
        """Return the channels of one activation word (the K extent of one group)."""
        return getattr(config, self.size_fields[0])

    def walk(self, config, x_shape, window=None):
        """Return the :class:`~tritile.sw.conv.Im2colWalk` the engine reads its input by.

        ``x_shape`` is a dense problem's ``(M, K)`` (the 1 x 1 window over a 1 x M map)
        or, with ``window``, an NHWC map's ``(B, H, W, C)``.
        """
        if window is None:
            m, k = x_shape
            return Im2colWalk.of(Window(1), 1, 1, m, ceil_div(k, self.chunk(config)))
        images, height, width, channels = x_shape
        return Im2colWalk.of(window, images, height, width,
                             ceil_div(channels, self.chunk(config)))

    def conv_operands(self, config, X, W, window):
        """Return ``(pixels, weights)``: the NHWC map ``X`` and K x N conv weights ``W``
        (rows in (kh, kw, c) order) with the channels padded to whole words.

        ``pixels`` is (B*H*W) x C' and ``weights`` (kh*kw*C') x N, C' the channels rounded
        up to the chunk; the GEMM over the walk's rows equals the convolution.
        """
        chunk = self.chunk(config)
        images, height, width, channels = X.shape
        padded = ceil_div(channels, chunk) * chunk
        pixels = np.zeros((images * height * width, padded), X.dtype)
        pixels[:, :channels] = X.reshape(-1, channels)
        kh, kw = window.kernel
        weights = np.zeros((kh, kw, padded, W.shape[1]), W.dtype)
        weights[:, :, :channels] = W.reshape(kh, kw, channels, W.shape[1])
        return pixels, weights.reshape(-1, W.shape[1])

    def conv_image(self, config, X, W, window, packing=None):
        """Return ``{core target: bytes}`` loading the NHWC map ``X`` from word 0 and the
        conv weights ``W`` ((kh*kw*C) x N) from weight word 0."""
        pixels, weights = self.conv_operands(config, X, W, window)
        return self._images(config, pixels, weights, self.check_packing(packing))

    def _images(self, config, pixels, weights, packing):
        raise NotImplementedError

    def weight_capacity(self, config):
        """Return the most weights (``K * N``) one call holds."""
        return getattr(config, self.weight_depth_field)

    # --- problems ---------------------------------------------------------------------

    def plan(self, config, m, k, n):
        """Return the :class:`~tritile.sw.planner.EnginePlan` of one call (ValueError if it
        does not fit)."""
        raise NotImplementedError

    def layer_problems(self, config, k, n):
        """Return why a K x N layer cannot be one call per batch of rows (empty if it can).

        K and N within ``max_k`` and ``max_n``, one output row within the output memory,
        the weights within :meth:`weight_capacity`; the rows are split into calls.
        """
        problems = []
        if k > config.max_k:
            problems.append(f"K = {k} input features exceed max_k = {config.max_k}")
        if n > config.max_n:
            problems.append(f"N = {n} output features exceed max_n = {config.max_n}")
        if n > config.out_depth:
            problems.append(f"N = {n} output features exceed out_depth = {config.out_depth}")
        if k * n > self.weight_capacity(config):
            problems.append(f"K*N = {k * n} {self.numerics} weights exceed "
                            f"{self.weight_depth_field} = {self.weight_capacity(config)}")
        return problems

    def check_weights(self, name, W):
        """Raise ValueError unless ``W`` holds values this engine's weights can take."""
        lo, hi = self.weight_values
        if W.size and (W.min() < lo or W.max() > hi):
            values = ", ".join(str(v) for v in range(lo, hi + 1)) if hi - lo < 4 else \
                f"{lo}, ..., {hi}"
            raise ValueError(f"{name} values must be in {{{values}}}")

    def golden(self, X, W, bias=None):
        """Return the exact int32 accumulators ``X @ W (+ bias)`` of the numerics contract."""
        raise NotImplementedError

    # --- memories ---------------------------------------------------------------------

    def check_packing(self, packing):
        """Return ``packing``, or the default one for None; ValueError if not accepted."""
        if packing is None:
            return self.packings[0]
        if packing not in self.packings:
            raise ValueError(f"the {self.name} engine's packing must be one of "
                             f"{', '.join(self.packings)}, not {packing!r}")
        return packing

    def memory_image(self, config, X, W, packing=None):
        """Return ``{core target: bytes}`` that loads ``X`` (M x K) and ``W`` (K x N)."""
        raise NotImplementedError

    def weight_bytes(self, k, n, packing=None):
        """Return the payload bytes of K x N weights in ``packing``."""
        raise NotImplementedError

    def act_runs(self, config):
        """Return ``(run, stride)``: the used bytes of an activation word and its stride."""
        raise NotImplementedError

    def weight_runs(self, config, packing):
        """Return ``(run, stride)``: the used bytes of a weight word and its stride.

        ``(1, 1)`` for an image sent whole, byte after byte.
        """
        raise NotImplementedError

    def weight_core_target(self, packing):
        """Return the core's target number of weights in ``packing``."""
        raise NotImplementedError

    def protocol_target(self, core_target):
        """Return the protocol's :class:`~tritile.sw.protocol.Target` of a core target."""
        return self.targets[core_target]

    def core_target(self, target):
        """Return the core's number of the protocol target ``target``."""
        return self.targets.index(target)

    def target_size(self, config, target):
        """Return the bytes of the memory behind protocol ``target`` (0 if absent)."""
        if not self.present(config):
            return 0
        return self._target_sizes(config)[self.core_target(target)]

    def _target_sizes(self, config):
        raise NotImplementedError

    # --- gateware ---------------------------------------------------------------------

    def make_core(self, config):
        """Return the engine core for a SoC (imports Amaranth)."""
        return _load(self.core_class)(config)

    def make_engine(self, config):
        """Return the standalone engine, core plus output stage (imports Amaranth)."""
        return _load(self.engine_class)(config)


def _load(path):
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


class _Systolic(EngineSpec):
    name = "systolic"
    protocol_id = Engine.SYSTOLIC
    numerics = "int8"
    size_fields = ("systolic_rows", "systolic_cols")
    weight_depth_field = "weight_depth"
    weight_values = (-128, 127)
    packings = ("int8",)
    core_class = "tritile.hw.systolic:SystolicCore"
    engine_class = "tritile.hw.systolic:SystolicEngine"

    def plan(self, config, m, k, n):
        return plan_gemm(config, m, k, n)

    def golden(self, X, W, bias=None):
        return gemm_int8(X, W, bias)

    def memory_image(self, config, X, W, packing=None):
        self.check_packing(packing)
        return systolic_memory_image(config, X, W)

    def weight_bytes(self, k, n, packing=None):
        self.check_packing(packing)
        return k * n

    def act_runs(self, config):
        geometry = systolic_geometry(config)
        return config.systolic_rows, 1 << geometry.act_lane_bits

    def weight_runs(self, config, packing):
        self.check_packing(packing)
        geometry = systolic_geometry(config)
        return config.systolic_cols, 1 << geometry.weight_lane_bits

    def weight_core_target(self, packing):
        self.check_packing(packing)
        return 1

    def _images(self, config, pixels, weights, packing):
        return {0: systolic_act_image(config, pixels), 1: systolic_weight_image(config, weights)}

    def _target_sizes(self, config):
        geometry = systolic_geometry(config)
        return geometry.act_bytes, geometry.weight_bytes


class _Ternary(EngineSpec):
    name = "ternary"
    protocol_id = Engine.TERNARY
    numerics = "ternary"
    size_fields = ("ternary_fan_in", "ternary_lanes")
    weight_depth_field = "trit_depth"
    weight_values = (-1, 1)
    packings = ("base3", "2bit")
    core_class = "tritile.hw.ternary:TernaryUnit"
    engine_class = "tritile.hw.ternary:TernaryEngine"

    def plan(self, config, m, k, n):
        return plan_ternary(config, m, k, n)

    def golden(self, X, W, bias=None):
        acc = ternary_matmul(X, W)
        return acc if bias is None else (acc + np.asarray(bias, np.int32)).astype(np.int32)

    def memory_image(self, config, X, W, packing=None):
        return ternary_memory_image(config, X, W, self.check_packing(packing))

    def weight_bytes(self, k, n, packing=None):
        return packed_size(k * n, self.check_packing(packing))

    def act_runs(self, config):
        geometry = ternary_geometry(config)
        return geometry.act_word_bytes, geometry.act_stride

    def weight_runs(self, config, packing):
        # A 2-bit word fills the first bytes of its stride; the base-3 image is one stream.
        if self.check_packing(packing) == "base3":
            return 1, 1
        geometry = ternary_geometry(config)
        return geometry.weight_word_bytes, geometry.weight_stride

    def weight_core_target(self, packing):
        return weight_target(self.check_packing(packing))

    def _images(self, config, pixels, weights, packing):
        return {0: ternary_act_image(config, pixels),
                weight_target(packing): ternary_weight_image(config, weights, packing)}

    def _target_sizes(self, config):
        geometry = ternary_geometry(config)
        weights = geometry.weight_words * geometry.weight_stride
        return (geometry.act_words * geometry.act_stride,) + (weights,) * len(PACKINGS)


#: Every engine by name, in the order of their protocol ids.
ENGINES = {spec.name: spec for spec in sorted((_Systolic(), _Ternary()),
                                               key=lambda spec: spec.protocol_id)}


def engine(name):
    """Return the :class:`EngineSpec` called ``name`` (or with protocol id ``name``)."""
    if isinstance(name, EngineSpec):
        return name
    for spec in ENGINES.values():
        if name == spec.name or (isinstance(name, Engine) and name == spec.protocol_id):
            return spec
    raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {name!r}")


def engine_for_numerics(numerics):
    """Return the engine that runs layers of ``numerics`` (``"int8"`` or ``"ternary"``)."""
    for spec in ENGINES.values():
        if numerics == spec.numerics:
            return spec
    raise ValueError(f"numerics must be one of "
                     f"{', '.join(s.numerics for s in ENGINES.values())}, not {numerics!r}")


def engine_of_target(target):
    """Return the engine whose memory protocol ``target`` addresses, or None."""
    return next((spec for spec in ENGINES.values() if target in spec.targets), None)


def present_engines(config):
    """Return the specs of the engines a device built from ``config`` has."""
    return tuple(spec for spec in ENGINES.values() if spec.present(config))

