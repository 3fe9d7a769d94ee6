"""A simple dual-port block RAM whose read of a byte being written is undefined.

An Amaranth read port promises the old data when the same cycle writes its address; the
iCE40's RAM does not, so yosys adds registers and multiplexers around each such port to
emulate it (about 25 logic cells per RAM, more with wider data). The link's RAMs never
read an address in the cycle it is written (a FIFO reads only what an earlier cycle
wrote, the frame buffer is read only between frames, a counter reads the byte after the
one it writes), so :class:`BlockRAM` gives up the promise: an asynchronous read with a
register behind it and the ``no_rw_check`` attribute, which yosys merges into the RAM's
own read register with a don't-care collision. The same holds for an engine's memory
whose user never reads a word in the cycle it writes it (``EngineMemory`` with
``read_during_write=False``), which writes bytes: ``granularity`` gives a write enable per
byte.

The read registers have no reset: what they hold is defined by the reads alone (they
start at 0, as a reset would leave them), so the reset net need not reach them (on the
iCE40 presets the cells are the same within a few either way; on the ECP5-85F the reset's
fan-out is among the congested nets, docs/boards.md).
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["BlockRAM"]


class BlockRAM(wiring.Component):
    """A RAM with one write port and one registered read port, no read-during-write.

    Parameters
    ----------
    width : int
        Bits of a word.
    depth : int
        Words.
    init : iterable of int
        The first words' initial values (the others start at 0).
    granularity : int or None
        Bits each bit of ``write_en`` writes: ``None`` (one enable for the word) or a
        divisor of ``width``.
    output_register : bool
        A second register behind the RAM's: a read shows its word two cycles after its
        address, and no path runs from the RAM's slow clock-to-output into the logic that
        uses the word (yosys keeps it in flip-flops next to the RAM: on ECP5 the DP16KD's
        own output register stays unused, ``REGMODE`` ``NOREG``).
    ram_style : str or None
        yosys' ``ram_style`` attribute: ``"block"`` (default) for block RAM; ``None`` lets
        yosys choose (on ECP5, distributed RAM for a memory of a few words).

    Members
    -------
    write_addr : In(range(depth))
    write_data : In(width)
    write_en : In(1), or In(width // granularity)
        Write ``write_data`` at ``write_addr`` (bit ``i``: its ``i``-th part of
        ``granularity`` bits).
    read_addr : In(range(depth))
    read_en : In(1, init=1)
        Read ``read_addr``: ``read_data`` shows its word from the next cycle (the one
        after with ``output_register``), undefined if this cycle writes that address; it
        holds while ``read_en`` is low (both registers hold).
    read_data : Out(width)
    """

    def __init__(self, width, depth, init=(), *, granularity=None, output_register=False,
                 ram_style="block"):
        if granularity is not None and (not isinstance(granularity, int) or granularity <= 0
                                        or width % granularity):
            raise ValueError(f"Granularity must be a positive divisor of the width {width}, "
                             f"not {granularity!r}")
        self.width = width
        self.granularity = granularity
        self.depth = depth
        self.init = list(init)
        self.output_register = output_register
        self.ram_style = ram_style
        super().__init__({
            "write_addr": In(range(depth)), "write_data": In(width), "write_en": In(1 if granularity is None else width // granularity),
            "read_addr": In(range(depth)), "read_en": In(1, init=1),
            "read_data": Out(width),
        })

    def elaborate(self, platform):
        m = Module()
        attrs = {"no_rw_check": 1}
        if self.ram_style is not None:
            attrs["ram_style"] = self.ram_style
        m.submodules.memory = memory = Memory(shape=self.width, depth=self.depth,
                                              init=self.init, attrs=attrs)
        write = memory.write_port(granularity=self.granularity)
        read = memory.read_port(domain="comb")
        m.d.comb += [write.addr.eq(self.write_addr), write.data.eq(self.write_data),
                     write.en.eq(self.write_en), read.addr.eq(self.read_addr)]
        registers = [Signal(self.width, name=f"read_d{i + 1}", reset_less=True)
                     for i in range(1 + self.output_register)]
        m.d.comb += self.read_data.eq(registers[-1])
        with m.If(self.read_en):
            m.d.sync += [register.eq(source) for register, source
                         in zip(registers, [read.data] + registers[:-1])]
        return m
