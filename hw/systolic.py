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

from amaranth.hdl import Array, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.utils import ceil_log2

from tritile.sw.arith import ceil_div
from tritile.sw.config import AcceleratorConfig, int8_accumulator_bits
from tritile.sw.systolic_layout import ACT_TARGET, WEIGHT_TARGET, systolic_geometry

from .dsp import shift_add_product
from .facts import SYSTOLIC_ACC_BUFFERS, WALK_FIELDS
from .im2col import Im2colAddress, KStep, MStep, engine_walk_limits
from .requantizer import START_LAYOUT, WRITE_LAYOUT, StandaloneEngine, core_members
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
        :func:`tritile.sw.systolic_layout.systolic_memory_image`); ready while idle; bytes
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
        acc_width = config.acc_width
        psum_width = min(acc_width, int8_accumulator_bits(rows))

        m.submodules.array = array = SystolicArray(rows, cols, psum_width)
        m.submodules.act_mem = act_mem = Memory(
            shape=unsigned(8 * rows), depth=geometry.act_words, init=[])
        m.submodules.weight_mem = weight_mem = Memory(
            shape=unsigned(8 * cols), depth=geometry.weight_words, init=[])
        # R x C accumulator buffers: buffer b, row s is word b * R + s.
        buffers = SYSTOLIC_ACC_BUFFERS
        m.submodules.acc_mem = acc_mem = Memory(
            shape=data.ArrayLayout(signed(acc_width), cols), depth=buffers * rows, init=[])
        buffer_base = Array(Const(b * rows, range(buffers * rows)) for b in range(buffers))

        def next_buffer(buf):
            return Mux(buf == buffers - 1, 0, buf + 1)

        # -- problem registers and start ------------------------------------------------
        # Every counter is as wide as the config's limits need (a problem above them is
        # dropped at start): on iCE40 each bit is a logic cell.
        size_m = Signal(range(config.max_m + 1))
        size_k = Signal(range(config.max_k + 1))
        size_n = Signal(range(config.max_n + 1))
        m.submodules.walker = walker = Im2colAddress(
            **engine_walk_limits(config, rows, geometry.act_words))
        walk = Signal.like(walker.walk)
        weight_base = Signal(range(geometry.weight_words))
        m.d.comb += walker.walk.eq(walk)
        running = Signal()      # the sequencer still issues rows
        pending = Signal(buffers)   # buffer b holds (or will hold) a block not read out
        rejected = Signal()
        was_busy = Signal()
        m.d.comb += self.busy.eq(running | pending.any() | self.out_busy)
        m.d.sync += [was_busy.eq(self.busy), rejected.eq(0)]
        m.d.comb += self.done.eq((was_busy & ~self.busy) | rejected)
        with m.If(self.busy):
            m.d.sync += self.busy_cycles.eq(self.busy_cycles + 1)

        # -- write stream into the memories ------------------------------------------------
        # A program places results into the activation memory while it computes (its own
        # reads use another port; the compiler keeps the words apart).
        m.d.comb += self.write.ready.eq(~self.busy | (self.write.payload.target == ACT_TARGET))
        for memory, target, words, lane_bits, lanes in (
                (act_mem, ACT_TARGET, geometry.act_words, geometry.act_lane_bits, rows),
                (weight_mem, WEIGHT_TARGET, geometry.weight_words,
                 geometry.weight_lane_bits, cols)):
            port = memory.write_port(granularity=8)
            addr = self.write.payload.addr
            lane = addr[:lane_bits] if lane_bits else Const(0, 1)
            word = addr[lane_bits:]
            hit = (self.write.valid & self.write.ready & (self.write.payload.target == target)
                   & (word < words) & (lane < lanes))
            m.d.comb += [port.addr.eq(word),
                         port.data.eq(self.write.payload.data.replicate(lanes)),
                         port.en.eq(Mux(hit, 1 << lane, 0))]

        # -- tile descriptors --------------------------------------------------------------
        # The "load" tile is the one whose weights are being loaded; the "compute" tile the
        # one whose rows are being fed. The load tile runs one tile ahead.
        ld_valid = Signal()
        ld_k0 = Signal(range(config.max_k + rows))
        ld_m0 = Signal(range(config.max_m + rows))
        ld_n0 = Signal(range(config.max_n + cols))
        # N tiles x K rows of weights, plus the last step.
        ld_wbase = Signal(range((ceil_div(config.max_n, cols) + 1) * config.max_k))
        cp_valid = Signal()
        cp_m0, cp_n0 = Signal.like(ld_m0), Signal.like(ld_n0)
        cp_first_k, cp_last_k, cp_last_m = Signal(), Signal(), Signal()
        cp_rows, cp_cols = Signal(range(rows + 1)), Signal(range(cols + 1))
        cp_macs = Signal(range(rows * cols + 1))
        slot = Signal(range(rows))
        fill = Signal(range(buffers))       # buffer the sequencer fills
        drain_buf = Signal(range(buffers))  # buffer the read-out sends

        ld_last_k = ld_k0 + rows >= size_k
        ld_last_m = ld_m0 + rows >= size_m
        ld_last_n = ld_n0 + cols >= size_n
        ld_kr = Mux(ld_last_k, size_k - ld_k0, rows)[:ceil_log2(rows + 1)]
        ld_nc = Mux(ld_last_n, size_n - ld_n0, cols)[:ceil_log2(cols + 1)]
        ld_rows = Mux(ld_last_m, size_m - ld_m0, rows)[:ceil_log2(rows + 1)]

        with m.If(self.start.valid & self.start.ready):
            payload = self.start.payload
            legal = ((payload.m != 0) & (payload.k != 0) & (payload.n != 0)
                     & (payload.m <= config.max_m) & (payload.k <= config.max_k)
                     & (payload.n <= config.max_n))
            m.d.sync += [
                size_m.eq(payload.m), size_k.eq(payload.k), size_n.eq(payload.n),
                self.raw.eq(payload.raw), self.relu.eq(payload.relu),
                *(walk[name].eq(payload[name]) for name in WALK_FIELDS),
                weight_base.eq(payload.weight_base),
                running.eq(legal), rejected.eq(~legal),
                ld_valid.eq(1), ld_k0.eq(0), ld_m0.eq(0), ld_n0.eq(0),
                ld_wbase.eq(0), cp_valid.eq(0), slot.eq(0),
                fill.eq(0), drain_buf.eq(0),
                self.busy_cycles.eq(0), self.mac_cycles.eq(0),
            ]
        m.d.comb += self.start.ready.eq(~self.busy)

        # -- issue: one row into the array per cycle --------------------------------------
        block_start = cp_valid & cp_first_k & (slot == 0)
        stall = block_start & pending.bit_select(fill, 1)
        issue = running & ~stall
        row_valid = cp_valid & (cp_m0 + slot < size_m)
        act_read = act_mem.read_port()
        weight_read = weight_mem.read_port()
        m.d.comb += [
            act_read.addr.eq(walker.addr), act_read.en.eq(issue),
            weight_read.addr.eq(weight_base + ld_wbase + ld_k0 + slot),
            weight_read.en.eq(issue),
        ]
        # The walker follows the compute tile: per K tile (one column group), the block's
        # rows one per cycle, then back to the block's first row for the next K tile, or on
        # to the next block's (marked), or to row 0 for the next N tile. It starts while
        # the first tile's weights load, when the walk registers hold the new problem's.
        with m.If(~cp_valid):
            m.d.comb += [walker.m_step.eq(MStep.RESET), walker.m_mark.eq(1),
                         walker.k_step.eq(KStep.RESET)]
        with m.Elif(issue):
            with m.If(slot != rows - 1):
                m.d.comb += walker.m_step.eq(MStep.NEXT)
            with m.Elif(~cp_last_k):
                m.d.comb += [walker.m_step.eq(MStep.RETURN), walker.k_step.eq(KStep.NEXT)]
            with m.Else():
                m.d.comb += [walker.m_step.eq(Mux(cp_last_m, MStep.RESET, MStep.NEXT)),
                             walker.m_mark.eq(1), walker.k_step.eq(KStep.RESET)]
        # Memory data arrives one cycle after the address: delay the array's controls too.
        swap_d = Signal()
        load_d = Signal()
        real_d = Signal()
        pad_d = Signal()
        index_d = Signal.like(slot)
        m.d.sync += [
            swap_d.eq(issue & cp_valid & (slot == 0)),
            load_d.eq(issue & ld_valid),
            real_d.eq(ld_k0 + slot < size_k),
            pad_d.eq(walker.pad),
            index_d.eq(slot),
        ]
        m.d.comb += [
            # Padding feeds a zero row (the memory's data is discarded).
            array.act.eq(Mux(pad_d, 0, act_read.data)),
            array.swap.eq(swap_d),
            array.weight_index.eq(index_d),
            array.weight_load.eq(load_d),
            # Rows past K belong to the next N tile in memory: load zeros instead.
            array.weight_row.eq(Mux(real_d, weight_read.data[:8 * cols], 0)),
        ]

        # Where each buffer's block goes in the result, for the read-out.
        block_layout = data.StructLayout({"row0": ld_m0.shape(), "col0": ld_n0.shape(),
                                          "rows": range(rows + 1), "cols": range(cols + 1)})
        blocks = Signal(data.ArrayLayout(block_layout, buffers))
        set_pending = Signal(buffers)
        with m.If(issue):
            with m.If(row_valid):
                m.d.sync += self.mac_cycles.eq(self.mac_cycles + cp_macs)
            with m.If(block_start):
                m.d.comb += set_pending.eq(1 << fill)
                m.d.sync += [blocks[fill].row0.eq(cp_m0), blocks[fill].col0.eq(cp_n0),
                             blocks[fill].rows.eq(cp_rows), blocks[fill].cols.eq(cp_cols)]
            m.d.sync += slot.eq(slot + 1)
            with m.If(slot == rows - 1):
                m.d.sync += [
                    slot.eq(0),
                    cp_valid.eq(ld_valid), cp_m0.eq(ld_m0), cp_n0.eq(ld_n0),
                    cp_first_k.eq(ld_k0 == 0),
                    cp_last_k.eq(ld_last_k), cp_last_m.eq(ld_last_m), cp_rows.eq(ld_rows), cp_cols.eq(ld_nc),
                    cp_macs.eq(shift_add_product(ld_kr, ld_nc)),
                ]
                with m.If(cp_valid & cp_last_k):
                    m.d.sync += fill.eq(next_buffer(fill))
                with m.If(~ld_valid):
                    # The last tile has been fed: nothing is left to issue.
                    m.d.sync += running.eq(0)
                with m.Elif(~ld_last_k):
                    m.d.sync += [ld_k0.eq(ld_k0 + rows)]
                with m.Elif(~ld_last_m):
                    m.d.sync += [ld_k0.eq(0), ld_m0.eq(ld_m0 + rows)]
                with m.Elif(~ld_last_n):
                    m.d.sync += [ld_k0.eq(0), ld_m0.eq(0), ld_n0.eq(ld_n0 + cols),
                                 ld_wbase.eq(ld_wbase + size_k)]
                with m.Else():
                    m.d.sync += ld_valid.eq(0)

        # -- accumulate the array's sums into the fill buffer ------------------------------
        # The controls of each issued row travel alongside it: 1 cycle of memory latency,
        # then the array's latency; the accumulator is read one cycle before the sums.
        control = data.StructLayout({"valid": 1, "buf": range(buffers), "row": range(rows),
                                     "first": 1, "block_end": 1})
        entry = Signal(control)
        m.d.comb += [
            entry.valid.eq(issue & row_valid), entry.buf.eq(fill), entry.row.eq(slot),
            entry.first.eq(cp_first_k),
            entry.block_end.eq(issue & cp_valid & cp_last_k & (slot == rows - 1)),
        ]
        chain = [entry]
        for i in range(1 + array.latency):
            stage = Signal(control, name=f"control_d{i + 1}")
            m.d.sync += stage.eq(chain[-1])
            chain.append(stage)
        at_read, at_write = chain[-2], chain[-1]

        acc_write = acc_mem.write_port()
        rmw_read = acc_mem.read_port(transparent_for=(acc_write,))
        m.d.comb += [rmw_read.addr.eq(buffer_base[at_read.buf] + at_read.row),
                     rmw_read.en.eq(1)]
        m.d.comb += [acc_write.addr.eq(buffer_base[at_write.buf] + at_write.row),
                     acc_write.en.eq(at_write.valid)]
        for c in range(cols):
            m.d.comb += acc_write.data[c].eq(
                Mux(at_write.first, 0, rmw_read.data[c]) + array.psum[c])
        filled = Signal(buffers)    # buffer b's block is complete and may be read out
        set_filled = Signal(buffers)
        with m.If(at_write.block_end):
            m.d.comb += set_filled.eq(1 << at_write.buf)

        # -- read-out: one accumulator per cycle to the output stage ----------------------
        out_read = acc_mem.read_port()
        line_valid = Signal()       # out_read.data holds row `out_row` of `drain_buf`
        out_row = Signal(range(rows))
        out_col = Signal(range(cols))
        block = blocks[drain_buf]
        m.d.comb += [
            self.acc.valid.eq(line_valid),
            self.acc.payload.row.eq(block.row0 + out_row),
            self.acc.payload.col.eq(block.col0 + out_col),
            self.acc.payload.acc.eq(out_read.data[out_col]),
        ]
        accepted = self.acc.valid & self.acc.ready
        row_done = accepted & (out_col == block.cols - 1)
        clear = Signal(buffers)
        m.d.comb += out_read.en.eq(0)
        with m.If(~line_valid | row_done):
            with m.If(line_valid & (out_row != block.rows - 1)):
                m.d.comb += [out_read.en.eq(1),
                             out_read.addr.eq(buffer_base[drain_buf] + out_row + 1)]
                m.d.sync += [out_row.eq(out_row + 1), out_col.eq(0)]
            with m.Else():
                # The block is sent (or none was being sent): free its buffer, go on to
                # the next buffer as soon as its block is complete.
                next_buf = Mux(line_valid, next_buffer(drain_buf), drain_buf)
                with m.If(line_valid):
                    m.d.comb += clear.eq(1 << drain_buf)
                    m.d.sync += drain_buf.eq(next_buf)
                m.d.sync += [out_row.eq(0), out_col.eq(0)]
                with m.If(filled.bit_select(next_buf, 1)):
                    m.d.comb += [out_read.en.eq(1), out_read.addr.eq(buffer_base[next_buf])]
                    m.d.sync += line_valid.eq(1)
                with m.Else():
                    m.d.sync += line_valid.eq(0)
        with m.Elif(accepted):
            m.d.sync += out_col.eq(out_col + 1)

        m.d.sync += [pending.eq((pending | set_pending) & ~clear),
                     filled.eq((filled | set_filled) & ~clear)]
        return m


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
