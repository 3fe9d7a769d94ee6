"""The responder: a response's header and its data bytes, from wherever they live."""

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory, ReadPort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from tritile.sw import protocol

from .event_counters import EventCounters
from .frame import RESPONSE_LAYOUT
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

    The sources are the capability ROM, the link counters (frame-level events in
    :class:`~tritile.hw.event_counters.EventCounters`, overruns and a free-running cycle
    counter in logic), the last RUN's cycle counters, the output memory and the last
    program's per-layer counters.

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

    Members
    -------
    response : In(stream.Signature(response_layout(addr_bits)))
        The response, held until it is taken: when its last byte has gone to ``data``.
    header : Out(stream.Signature(RESPONSE_LAYOUT))
        To the :class:`~tritile.hw.frame.ResponseWriter`.
    data : Out(stream.Signature(8))
        The data bytes, to the writer.
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
    """

    def __init__(self, capability, addr_bits, out_depth, program_mode=False):
        self.capability = bytes(capability)
        self.program_mode = program_mode
        self.addr_bits = addr_bits
        addr_width = ceil_log2(out_depth)
        super().__init__({
            "response": In(stream.Signature(response_layout(addr_bits))),
            "header": Out(stream.Signature(RESPONSE_LAYOUT)),
            "data": Out(stream.Signature(8)),
            "output": In(ReadPort.Signature(addr_width=addr_width, shape=32)),
            "events": In(EVENTS_LAYOUT),
            "overrun": In(1),
            "busy_cycles": In(32),
            "mac_cycles": In(32),
            "counter_addr": Out(16),
            "counter_data": In(32),
        })

    def elaborate(self, platform):
        m = Module()
        resp = self.response.payload
        m.submodules.capability = capability = Memory(
            shape=8, depth=len(self.capability), init=self.capability)
        cap_read = capability.read_port(transparent_for=())

        # Frame-level events are counted in a block RAM (they happen at most once per
        # frame, and never while a response is being sent); overruns (any time) and
        # cycles (every cycle) in logic. The RAM holds a slot for every STATS field, in
        # the protocol's order, so a STATS byte index is its address.
        fields = protocol.STATS_FIELDS
        names = list(EVENTS_LAYOUT.members)
        m.submodules.counters = counters = EventCounters(
            len(fields), [fields.index(_COUNTER_OF.get(name, name)) for name in names])
        m.d.comb += counters.event.eq(Cat(*(self.events[name] for name in names)))
        overruns, cycles = Signal(32), Signal(32)
        m.d.sync += [overruns.eq(overruns + self.overrun), cycles.eq(cycles + 1)]

        index = Signal(16)
        last = Signal(16)               # index of the last data byte
        byte_addr = Signal(self.addr_bits)   # READ checked base + count against the size
        m.d.comb += [
            byte_addr.eq(resp.base + index),
            cap_read.addr.eq(index),
            counters.read_addr.eq(index),
            self.counter_addr.eq(index[2:]),
            self.output.addr.eq(Mux(resp.output8, byte_addr, byte_addr[2:])),
        ]
        stats_field = index[2:5]
        stats_byte = Mux(stats_field == fields.index("overruns"),
                         overruns.word_select(index[:2], 8),
                         Mux(stats_field == fields.index("cycles"),
                             cycles.word_select(index[:2], 8), counters.read_data))
        out_word = self.output.data
        out_byte = Mux(resp.output8, out_word[:8], out_word.word_select(byte_addr[:2], 8))
        with m.Switch(resp.source):
            with m.Case(Source.CAPABILITY):
                m.d.comb += self.data.payload.eq(cap_read.data)
            with m.Case(Source.STATS):
                m.d.comb += self.data.payload.eq(stats_byte)
            with m.Case(Source.CYCLES):
                m.d.comb += self.data.payload.eq(
                    Cat(self.busy_cycles, self.mac_cycles).word_select(index[:3], 8))
            with m.Case(Source.OUTPUT):
                m.d.comb += self.data.payload.eq(out_byte)
            if self.program_mode:
                with m.Case(Source.PROGRAM):
                    m.d.comb += self.data.payload.eq(
                        self.counter_data.word_select(index[:2], 8))
        m.d.comb += [
            self.header.payload.opcode.eq(resp.opcode),
            self.header.payload.seq.eq(resp.seq),
            self.header.payload.status.eq(resp.status),
            self.header.payload.length.eq(resp.length),
        ]

        with m.FSM():
            with m.State("HEADER"):
                m.d.comb += self.header.valid.eq(self.response.valid)
                m.d.sync += [last.eq(resp.length - 1), index.eq(0)]
                with m.If(self.response.valid & self.header.ready):
                    with m.If(resp.length == 0):
                        m.next = "DONE"
                    with m.Else():
                        m.next = "FETCH"
            with m.State("FETCH"):
                # Memory sources show byte `index` in the next cycle; the counters once
                # every event so far is counted.
                with m.If(resp.source == Source.STATS):
                    m.d.comb += counters.read_en.eq(1)
                    with m.If(counters.read_ready):
                        m.next = "SEND"
                with m.Else():
                    m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += [self.data.valid.eq(1),
                             counters.hold.eq(resp.source == Source.STATS)]
                with m.If(self.data.ready):
                    m.d.sync += index.eq(index + 1)
                    with m.If(index == last):
                        m.next = "DONE"
                    with m.Else():
                        m.next = "FETCH"
            with m.State("DONE"):
                m.d.comb += self.response.ready.eq(1)
                m.next = "HEADER"
        return m
