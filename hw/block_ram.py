"""A simple dual-port block RAM whose read of a byte being written is undefined.

An Amaranth read port promises the old data when the same cycle writes its address; the
iCE40's RAM does not, so yosys adds registers and multiplexers around each such port to
emulate it (about 25 logic cells per RAM, more with wider data). The link's RAMs never
read an address in the cycle it is written (a FIFO reads only what an earlier cycle
wrote, the frame buffer is read only between frames, a counter reads the byte after the
one it writes), so :class:`BlockRAM` gives up the promise: an asynchronous read with a
register behind it and the ``no_rw_check`` attribute, which yosys merges into the RAM's
own read register with a don't-care collision.
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
    write_en : In(1)
        Write ``write_data`` at ``write_addr``.
    read_addr : In(range(depth))
    read_en : In(1, init=1)
        Read ``read_addr``: ``read_data`` shows its word from the next cycle (the one
        after with ``output_register``), undefined if this cycle writes that address; it
        holds while ``read_en`` is low (both registers hold).
    read_data : Out(width)
    """

    def __init__(self, width, depth, init=(), *, output_register=False, ram_style="block"):
        self.width = width
        self.depth = depth
        self.init = list(init)
        self.output_register = output_register
        self.ram_style = ram_style
        super().__init__({
            "write_addr": In(range(depth)), "write_data": In(width), "write_en": In(1),
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
        write = memory.write_port()
        read = memory.read_port(domain="comb")
        m.d.comb += [write.addr.eq(self.write_addr), write.data.eq(self.write_data),
                     write.en.eq(self.write_en), read.addr.eq(self.read_addr)]
        with m.If(self.read_en):
            if self.output_register:
                word = Signal(self.width)
                m.d.sync += [word.eq(read.data), self.read_data.eq(word)]
            else:
                m.d.sync += self.read_data.eq(read.data)
        return m
