"""The systolic core's accumulator buffers and their read-out.

The array's column sums of each issued row are added into one of
``SYSTOLIC_ACC_BUFFERS`` buffers of R x C accumulators (buffer ``b``'s row ``s`` at
word ``b * R + s`` of a memory): the first K tile of a block writes its sums, the others
add to what the buffer holds (read one cycle before the sums arrive). A buffer whose block
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
        # Neither reads a word in the cycle it is written (below; the read-out reads only
        # complete blocks), so they are BlockRAMs: no emulation of a read-during-write
        # promise (on iCE40 a register and a multiplexer per bit of each read).
        line = data.ArrayLayout(signed(config.acc_width), cols)
        # A few words: yosys picks the RAM (distributed on ECP5, block RAM on iCE40).
        m.submodules.rmw_mem = rmw_mem = BlockRAM(line.size, buffers * rows, ram_style=None)
        m.submodules.out_mem = out_mem = BlockRAM(line.size, buffers * rows, ram_style=None)
        base = Array(Const(b * rows, range(buffers * rows)) for b in range(buffers))
        blocks = Signal(data.ArrayLayout(block_layout(config), buffers))
        set_pending = Signal(buffers)
        with m.If(self.open):
            m.d.comb += set_pending.eq(1 << self.fill)
            m.d.sync += blocks[self.fill].eq(self.block)

        # The controls of each row travel alongside it; the accumulator is read one cycle
        # before the sums arrive.
        chain = [self.entry]
        for i in range(self.delay):
            stage = Signal(row_controls(rows), name=f"control_d{i + 1}")
            m.d.sync += stage.eq(chain[-1])
            chain.append(stage)
        at_read, at_write = chain[-2], chain[-1]
        write_addr = base[at_write.buf] + at_write.row
        write_data = Signal(line)
        for memory in (rmw_mem, out_mem):
            m.d.comb += [memory.write_addr.eq(write_addr), memory.write_data.eq(write_data),
                         memory.write_en.eq(at_write.valid)]
        read_addr = base[at_read.buf] + at_read.row
        m.d.comb += rmw_mem.read_addr.eq(read_addr)
        stored = Signal(line)
        if rows == 1:
            # One array row: a block's K tiles add to the same word in consecutive
            # cycles, so the word written in the read's cycle is forwarded. With more
            # rows that word is always the previous row's.
            written = Signal(line)
            forward = Signal()
            m.d.sync += [written.eq(write_data),
                         forward.eq(at_write.valid & (write_addr == read_addr))]
            m.d.comb += stored.eq(Mux(forward, written, rmw_mem.read_data))
        else:
            m.d.comb += stored.eq(rmw_mem.read_data)
        for c in range(cols):
            m.d.comb += write_data[c].eq(Mux(at_write.first, 0, stored[c]) + self.psum[c])
        filled = Signal(buffers)    # buffer b's block is complete and may be read out
        set_filled = Signal(buffers)
        with m.If(at_write.block_end):
            m.d.comb += set_filled.eq(1 << at_write.buf)

        clear = self._read_out(m, out_mem, line, base, blocks, filled)
        m.d.sync += [self.pending.eq((self.pending | set_pending) & ~clear),
                     filled.eq((filled | set_filled) & ~clear)]
        return m

    def _read_out(self, m, out_mem, line, base, blocks, filled):
        """Send the complete buffers' blocks in turn; return the buffers freed this cycle."""
        rows, cols = self.config.systolic_rows, self.config.systolic_cols
        out_line = line(out_mem.read_data)
        drain_buf = Signal(range(SYSTOLIC_ACC_BUFFERS))  # the buffer being sent
        line_valid = Signal()       # out_line holds row `out_row` of `drain_buf`
        out_row = Signal(range(rows))
        out_col = Signal(range(cols))
        block = blocks[drain_buf]
        with m.If(self.restart):
            m.d.sync += drain_buf.eq(0)
        m.d.comb += [
            self.acc.valid.eq(line_valid),
            self.acc.payload.row.eq(block.row0 + out_row),
            self.acc.payload.col.eq(block.col0 + out_col),
            self.acc.payload.acc.eq(out_line[out_col]),
        ]
        accepted = self.acc.valid & self.acc.ready
        row_done = accepted & (out_col == block.cols - 1)
        clear = Signal(SYSTOLIC_ACC_BUFFERS)
        m.d.comb += out_mem.read_en.eq(0)
        with m.If(~line_valid | row_done):
            with m.If(line_valid & (out_row != block.rows - 1)):
                m.d.comb += [out_mem.read_en.eq(1),
                             out_mem.read_addr.eq(base[drain_buf] + out_row + 1)]
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
                    m.d.comb += [out_mem.read_en.eq(1), out_mem.read_addr.eq(base[next_buf])]
                    m.d.sync += line_valid.eq(1)
                with m.Else():
                    m.d.sync += line_valid.eq(0)
        with m.Elif(accepted):
            m.d.sync += out_col.eq(out_col + 1)
        return clear
