"""Event counters kept in a block RAM, incremented one byte at a time, next to constant bytes.

A 32-bit counter in logic costs 32 logic cells plus its share of the read-out multiplexer,
and a read-only table in logic (the capability ROM) several LUTs per byte. Counters of
rare events (a frame, a CRC error, a lost byte, the carry of a cycle prescaler) need not be
fast: :class:`EventCounters` keeps them in a block RAM as little-endian bytes and
increments them with an 8-bit adder, one byte per cycle, stopping at the first byte that
does not wrap or at the end of its aligned 4-byte word. The RAM's other bytes hold a table
given at construction, read through the same port.
"""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .block_ram import BlockRAM

__all__ = ["EventCounters"]

_BYTES = 4      # 32-bit counters


class EventCounters(wiring.Component):
    """32-bit counters of rare events and constant bytes in one block RAM, read a byte at
    a time.

    Each cycle's events are noted in one pending flag per source and counted a few cycles
    later (one source at a time, 2 cycles each, up to 5 when a carry ripples to the top
    byte). A counter ends with its aligned 4-byte word, so only the two low bits of the
    byte being incremented step (a counter that starts inside a word is narrower: the
    responder keeps the cycle counter's low byte in logic and counts its carries from
    the field's byte 1). A source must not fire again before its last event is counted:
    within ``2 + 5 * len(sources)`` cycles. A read waits until every noted event is counted.

    Parameters
    ----------
    depth : int
        Bytes of the RAM.
    sources : tuple of int
        Byte address of the counter that each event input increments (several inputs may
        share one); a counter is the bytes from its address to the end of its aligned
        4-byte word, little-endian, starting at 0.
    init : bytes
        The RAM's first bytes (a table read through ``read_data``; bytes past it start at
        0); the counters must not overlap it.

    Members
    -------
    event : In(len(sources))
        Bit ``i`` high for one cycle: one more event of source ``i``.
    read_addr : In(range(depth))
        Byte to read: a cycle in which ``read_ready`` is high reads it.
    read_ready : Out(1)
        Every event noted so far is counted and the RAM port is free.
    read_data : Out(8)
        The byte read in the previous cycle (only in that cycle: counting may use the port
        afterwards).
    """

    def __init__(self, depth, sources, init=b""):
        init = bytes(init)
        if (not sources or len(init) > depth or
                any(not len(init) <= s < depth // _BYTES * _BYTES for s in sources)):
            raise ValueError(f"sources must be counter addresses from {len(init)} to "
                             f"{depth // _BYTES * _BYTES - 1}, not {sources!r}")
        self.depth = depth
        self.sources = tuple(sources)
        self.init = init
        super().__init__({
            "event": In(len(self.sources)),
            "read_addr": In(range(depth)),
            "read_ready": Out(1),
            "read_data": Out(8),
        })

    def elaborate(self, platform):
        m = Module()
        # A counter reads the byte after the one it writes: no read-during-write. The RAM
        # reads every cycle: no enable runs from the state into its read register (on
        # iCE40 that path was critical).
        m.submodules.ram = ram = BlockRAM(8, self.depth, self.init)
        m.d.comb += self.read_data.eq(ram.read_data)

        pending = Signal(len(self.sources))
        taken = Signal(len(self.sources))
        m.d.sync += pending.eq((pending & ~taken) | self.event)

        address = Signal.like(self.read_addr)     # the byte being incremented
        place = address[:2]                        # ... and its place in its word
        next_byte = Cat((place + 1)[:2], address[2:])    # inside the word: no carry past it

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.read_ready.eq(~pending.any())
                with m.If(pending.any()):
                    # The lowest pending source first.
                    for i in reversed(range(len(self.sources))):
                        with m.If(pending[i]):
                            m.d.comb += [taken.eq(1 << i), ram.read_addr.eq(self.sources[i])]
                            m.d.sync += address.eq(self.sources[i])
                    m.next = "INCREMENT"
                with m.Else():
                    m.d.comb += ram.read_addr.eq(self.read_addr)
            with m.State("INCREMENT"):
                # `ram.read_data` is the byte at `address`: write it back plus one, and go
                # on to the next byte only if this one wrapped and is not its word's last.
                m.d.comb += [ram.write_addr.eq(address), ram.write_data.eq(ram.read_data + 1),
                             ram.write_en.eq(1)]
                with m.If((ram.read_data == 0xFF) & (place != _BYTES - 1)):
                    m.d.comb += ram.read_addr.eq(next_byte)
                    m.d.sync += address.eq(next_byte)
                with m.Else():
                    m.next = "IDLE"
        return m
