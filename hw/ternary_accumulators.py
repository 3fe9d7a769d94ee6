"""The ternary unit's lane accumulators and output bank.

Each lane accumulates its tree's sums across a row's K groups. A row's last group moves
the L totals into the output bank, which sends them one lane a cycle as ``acc`` beats
while the next row computes; a row that finishes while the bank still drains stalls the
unit's whole pipeline (``stall``), so no sum is lost.
"""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .requantizer import ACC_LAYOUT
from .ternary_lanes import add_with_carry

__all__ = ["TernaryAccumulators"]


class TernaryAccumulators(wiring.Component):
    """Accumulate L lanes across K and send each finished row's sums, one lane a beat.

    Rows arrive in the unit's issue order, rows inner and N tiles of L lanes outer, so
    the bank numbers them itself: row ``r`` of tile ``t`` leaves as ``(r, t * L + l)`` for
    lanes ``l`` below ``n``.

    Parameters
    ----------
    config : AcceleratorConfig
        ``ternary_lanes`` (L), ``ternary_acc_bits`` and the ``max_m``/``max_n`` limits.
    sum_width : int
        Width of the lanes' tree roots.

    Members
    -------
    sums : In(data.ArrayLayout(signed(sum_width), L))
        The lanes' tree roots of one K group.
    carries : In(L)
        The carries to add to them.
    valid, last : In(1)
        ``sums`` hold a group (the row's last one); taken unless ``stall``.
    clear : In(1)
        A new problem starts: zero the accumulators and the row and column counts.
    m, n : In(range(max + 1))
        The problem's rows and columns (held while it runs).
    stall : Out(1)
        A row's last group waits for the bank to empty: hold the pipeline.
    draining : Out(1)
        The bank holds sums not yet sent.
    acc : Out(stream.Signature(ACC_LAYOUT))
        The exact sums ``(row, col, acc)``.
    """

    def __init__(self, config, sum_width):
        self.config = config
        lanes = config.ternary_lanes
        super().__init__({
            "sums": In(data.ArrayLayout(signed(sum_width), lanes)),
            "carries": In(lanes),
            "valid": In(1),
            "last": In(1),
            "clear": In(1),
            "m": In(range(config.max_m + 1)),
            "n": In(range(config.max_n + 1)),
            "stall": Out(1),
            "draining": Out(1),
            "acc": Out(stream.Signature(ACC_LAYOUT)),
        })

    def elaborate(self, platform):
        m = Module()
        config = self.config
        lanes, acc_bits = config.ternary_lanes, config.ternary_acc_bits
        bank = [Signal(signed(acc_bits), name=f"bank{lane}", reset_less=True)
                for lane in range(lanes)]
        advance = ~self.stall
        m.d.comb += self.stall.eq(self.valid & self.last & self.draining)
        # A row's last group, and a new problem, leave the accumulators at zero: one
        # synchronous reset of their flip-flops, not a multiplexer in front of each adder.
        row_done = self.valid & self.last & advance
        clear_acc = row_done | self.clear
        out = self.acc
        sending = out.valid & out.ready
        # A row ends only into an empty bank (it stalls otherwise), so `draining`, one
        # flip-flop, picks between taking the totals and shifting a lane out: one LUT a
        # bit, where the row's end (four signals) and a total needed two.
        for lane in range(lanes):
            acc = Signal(signed(acc_bits), name=f"acc{lane}", reset_less=True)
            total = Signal(signed(acc_bits), name=f"total{lane}")
            m.d.comb += total.eq(add_with_carry(acc, self.sums[lane], self.carries[lane]))
            with m.If(clear_acc):
                m.d.sync += acc.eq(0)
            with m.Elif(self.valid & advance):
                m.d.sync += acc.eq(total)
            shifted = bank[lane + 1] if lane + 1 < lanes else bank[lane]
            with m.If(row_done | sending):
                m.d.sync += bank[lane].eq(Mux(self.draining, shifted, total))

        next_row = Signal(range(config.max_m))
        next_col = Signal(range(config.max_n))
        bank_row = Signal.like(next_row)
        bank_col = Signal.like(next_col)
        bank_lane = Signal(range(lanes + 1))
        m.d.comb += [
            out.valid.eq(self.draining),
            out.payload.row.eq(bank_row),
            out.payload.col.eq(bank_col),
            out.payload.acc.eq(bank[0]),
        ]
        with m.If(self.clear):
            m.d.sync += [next_row.eq(0), next_col.eq(0)]
        with m.If(row_done):
            m.d.sync += [self.draining.eq(1), bank_row.eq(next_row), bank_col.eq(next_col),
                         bank_lane.eq(0)]
            with m.If(next_row + 1 >= self.m):
                m.d.sync += [next_row.eq(0), next_col.eq(next_col + lanes)]
            with m.Else():
                m.d.sync += next_row.eq(next_row + 1)
        with m.Elif(sending):
            m.d.sync += [bank_col.eq(bank_col + 1), bank_lane.eq(bank_lane + 1)]
            with m.If((bank_lane == lanes - 1) | (bank_col + 1 >= self.n)):
                m.d.sync += self.draining.eq(0)
        return m
