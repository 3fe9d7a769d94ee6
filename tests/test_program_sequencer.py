"""The program sequencer: descriptors in, one checked start per layer, counters recorded."""

from amaranth.hdl import Elaboratable, Module

from helpers import simulate, stream_get, stream_put
from tritile.hw.engine_bank import weight_limits
from tritile.hw.program_sequencer import ProgramSequencer
from tritile.hw.shape_checker import ShapeChecker
from tritile.sw import protocol
from tritile.sw.config import AcceleratorConfig
from tritile.sw.protocol import Engine, LayerFlag, Status

CONFIG = AcceleratorConfig(max_layers=6)


class _Sequencer(Elaboratable):
    """The sequencer with the shape checker RUN uses, as the SoC composes them."""

    def __init__(self, engines):
        self.sequencer = ProgramSequencer(CONFIG.max_layers, engines)
        self.checker = ShapeChecker(CONFIG, weight_limits(CONFIG))

    def elaborate(self, platform):
        m = Module()
        m.submodules.sequencer, m.submodules.checker = self.sequencer, self.checker
        s, c = self.sequencer, self.checker
        m.d.comb += [c.problem.payload.eq(s.shape.payload), c.problem.valid.eq(s.shape.valid),
                     s.shape.ready.eq(c.problem.ready), s.shape_bad.eq(c.bad)]
        return m


def _run(descriptors, first, count, started, engines=(Engine.SYSTOLIC, Engine.TERNARY)):
    """Load ``descriptors``, run ``count`` layers from ``first`` (``started`` of which
    reach an engine); return the program's end and the starts."""
    dut = _Sequencer(engines)
    seq = dut.sequencer
    starts, result = [], {}

    async def host(ctx):
        for addr, byte in enumerate(b"".join(descriptors)):
            ctx.set(seq.write.payload, {"addr": addr, "data": byte})
            ctx.set(seq.write.valid, 1)
            await ctx.tick()
        ctx.set(seq.write.valid, 0)
        await stream_put(ctx, seq.run, {"first": first, "count": count})
        done = await stream_get(ctx, seq.done)
        result["status"], result["layers"] = done.status, done.layers
        words = []
        for addr in range(2 * done.layers):
            ctx.set(seq.counter_addr, addr)
            await ctx.tick()
            words.append(ctx.get(seq.counter_data))
        result["counters"] = words

    async def engine(ctx):
        for _ in range(started):
            names = ("weight_base", "dest_base", "base0")
            ctx.set(seq.start.ready, 1)
            problem, *values = await ctx.tick().sample(
                seq.start.payload, *(getattr(seq.layer, n) for n in names)).until(
                seq.start.valid)
            ctx.set(seq.start.ready, 0)
            fields = dict(zip(names, values))
            starts.append((problem.engine, problem.raw, problem.relu, problem.m, problem.k,
                           problem.n, fields))
            cycles = 3 + problem.m
            ctx.set(seq.engine_busy, 1)
            ctx.set(seq.busy_cycles, cycles)
            ctx.set(seq.mac_cycles, problem.n)
            await ctx.tick().repeat(cycles)
            ctx.set(seq.engine_busy, 0)

    simulate(dut, host, engine, name="program_sequencer")
    return result, starts


def _layer(i, **fields):
    return protocol.encode_layer(**{
        "engine": i % 2, "m": 1 + i, "k": 4 + i, "n": 2 + i, "weight_base": 100 * i,
        "dest_base": 7 * i, "base0": -i, **fields})


def test_layers_run_in_order_with_their_counters():
    program = [_layer(i, flags=LayerFlag.RELU if i % 2 else LayerFlag.RAW | LayerFlag.TO_OUTPUT)
               for i in range(CONFIG.max_layers)]
    result, starts = _run(program, 1, 4, 4)
    assert result["status"] == Status.OK and result["layers"] == 4
    assert starts == [(i % 2, int(i % 2 == 0), i % 2, 1 + i, 4 + i, 2 + i,
                       {"weight_base": 100 * i, "dest_base": 7 * i, "base0": -i})
                      for i in range(1, 5)]
    assert result["counters"] == [v for i in range(1, 5) for v in (4 + i, 2 + i)]


def test_a_refused_shape_ends_the_program_before_its_layer_starts():
    program = [_layer(0), _layer(1), _layer(2, m=0), _layer(3)]
    result, starts = _run(program, 0, 4, 2)
    assert (result["status"], result["layers"]) == (Status.BAD_SHAPE, 2)
    assert [s[3] for s in starts] == [1, 2]
    too_deep = [_layer(0, k=CONFIG.max_k + 1)]
    result, starts = _run(too_deep, 0, 1, 0)
    assert (result["status"], result["layers"], starts) == (Status.BAD_SHAPE, 0, [])


def test_a_layer_for_an_engine_this_device_lacks_is_refused():
    program = [_layer(0), _layer(1)]           # layer 1 is for the ternary unit
    result, starts = _run(program, 0, 2, 1, engines=(Engine.SYSTOLIC,))
    assert (result["status"], result["layers"]) == (Status.BAD_SHAPE, 1)
    assert len(starts) == 1
