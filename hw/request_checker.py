"""Checks of a received request, decided before anything acts on it.

The argument blocks are decoded with layouts generated from
:data:`tritile.sw.protocol.ARGS_FIELDS`, the one definition of the wire format.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from tritile.sw import protocol
from tritile.sw.protocol import Opcode, Status

from .constant_compare import exceeds
from .frame import REQUEST_LAYOUT, FrameError

__all__ = ["args_layout", "request_args", "STATUS_SHAPE", "PROBLEM_LAYOUT", "CHECKED_LAYOUT",
           "RequestChecker"]

#: Enough bits for every :class:`~tritile.sw.protocol.Status`.
STATUS_SHAPE = unsigned(bits_for(max(Status)))

#: The problem a RUN asks for, as the dispatcher holds it while an engine computes, or a
#: program's layer (``in_place``: it reads its map in place, not M x K im2col rows).
PROBLEM_LAYOUT = data.StructLayout({"engine": unsigned(bits_for(max(protocol.Engine))),
                                    "raw": unsigned(1), "relu": unsigned(1),
                                    "m": unsigned(16), "k": unsigned(16), "n": unsigned(16),
                                    "in_place": unsigned(1)})


def args_layout(opcode):
    """Return the layout of ``opcode``'s argument block (from ``protocol.ARGS_FIELDS``)."""
    return data.StructLayout({name: unsigned(bits)
                              for name, bits in protocol.ARGS_FIELDS[Opcode(opcode)]})


def request_args(opcode, args):
    """Return a view of the ``args`` field of a request as ``opcode``'s argument block
    (its last bytes: the parser shifts the block in from the top)."""
    layout = args_layout(opcode)
    return data.View(layout, args[len(args) - layout.size:])


#: A checked request: the request and its verdict.
CHECKED_LAYOUT = data.StructLayout({"request": REQUEST_LAYOUT, "status": STATUS_SHAPE})


class RequestChecker(wiring.Component):
    """Decide whether a request may be acted on, and how it is answered if not.

    A request is refused, in this order, for a failed CRC or impossible length (found by
    the parser), an unknown opcode, a length wrong for its opcode, a WRITE to a target
    that is not writable or strides that break the rules, a READ of a target that is not
    readable or past its end, a RUN of an engine this device lacks, or a RUN_PROGRAM on a
    device without program mode or of layers past ``max_layers`` (``count`` 0 included).
    The verdict takes two cycles (the checks are registered, then the verdict, so no
    path runs from the request through the checks into the dispatcher); the request then
    passes on with it, and is released to the parser when it is taken.
    Address ranges of a WRITE and the shape of a RUN are checked further on
    (:class:`~tritile.hw.write_walker.WriteWalker`, :class:`~tritile.hw.shape_checker.
    ShapeChecker`).

    Parameters
    ----------
    sizes : dict of Target to int
        Byte size of every target of this device (0 for a target it lacks).
    engines : iterable of Engine
        Engines this device has.
    max_data : int
        Bytes of the parser's frame buffer (the most a WRITE carries).
    max_layers : int
        Descriptors of the program memory; 0: no program mode.

    Members
    -------
    request : In(stream.Signature(REQUEST_LAYOUT))
        From the parser; taken when ``checked`` is taken.
    checked : Out(stream.Signature(CHECKED_LAYOUT))
        The request with its ``status`` (``OK`` or the refusal).
    frame_ok : Out(1)
        Pulses once per request with a good CRC and the right length for its opcode.
    length_error : Out(1)
        Pulses once per request whose length is wrong for its opcode.
    """

    def __init__(self, sizes, engines, max_data=protocol.MAX_DATA, max_layers=0):
        self.max_data = max_data
        self.max_layers = max_layers
        self.sizes = {protocol.Target(t): s for t, s in sizes.items()}
        self.engines = tuple(protocol.Engine(e) for e in engines)
        #: Bits of an address within any target (and of a run length or stride).
        self.addr_bits = max(bits_for(max(self.sizes.values()) - 1), 16)
        super().__init__({
            "request": In(stream.Signature(REQUEST_LAYOUT)),
            "checked": Out(stream.Signature(CHECKED_LAYOUT)),
            "frame_ok": Out(1),
            "length_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        req = self.request.payload
        write = request_args(Opcode.WRITE, req.args)
        read = request_args(Opcode.READ, req.args)
        run = request_args(Opcode.RUN, req.args)
        layers = request_args(Opcode.RUN_PROGRAM, req.args)

        held = Signal()         # the checks below hold this request's values
        fresh = Signal()        # ... and have held them since this cycle
        decided = Signal()      # the checked status holds its verdict
        m.d.sync += [fresh.eq(self.request.valid & ~held),
                     decided.eq(self.request.valid & held & ~self.request.ready)]
        with m.If(self.request.valid & self.request.ready):
            m.d.sync += held.eq(0)
        with m.Elif(self.request.valid):
            m.d.sync += held.eq(1)
        m.d.comb += [self.checked.valid.eq(self.request.valid & decided),
                     self.request.ready.eq(self.checked.ready & decided),
                     self.checked.payload.request.eq(req)]

        # A READ's base is inside the largest readable target, or the read is refused:
        # its end needs an adder only as wide as that target's addresses.
        read_bits = bits_for(max(self.sizes[t] for t in protocol.READABLE_TARGETS) - 1)
        far = read.addr[read_bits:].any()

        def one_of(value, choices):
            return Cat(*(value == c for c in choices)).any()

        # Every limit is a constant (the parser compared a WRITE's stride and run): each
        # comparison with one is a few LUTs (`exceeds`), not a carry chain. The parser
        # counted the payload into the argument block and the data after it.
        has_data = (req.data_length != 0) & ~exceeds(req.data_length, self.max_data)
        length_fits = (req.args_missing == 0) & Mux(req.opcode == Opcode.WRITE, has_data,
                                                     req.data_length == 0)
        # A READ is of a readable target (else BAD_TARGET): only their sizes matter.
        end = read.addr[:read_bits] + read.count
        read_inside = Const(0)
        for t in protocol.READABLE_TARGETS:
            read_inside |= (read.target == t) & ~exceeds(end, self.sizes[t])
        program_fits = (~exceeds(layers.first + layers.count, self.max_layers)
                        if self.max_layers else Const(0))

        length_ok, known, writable, readable = Signal(), Signal(), Signal(), Signal()
        strides_ok, read_ok, present, program_ok = Signal(), Signal(), Signal(), Signal()
        m.d.sync += [
            length_ok.eq(length_fits),
            known.eq(one_of(req.opcode, Opcode)),
            writable.eq(one_of(write.target, [t for t in protocol.WRITABLE_TARGETS
                                        if self.sizes[t]])),
            readable.eq(one_of(read.target, protocol.READABLE_TARGETS)),
            # A strided WRITE needs stride >= run length > 0 (the parser compared them as
            # they arrived: `ordered`); a contiguous one stride 0.
            strides_ok.eq(Mux(write.run != 0, req.ordered, write.stride == 0)),
            read_ok.eq((read.count != 0) & ~exceeds(read.count, protocol.MAX_DATA) & ~far
                       & read_inside),
            present.eq(one_of(run.engine, self.engines)),
            program_ok.eq((layers.count != 0) & program_fits),
        ]

        status = Signal.like(self.checked.payload.status)
        m.d.sync += self.checked.payload.status.eq(status)
        framed = (req.error == FrameError.NONE) & known & length_ok
        m.d.comb += [self.frame_ok.eq(fresh & framed),
                     self.length_error.eq(fresh & (req.error == FrameError.NONE) & known
                                          & ~length_ok)]
        # Any error but NONE refuses the request, even a value the parser never sends.
        with m.If(req.error == FrameError.BAD_LENGTH):
            m.d.comb += status.eq(Status.BAD_LENGTH)
        with m.Elif(req.error != FrameError.NONE):
            m.d.comb += status.eq(Status.BAD_CRC)
        with m.Elif(~known):
            m.d.comb += status.eq(Status.UNKNOWN_OPCODE)
        with m.Elif(~length_ok):
            m.d.comb += status.eq(Status.BAD_LENGTH)
        with m.Elif(req.opcode == Opcode.WRITE):
            m.d.comb += status.eq(Mux(~writable, Status.BAD_TARGET,
                                      Mux(~strides_ok, Status.BAD_ADDRESS, Status.OK)))
        with m.Elif(req.opcode == Opcode.READ):
            m.d.comb += status.eq(Mux(~readable, Status.BAD_TARGET,
                                      Mux(~read_ok, Status.BAD_ADDRESS, Status.OK)))
        with m.Elif(req.opcode == Opcode.RUN):
            m.d.comb += status.eq(Mux(present, Status.OK, Status.UNAVAILABLE))
        with m.Elif(req.opcode == Opcode.RUN_PROGRAM):
            m.d.comb += status.eq(Mux(program_ok, Status.OK, Status.UNAVAILABLE))
        with m.Else():
            m.d.comb += status.eq(Status.OK)
        return m
