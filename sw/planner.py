"""Tiling planner and analytic cycle model of both engines.

For a problem ``M x K x N`` (X is M x K, W is K x N) on one :class:`AcceleratorConfig`,
the planner says how the engine tiles it, how many clock cycles the hardware is expected
to take from start to the last output, and the resulting utilization. Simulations and
board runs report their measured cycles next to :attr:`EnginePlan.cycles`.
"""

import dataclasses

from .arith import ceil_div
from .config import AcceleratorConfig

__all__ = ["EnginePlan", "plan_gemm", "plan_ternary", "plan_conv", "plan_in_place",
           "check_problem"]


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


def _facts():
    # The hardware owns its latencies and buffer counts; hw/facts.py imports nothing, so
    # reading it keeps tritile.sw free of Amaranth.
    from ..hw import facts

    return facts


def plan_gemm(config, m, k, n):
    """Plan an int8 ``M x K x N`` gemm on the systolic array.

    The engine walks blocks of R rows of X by C output channels (N tile outer, row block
    inner); a block feeds one row per cycle for each of its K tiles, ``ceil(K / R) * R``
    cycles, while the next tile's weights load alongside (R cycles of loading precede the
    first block). A finished block is read out of its accumulator buffer at one result
    per cycle while the next blocks compute in the other buffers; a block may start only
    when the read-out of the block ``SYSTOLIC_ACC_BUFFERS`` before it has finished. The
    cycle count follows that schedule exactly, so it also covers problems limited by the
    read-out (K < R * C). A requantizer whose multiply is in logic takes a beat every
    ``interval`` cycles (:func:`tritile.hw.facts.requantizer_interval`): the read-out
    then waits for it, one result per interval, and its buffer is freed that much later.
    The latencies and the buffer count are the hardware's (:mod:`tritile.hw.facts`).
    """
    check_problem(config, m, k, n)
    return _systolic_plan(config, m, k, n)


def _check_weights(config, engine, k, n):
    config.check_engines(engine)
    field, what = (("weight_depth", "weights") if engine == "systolic"
                   else ("trit_depth", "trits"))
    if k * n > getattr(config, field):
        raise ValueError(f"K*N = {k * n} {what} exceed {field} = {getattr(config, field)}")


def _systolic_plan(config, m, k, n):
    _check_weights(config, "systolic", k, n)
    facts = _facts()
    rows, cols = config.systolic_rows, config.systolic_cols
    k_tiles, n_tiles = ceil_div(k, rows), ceil_div(n, cols)
    feed = k_tiles * rows
    issue = facts.SYSTOLIC_START + rows     # cycle in which the next block may start feeding
    # Cycle of the last result of each of the previous SYSTOLIC_ACC_BUFFERS blocks.
    # A result leaves the read-out when the requantizer takes it: `interval` cycles
    # after the one before at the earliest.
    interval = facts.requantizer_interval(config)
    finished = [-interval] * facts.SYSTOLIC_ACC_BUFFERS
    for n0 in range(0, n, cols):
        for m0 in range(0, m, rows):
            start = max(issue, finished[0] + 1)
            issue = start + feed
            first = max(issue - 1 + facts.systolic_array_latency(rows)
                        + facts.SYSTOLIC_ACCUMULATE,
                        finished[-1] + interval)
            last = first + (min(rows, m - m0) * min(cols, n - n0) - 1) * interval
            finished = finished[1:] + [last]
    cycles = finished[-1] + facts.requantizer_latency(config)
    return EnginePlan("systolic", m, k, n, rows, cols, k_tiles, n_tiles, m * k * n,
                      rows * cols, cycles)


def plan_ternary(config, m, k, n):
    """Plan an ``M x K x N`` ternary matmul on the ternary unit.

    Tiles are walked N-tile (L lanes) outer, rows of X next, K groups of P inputs inner,
    one group per cycle, so a row costs ``G = ceil(K / P)`` cycles. A finished row's sums
    leave one lane per cycle while the next row computes; a row that finishes before the
    previous one has left waits, so a row after one with ``Lv`` valid lanes costs
    ``max(G, Lv + 1)``. The first row's fill (its G groups and the pipeline) and the last
    row's ``Lv`` beats are paid once; the pipeline (:data:`tritile.hw.facts.TERNARY_PIPELINE`)
    is ``config.ternary_read_stages`` cycles longer than the lanes need. A requantizer
    whose multiply is in logic takes a lane every ``interval`` cycles
    (:func:`tritile.hw.facts.requantizer_interval`), from its last one: a row's lanes then
    leave that far apart, and the next row waits for the last of them.
    """
    check_problem(config, m, k, n)
    return _ternary_plan(config, m, k, n)


def _ternary_plan(config, m, k, n):
    _check_weights(config, "ternary", k, n)
    lanes, fan_in = config.ternary_lanes, config.ternary_fan_in
    k_tiles, n_tiles = ceil_div(k, fan_in), ceil_div(n, lanes)
    last_lanes = n - (n_tiles - 1) * lanes
    tree_levels = (fan_in - 1).bit_length()
    interval = _facts().requantizer_interval(config)
    # Cycle in which each row's sums enter the output bank (`done`, the first row's after
    # its fill) and the requantizer takes the row's last lane (`sent`); the bank takes
    # the next row's sums the cycle after that at the earliest. Cycles count without the
    # pipeline's fixed ones (TERNARY_PIPELINE: the reads, the end of `busy`).
    done = k_tiles + config.ternary_read_stages + tree_levels
    sent = done - interval
    for row in range(n_tiles * m):
        if row:
            done = max(done + k_tiles, sent + 1)
        valid = lanes if row < (n_tiles - 1) * m else last_lanes
        sent = max(done + 1, sent + interval) + (valid - 1) * interval
    cycles = sent + _facts().TERNARY_PIPELINE
    return EnginePlan("ternary", m, k, n, fan_in, lanes, k_tiles, n_tiles, m * k * n,
                      lanes * fan_in, cycles)


def plan_conv(config, engine, window, images, height, width, channels, n):
    """Plan a convolution on ``engine`` (``"systolic"`` or ``"ternary"``) as its GEMM.

    ``window`` (:class:`tritile.sw.conv.Window`) slides over ``images`` NHWC maps of
    ``height`` x ``width`` x ``channels``, read in place through the implicit-im2col walk:
    the GEMM is ``M = images * OH * OW``, ``K = kh * kw * CT * chunk`` (CT channel chunks
    of the engine's ``chunk`` = R or P), ``N = n``, and costs what :func:`plan_gemm` or
    :func:`plan_ternary` says of that shape (the walk adds no cycle). The map, not the
    im2col rows, must fit the activation memory: ``images * height * width * CT`` words
    of ``chunk`` bytes within ``act_depth`` bytes.
    """
    if engine not in ("systolic", "ternary"):
        raise ValueError(f"engine must be systolic or ternary, not {engine!r}")
    config.check_engines(engine)
    if not config.conv_walk:
        raise ValueError("this config has no convolution walk (conv_walk = 0): run the "
                         "layer as a GEMM over host-built im2col rows")
    chunk = config.systolic_rows if engine == "systolic" else config.ternary_fan_in
    oh, ow = window.output_size(height, width)
    chunks = ceil_div(channels, chunk)
    m, k = images * oh * ow, window.kernel[0] * window.kernel[1] * chunks * chunk
    for name, value, limit in (("M", m, config.max_m), ("K", k, config.max_k),
                               ("N", n, config.max_n)):
        if not 1 <= value <= limit:
            raise ValueError(f"the convolution's {name} = {value} must be between 1 and "
                             f"{limit} (config max_{name.lower()})")
    words = images * height * width * chunks
    if words * chunk > config.act_depth:
        raise ValueError(f"the {images} x {height} x {width} x {channels} map takes "
                         f"{words * chunk} bytes; act_depth = {config.act_depth}")
    if m * n > config.out_depth:
        raise ValueError(f"M*N = {m * n} results exceed out_depth = {config.out_depth}")
    if max(window.stride) > ceil_div(config.max_k, chunk):
        raise ValueError(f"stride {window.stride} must be at most ceil(max_k / {chunk}) = "
                         f"{ceil_div(config.max_k, chunk)} (the walk's register width)")
    return plan_in_place(config, engine, m, k, n)


def plan_in_place(config, engine, m, k, n):
    """Return the :class:`EnginePlan` of an M x K x N GEMM on ``engine`` ("systolic" or
    "ternary") whose activations are read in place.

    The schedule of :func:`plan_gemm` / :func:`plan_ternary` without RUN's rules on the
    problem (``m*k <= act_depth``, the limits): a convolution or a program's layer reads
    its map where it lies, which the caller checks (:func:`plan_conv`,
    :func:`tritile.sw.program_model.descriptor_problems`). The weights must fit.
    """
    plan = _systolic_plan if engine == "systolic" else _ternary_plan
    return plan(config, m, k, n)
