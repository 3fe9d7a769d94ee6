"""The processing element, the systolic array and the systolic engine in Amaranth's simulator."""


import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed
from amaranth.sim import Simulator

from tritile.hw.dsp import DualMul8
from tritile.hw.systolic import SystolicEngine
from tritile.hw.systolic_array import ProcessingElement, SystolicArray
from tritile.sim.engine_sim import start_fields
from tritile.sw import AcceleratorConfig, ConfigError, gemm_int8, plan_gemm, requantize
from tritile.sw.engines import engine
from tritile.sw.systolic_layout import (WEIGHT_TARGET, systolic_geometry,
                                        systolic_memory_image)


def _simulate(dut, testbench):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()


def test_pe_swaps_in_the_shadow_weight_with_the_first_activation():
    pe = ProcessingElement(psum_width=18)
    top = Module()
    top.submodules.pe = pe
    top.submodules.mul = mul = DualMul8()
    # The row's activation register, as the array holds it.
    act_in = Signal(signed(8))
    act = Signal(signed(8))
    top.d.sync += act.eq(act_in)
    top.d.comb += [mul.a0.eq(act), mul.b0.eq(pe.mul_b), pe.mul_p.eq(mul.p0)]
    sums = []

    async def testbench(ctx):
        ctx.set(pe.weight_in, -7)
        ctx.set(pe.weight_load, 1)
        await ctx.tick()
        # The same edge retires the shadow weight (-7 becomes active) and loads 5.
        ctx.set(pe.weight_in, 5)
        for a, swap, psum in ((3, 1, 100), (-128, 0, 0), (2, 1, -1), (0, 0, 0)):
            ctx.set(act_in, a)
            ctx.set(pe.swap, swap)
            await ctx.tick()
            ctx.set(pe.weight_load, 0)
            ctx.set(pe.psum_in, psum)
            await ctx.delay(1e-9)
            sums.append(ctx.get(pe.psum_out))

    _simulate(top, testbench)
    # psum_out lags the activation by two edges: [previous, 100 + 3 * -7, 0 + -128 * -7,
    # -1 + 2 * 5]
    assert sums[1:] == [100 + 3 * -7, -128 * -7, -1 + 2 * 5]


@pytest.mark.parametrize("rows,cols", [(1, 1), (2, 3), (3, 2), (4, 4)])
def test_array_streams_tiles_back_to_back(rows, cols, rng):
    array = SystolicArray(rows, cols, psum_width=32)
    tiles = [(rng.integers(-128, 128, (rows + int(rng.integers(0, 3)), rows)),
              rng.integers(-128, 128, (rows, cols))) for _ in range(4)]
    got = []

    async def testbench(ctx):
        # Weights of tile 0 load before its first row; those of tile t + 1 load with the
        # first R rows of tile t.
        feed = [(None, tiles[0][1], r) for r in range(rows)]
        for t, (acts, _) in enumerate(tiles):
            following = tiles[t + 1][1] if t + 1 < len(tiles) else None
            for i, row in enumerate(acts):
                feed.append(((row, i == 0), following if i < rows else None, i))
        total = len(feed) + array.latency
        for cycle in range(total):
            if cycle < len(feed):
                act, weights, index = feed[cycle]
                ctx.set(array.act, [0] * rows if act is None else [int(x) for x in act[0]])
                ctx.set(array.swap, act is not None and act[1])
                ctx.set(array.weight_load, weights is not None)
                if weights is not None:
                    ctx.set(array.weight_row, [int(x) for x in weights[index]])
                    ctx.set(array.weight_index, index)
            else:
                ctx.set(array.swap, 0)
                ctx.set(array.weight_load, 0)
            await ctx.delay(1e-9)
            got.append(list(ctx.get(array.psum)))
            await ctx.tick()

    _simulate(array, testbench)
    expected = np.concatenate([a @ w for a, w in tiles])
    outputs = np.array(got[rows + array.latency:rows + array.latency + len(expected)])
    np.testing.assert_array_equal(outputs, expected)


def _config(rows, cols, **limits):
    sizes = dict(max_m=12, max_k=20, max_n=12, act_depth=240, weight_depth=240,
                 out_depth=144)
    sizes.update(limits)
    return AcceleratorConfig(systolic_rows=rows, systolic_cols=cols, **sizes)


async def _load_and_start(ctx, dut, config, problem, extra_writes=()):
    """Write a problem's parameters and memory images (then ``extra_writes``) and start it."""
    Xq, Wq, bias, mult, shift, relu = problem
    m, n = Xq.shape[0], Wq.shape[1]
    for col in range(n):
        ctx.set(dut.param_write.payload, {
            "col": col, "bias": int(bias[col]),
            "mult": 0 if mult is None else int(mult[col]),
            "shift": 1 if shift is None else int(shift[col])})
        ctx.set(dut.param_write.valid, 1)
        await ctx.tick()
    ctx.set(dut.param_write.valid, 0)
    for target, data in systolic_memory_image(config, Xq, Wq).items():
        for addr, byte in enumerate(data):
            ctx.set(dut.write.payload, {"target": target, "addr": addr, "data": byte})
            ctx.set(dut.write.valid, 1)
            await ctx.tick()
    for target, addr in extra_writes:
        ctx.set(dut.write.payload, {"target": target, "addr": addr, "data": 0x7F})
        ctx.set(dut.write.valid, 1)
        await ctx.tick()
    ctx.set(dut.write.valid, 0)
    walk = engine("systolic").walk(config, Xq.shape)
    ctx.set(dut.start.payload, start_fields(walk, m, Xq.shape[1], n,
                                            raw=mult is None, relu=relu))
    ctx.set(dut.start.valid, 1)
    await ctx.tick()
    ctx.set(dut.start.valid, 0)


def _run_engine(config, problems, extra_writes=()):
    """Run problems [(Xq, Wq, bias, mult, shift, relu)] back to back; return
    [(result dict {(row, col): value}, busy_cycles, mac_cycles, done pulses)].

    ``extra_writes`` [(target, addr)] write 0x7F after each memory image."""
    dut = SystolicEngine(config)
    runs = []

    async def testbench(ctx):
        ctx.set(dut.out.ready, 1)
        for Xq, Wq, bias, mult, shift, relu in problems:
            m, n = Xq.shape[0], Wq.shape[1]
            await _load_and_start(ctx, dut, config, (Xq, Wq, bias, mult, shift, relu),
                                  extra_writes)
            results, dones = {}, 0
            for _ in range(10 * plan_gemm(config, m, Xq.shape[1], n).cycles):
                await ctx.delay(1e-9)
                if ctx.get(dut.out.valid):
                    payload = ctx.get(dut.out.payload)
                    assert (payload.row, payload.col) not in results
                    results[(payload.row, payload.col)] = payload.value
                dones += ctx.get(dut.done)
                if not ctx.get(dut.busy):
                    break
                await ctx.tick()
            runs.append((results, ctx.get(dut.busy_cycles), ctx.get(dut.mac_cycles), dones))

    _simulate(dut, testbench)
    return runs


@pytest.mark.parametrize("conv_walk", [1, 0])
def test_engine_runs_problems_back_to_back_at_the_planned_cycle_count(conv_walk, rng):
    config = _config(3, 2, conv_walk=conv_walk)
    problems = []
    for m, k, n, requant in ((5, 7, 3, True), (1, 1, 1, False), (12, 20, 12, False),
                             (4, 6, 5, True)):
        Xq = rng.integers(-128, 128, (m, k)).astype(np.int8)
        Wq = rng.integers(-128, 128, (k, n)).astype(np.int8)
        bias = rng.integers(-5000, 5000, n).astype(np.int32)
        mult = rng.integers(0, 1 << 15, n).astype(np.int32) if requant else None
        shift = rng.integers(12, 24, n).astype(np.int32) if requant else None
        problems.append((Xq, Wq, bias, mult, shift, bool(m % 2)))
    for (Xq, Wq, bias, mult, shift, relu), (results, busy, macs, dones) in zip(
            problems, _run_engine(config, problems)):
        m, k, n = Xq.shape[0], Xq.shape[1], Wq.shape[1]
        expected = gemm_int8(Xq, Wq, bias)
        if mult is not None:
            expected = requantize(expected, mult, shift, relu=relu)
        got = np.zeros((m, n), np.int64)
        for (row, col), value in results.items():
            got[row, col] = value
        assert len(results) == m * n
        np.testing.assert_array_equal(got, expected)
        assert busy == plan_gemm(config, m, k, n).cycles
        assert macs == m * k * n
        assert dones == 1


@pytest.mark.parametrize("rows", [2, 3, 4])
def test_the_sequencer_walks_ragged_tiles_at_every_array_height(rows, rng):
    # The sequencer reads the next load position R cycles after the load tile changed,
    # which it computes over one cycle (R = 2) or two (R >= 3): every edge of K, M and N
    # ragged or whole, several N tiles (the next weight base), blocks back to back.
    config = _config(rows, 2)
    shapes = [(2 * rows + 1, 2 * rows + 1, 5), (rows, 2 * rows, 4), (rows + 1, rows - 1, 3),
              (1, 1, 1)]
    problems = []
    for m, k, n in shapes:
        Xq = rng.integers(-128, 128, (m, k)).astype(np.int8)
        Wq = rng.integers(-128, 128, (k, n)).astype(np.int8)
        problems.append((Xq, Wq, rng.integers(-5000, 5000, n).astype(np.int32),
                         None, None, False))
    for (Xq, Wq, bias, *_), (results, busy, macs, _) in zip(
            problems, _run_engine(config, problems)):
        (m, k), n = Xq.shape, Wq.shape[1]
        got = np.array([[results.get((row, col)) for col in range(n)] for row in range(m)])
        np.testing.assert_array_equal(got, gemm_int8(Xq, Wq, bias))
        assert (busy, macs) == (plan_gemm(config, m, k, n).cycles, m * k * n)


def test_engine_with_one_array_row_adds_k_tiles_in_consecutive_cycles(rng):
    # One row: every K tile of a block adds to the word the cycle before wrote.
    config = _config(1, 2)
    Xq = rng.integers(-128, 128, (3, 5)).astype(np.int8)
    Wq = rng.integers(-128, 128, (5, 3)).astype(np.int8)
    bias = rng.integers(-5000, 5000, 3).astype(np.int32)
    [(results, busy, _, _)] = _run_engine(config, [(Xq, Wq, bias, None, None, False)])
    got = np.array([[results[(row, col)] for col in range(3)] for row in range(3)])
    np.testing.assert_array_equal(got, gemm_int8(Xq, Wq, bias))
    assert busy == plan_gemm(config, 3, 5, 3).cycles


@pytest.mark.parametrize("m,k,n", [(0, 2, 2), (2, 0, 2), (2, 2, 0), (13, 2, 2),
                                   (2, 21, 2), (2, 2, 13)])
def test_engine_drops_an_illegal_start_without_output(m, k, n):
    config = _config(2, 2)
    dut = SystolicEngine(config)

    async def testbench(ctx):
        ctx.set(dut.out.ready, 1)
        walk = engine("systolic").walk(config, (max(m, 1), max(k, 1)))
        ctx.set(dut.start.payload, start_fields(walk, m, k, n))
        ctx.set(dut.start.valid, 1)
        await ctx.tick()
        ctx.set(dut.start.valid, 0)
        dones = 0
        for _ in range(20):
            await ctx.delay(1e-9)
            assert not ctx.get(dut.out.valid) and not ctx.get(dut.busy)
            dones += ctx.get(dut.done)
            await ctx.tick()
        assert dones == 1

    _simulate(dut, testbench)


def test_writes_outside_a_memory_are_dropped():
    # rows=3 leaves lane 3 of each 4-byte activation word unused; addresses past the
    # memory would wrap onto word 0 if they were not dropped.
    config = _config(3, 2)
    geometry = systolic_geometry(config)
    Xq = np.arange(6, dtype=np.int8).reshape(2, 3)
    Wq = np.arange(-3, 3, dtype=np.int8).reshape(3, 2)
    garbage = [(0, 3), (0, geometry.act_bytes), (0, (geometry.act_bytes * 4) | 1),
               (1, geometry.weight_bytes), (1, 1 << 23), (2, 0), (3, 1)]
    runs = _run_engine(config, [(Xq, Wq, np.zeros(2, np.int32), None, None, False)],
                       extra_writes=garbage)
    results = runs[0][0]
    expected = gemm_int8(Xq, Wq)
    assert results == {(r, c): int(expected[r, c]) for r in range(2) for c in range(2)}


def test_weight_writes_wait_while_rows_are_issued(rng):
    # A weight byte offered right after the start is taken only once the sequencer has
    # issued its last row (the results use the weights as loaded), while the results are
    # still being read out (busy).
    config = _config(2, 2)
    geometry = systolic_geometry(config)
    Xq = rng.integers(-128, 128, (5, 4)).astype(np.int8)
    Wq = rng.integers(-128, 127, (4, 4)).astype(np.int8)
    bias = rng.integers(-5000, 5000, 4).astype(np.int32)
    dut = SystolicEngine(config)
    # The last weight row of the last N tile: read in the problem's last K tile.
    last_word = 2 * 4 - 1
    results, taken = {}, []

    async def testbench(ctx):
        ctx.set(dut.out.ready, 1)
        await _load_and_start(ctx, dut, config, (Xq, Wq, bias, None, None, False))
        ctx.set(dut.write.payload, {"target": WEIGHT_TARGET,
                                    "addr": last_word << geometry.weight_lane_bits,
                                    "data": 0x7F})
        ctx.set(dut.write.valid, 1)
        for cycle in range(10 * plan_gemm(config, 5, 4, 4).cycles):
            await ctx.delay(1e-9)
            writing = ctx.get(dut.write.valid)
            if writing and ctx.get(dut.write.ready):
                taken.append((cycle, ctx.get(dut.busy)))
            if ctx.get(dut.out.valid):
                payload = ctx.get(dut.out.payload)
                results[(payload.row, payload.col)] = payload.value
            if not ctx.get(dut.busy) and not writing:
                break
            await ctx.tick()
            if taken:
                ctx.set(dut.write.valid, 0)

    _simulate(dut, testbench)
    expected = gemm_int8(Xq, Wq, bias)
    assert results == {(r, c): int(expected[r, c]) for r in range(5) for c in range(4)}
    [(cycle, busy)] = taken
    assert cycle > 5 * 4 // 2 and busy


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_config_errors_name_the_parameter():
    with pytest.raises(TypeError, match="AcceleratorConfig"):
        SystolicEngine({"systolic_rows": 2})
    with pytest.raises(ConfigError, match="act_depth"):
        SystolicEngine(AcceleratorConfig(systolic_rows=3, act_depth=1 << 24))
