"""Placement of an engine's results in the output memory, row-major for the running problem."""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, ceil_log2

from .dsp import shift_add_product
from .requantizer import RESULT_LAYOUT

__all__ = ["ResultPlacer"]


class ResultPlacer(wiring.Component):
    """Write each result to word ``row * n + col`` of the output memory.

    Results outside the problem (``row >= m`` or ``col >= n``) or the memory are dropped.
    ``row * n`` takes two steps: the products of the low and the high half of the row's
    bits are registered, then their sum plus ``col`` addresses the memory (``row <
    max_m``, as the engines never exceed it, and ``n <= max_n``: narrow factors; a chain
    of adders per row bit would limit the clock).

    Parameters
    ----------
    config : AcceleratorConfig
        ``max_m``, ``max_n`` and ``out_depth``.

    Members
    -------
    results : In(stream.Signature(RESULT_LAYOUT))
        Results; always ready.
    m, n : In(16)
        The running problem's rows and columns.
    write : In(WritePort.Signature(addr_width, 32))
        The output memory's write port.
    pending : Out(1)
        A result is on its way into the memory.
    """

    def __init__(self, config):
        self.config = config
        self.addr_width = ceil_log2(config.out_depth)
        super().__init__({
            "results": In(stream.Signature(RESULT_LAYOUT)),
            "m": In(16),
            "n": In(16),
            "write": In(WritePort.Signature(addr_width=self.addr_width, shape=32)),
            "pending": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        config = self.config
        result = self.results.payload
        row_bits, n_bits = bits_for(config.max_m - 1), bits_for(config.max_n)
        half = (row_bits + 1) // 2
        part_lo = Signal(half + n_bits)
        part_hi = Signal(row_bits - half + n_bits)
        part_col = Signal.like(result.col)
        part_value = Signal(32)
        m.d.comb += self.results.ready.eq(1)
        m.d.sync += [
            self.pending.eq(self.results.valid & (result.row < self.m)
                            & (result.col < self.n)),
            part_lo.eq(shift_add_product(result.row[:half], self.n[:n_bits])),
            part_hi.eq(shift_add_product(result.row[half:row_bits], self.n[:n_bits])),
            part_col.eq(result.col),
            part_value.eq(result.value),
        ]
        # The sum goes straight to the memory's address (two adders, no register).
        address = Signal(row_bits + n_bits + 1)
        m.d.comb += [
            address.eq(part_lo + (part_hi << half) + part_col),
            self.write.addr.eq(address),
            self.write.data.eq(part_value),
            self.write.en.eq(self.pending & (address < config.out_depth)),
        ]
        return m
