"""The responder: a response's header and its data bytes, from wherever they live."""

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from tritile.sw import protocol

from .event_counters import EventCounters
from .frame import DATA_LAYOUT, RESPONSE_LAYOUT
from .request_checker import STATUS_SHAPE

__all__ = ["Source", "EVENTS_LAYOUT", "response_layout", "Responder"]


class Source(enum.Enum, shape=3):
    """Where a response's data bytes come from."""
    CAPABILITY = 0
    STATS = 1
    CYCLES = 2        # busy and MAC cycles of the last RUN
    OUTPUT = 3
    PROGRAM = 4       # the per-layer counters of the last program


#: Pulses of the events the STATS counters count (``length_error`` counts as bad_length).
EVENTS_LAYOUT = data.StructLayout({"frames": 1, "bad_crc": 1, "bad_length": 1,
                                   "length_error": 1, "timeouts": 1, "runs": 1})
_COUNTER_OF = {"length_error": "bad_length"}


def response_layout(addr_bits):
    """Return the layout of a response to send: header fields and where its data is."""
    return data.StructLayout({
        "opcode": unsigned(8), "seq": unsigned(8), "status": STATUS_SHAPE,
        "length": unsigned(16), "source": Source,
        # A READ's data: output memory bytes from `base`, low bytes of words if `output8`.
        "base": unsigned(addr_bits), "output8": unsigned(1),
    })


class Responder(wiring.Component):
    """Send a response: its header, then ``length`` data bytes from its source.

    The sources are the capability ROM and the link counters, in one block RAM
    (:class:`~tritile.hw.event_counters.EventCounters`: frame-level events, overruns and
    the carries of the cycle counter's low byte, which is kept in logic), the last RUN's
    cycle counters, the output memory and the last program's per-layer counters. Each data
    byte is fetched (the first from the response's second cycle), registered and offered;
    the header is offered from the response's
    arrival until the writer has sent the whole frame, and the response is taken with it.

    Parameters
    ----------
    capability : bytes
        The capability ROM.
    addr_bits : int
        Bits of a READ's base address.
    out_depth : int
        Words of the output memory.
    program_mode : bool
        The device runs programs: ``Source.PROGRAM`` sends their counters.
    counter_bits : (int, int)
        The bits of ``busy_cycles`` and ``mac_cycles`` that can be set (the others are
        sent as 0): :attr:`~tritile.hw.engine_bank.EngineBank.counter_bits`.

    Members
    -------
    response : In(stream.Signature(response_layout(addr_bits)))
        The response, held until it is taken: when the writer takes its header.
        ``length`` is at most :data:`~tritile.sw.protocol.MAX_RESPONSE_DATA`.
    header : Out(stream.Signature(RESPONSE_LAYOUT))
        To the :class:`~tritile.hw.frame.ResponseWriter`, which takes it when the frame
        is sent.
    data : Out(stream.Signature(DATA_LAYOUT))
        The data bytes, to the writer; the ``length``-th is marked ``last``.
    output : In(ReadPort.Signature(addr_width, 32))
        A read port of the output memory.
    events : In(EVENTS_LAYOUT)
        One-cycle pulses of counted events.
    overrun : In(1)
        Pulses when the link dropped a byte.
    busy_cycles, mac_cycles : In(32)
        The last RUN's counters.
    counter_addr : Out(16)
    counter_data : In(32)
        The program's counter words (:class:`~tritile.hw.program_sequencer.
        ProgramSequencer`), word ``counter_addr`` one cycle after the address.
    tick : Out(1)
        Pulses once every :attr:`TICK_PERIOD` cycles, when the cycle counter's low byte
        carries: a prescaler for the frame parser's timeout.
    """

    #: Cycles between pulses of ``tick``.
    TICK_PERIOD = 256

    def __init__(self, capability, addr_bits, out_depth, program_mode=False,
                 counter_bits=(32, 32)):
        self.capability = bytes(capability)
        self.program_mode = program_mode
        if (len(counter_bits) != 2 or
                not all(isinstance(b, int) and 1 <= b <= 32 for b in counter_bits)):
            raise ValueError(f"counter_bits must be two widths from 1 to 32, "
                             f"not {counter_bits!r}")
        self.counter_bits = tuple(counter_bits)
        self.addr_bits = addr_bits
        addr_width = ceil_log2(out_depth)
        super().__init__({
            "response": In(stream.Signature(response_layout(addr_bits))),
            "header": Out(stream.Signature(RESPONSE_LAYOUT)),
            "data": Out(stream.Signature(DATA_LAYOUT)),
            "output": In(ReadPort.Signature(addr_width=addr_width, shape=32)),
            "events": In(EVENTS_LAYOUT),
            "overrun": In(1),
            "busy_cycles": In(32),
            "mac_cycles": In(32),
            "counter_addr": Out(16),
            "counter_data": In(32),
            "tick": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        resp = self.response.payload
        fields = protocol.STATS_FIELDS
        # The RAM: the capability ROM from address 0, the STATS fields from `stats_base`,
        # a multiple of 32 past it, so that a STATS byte's address is its index with the
        # base's bits set (no adder). The cycle counter's low byte lives in logic: its
        # carries count in the RAM one byte up, into the field's bytes 1-3 (a counter ends
        # with its aligned word).
        stats_base = -(-len(self.capability) // 32) * 32
        cycles_index = 4 * fields.index("cycles")
        names = list(EVENTS_LAYOUT.members)
        sources = [stats_base + 4 * fields.index(_COUNTER_OF.get(name, name)) for name in names]
        sources += [stats_base + 4 * fields.index("overruns"), stats_base + cycles_index + 1]
        m.submodules.counters = counters = EventCounters(
            (max(sources) | 3) + 1, sources, init=self.capability)
        cycles_low = Signal(range(self.TICK_PERIOD))
        m.d.sync += cycles_low.eq(cycles_low + 1)
        m.d.comb += [self.tick.eq(cycles_low == self.TICK_PERIOD - 1),
                     counters.event.eq(Cat(*(self.events[name] for name in names),
                                           self.overrun, self.tick))]

        index = Signal(range(protocol.MAX_RESPONSE_DATA + 1))
        byte_addr = Signal(self.addr_bits)   # READ checked base + count against the size
        stats = resp.source == Source.STATS
        m.d.comb += [
            byte_addr.eq(resp.base + index),
            counters.read_addr.eq(Mux(stats, index | stats_base, index)),
            self.counter_addr.eq(index[2:]),
            self.output.addr.eq(Mux(resp.output8, byte_addr, byte_addr[2:])),
        ]
        # One byte multiplexer for the 32-bit sources: the RUN's counters (the byte is
        # `index`'s) and the output word (`byte_addr`'s, or the low byte for OUTPUT8).
        # The reads take their addresses as FETCH ends and show their data in LATCH, when
        # `index` has moved on to the next byte: what selects a byte of their data is
        # registered with them (so neither does a path run from the request's base
        # through the address adder into the byte multiplexer).
        cycles = resp.source == Source.CYCLES
        busy_bits, mac_bits = self.counter_bits
        lane = Mux(cycles, index[:2], Mux(resp.output8, 0, byte_addr[:2]))
        if self.program_mode:
            program = resp.source == Source.PROGRAM
            lane = Mux(program, index[:2], lane)
        held_lane = Signal(2)
        held_mac = Signal()               # a CYCLES byte of mac_cycles, not busy_cycles
        held_cycles_low = Signal()        # the STATS byte kept in logic
        word = Mux(cycles, Mux(held_mac, self.mac_cycles[:mac_bits],
                               self.busy_cycles[:busy_bits]), self.output.data)
        if self.program_mode:
            word = Mux(program, self.counter_data, word)
        from_ram = (resp.source == Source.CAPABILITY) | stats
        fetched = Mux(from_ram, Mux(held_cycles_low, cycles_low, counters.read_data),
                      word.word_select(held_lane, 8))
        m.d.comb += [
            self.header.valid.eq(self.response.valid),
            self.header.payload.opcode.eq(resp.opcode),
            self.header.payload.seq.eq(resp.seq),
            self.header.payload.status.eq(resp.status),
            self.header.payload.length.eq(resp.length),
            self.response.ready.eq(self.header.ready),
        ]

        # Whether bytes are left to fetch, registered (so that no path runs from the
        # response's length through the compare into the FSMs of the responder and the
        # writer): `index` and the held response are a cycle old in it, so it counts
        # from the response's second cycle (`armed`) and `index` moves only in FETCH,
        # two cycles before the next FETCH. The first data byte is fetched a cycle later,
        # while the writer still sends the header.
        armed, more = Signal(), Signal()
        m.d.sync += [armed.eq(self.response.valid & ~self.header.ready),
                     more.eq(index != resp.length)]
        with m.FSM():
            with m.State("FETCH"):
                # The RAM is read once every event so far is counted; memory sources show
                # byte `index` in the next cycle.
                with m.If(armed & more & (~from_ram | counters.read_ready)):
                    m.d.sync += [index.eq(index + 1), held_lane.eq(lane),
                                 held_mac.eq(index[2]),
                                 held_cycles_low.eq(stats & (index == cycles_index))]
                    m.next = "LATCH"
            with m.State("LATCH"):
                # `index` counts this byte already: FETCH's compare marks the last, in a
                # register (no path from the compare through the writer's state logic).
                m.d.sync += [self.data.payload.byte.eq(fetched),
                             self.data.payload.last.eq(index == resp.length)]
                m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += self.data.valid.eq(1)
                with m.If(self.data.ready):
                    m.next = "FETCH"
        with m.If(self.header.valid & self.header.ready):
            m.d.sync += index.eq(0)
        return m
