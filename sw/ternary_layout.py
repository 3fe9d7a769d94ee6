"""Byte layout of the ternary unit's on-chip memories: the one definition host and tests use.

The unit reads one *word* of each memory per cycle:

- activation memory (target 0): a word holds the P int8 activations of one K group of one
  row of X. Row ``m`` occupies words ``m * G .. m * G + G - 1`` with ``G = ceil(K / P)``;
  the tail of a row's last word is zero.
- weight memory (target 1 for the 2-bit packing, 2 for base-3): a word holds the L x P
  trits of one (N tile, K group) pair, lane-major (trit ``l * P + j`` is
  ``T[g * P + j, t * L + l]``, zero outside T), in the 2-bit code
  (:func:`tritile.sw.packing.pack_trits_2bit`, ``ceil(L * P / 4)`` bytes). The tile
  ``t``, group ``g`` word is word ``t * G + g``.

A word of ``B`` bytes starts at byte address ``word * stride``, where the stride is the
power of two at or above ``B``, so the hardware splits an address into word and byte by
wiring. The base-3 target is the 2-bit target's bytes re-encoded as one stream, five
trits a byte (:func:`tritile.sw.packing.pack_trits_base3`): base-3 byte ``b`` holds the
trits at positions ``5b .. 5b + 4``, position ``4A + i`` being trit ``i`` of 2-bit byte
address ``A``. The stream runs on across words, so every config whose 2-bit words fill
their stride (``L * P`` four times a power of two: every preset) sends 1.6 bits per trit;
the unit stores the 2-bit code whichever target is written, transcoding base-3 bytes as
they arrive. A stream starts where a base-3 byte does not follow the last one's address:
the trits its first 2-bit byte holds before its own (``b % 4`` of them) read as 0, so a
stream that starts at a word starts at a base-3 address ``4 * A / 5`` with ``A`` a multiple
of 5 (always at word 0). The last byte of a stream writes zeros after its trits up to the
end of the 2-bit byte that holds its last one, within its word.
"""

import dataclasses

import numpy as np

from .arith import ceil_div
from .config import AcceleratorConfig
from .packing import (pack_trits_2bit, pack_trits_base3, packed_size, unpack_trits_2bit,
                      unpack_trits_base3)
from .planner import plan_ternary

__all__ = ["TARGET_ACTIVATIONS", "TARGET_WEIGHTS_2BIT", "TARGET_WEIGHTS_BASE3", "PACKINGS",
           "TernaryGeometry", "weight_target", "ternary_geometry", "ternary_memory_image",
           "ternary_act_image", "ternary_weight_image", "base3_stream", "base3_write"]

#: ``target`` of the engines' byte-write stream.
TARGET_ACTIVATIONS = 0
TARGET_WEIGHTS_2BIT = 1
TARGET_WEIGHTS_BASE3 = 2

#: Packings the unit accepts, each written to its own weight target.
PACKINGS = ("2bit", "base3")



def _pow2_at_least(value):
    return 1 << (value - 1).bit_length()


@dataclasses.dataclass(frozen=True)
class TernaryGeometry:
    """Word sizes and depths of the ternary unit's memories for one config.

    Members
    -------
    lanes, fan_in : int
        L and P.
    act_word_bytes, act_stride, act_words : int
        Bytes per activation word (P), its address stride, and the words the memory holds:
        enough for every problem with ``M * K <= act_depth``.
    weight_word_bytes, weight_stride, weight_words : int
        Bytes per weight word (``ceil(L * P / 4)``), its stride, and the words the memory
        holds: enough for every problem with ``K * N <= trit_depth``.
    """

    lanes: int
    fan_in: int
    act_word_bytes: int
    act_stride: int
    act_words: int
    weight_word_bytes: int
    weight_stride: int
    weight_words: int

    @property
    def bits_per_trit(self):
        """Bits of weight memory per trit the unit can hold (2.0: the 2-bit code)."""
        return self.weight_word_bytes * 8 / (self.lanes * self.fan_in)


def _check_packing(packing):
    if packing not in PACKINGS:
        raise ValueError(f"packing must be one of {', '.join(PACKINGS)}, not {packing!r}")


def weight_target(packing):
    """Return the unit's write target for weights in ``packing``."""
    _check_packing(packing)
    return {"2bit": TARGET_WEIGHTS_2BIT, "base3": TARGET_WEIGHTS_BASE3}[packing]


def _most_words(outer_max, inner_max, product_max, outer_block, inner_block):
    """Largest ``ceil(o / outer_block) * ceil(i / inner_block)`` over legal (o, i)."""
    best = 0
    for outer in range(1, outer_max + 1):
        inner = min(inner_max, product_max // outer)
        if inner == 0:
            break
        best = max(best, ceil_div(outer, outer_block) * ceil_div(inner, inner_block))
    return best


def ternary_geometry(config):
    """Return the :class:`TernaryGeometry` of ``config``'s ternary unit."""
    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"config must be an AcceleratorConfig, not {type(config).__name__}")
    lanes, fan_in = config.ternary_lanes, config.ternary_fan_in
    weight_word_bytes = packed_size(lanes * fan_in, "2bit")
    return TernaryGeometry(
        lanes=lanes, fan_in=fan_in,
        act_word_bytes=fan_in, act_stride=_pow2_at_least(fan_in),
        act_words=_most_words(config.max_m, config.max_k, config.act_depth, 1, fan_in),
        weight_word_bytes=weight_word_bytes,
        weight_stride=_pow2_at_least(weight_word_bytes),
        weight_words=_most_words(config.max_n, config.max_k, config.trit_depth, lanes,
                                 fan_in))


def ternary_memory_image(config, q, T, packing):
    """Return ``{target: bytes}``: what to write to the unit's memories for ``q @ T``.

    ``q`` is int8 M x K, ``T`` int8 K x N with values in {-1, 0, 1}; the problem must fit
    one call (:func:`tritile.sw.planner.plan_ternary`). Byte ``i`` of ``image[target]``
    goes to address ``i`` of that memory.
    """
    _check_packing(packing)
    q, T = np.asarray(q), np.asarray(T)
    if q.dtype != np.int8 or q.ndim != 2:
        raise ValueError(f"q must be a 2-D int8 array, not {q.ndim}-D {q.dtype}")
    if T.dtype != np.int8 or T.ndim != 2:
        raise ValueError(f"T must be a 2-D int8 array, not {T.ndim}-D {T.dtype}")
    if q.shape[1] != T.shape[0]:
        raise ValueError(f"q is {q.shape[0]}x{q.shape[1]} but T is "
                         f"{T.shape[0]}x{T.shape[1]}: inner dimensions differ")
    m, k = q.shape
    n = T.shape[1]
    plan_ternary(config, m, k, n)
    return {TARGET_ACTIVATIONS: ternary_act_image(config, q),
            weight_target(packing): ternary_weight_image(config, T, packing)}


def ternary_act_image(config, q):
    """Return the activation memory's bytes holding ``q`` (int8, one row of words each).

    Row ``m`` fills words ``m * G .. m * G + G - 1``, ``G = ceil(K / P)``: a dense
    problem's q, or an NHWC map as ``(B*H*W) x C`` pixels.
    """
    geometry = ternary_geometry(config)
    fan_in = geometry.fan_in
    m, k = q.shape
    groups = ceil_div(k, fan_in)
    if m * groups > geometry.act_words:
        raise ValueError(f"{m} x {k} activations take {m * groups} words; the ternary "
                         f"activation memory holds {geometry.act_words}")
    padded = np.zeros((m, groups * fan_in), np.int8)
    padded[:, :k] = q
    act = np.zeros((m * groups, geometry.act_stride), np.uint8)
    act[:, :fan_in] = padded.view(np.uint8).reshape(m * groups, fan_in)
    return act.tobytes()


def ternary_weight_image(config, T, packing):
    """Return the weight memory's bytes holding ``T`` (K x N trits) in ``packing``.

    The 2-bit image is ``stride``-byte words; the base-3 image is the stream of its trits,
    from word 0 to the last word's last byte.
    """
    _check_packing(packing)
    geometry = ternary_geometry(config)
    lanes, fan_in = geometry.lanes, geometry.fan_in
    k, n = T.shape
    groups, tiles = ceil_div(k, fan_in), ceil_div(n, lanes)
    trits = np.zeros((groups * fan_in, tiles * lanes), np.int8)
    trits[:k, :n] = T
    # (group, input, tile, lane) -> word (tile, group), lane-major inside the word.
    words = trits.reshape(groups, fan_in, tiles, lanes).transpose(2, 0, 3, 1)
    words = words.reshape(tiles * groups, lanes * fan_in)
    used = geometry.weight_word_bytes
    # Pad every word to whole bytes so that packing them back to back packs each alone.
    aligned = np.zeros((words.shape[0], used * 4), np.int8)
    aligned[:, :lanes * fan_in] = words
    packed = np.frombuffer(pack_trits_2bit(aligned), np.uint8).reshape(-1, used)
    weights = np.zeros((words.shape[0], geometry.weight_stride), np.uint8)
    weights[:, :used] = packed
    two_bit = weights.tobytes()
    return two_bit if packing == "2bit" else base3_stream(config, two_bit)


def base3_stream(config, two_bit):
    """Return the base-3 stream, from address 0, that writes the 2-bit image ``two_bit``
    (whole ``stride``-byte words from word 0), up to its last word's last used byte."""
    geometry = ternary_geometry(config)
    end = len(two_bit) - geometry.weight_stride + geometry.weight_word_bytes
    return pack_trits_base3(unpack_trits_2bit(two_bit[:end], 4 * end))


def base3_write(config, addr, data):
    """Return ``(first, bytes)``: what a base-3 stream ``data`` written from byte ``addr``
    of the base-3 target writes to the 2-bit target (its bytes from address ``first``).

    The device's rule (module docstring): base-3 byte ``b`` holds trit positions
    ``5b .. 5b + 4``; the positions of the first and the last 2-bit byte outside the
    stream are written as zeros. Bytes past a word's used bytes are dropped by the device.
    """
    if not data:
        return addr, b""
    trits = unpack_trits_base3(bytes(data), 5 * len(data))
    start = 5 * addr
    first, stop = start // 4, ceil_div(start + trits.size, 4)
    stream = np.zeros(4 * (stop - first), np.int8)
    stream[start - 4 * first:start - 4 * first + trits.size] = trits
    return first, pack_trits_2bit(stream)
