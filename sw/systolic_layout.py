"""Byte layout of the systolic engine's activation and weight memories (host side).

The engine reads one *word* per cycle from each memory: R activations (one row of X for
one K tile) and C weights (one row of W for one N tile). A word occupies a power-of-two
stride of byte addresses, so the engine splits a byte address into word and lane with
wiring alone; lanes beyond R (or C) are never written.

- activations, target 0: the NHWC-chunked map of the contract (docs/systolic.md), words
  of R channels; a dense problem's row ``m``, K tile ``i`` is word ``m * CT + i`` with
  ``CT = ceil(K / R)``, holding ``X[m, i*R : i*R + R]`` (zeros past K). The engine reads
  it through the implicit-im2col walk of its ``start``;
- weights, target 1: word ``j * K + k`` holds ``W[k, j*C : j*C + C]`` (zeros past N),
  for N tile ``j`` and row ``k``.

The memories hold a few words more than ``act_depth / R`` and ``weight_depth / C`` so that
every problem :func:`tritile.sw.planner.plan_gemm` accepts fits despite the padding.
"""

import dataclasses

import numpy as np

from .arith import ceil_div
from .config import ConfigError
from .planner import plan_gemm

__all__ = ["SystolicGeometry", "systolic_geometry", "systolic_memory_image",
           "systolic_act_image", "systolic_weight_image", "ACT_TARGET", "WEIGHT_TARGET"]

#: ``target`` of the engine's write stream for each memory.
ACT_TARGET = 0
WEIGHT_TARGET = 1


def _ceil_log2(value):
    return (value - 1).bit_length()


@dataclasses.dataclass(frozen=True)
class SystolicGeometry:
    """Word counts and lane strides of the systolic engine's memories.

    Members
    -------
    act_words, weight_words : int
        Words in the activation (R bytes each) and weight (C bytes each) memories.
    act_lane_bits, weight_lane_bits : int
        ``log2`` of the byte stride of one word.
    """

    act_words: int
    weight_words: int
    act_lane_bits: int
    weight_lane_bits: int

    @property
    def act_bytes(self):
        """Byte addresses the activation memory spans on the write stream."""
        return self.act_words << self.act_lane_bits

    @property
    def weight_bytes(self):
        """Byte addresses the weight memory spans on the write stream."""
        return self.weight_words << self.weight_lane_bits


def systolic_geometry(config):
    """Return the memory geometry of the systolic engine generated for ``config``."""
    from ..hw.facts import WRITE_FIELDS   # the hardware's address width, Amaranth-free

    rows, cols = config.systolic_rows, config.systolic_cols
    reach = 1 << WRITE_FIELDS["addr"]
    # Padding K to whole tiles costs at most one word per row of X (M rows); padding N
    # costs at most one word per row of W (K rows).
    geometry = SystolicGeometry(
        act_words=ceil_div(config.act_depth, rows) + config.max_m,
        weight_words=ceil_div(config.weight_depth, cols) + config.max_k,
        act_lane_bits=_ceil_log2(rows), weight_lane_bits=_ceil_log2(cols))
    for name, span in (("act_depth", geometry.act_bytes),
                       ("weight_depth", geometry.weight_bytes)):
        if span > reach:
            raise ConfigError(
                f"{name} = {getattr(config, name)} makes the systolic engine's memory span "
                f"{span} byte addresses; the write stream reaches {reach}")
    return geometry


def systolic_memory_image(config, Xq, Wq):
    """Return ``{target: bytes}`` that loads ``Xq`` (M x K) and ``Wq`` (K x N), both int8.

    Byte ``a`` of each value goes to address ``a`` of that target's memory; the problem
    must pass :func:`~tritile.sw.planner.plan_gemm` on ``config``.
    """
    for name, array in (("Xq", Xq), ("Wq", Wq)):
        if not isinstance(array, np.ndarray) or array.dtype != np.int8 or array.ndim != 2:
            raise ValueError(f"{name} must be a 2-D int8 array, not "
                             f"{getattr(array, 'dtype', type(array).__name__)} "
                             f"of shape {getattr(array, 'shape', None)}")
    m, k = Xq.shape
    if Wq.shape[0] != k:
        raise ValueError(f"Xq is {m}x{k} but Wq is {Wq.shape[0]}x{Wq.shape[1]}: "
                         f"inner dimensions differ")
    plan_gemm(config, m, k, Wq.shape[1])
    return {ACT_TARGET: systolic_act_image(config, Xq),
            WEIGHT_TARGET: systolic_weight_image(config, Wq)}


def systolic_act_image(config, rows):
    """Return the activation memory's bytes holding ``rows`` (int8, one row of words each).

    Row ``m`` fills words ``m * CT .. m * CT + CT - 1``, ``CT = ceil(K / R)``: a dense
    problem's X, or an NHWC map as ``(B*H*W) x C`` pixels.
    """
    geometry = systolic_geometry(config)
    rows_r = config.systolic_rows
    m, k = rows.shape
    chunks = ceil_div(k, rows_r)
    if m * chunks > geometry.act_words:
        raise ValueError(f"{m} x {k} activations take {m * chunks} words; the systolic "
                         f"activation memory holds {geometry.act_words}")
    act = np.zeros((m, chunks, 1 << geometry.act_lane_bits), np.int8)
    padded = np.zeros((m, chunks * rows_r), np.int8)
    padded[:, :k] = rows
    act[:, :, :rows_r] = padded.reshape(m, chunks, rows_r)
    return act.tobytes()


def systolic_weight_image(config, Wq):
    """Return the weight memory's bytes holding ``Wq`` (K x N int8) from word 0."""
    geometry = systolic_geometry(config)
    cols = config.systolic_cols
    k, n = Wq.shape
    n_tiles = ceil_div(n, cols)
    weights = np.zeros((n_tiles, k, 1 << geometry.weight_lane_bits), np.int8)
    padded = np.zeros((k, n_tiles * cols), np.int8)
    padded[:, :n] = Wq
    weights[:, :, :cols] = padded.reshape(k, n_tiles, cols).transpose(1, 0, 2)
    return weights.tobytes()
