"""Program mode: the layer-descriptor memory and the sequencer that runs its layers."""

from amaranth.hdl import Cat, Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from tritile.sw import protocol
from tritile.sw.protocol import Status

from .request_checker import PROBLEM_LAYOUT

__all__ = ["LAYER_LAYOUT", "PROGRAM_RUN_LAYOUT", "PROGRAM_DONE_LAYOUT", "ProgramSequencer"]

#: One layer descriptor, generated from ``protocol.LAYER_FIELDS`` (first field at bit 0, as
#: its little-endian bytes arrive).
LAYER_LAYOUT = data.StructLayout({
    name: signed(bits) if name in protocol.LAYER_SIGNED else unsigned(bits)
    for name, bits in protocol.LAYER_FIELDS})
#: RUN_PROGRAM's arguments.
PROGRAM_RUN_LAYOUT = data.StructLayout({"first": unsigned(8), "count": unsigned(8)})
#: The end of a program: ``OK``, or ``BAD_SHAPE`` with the layers run before the bad one.
PROGRAM_DONE_LAYOUT = data.StructLayout({"status": unsigned(4), "layers": unsigned(8)})
#: Bytes of a descriptor that hold fields (the rest are reserved zeros).
_FIELD_BYTES = (LAYER_LAYOUT.size + 7) // 8


class ProgramSequencer(wiring.Component):
    """Run layers of the descriptor memory one after the other, recording their counters.

    For each layer the sequencer reads its descriptor (one byte per cycle), has the
    shape checker judge its problem (RUN's rules, and an engine this device has), starts
    the engine, waits until the engine and the placement of its results are done
    (``engine_busy`` low), and stores ``busy_cycles`` and ``mac_cycles`` at counter words
    ``2 j`` and ``2 j + 1`` of the program's ``j``-th layer. A layer whose shape is refused
    ends the program with ``BAD_SHAPE`` before it starts: nothing of it is written.

    Parameters
    ----------
    max_layers : int
        Descriptors the memory holds (``config.max_layers``, at least 1).
    engines : iterable of Engine
        Protocol ids of the engines this device has.

    Members
    -------
    write : In(stream.Signature(...))
        Bytes for the descriptor memory (``addr``, ``data``); always ready. The address
        range is the dispatcher's to check (target ``PROGRAM``).
    run : In(stream.Signature(PROGRAM_RUN_LAYOUT))
        Layers ``first`` .. ``first + count - 1`` (within ``max_layers``, checked before).
    done : Out(stream.Signature(PROGRAM_DONE_LAYOUT))
        The program's end.
    shape : Out(stream.Signature(PROBLEM_LAYOUT))
        A layer's problem to check; ``shape_bad`` when it is taken.
    shape_bad : In(1)
    start : Out(stream.Signature(PROBLEM_LAYOUT))
        Start the layer's problem on its engine.
    layer : Out(LAYER_LAYOUT)
        The descriptor of the layer running (or last run): walk, weights, destination.
    engine_busy : In(1)
        The engine, or the placement of its results, is still working.
    busy_cycles, mac_cycles : In(32)
        The engine's counters of its last problem.
    counter_addr : In(range(2 * max_layers))
    counter_data : Out(32)
        Counter word ``counter_addr`` of the last program, one cycle after the address.
    """

    def __init__(self, max_layers, engines):
        if not 1 <= max_layers <= 255:
            raise ValueError(f"max_layers must be between 1 and 255, not {max_layers}")
        self.max_layers = max_layers
        self.engines = tuple(protocol.Engine(e) for e in engines)
        self.program_bytes = max_layers * protocol.LAYER_SIZE
        super().__init__({
            "write": In(stream.Signature(data.StructLayout({
                "addr": unsigned(ceil_log2(self.program_bytes)), "data": unsigned(8)}))),
            "run": In(stream.Signature(PROGRAM_RUN_LAYOUT)),
            "done": Out(stream.Signature(PROGRAM_DONE_LAYOUT)),
            "shape": Out(stream.Signature(PROBLEM_LAYOUT)),
            "shape_bad": In(1),
            "start": Out(stream.Signature(PROBLEM_LAYOUT)),
            "layer": Out(LAYER_LAYOUT),
            "engine_busy": In(1),
            "busy_cycles": In(32),
            "mac_cycles": In(32),
            "counter_addr": In(range(2 * max_layers)),
            "counter_data": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.descriptors = descriptors = Memory(
            shape=8, depth=self.program_bytes, init=[])
        m.submodules.counters = counters = Memory(shape=32, depth=2 * self.max_layers,
                                                  init=[])
        store = descriptors.write_port()
        fetch = descriptors.read_port(transparent_for=())
        record = counters.write_port()
        report = counters.read_port(transparent_for=())
        m.d.comb += [
            self.write.ready.eq(1),
            store.addr.eq(self.write.payload.addr), store.data.eq(self.write.payload.data),
            store.en.eq(self.write.valid),
            report.addr.eq(self.counter_addr), self.counter_data.eq(report.data),
        ]

        layer = self.layer
        done = Signal(8)                # layers of this program finished
        count = Signal(8)
        offset = Signal(range(_FIELD_BYTES + 1))
        base = Signal.like(fetch.addr)  # index * LAYER_SIZE, kept by adding
        present = Cat(*(layer.engine == e for e in self.engines)).any()
        problem = [self.shape.payload.engine.eq(layer.engine),
                   self.shape.payload.raw.eq(layer.flags[0]),
                   self.shape.payload.relu.eq(layer.flags[1]),
                   self.shape.payload.m.eq(layer.m), self.shape.payload.k.eq(layer.k),
                   self.shape.payload.n.eq(layer.n), self.shape.payload.in_place.eq(1)]
        m.d.comb += [*problem, self.start.payload.eq(self.shape.payload),
                     fetch.addr.eq(base + offset), record.addr.eq(Cat(0, done))]
        m.d.comb += self.done.payload.layers.eq(done)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.run.ready.eq(1)
                with m.If(self.run.valid):
                    first = self.run.payload.first
                    m.d.sync += [count.eq(self.run.payload.count),
                                 done.eq(0), offset.eq(0),
                                 base.eq((first << 6) + (first << 4))]
                    m.next = "FETCH"
            with m.State("FETCH"):
                # The byte addressed last cycle arrives now; the first arrives one later.
                m.d.sync += offset.eq(offset + 1)
                with m.If(offset != 0):
                    m.d.sync += layer.as_value().word_select((offset - 1).as_unsigned(), 8).eq(fetch.data)
                with m.If(offset == _FIELD_BYTES):
                    m.next = "CHECK"
            with m.State("CHECK"):
                m.d.comb += self.shape.valid.eq(1)
                with m.If(self.shape.ready):
                    with m.If(self.shape_bad | ~present):
                        m.d.sync += self.done.payload.status.eq(Status.BAD_SHAPE)
                        m.next = "DONE"
                    with m.Else():
                        m.next = "START"
            with m.State("START"):
                m.d.comb += self.start.valid.eq(1)
                with m.If(self.start.ready):
                    m.next = "STARTED"
            with m.State("STARTED"):
                # A core raises `busy` the cycle after it accepted `start`.
                m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(~self.engine_busy):
                    m.d.comb += [record.data.eq(self.busy_cycles), record.en.eq(1)]
                    m.next = "RECORD"
            with m.State("RECORD"):
                m.d.comb += [record.addr.eq(Cat(1, done)), record.data.eq(self.mac_cycles),
                             record.en.eq(1)]
                m.d.sync += [done.eq(done + 1), offset.eq(0),
                             base.eq(base + protocol.LAYER_SIZE)]
                with m.If(done + 1 == count):
                    m.d.sync += self.done.payload.status.eq(Status.OK)
                    m.next = "DONE"
                with m.Else():
                    m.next = "FETCH"
            with m.State("DONE"):
                m.d.comb += self.done.valid.eq(1)
                with m.If(self.done.ready):
                    m.next = "IDLE"
        return m
