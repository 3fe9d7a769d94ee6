"""The host link's request path: from received bytes to memory writes, starts and responses.

::

    bytes -> FrameParser -> RequestChecker -> Dispatcher -+-> WriteWalker -> write
                (frame buffer) <--------------------------|------'
                                                          +-> ShapeChecker
                                                          +-> start, problem
                                                          +-> response

This is the part of the device that faces arbitrary input; tests/formal/ proves its
promises for every byte sequence.
"""

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from tritile.sw import protocol

from .dispatcher import Dispatcher
from .frame import FrameParser
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
        Problem limits and memory depths for the shape check.
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

    Members
    -------
    bytes : In(stream.Signature(8))
        Received bytes.
    write : Out(stream.Signature(byte_write_layout(addr_bits)))
        Bytes for the targets' memories, each inside its target.
    start : Out(stream.Signature(PROBLEM_LAYOUT))
        A checked problem to start.
    problem : Out(PROBLEM_LAYOUT)
        The problem of the RUN in progress (or the last one).
    engine_busy : In(1)
        The engine, or the placement of its results, is still working.
    response : Out(stream.Signature(response_layout(addr_bits)))
        The response to send; taken once it is sent.
    events : Out(EVENTS_LAYOUT)
        Pulses of the events the STATS counters count.
    idle : Out(1)
        No frame is in progress and no request is being served: nothing happens until
        the next byte arrives.
    """

    def __init__(self, config, sizes, engines, weight_limits, capability_size, timeout,
                 max_data=protocol.MAX_DATA):
        self.parser = FrameParser(timeout, max_data)
        self.checker = RequestChecker(sizes, engines, max_data)
        self.addr_bits = bits = self.checker.addr_bits
        self.dispatcher = Dispatcher(capability_size, bits)
        self.walker = WriteWalker(bits, max_data)
        self.shapes = ShapeChecker(config, weight_limits)
        super().__init__({
            "bytes": In(stream.Signature(8)),
            "write": Out(stream.Signature(byte_write_layout(bits))),
            "start": Out(stream.Signature(PROBLEM_LAYOUT)),
            "problem": Out(PROBLEM_LAYOUT),
            "engine_busy": In(1),
            "response": Out(stream.Signature(response_layout(bits))),
            "events": Out(EVENTS_LAYOUT),
            "idle": Out(1),
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
        wiring.connect(m, walker.write, wiring.flipped(self.write))
        wiring.connect(m, dispatcher.shape, shapes.problem)
        wiring.connect(m, dispatcher.start, wiring.flipped(self.start))
        wiring.connect(m, dispatcher.response, wiring.flipped(self.response))
        events = self.events
        m.d.comb += [
            dispatcher.walk_refused.eq(walker.refused),
            parser.read_addr.eq(walker.read_addr),
            walker.read_data.eq(parser.read_data),
            dispatcher.shape_bad.eq(shapes.bad),
            self.problem.eq(dispatcher.problem),
            dispatcher.engine_busy.eq(self.engine_busy),
            self.idle.eq(parser.idle & dispatcher.idle),
            events.frames.eq(checker.frame_ok), events.length_error.eq(checker.length_error),
            events.bad_crc.eq(parser.bad_crc), events.bad_length.eq(parser.bad_length),
            events.timeouts.eq(parser.timed_out), events.runs.eq(dispatcher.run_done),
        ]
        return m
