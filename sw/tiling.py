"""Split a problem larger than one engine call into calls, and put their results together.

The host driver, ``tritile sim`` and the executor's cost model split a problem the same
way: :func:`tile_problem` picks the largest tile (``tile_m x tile_k x tile_n``) that one
call of the engine accepts on a config, and :meth:`Tiling.calls` walks the tiles N tile
outer, K tile next, row block inner, so each tile's weights are loaded once. When K fits
one call, the engine adds the bias and requantizes; when K is split, every call returns
raw int32 partial sums, the host adds them, the bias and requantizes with the same
:func:`~tritile.sw.numerics.requantize` (:meth:`Tiling.assemble`).
"""

import dataclasses

import numpy as np

from .numerics import requantize

__all__ = ["TileCall", "Tiling", "tile_problem", "rows_per_call"]


@dataclasses.dataclass(frozen=True)
class TileCall:
    """One engine call of a tiled problem.

    Members
    -------
    rows, depth, cols : (int, int)
        The half-open ranges of M, K and N the call covers.
    raw : bool
        The call returns int32 accumulators (the problem is raw, or K is split).
    relu : bool
        The engine applies ReLU (only when it also requantizes).
    """

    rows: tuple
    depth: tuple
    cols: tuple
    raw: bool
    relu: bool

    @property
    def shape(self):
        """``(m, k, n)`` of the call."""
        return tuple(hi - lo for lo, hi in (self.rows, self.depth, self.cols))


def _ranges(size, step):
    return tuple((lo, min(lo + step, size)) for lo in range(0, size, step))


@dataclasses.dataclass(frozen=True)
class Tiling:
    """How an ``M x K x N`` problem is split into calls of one engine on one config.

    Members
    -------
    m, k, n : int
        The problem.
    tile_m, tile_k, tile_n : int
        The largest call.
    """

    m: int
    k: int
    n: int
    tile_m: int
    tile_k: int
    tile_n: int

    @property
    def m_ranges(self):
        return _ranges(self.m, self.tile_m)

    @property
    def k_ranges(self):
        return _ranges(self.k, self.tile_k)

    @property
    def n_ranges(self):
        return _ranges(self.n, self.tile_n)

    @property
    def split_k(self):
        """Whether K is split, so the host adds partial sums and requantizes."""
        return self.tile_k < self.k

    @property
    def weights_fit(self):
        """Whether all K x N weights fit one call (they can stay resident)."""
        return self.tile_k == self.k and self.tile_n == self.n

    def calls(self, raw=True, relu=False):
        """Return the :class:`TileCall` list, N tile outer, K tile next, rows inner."""
        return [TileCall(rows, depth, cols, raw or self.split_k, relu and not self.split_k)
                for cols in self.n_ranges for depth in self.k_ranges
                for rows in self.m_ranges]

    def params(self, call, bias=None, mult=None, shift=None):
        """Return the ``(bias, mult, shift)`` int64 arrays the engine applies in ``call``.

        A raw call passes its sums through (mult 0, shift 1); the bias is added by the
        engine unless K is split (then the host adds it once).
        """
        lo, hi = call.cols
        width = hi - lo
        if bias is None or self.split_k:
            bias = np.zeros(width, np.int64)
        else:
            bias = np.asarray(bias, np.int64)[lo:hi]
        if call.raw:
            return bias, np.zeros(width, np.int64), np.ones(width, np.int64)
        return bias, np.asarray(mult, np.int64)[lo:hi], np.asarray(shift, np.int64)[lo:hi]

    def assemble(self, calls, outputs, bias=None, mult=None, shift=None, relu=False):
        """Return the problem's result from each call's output (M x N).

        int32 accumulators without ``mult``, else int8 ``requantize(acc, mult, shift,
        relu)``; ValueError if summed partial accumulators leave int32.
        """
        raw = mult is None
        if not self.split_k:
            result = np.zeros((self.m, self.n), np.int32 if raw else np.int8)
            for call, output in zip(calls, outputs):
                result[slice(*call.rows), slice(*call.cols)] = output
            return result
        total = np.zeros((self.m, self.n), np.int64)
        for call, output in zip(calls, outputs):
            total[slice(*call.rows), slice(*call.cols)] += output
        if bias is not None:
            total += np.asarray(bias, np.int64)
        if total.min() < -(1 << 31) or total.max() >= 1 << 31:
            raise ValueError(f"the accumulators overflow int32 "
                             f"(range {total.min()}..{total.max()})")
        acc = total.astype(np.int32)
        return acc if raw else requantize(acc, np.asarray(mult, np.int32),
                                          np.asarray(shift, np.int32), relu)


def tile_problem(spec, config, m, k, n):
    """Return the :class:`Tiling` of an ``M x K x N`` problem on engine ``spec`` of ``config``.

    K is split only beyond ``max_k`` (or what one row of activations or the weight memory
    holds), N beyond what the output memory, ``max_n`` and the weight memory hold next to
    that K, and rows beyond ``max_m`` and what the activation and output memories hold.
    Raises ValueError if the engine is missing or a dimension is not positive.
    """
    for name, value in (("M", m), ("K", k), ("N", n)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")
    capacity = spec.weight_capacity(config)
    tile_k = min(k, config.max_k, config.act_depth, capacity)
    tile_n = min(n, config.max_n, capacity // tile_k, config.out_depth)
    tile_m = min(m, config.max_m, config.act_depth // tile_k, config.out_depth // tile_n)
    spec.plan(config, tile_m, tile_k, tile_n)
    return Tiling(m, k, n, tile_m, tile_k, tile_n)


def rows_per_call(spec, config, k, n):
    """Return how many rows of X one call of engine ``spec`` takes for a K x N layer."""
    return tile_problem(spec, config, config.max_m, k, n).tile_m
