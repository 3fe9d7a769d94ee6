"""Tiling planner and analytic cycle model of both engines.

For a problem ``M x K x N`` (X is M x K, W is K x N) on one :class:`AcceleratorConfig`,
the planner says how the engine tiles it, how many clock cycles the hardware is expected
to take from start to the last output, and the resulting utilization. Simulations and
board runs report their measured cycles next to :attr:`EnginePlan.cycles`.
"""

import dataclasses

from .config import AcceleratorConfig

__all__ = ["EnginePlan", "plan_gemm", "plan_ternary", "check_problem"]


def _ceil_div(a, b):
    return -(-a // b)


@dataclasses.dataclass(frozen=True)
class EnginePlan:
    """How one engine call runs a problem, and what it costs.

    Members
    -------
    engine : str
        ``"systolic"`` or ``"ternary"``.
    m, k, n : int
        Problem size.
    tile_k, tile_n : int
        Reduction and output-channel extent of one tile (R x C for the systolic array,
        P x L for the ternary unit).
    k_tiles, n_tiles : int
        Number of tiles along K and N.
    macs : int
        Useful multiply-accumulates, ``m * k * n``.
    peak_macs_per_cycle : int
        MACs per cycle the engine does at full rate.
    cycles : int
        Predicted cycles from start to the last output.
    """

    engine: str
    m: int
    k: int
    n: int
    tile_k: int
    tile_n: int
    k_tiles: int
    n_tiles: int
    macs: int
    peak_macs_per_cycle: int
    cycles: int

    @property
    def tiles(self):
        """Number of (K, N) tiles the engine walks."""
        return self.k_tiles * self.n_tiles

    @property
    def utilization(self):
        """Useful MACs over the MACs the engine could have done in :attr:`cycles`."""
        return self.macs / (self.peak_macs_per_cycle * self.cycles)

    def to_dict(self):
        """Return the plan with its derived figures, for JSON output."""
        return {**dataclasses.asdict(self), "tiles": self.tiles,
                "utilization": self.utilization}


def check_problem(config, m, k, n):
    """Raise ValueError unless an M x K x N problem fits one engine call on ``config``."""
    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"config must be an AcceleratorConfig, not {type(config).__name__}")
    for name, value, limit in (("M", m, config.max_m), ("K", k, config.max_k),
                               ("N", n, config.max_n)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
            raise ValueError(f"{name} must be an integer between 1 and {limit} "
                             f"(config max_{name.lower()}), not {value!r}")
    if m * k > config.act_depth:
        raise ValueError(f"M*K = {m * k} activations exceed act_depth = {config.act_depth}")
    if m * n > config.out_depth:
        raise ValueError(f"M*N = {m * n} results exceed out_depth = {config.out_depth}")


# Cycles from the last activation entering the systolic array to its last output leaving
# the output stage, beyond the R + C of skew and deskew.
SYSTOLIC_PIPELINE = 4
# Ternary unit cycles besides the first row's G groups, the adder tree's ceil(log2 P)
# levels and the last row's beats: the synchronous memory read, the decoded-trit register
# and the cycle after the last beat that ends `busy`.
TERNARY_PIPELINE = 3


def plan_gemm(config, m, k, n):
    """Plan an int8 ``M x K x N`` gemm on the systolic array.

    Tiles are walked N-tile outer, K-tile inner; each tile streams the M rows of X through
    the array. Loading one R x C weight tile takes R cycles and overlaps the previous
    tile's stream, so a tile costs ``max(M, R)`` cycles; the first weight load, the skew
    and deskew of the array (R + C) and the output pipeline are paid once.
    """
    check_problem(config, m, k, n)
    rows, cols = config.systolic_rows, config.systolic_cols
    if k * n > config.weight_depth:
        raise ValueError(f"K*N = {k * n} weights exceed weight_depth = {config.weight_depth}")
    k_tiles, n_tiles = _ceil_div(k, rows), _ceil_div(n, cols)
    cycles = rows + k_tiles * n_tiles * max(m, rows) + rows + cols + SYSTOLIC_PIPELINE
    return EnginePlan("systolic", m, k, n, rows, cols, k_tiles, n_tiles, m * k * n,
                      rows * cols, cycles)


def plan_ternary(config, m, k, n):
    """Plan an ``M x K x N`` ternary matmul on the ternary unit.

    Tiles are walked N-tile (L lanes) outer, rows of X next, K groups of P inputs inner,
    one group per cycle, so a row costs ``G = ceil(K / P)`` cycles. A finished row's sums
    leave one lane per cycle while the next row computes; a row that finishes before the
    previous one has left waits, so a row after one with ``Lv`` valid lanes costs
    ``max(G, Lv + 1)``. The first row's fill (its G groups and the pipeline) and the last
    row's ``Lv`` beats are paid once.
    """
    check_problem(config, m, k, n)
    lanes, fan_in = config.ternary_lanes, config.ternary_fan_in
    if k * n > config.trit_depth:
        raise ValueError(f"K*N = {k * n} trits exceed trit_depth = {config.trit_depth}")
    k_tiles, n_tiles = _ceil_div(k, fan_in), _ceil_div(n, lanes)
    last_lanes = n - (n_tiles - 1) * lanes
    row_cost = max(k_tiles, lanes + 1)
    last_row_cost = max(k_tiles, last_lanes + 1)
    tree_levels = (fan_in - 1).bit_length()
    cycles = (k_tiles + TERNARY_PIPELINE + tree_levels
              + (n_tiles - 1) * m * row_cost + (m - 1) * last_row_cost + last_lanes)
    return EnginePlan("ternary", m, k, n, fan_in, lanes, k_tiles, n_tiles, m * k * n,
                      lanes * fan_in, cycles)
