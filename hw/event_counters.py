"""Event counters kept in a block RAM, incremented one byte at a time.

A 32-bit counter in logic costs 32 logic cells plus its share of the read-out multiplexer;
on the iCE40UP5K the SoC's link counters took about 430 LUTs that way. Counters of rare
events (a frame, a CRC error) need not be fast: :class:`EventCounters` keeps them in one
block RAM as little-endian bytes and increments them with an 8-bit adder, one byte per
cycle, stopping at the first byte that does not wrap.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["EventCounters"]

_BYTES = 4      # 32-bit counters


class EventCounters(wiring.Component):
    """32-bit counters of rare events, in one block RAM, read a byte at a time.

    Each cycle's events are noted in one pending flag per source and counted a few cycles
    later (one source at a time, 2 to 5 cycles each). A source must not fire again before
    its last event is counted: within ``2 + 5 * len(sources)`` cycles, longer while
    ``hold`` is high. The SoC's frame-level events are that rare.

    Parameters
    ----------
    counters : int
        Number of counters; counter ``c`` is bytes ``4c .. 4c + 3`` (little-endian).
    sources : tuple of int
        Counter that each event input increments (several inputs may share one).

    Members
    -------
    event : In(len(sources))
        Bit ``i`` high for one cycle: one more event of source ``i``.
    read_addr : In(range(4 * counters))
        Byte to read.
    read_en : In(1)
        Read ``read_addr``; served in a cycle in which ``read_ready`` is high.
    read_ready : Out(1)
        Every event noted so far is counted and the RAM port is free.
    read_data : Out(8)
        The byte of the last served read, from the cycle after it; it holds while
        ``hold`` is high.
    hold : In(1)
        Count nothing (the reader still uses ``read_data``).
    """

    def __init__(self, counters, sources):
        if counters < 1 or any(not 0 <= s < counters for s in sources) or not sources:
            raise ValueError(f"sources must name counters 0 to {counters - 1}, not "
                             f"{sources!r}")
        self.counters = counters
        self.sources = tuple(sources)
        super().__init__({
            "event": In(len(self.sources)),
            "read_addr": In(range(_BYTES * counters)),
            "read_en": In(1),
            "read_ready": Out(1),
            "read_data": Out(8),
            "hold": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.ram = ram = Memory(shape=8, depth=_BYTES * self.counters, init=[])
        read = ram.read_port(transparent_for=())
        write = ram.write_port()
        m.d.comb += self.read_data.eq(read.data)

        pending = Signal(len(self.sources))
        taken = Signal(len(self.sources))
        m.d.sync += pending.eq((pending & ~taken) | self.event)

        counter = Signal(range(self.counters))
        byte = Signal(range(_BYTES))
        address = Signal.like(self.read_addr)
        m.d.comb += address.eq(counter * _BYTES + byte)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.read_ready.eq(~pending.any())
                with m.If(pending.any() & ~self.hold):
                    # The lowest pending source first.
                    for i in reversed(range(len(self.sources))):
                        with m.If(pending[i]):
                            m.d.comb += [taken.eq(1 << i), read.addr.eq(self.sources[i] * _BYTES)]
                            m.d.sync += [counter.eq(self.sources[i]), byte.eq(0)]
                    m.d.comb += read.en.eq(1)
                    m.next = "INCREMENT"
                with m.Elif(self.read_en & ~pending.any()):
                    m.d.comb += [read.addr.eq(self.read_addr), read.en.eq(1)]
                with m.Else():
                    # A read port's `en` is 1 unless driven: keep the last byte read.
                    m.d.comb += read.en.eq(0)
            with m.State("INCREMENT"):
                # `read.data` is byte `byte` of `counter`: write it back plus one, and go
                # on to the next byte only if this one wrapped.
                m.d.comb += [write.addr.eq(address), write.data.eq(read.data + 1),
                             write.en.eq(1)]
                with m.If((read.data == 0xFF) & (byte != _BYTES - 1)):
                    m.d.comb += [read.addr.eq(address + 1), read.en.eq(1)]
                    m.d.sync += byte.eq(byte + 1)
                with m.Else():
                    m.d.comb += read.en.eq(0)
                    m.next = "IDLE"
        return m
