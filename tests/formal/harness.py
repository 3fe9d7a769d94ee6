"""Formal harnesses: the request path and the UART receiver with their promises as assertions.

Every input is free (the solver picks any value in any cycle): the received bytes, and
the readiness and busy signals of the engines and the responder, so what is proven holds
whatever they do. Each harness is a small model: a frame buffer of :data:`MAX_DATA`
bytes and a frame timeout of :data:`TIMEOUT` cycles instead of the device's 2048 bytes
and 10 ms; the logic is the same.
"""

from amaranth.hdl import Assert, Assume, ClockDomain, ClockSignal, Const, Module, Signal, Value
from amaranth.lib import wiring

from tritile.hw.dispatcher import Dispatcher
from tritile.hw.engine_bank import target_sizes, weight_limits
from tritile.hw.frame import FrameError
from tritile.hw.request_checker import RequestChecker
from tritile.hw.request_path import RequestPath
from tritile.hw.shape_checker import ShapeChecker
from tritile.hw.write_walker import WriteWalker
from tritile.hw.uart import UARTReceiver
from tritile.sw.config import AcceleratorConfig
from tritile.sw.protocol import Engine, Opcode

__all__ = ["CONFIG", "MAX_DATA", "TIMEOUT", "IDLE_BOUND", "request_path_harness",
           "dispatch_harness", "uart_harness"]

#: A small device: both engines, memories of a few dozen bytes.
CONFIG = AcceleratorConfig(
    systolic_rows=2, systolic_cols=2, ternary_lanes=4, ternary_fan_in=4,
    max_m=4, max_k=8, max_n=4, act_depth=32, weight_depth=32, trit_depth=32, out_depth=16)
MAX_DATA = 4
TIMEOUT = 3
#: Cycles from a request reaching the checker (the cycle after its last byte) within
#: which it is answered and the dispatcher is idle again, when the engines and the
#: responder never hold it up.
IDLE_BOUND = 32


def _module():
    # No reset: the solver starts from the registers' initial values.
    m = Module()
    m.domains.sync = ClockDomain("sync", reset_less=True)
    return m


def _memory_safety(m, sizes, request, write, start):
    """Assert (a) and (b): writes stay inside their targets, and memories are written
    and engines started only for the request on offer, if its CRC matched."""
    inside = Const(0)
    for target, size in sizes.items():
        inside = inside | ((write.payload.target == target) & (write.payload.addr < size))
    serving = request.valid & (request.payload.error == FrameError.NONE)
    m.d.comb += [
        Assert(~write.valid | inside),
        Assert(~write.valid | (serving & (request.payload.opcode == Opcode.WRITE))),
        Assert(~start.valid | (serving & (request.payload.opcode == Opcode.RUN))),
    ]


def _count_responses(m, request, response):
    """Assert never more responses than requests, and at most two unanswered (a RUN's
    request is released when it starts, so another may arrive before its response)."""
    pending = Signal()      # the request on offer has been counted
    outstanding = Signal(3)
    arrived = request.valid & ~pending
    answered = response.valid & response.ready
    with m.If(request.valid & request.ready):
        m.d.sync += pending.eq(0)
    with m.Elif(request.valid):
        m.d.sync += pending.eq(1)
    m.d.sync += outstanding.eq(outstanding + arrived - answered)
    m.d.comb += [Assert(~answered | arrived | (outstanding != 0)), Assert(outstanding <= 2)]
    return arrived


def _stream_rules(m, stream, *, assume=False):
    """Check (or, for an input, assume) that ``valid`` and ``payload`` hold until ``ready``."""
    payload = Value.cast(stream.payload)
    offered = Signal()
    last = Signal(len(payload))
    m.d.sync += [offered.eq(stream.valid & ~stream.ready), last.eq(payload)]
    held = ~offered | (stream.valid & (payload == last))
    m.d.comb += (Assume if assume else Assert)(held)


def request_path_harness():
    """Return ``(module, ports)``: the request path with assertions (a) to (d)."""
    m = _module()
    sizes = target_sizes(CONFIG, CONFIG.engines)
    m.submodules.path = path = RequestPath(
        CONFIG, sizes, [Engine.SYSTOLIC, Engine.TERNARY], weight_limits(CONFIG),
        capability_size=4, timeout=TIMEOUT, max_data=MAX_DATA)
    ports = [ClockSignal(), path.bytes.valid, path.bytes.payload, path.write.ready,
             path.start.ready, path.response.ready, path.engine_busy]
    parser = path.parser
    _memory_safety(m, sizes, parser.request, path.write, path.start)

    # (c) Never more responses than requests.
    _count_responses(m, parser.request, path.response)

    # (d) The streams keep the rules; the bytes in are assumed to.
    _stream_rules(m, path.bytes, assume=True)
    for stream in (parser.request, path.checker.checked, path.write, path.start,
                   path.response):
        _stream_rules(m, stream)
    return m, ports


def dispatch_harness():
    """Return ``(module, ports)``: checker, dispatcher, walker and shape check, fed any
    request at all (its frame buffer too), with (a), (b) and (c): every request is
    answered once, and the dispatcher idle within :data:`IDLE_BOUND` cycles of the last
    one's arrival while the engines and the responder never hold it up."""
    m = _module()
    sizes = target_sizes(CONFIG, CONFIG.engines)
    m.submodules.checker = checker = RequestChecker(
        sizes, [Engine.SYSTOLIC, Engine.TERNARY], MAX_DATA)
    m.submodules.dispatcher = dispatcher = Dispatcher(4, checker.addr_bits)
    m.submodules.walker = walker = WriteWalker(sizes, checker.addr_bits, MAX_DATA)
    m.submodules.shapes = shapes = ShapeChecker(CONFIG, weight_limits(CONFIG))
    wiring.connect(m, checker.checked, dispatcher.checked)
    wiring.connect(m, dispatcher.walk, walker.command)
    wiring.connect(m, dispatcher.shape, shapes.problem)
    m.d.comb += [dispatcher.walk_refused.eq(walker.refused),
                 dispatcher.shape_bad.eq(shapes.bad)]
    ports = [ClockSignal(), checker.request.valid, Value.cast(checker.request.payload),
             walker.read_data, walker.write.ready, dispatcher.start.ready,
             dispatcher.engine_busy, dispatcher.response.ready]
    _stream_rules(m, checker.request, assume=True)
    m.d.comb += Assume(walker.write.ready & dispatcher.start.ready
                       & dispatcher.response.ready & ~dispatcher.engine_busy)
    _memory_safety(m, sizes, checker.request, walker.write, dispatcher.start)
    arrived = _count_responses(m, checker.request, dispatcher.response)
    age = Signal(range(IDLE_BOUND + 1), init=IDLE_BOUND)   # since the last request arrived
    with m.If(arrived):
        m.d.sync += age.eq(0)
    with m.Elif(age != IDLE_BOUND):
        m.d.sync += age.eq(age + 1)
    # Until the first request `age` starts at the bound: the dispatcher starts idle.
    m.d.comb += Assert((age != IDLE_BOUND) | dispatcher.idle)
    return m, ports


def uart_harness(divisor=4):
    """Return ``(module, ports)``: the UART receiver with the stream rules asserted."""
    m = _module()
    m.submodules.uart = uart = UARTReceiver(divisor)
    _stream_rules(m, uart.bytes)
    return m, [ClockSignal(), uart.rx, uart.bytes.ready]
