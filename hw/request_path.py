"""The host link's request path: from received bytes to memory writes, starts and responses.

::

    bytes -> FrameParser -> RequestChecker -> Dispatcher -+-> WriteWalker -> write
                (frame buffer) <--------------------------|------'  (PROGRAM: descriptors)
                                                          +-> ShapeChecker <-+
                                                          +-> start, layer --+- ProgramSequencer
                                                          +-> response          (RUN_PROGRAM)

This is the part of the device that faces arbitrary input; tests/formal/ proves its
promises for every byte sequence.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from tritile.sw import protocol
from tritile.sw.protocol import LayerFlag, Target

from .dispatcher import Dispatcher
from .frame import FrameParser
from .program_sequencer import LAYER_LAYOUT, ProgramSequencer
from .request_checker import PROBLEM_LAYOUT, RequestChecker
from .responder import EVENTS_LAYOUT, response_layout
from .shape_checker import ShapeChecker
from .write_walker import WriteWalker, byte_write_layout

__all__ = ["RequestPath"]


class RequestPath(wiring.Component):
    """Receive, check and carry out requests; ask for one response to each.

    Parameters
    ----------
    config : AcceleratorConfig
        Problem limits and memory depths for the shape check; ``max_layers`` above 0 adds
        the :class:`~tritile.hw.program_sequencer.ProgramSequencer` (program mode).
    sizes : dict of Target to int
        Byte size of every target (0 for a target this device lacks).
    engines : iterable of Engine
        Engines this device has.
    weight_limits : dict of Engine to int
        Weight memory depth of each engine.
    capability_size : int
        Bytes of INFO's response.
    timeout : int
        Cycles of silence after which a partial frame is abandoned.
    max_data : int
        Bytes of the frame buffer: the protocol's, or fewer for a formal proof.
    tick_period : int
        Cycles between pulses of ``tick`` (:class:`~tritile.hw.frame.FrameParser`).

    Members
    -------
    bytes : In(stream.Signature(8))
        Received bytes.
    write : Out(stream.Signature(byte_write_layout(addr_bits)))
        Bytes for the targets' memories, each inside its target.
    start : Out(stream.Signature(PROBLEM_LAYOUT))
        A checked problem to start: a RUN's, or a program's layer's.
    layer : Out(LAYER_LAYOUT)
        The layer in progress (or the last one): a program's descriptor, or for a RUN its
        problem with ``TO_OUTPUT`` at output index 0, parameters from entry 0, no pooling.
    program : Out(1)
        ``layer`` is a program's (its walk and weight base are the core's).
    engine_busy : In(1)
        The engine, or the placement of its results, is still working.
    busy_cycles, mac_cycles : In(32)
        The engine's counters of its last problem (recorded per layer of a program).
    counter_addr : In(16)
    counter_data : Out(32)
        Counter word ``counter_addr`` of the last program (0 without program mode).
    response : Out(stream.Signature(response_layout(addr_bits)))
        The response to send; taken once it is sent.
    events : Out(EVENTS_LAYOUT)
        Pulses of the events the STATS counters count.
    idle : Out(1)
        No frame is in progress and no request is being served: nothing happens until
        the next byte arrives.
    tick : In(1, init=1)
        Paces the frame timeout: pulses once every ``tick_period`` cycles.
    """

    def __init__(self, config, sizes, engines, weight_limits, capability_size, timeout,
                 max_data=protocol.MAX_DATA, tick_period=1):
        self.parser = FrameParser(timeout, max_data, tick_period)
        self.checker = RequestChecker(sizes, engines, max_data, config.max_layers)
        self.addr_bits = bits = self.checker.addr_bits
        self.dispatcher = Dispatcher(capability_size, bits, bool(config.max_layers),
                                     (config.max_m, config.max_k, config.max_n))
        self.walker = WriteWalker(sizes, bits, max_data)
        self.shapes = ShapeChecker(config, weight_limits)
        self.sequencer = (ProgramSequencer(config.max_layers, engines)
                          if config.max_layers else None)
        super().__init__({
            "bytes": In(stream.Signature(8)),
            "write": Out(stream.Signature(byte_write_layout(bits))),
            "start": Out(stream.Signature(PROBLEM_LAYOUT)),
            "layer": Out(LAYER_LAYOUT),
            "program": Out(1),
            "engine_busy": In(1),
            "busy_cycles": In(32),
            "mac_cycles": In(32),
            "counter_addr": In(16),
            "counter_data": Out(32),
            "response": Out(stream.Signature(response_layout(bits))),
            "events": Out(EVENTS_LAYOUT),
            "idle": Out(1),
            "tick": In(1, init=1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.parser = parser = self.parser
        m.submodules.checker = checker = self.checker
        m.submodules.dispatcher = dispatcher = self.dispatcher
        m.submodules.walker = walker = self.walker
        m.submodules.shapes = shapes = self.shapes

        wiring.connect(m, wiring.flipped(self.bytes), parser.bytes)
        wiring.connect(m, parser.request, checker.request)
        wiring.connect(m, checker.checked, dispatcher.checked)
        wiring.connect(m, dispatcher.walk, walker.command)
        wiring.connect(m, dispatcher.response, wiring.flipped(self.response))
        problem, layer = dispatcher.problem, self.layer
        if self.sequencer is None:
            wiring.connect(m, walker.write, wiring.flipped(self.write))
            wiring.connect(m, dispatcher.shape, shapes.problem)
            wiring.connect(m, dispatcher.start, wiring.flipped(self.start))
            m.d.comb += dispatcher.shape_bad.eq(shapes.bad)
        else:
            self._compose_sequencer(m)
        # A RUN is the layer of its problem, row-major into the output memory.
        run_layer = _layer_value(engine=problem.engine, m=problem.m, k=problem.k,
                                 n=problem.n, pool_k=1,
                                 flags=LayerFlag.TO_OUTPUT | problem.raw | (problem.relu << 1))
        if self.sequencer is None:
            m.d.comb += layer.eq(run_layer)
        else:
            m.d.comb += layer.eq(Mux(self.program, self.sequencer.layer, run_layer))
        events = self.events
        m.d.comb += [
            dispatcher.walk_refused.eq(walker.refused),
            parser.read_addr.eq(walker.read_addr),
            parser.tick.eq(self.tick),
            walker.read_data.eq(parser.read_data),
            self.program.eq(dispatcher.program),
            dispatcher.engine_busy.eq(self.engine_busy),
            self.idle.eq(parser.idle & dispatcher.idle),
            events.frames.eq(checker.frame_ok), events.length_error.eq(checker.length_error),
            events.bad_crc.eq(parser.bad_crc), events.bad_length.eq(parser.bad_length),
            events.timeouts.eq(parser.timed_out), events.runs.eq(dispatcher.run_done),
        ]
        return m

    def _compose_sequencer(self, m):
        """Add program mode: descriptors, RUN_PROGRAM, and the layers' shapes and starts.

        The dispatcher and the sequencer never offer a shape or a start at the same time
        (the dispatcher waits for the program's end), so each pair meets in a plain mux.
        """
        m.submodules.sequencer = sequencer = self.sequencer
        dispatcher, shapes, walker = self.dispatcher, self.shapes, self.walker
        wiring.connect(m, dispatcher.program_run, sequencer.run)
        wiring.connect(m, sequencer.done, dispatcher.program_done)
        # Descriptor bytes go to the sequencer's memory, every other target out.
        to_program = walker.write.payload.target == Target.PROGRAM
        m.d.comb += [
            sequencer.write.payload.addr.eq(walker.write.payload.addr),
            sequencer.write.payload.data.eq(walker.write.payload.data),
            sequencer.write.valid.eq(walker.write.valid & to_program),
            self.write.payload.eq(walker.write.payload),
            self.write.valid.eq(walker.write.valid & ~to_program),
            walker.write.ready.eq(Mux(to_program, sequencer.write.ready, self.write.ready)),
        ]
        for source in (dispatcher.shape, sequencer.shape):
            m.d.comb += source.ready.eq(shapes.problem.ready)
        for source in (dispatcher.start, sequencer.start):
            m.d.comb += source.ready.eq(self.start.ready)
        m.d.comb += [
            shapes.problem.valid.eq(dispatcher.shape.valid | sequencer.shape.valid),
            shapes.problem.payload.eq(Mux(sequencer.shape.valid, sequencer.shape.payload,
                                          dispatcher.shape.payload)),
            dispatcher.shape_bad.eq(shapes.bad), sequencer.shape_bad.eq(shapes.bad),
            self.start.valid.eq(dispatcher.start.valid | sequencer.start.valid),
            self.start.payload.eq(Mux(sequencer.start.valid, sequencer.start.payload,
                                      dispatcher.start.payload)),
            sequencer.engine_busy.eq(self.engine_busy),
            sequencer.busy_cycles.eq(self.busy_cycles),
            sequencer.mac_cycles.eq(self.mac_cycles),
            sequencer.counter_addr.eq(self.counter_addr),
            self.counter_data.eq(sequencer.counter_data),
        ]


def _layer_value(**fields):
    """Return a value of :data:`LAYER_LAYOUT` with ``fields`` and every other field 0."""
    parts = []
    for name, member in LAYER_LAYOUT:
        value = Value.cast(fields.get(name, 0))
        parts.append(value[:member.width] if len(value) >= member.width
                     else Cat(value, Const(0, member.width - len(value))))
    return Cat(*parts)
