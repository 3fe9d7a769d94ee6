"""The planner's cycle model with the requantizer's multiply in logic (``requant_serial``):
each engine with its own output stage in Amaranth's simulator, problems run back to back,
results against the golden model and busy cycles against the plan.

The requantizer then takes a beat every few cycles, so the engines' read-outs wait for it:
the problems include ones whose tiles finish faster than their results leave (small K)
and ones that compute longer than that (K of several tiles)."""

import numpy as np
import pytest

from helpers import simulate, stream_put
from tritile.hw.facts import requantizer_interval
from tritile.sim.engine_sim import EngineProblem
from tritile.sw import AcceleratorConfig, plan_gemm, plan_ternary
from tritile.sw.engines import engine

_LIMITS = dict(max_m=8, max_k=40, max_n=12, act_depth=320, weight_depth=480,
               trit_depth=480, out_depth=96)
#: (engine, tile, requant_serial, problems M x K x N)
_CASES = [
    ("systolic", (3, 2), 2, [(5, 7, 3), (1, 1, 1), (8, 40, 12), (4, 6, 5)]),
    ("systolic", (4, 4), 4, [(8, 40, 12), (3, 5, 9), (2, 17, 4)]),
    ("ternary", (2, 3), 2, [(3, 17, 9), (1, 1, 1), (5, 8, 4), (2, 40, 10)]),
    ("ternary", (4, 8), 3, [(3, 17, 9), (8, 40, 12), (2, 3, 5)]),
]


def _config(name, tile, serial):
    config = AcceleratorConfig(requant_serial=serial, **_LIMITS)
    return engine(name).sized(config, *tile)


def _run(spec, config, problems):
    """Run ``problems`` back to back; return [(out, busy_cycles, mac_cycles)]."""
    dut = spec.make_engine(config)
    runs = []

    async def testbench(ctx):
        ctx.set(dut.out.ready, 1)
        for problem in problems:
            m, _, n = problem.shape
            for col in range(n):
                await stream_put(ctx, dut.param_write, {
                    "col": col, "bias": int(problem.bias[col]),
                    "mult": int(problem.mult[col]) if not problem.raw else 0,
                    "shift": int(problem.shift[col]) if not problem.raw else 1})
            for target, data in problem.memory_image(spec, config).items():
                for addr, byte in enumerate(data):
                    await stream_put(ctx, dut.write, {"target": target, "addr": addr,
                                                      "data": byte})
            await stream_put(ctx, dut.start, problem.start_fields(spec, config))
            out = np.zeros((m, n), np.int64)
            for _ in range(10 * problem.plan(spec, config).cycles + 50):
                await ctx.delay(1e-9)
                if ctx.get(dut.out.valid):
                    beat = ctx.get(dut.out.payload)
                    out[beat.row, beat.col] = beat.value
                if ctx.get(dut.done):
                    break
                await ctx.tick()
            else:
                raise AssertionError("the engine never finished")
            runs.append((out, ctx.get(dut.busy_cycles), ctx.get(dut.mac_cycles)))

    simulate(dut, testbench)
    return runs


@pytest.mark.parametrize("name, tile, serial, shapes", _CASES)
def test_busy_cycles_with_a_serial_requantizer_are_the_planned_ones(name, tile, serial,
                                                                     shapes, rng):
    spec = engine(name)
    config = _config(name, tile, serial)
    assert requantizer_interval(config) > 1
    low, high = spec.weight_values
    problems = []
    for i, (m, k, n) in enumerate(shapes):
        raw = i % 2 == 1
        problems.append(EngineProblem(
            rng.integers(-128, 128, (m, k)).astype(np.int8),
            rng.integers(low, high + 1, (k, n)).astype(np.int8),
            bias=rng.integers(-5000, 5000, n).astype(np.int32),
            mult=None if raw else rng.integers(0, 1 << 15, n).astype(np.int32),
            shift=None if raw else rng.integers(10, 24, n).astype(np.int32),
            relu=not raw and i % 4 == 0))
    for problem, (out, busy, _) in zip(problems, _run(spec, config, problems)):
        np.testing.assert_array_equal(out, problem.expected(spec))
        assert busy == problem.plan(spec, config).cycles, problem.shape


def test_a_serial_requantizer_slows_only_read_out_bound_problems():
    # At 8 cycles a result (2 multiplier bits a cycle), a 4 x 4 array's 16 results per K
    # pass of K cycles keep up once K >= 128: only the last block's results (15 gaps of 7
    # more cycles) and the 8 cycles of added latency (7 steps more and the register
    # between a step's partial product and its sum) remain. Below, results set the pace.
    dsp = AcceleratorConfig(ternary_lanes=4, max_m=64, max_k=256, max_n=64,
                            act_depth=16384, weight_depth=16384, out_depth=4096)
    serial = dsp.replace(requant_serial=2)
    for k in (128, 256):
        assert plan_gemm(serial, 64, k, 64).cycles == plan_gemm(dsp, 64, k, 64).cycles + 15 * 7 + 8
    assert plan_gemm(serial, 64, 16, 64).cycles > (64 * 64 - 1) * 8
    # The ternary unit's 4 lanes per row of K / 8 cycles keep up from K = 256 (32 cycles a
    # row): the last row's 3 gaps of 7 more cycles remain.
    assert plan_ternary(serial, 8, 256, 8).cycles == plan_ternary(dsp, 8, 256, 8).cycles + 3 * 7
    assert plan_ternary(serial, 8, 16, 8).cycles > (8 * 8 - 1) * 8


@pytest.mark.slow
def test_program_counters_with_a_serial_requantizer_are_the_planned_ones(rng):
    # The CNN program of tests/program_chain.py on the simulated board (Verilator, both
    # engines, pooling), its requantizer's multiply in logic: RUN_PROGRAM's counters of
    # each layer are the cycle model's.
    from program_chain import CONFIG, Cnn, H, W, C_IN, CLASSES, SYSTOLIC_INPUT
    from tritile.sw.device import Device
    from tritile.sw.protocol import Engine

    config = CONFIG.replace(requant_serial=2)
    cnn = Cnn(rng)
    with Device.open("sim", config=config, progress=False) as board:
        cnn.load(board)
        x = rng.integers(-128, 128, (1, H, W, C_IN), dtype=np.int8)
        board.write_input_map("systolic", x, base=SYSTOLIC_INPUT)
        layers = board.run_program()
        np.testing.assert_array_equal(board.read_output(1, CLASSES, raw=True), cnn.golden(x))
    for descriptor, counters in zip(cnn.descriptors(), layers):
        plan = engine(Engine(descriptor["engine"])).plan(
            config, descriptor["m"], descriptor["k"], descriptor["n"])
        assert counters["busy_cycles"] == plan.cycles, descriptor
