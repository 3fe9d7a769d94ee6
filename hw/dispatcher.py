"""The dispatcher: acts on checked requests and asks for exactly one response to each."""

from amaranth.hdl import Module, Mux, Shape, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from tritile.sw import protocol
from tritile.sw.protocol import Opcode, Status

from .program_sequencer import PROGRAM_DONE_LAYOUT, PROGRAM_RUN_LAYOUT
from .request_checker import PROBLEM_LAYOUT, CHECKED_LAYOUT, request_args
from .responder import Source, response_layout
from .write_walker import WALK_LAYOUT

__all__ = ["Dispatcher"]


class Dispatcher(wiring.Component):
    """Serve checked requests: write, start a RUN or a program, or answer from a data source.

    A refused request is answered with its status. A WRITE goes to the walker, a RUN to
    the shape checker and then to its engine, a RUN_PROGRAM to the program sequencer;
    the request is released to the parser once it is no longer needed (the cycle after
    its response was sent, or when its RUN or program has started). While a RUN or a
    program is in progress every other request is answered at once: with its refusal,
    or ``BUSY`` if it was well formed; the RUN's own response follows when the engine
    has finished, a program's when the sequencer reports its end (its counters, or
    ``BAD_SHAPE``).

    Parameters
    ----------
    capability_size : int
        Bytes of the capability ROM (INFO's response data).
    addr_bits : int
        Address bits of the checked requests.
    program_mode : bool
        The device runs programs (RUN_PROGRAM); without it, the states that serve them are
        left out (the checker refuses every RUN_PROGRAM).
    dim_limits : tuple of int
        The largest M, K and N of a RUN (``max_m``, ``max_k``, ``max_n``; by default
        none below 2**16): ``problem`` holds each dimension in the bits of its limit + 1,
        a larger one saturated (still above its limit, so the shape check refuses it just
        the same).

    Members
    -------
    checked : In(stream.Signature(CHECKED_LAYOUT))
        Checked requests.
    walk : Out(stream.Signature(WALK_LAYOUT))
        A WRITE to carry out; ``walk_refused`` when it is taken.
    walk_refused : In(1)
    shape : Out(stream.Signature(PROBLEM_LAYOUT))
        A RUN's problem to check; ``shape_bad`` when it is taken.
    shape_bad : In(1)
    start : Out(stream.Signature(PROBLEM_LAYOUT))
        Start the problem on its engine.
    problem : Out(PROBLEM_LAYOUT)
        The problem of the RUN in progress (or the last one).
    engine_busy : In(1)
        The engine, or the placement of its results, is still working.
    response : Out(stream.Signature(response_layout(addr_bits)))
        The response to send; taken once it is sent.
    run_done : Out(1)
        Pulses when a RUN has finished.
    program_run : Out(stream.Signature(PROGRAM_RUN_LAYOUT))
        A program's layers to run (checked against ``max_layers`` before).
    program_done : In(stream.Signature(PROGRAM_DONE_LAYOUT))
        The program's end.
    program : Out(1)
        The layer running (or last run) belongs to a program, not to a RUN.
    idle : Out(1)
        No request is being served and no RUN is in progress.
    """

    def __init__(self, capability_size, addr_bits, program_mode=False,
                 dim_limits=(0xffff, 0xffff, 0xffff)):
        self.capability_size = capability_size
        self.program_mode = program_mode
        self.dim_limits = tuple(dim_limits)
        super().__init__({
            "checked": In(stream.Signature(CHECKED_LAYOUT)),
            "walk": Out(stream.Signature(WALK_LAYOUT)),
            "walk_refused": In(1),
            "shape": Out(stream.Signature(PROBLEM_LAYOUT)),
            "shape_bad": In(1),
            "start": Out(stream.Signature(PROBLEM_LAYOUT)),
            "problem": Out(PROBLEM_LAYOUT),
            "engine_busy": In(1),
            "response": Out(stream.Signature(response_layout(addr_bits))),
            "run_done": Out(1),
            "program_run": Out(stream.Signature(PROGRAM_RUN_LAYOUT)),
            "program_done": In(stream.Signature(PROGRAM_DONE_LAYOUT)),
            "program": Out(1),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        req = self.checked.payload.request
        verdict = self.checked.payload.status
        write = request_args(Opcode.WRITE, req.args)
        read = request_args(Opcode.READ, req.args)
        layers = request_args(Opcode.RUN_PROGRAM, req.args)
        resp = self.response.payload
        run_seq = Signal(8)             # the RUN in progress, answered when it finishes
        # Saturated at 2**bits - 1 > limit: no dimension above its limit passes for one
        # below it.
        dims = {name: Signal(min(bits_for(limit + 1), 16), name=f"problem_{name}")
                for name, limit in zip("mkn", self.dim_limits)}
        m.d.comb += [self.problem[name].eq(dim) for name, dim in dims.items()]
        # A response's data length: a READ's count (at most MAX_DATA, the checker says),
        # the capability ROM, the counters, or 8 bytes a layer of a program.
        layers_bits = Shape.cast(PROGRAM_DONE_LAYOUT.members["layers"]).width
        data_length = Signal(max(bits_for(max(protocol.MAX_DATA, self.capability_size,
                                              4 * len(protocol.STATS_FIELDS))),
                                  layers_bits + 3))
        m.d.comb += resp.length.eq(data_length)

        m.d.comb += [
            self.walk.payload.target.eq(write.target),
            self.walk.payload.base.eq(write.addr),
            self.walk.payload.run.eq(write.run),
            self.walk.payload.stride.eq(write.stride),
            self.walk.payload.data_length.eq(req.data_length),
            self.shape.payload.eq(self.problem),
            self.start.payload.eq(self.problem),
            resp.opcode.eq(req.opcode),
            resp.seq.eq(req.seq),
            resp.base.eq(read.addr),
            resp.output8.eq(read.target == protocol.Target.OUTPUT8),
            self.program_run.payload.first.eq(layers.first),
            self.program_run.payload.count.eq(layers.count),
        ]

        def respond(status, length=0, source=Source.CAPABILITY):
            m.d.sync += [resp.status.eq(status), data_length.eq(length),
                         resp.source.eq(source)]
            m.next = "RESPOND"

        def answer_busy(state):
            """Answer a request that arrived while a RUN or a program is in progress."""
            m.d.sync += [resp.status.eq(Mux(verdict == Status.OK, Status.BUSY, verdict)),
                         data_length.eq(0)]
            m.next = state

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.idle.eq(1)
                with m.If(self.checked.valid):
                    self._dispatch(m, req, verdict, data_length, dims)
            with m.State("WRITE"):
                m.d.comb += self.walk.valid.eq(1)
                with m.If(self.walk.ready):
                    respond(Mux(self.walk_refused, Status.BAD_ADDRESS, Status.OK))
            with m.State("SHAPE"):
                m.d.comb += self.shape.valid.eq(1)
                with m.If(self.shape.ready):
                    # Written either way (a RUN's response sets them again when it is
                    # done), so that their enables do not wait on the verdict.
                    respond(Mux(self.shape_bad, Status.BAD_SHAPE, Status.OK))
                    with m.If(~self.shape_bad):
                        m.next = "START"
            with m.State("START"):
                m.d.comb += self.start.valid.eq(1)
                with m.If(self.start.ready):
                    m.d.sync += run_seq.eq(req.seq)
                    m.next = "RUN_STARTED"
            with m.State("RUN_STARTED"):
                # The problem is held here: the request can go, a cycle after the start
                # was taken, so that no path runs from the engines' readiness into the
                # parser. A core raises `busy` the cycle after it accepted `start`.
                m.d.comb += self.checked.ready.eq(1)
                m.next = "RUNNING"
            with m.State("RUNNING"):
                with m.If(self.checked.valid):
                    answer_busy("RESPOND_BUSY")
                with m.Elif(~self.engine_busy):
                    m.d.comb += self.run_done.eq(1)
                    m.d.sync += [resp.status.eq(Status.OK), data_length.eq(8),
                                 resp.source.eq(Source.CYCLES)]
                    m.next = "RESPOND_RUN"
            if self.program_mode:
                self._program_states(m, req, run_seq, answer_busy, data_length)
            program_states = ((("RESPOND_PROGRAM", Opcode.RUN_PROGRAM),)
                              if self.program_mode else ())
            for state, opcode in (("RESPOND_RUN", Opcode.RUN), *program_states):
                with m.State(state):
                    # The request is gone: nothing of the response may come from it.
                    m.d.comb += [self.response.valid.eq(1), resp.opcode.eq(opcode),
                                 resp.seq.eq(run_seq), resp.base.eq(0),
                                 resp.output8.eq(0)]
                    with m.If(self.response.ready):
                        m.next = "IDLE"
            # A request's response: the request is released the cycle after it has been
            # sent, from a state of its own, so that no path runs from the responder's
            # readiness (the writer's CRC, the transmitter) through the checker into the
            # parser.
            program_states = ((("RESPOND_BUSY_PROGRAM", "PROGRAM_RUNNING"),)
                              if self.program_mode else ())
            for state, next_state in (("RESPOND", "IDLE"), ("RESPOND_BUSY", "RUNNING"),
                                      *program_states):
                with m.State(state):
                    m.d.comb += self.response.valid.eq(1)
                    with m.If(self.response.ready):
                        m.next = f"RELEASE_{state}"
                with m.State(f"RELEASE_{state}"):
                    m.d.comb += self.checked.ready.eq(1)
                    m.next = next_state
        return m

    def _dispatch(self, m, req, verdict, data_length, dims):
        """Act on a checked request: answer it (a refusal, or its data), or go to its state.

        The response's status, length and source are written for every request, whatever
        its opcode (a WRITE, a RUN and a program set them again when they are done), so
        that no decoding of the opcode lies on their registers' enables: on iCE40 that
        path, from the request through the opcode's decode into the enables, was the
        longest of the request path.
        """
        read = request_args(Opcode.READ, req.args)
        run = request_args(Opcode.RUN, req.args)
        resp = self.response.payload
        problem = self.problem
        ok = verdict == Status.OK
        length, source = 0, Source.CAPABILITY
        for opcode, size, its_source in (
                (Opcode.INFO, self.capability_size, Source.CAPABILITY),
                (Opcode.STATS, 4 * len(protocol.STATS_FIELDS), Source.STATS),
                (Opcode.READ, read.count, Source.OUTPUT)):
            length = Mux(req.opcode == opcode, size, length)
            source = Mux(req.opcode == opcode, its_source, source)
        m.d.sync += [resp.status.eq(verdict), data_length.eq(Mux(ok, length, 0)),
                     resp.source.eq(source)]
        m.next = "RESPOND"
        with m.If(ok), m.Switch(req.opcode):
            with m.Case(Opcode.WRITE):
                m.next = "WRITE"
            if self.program_mode:
                with m.Case(Opcode.RUN_PROGRAM):
                    m.next = "PROGRAM_START"
            with m.Case(Opcode.RUN):
                m.d.sync += [
                    self.program.eq(0),
                    problem.engine.eq(run.engine), problem.raw.eq(run.flags[0]),
                    problem.relu.eq(run.flags[1]),
                ]
                for name, dim in dims.items():
                    value = run[name]
                    m.d.sync += dim.eq(Mux(value[len(dim):].any(), -1, value[:len(dim)]))
                m.next = "SHAPE"

    def _program_states(self, m, req, run_seq, answer_busy, data_length):
        """The states of a RUN_PROGRAM: start the sequencer, wait for the program's end."""
        done = self.program_done.payload
        resp = self.response.payload
        with m.State("PROGRAM_START"):
            m.d.comb += self.program_run.valid.eq(1)
            with m.If(self.program_run.ready):
                m.d.comb += self.checked.ready.eq(1)
                m.d.sync += [run_seq.eq(req.seq), self.program.eq(1)]
                m.next = "PROGRAM_RUNNING"
        with m.State("PROGRAM_RUNNING"):
            with m.If(self.checked.valid):
                answer_busy("RESPOND_BUSY_PROGRAM")
            with m.Elif(self.program_done.valid):
                m.d.comb += self.program_done.ready.eq(1)
                ok = done.status == Status.OK
                m.d.sync += [resp.status.eq(done.status),
                             data_length.eq(Mux(ok, done.layers << 3, 0)),
                             resp.source.eq(Source.PROGRAM)]
                m.next = "RESPOND_PROGRAM"
