"""The shared output stage against tritile.sw.requantize, in Amaranth's simulator."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from tritile.hw.facts import requantizer_interval, requantizer_latency
from tritile.hw.requantizer import LATENCY, Requantizer
from tritile.sw import AcceleratorConfig, requantize

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
#: Multipliers under test: on DSP blocks (0), and in logic 1, 2, 4 and all 15 multiplier
#: bits a cycle (15, 8, 4 and 1 cycles a beat; 2 and 4 pad the multiplier to 16 bits).
SERIAL = (0, 1, 2, 4, 15)


def _run(config, params, beats, *, raw=False, relu=False, ready_prob=1.0, seed=0):
    """Write ``params`` {col: (bias, mult, shift)}, stream ``beats`` [(row, col, acc)];
    return the results [(row, col, value)] and the cycles from the first beat to the last."""
    dut = Requantizer(config)
    rng = random.Random(seed)
    results = []
    timing = {}

    async def feed(ctx):
        for col, (bias, mult, shift) in params.items():
            ctx.set(dut.param_write.payload, {"col": col, "bias": bias, "mult": mult,
                                              "shift": shift})
            ctx.set(dut.param_write.valid, 1)
            await ctx.tick()
        ctx.set(dut.param_write.valid, 0)
        ctx.set(dut.raw, raw)
        ctx.set(dut.relu, relu)
        timing["start"] = 0
        for row, col, acc in beats:
            ctx.set(dut.acc.payload, {"row": row, "col": col, "acc": acc})
            ctx.set(dut.acc.valid, 1)
            await ctx.tick().until(dut.acc.ready)
        ctx.set(dut.acc.valid, 0)

    async def collect(ctx):
        cycle = 0
        while len(results) < len(beats):
            ready = rng.random() < ready_prob
            ctx.set(dut.out.ready, ready)
            await ctx.delay(1e-9)
            if ready and ctx.get(dut.out.valid):
                payload = ctx.get(dut.out.payload)
                results.append((payload.row, payload.col, payload.value))
                timing.setdefault("first", cycle)
            await ctx.tick()
            cycle += 1
            if cycle > 100 * (len(beats) + len(params) + 10):
                raise AssertionError("the requantizer stopped producing results")
        timing["cycles"] = cycle

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(feed)
    sim.add_testbench(collect)
    sim.run()
    return results, timing


def _golden(params, beats, raw, relu):
    out = []
    for row, col, acc in beats:
        bias, mult, shift = params[col]
        total = acc + bias
        if raw:
            out.append((row, col, total))
        else:
            y = requantize(np.array([total], np.int32), np.array([mult], np.int32),
                           np.array([shift], np.int32), relu=relu)
            out.append((row, col, int(y[0])))
    return out


@pytest.mark.parametrize("serial", SERIAL)
def test_extremes_of_acc_mult_and_shift(serial):
    config = AcceleratorConfig(max_n=16, requant_serial=serial)
    accs = [INT32_MIN, INT32_MIN + 1, -(1 << 20), -1, 0, 1, (1 << 20), INT32_MAX]
    combos = [(mult, shift) for mult in (0, 1, 12345, (1 << 15) - 1)
              for shift in (1, 2, 15, 31, 46, 47, 61, 62)]
    for start in range(0, len(combos), 16):
        chunk = combos[start:start + 16]
        params = {col: (0, mult, shift) for col, (mult, shift) in enumerate(chunk)}
        beats = [(i, col, acc) for col in params for i, acc in enumerate(accs)]
        for relu in (False, True):
            got, _ = _run(config, params, beats, relu=relu)
            assert got == _golden(params, beats, False, relu)


def test_ties_round_toward_plus_infinity():
    # acc * mult lands exactly half way between two integers after the shift.
    config = AcceleratorConfig(max_n=2)
    params = {0: (0, 1, 1), 1: (0, 3, 2)}
    beats = [(0, 0, 3), (0, 0, -3), (0, 1, 2), (0, 1, -2), (0, 0, -255), (0, 0, 254)]
    got, _ = _run(config, params, beats)
    assert [v for _, _, v in got] == [2, -1, 2, -1, -127, 127]
    assert got == _golden(params, beats, False, False)


@pytest.mark.parametrize("raw", [False, True])
@pytest.mark.parametrize("serial", [0, 2, 3, 4])
def test_random_beats_with_bias_under_backpressure(raw, serial, seed):
    rng = np.random.default_rng(seed)
    config = AcceleratorConfig(max_n=8, requant_serial=serial)
    params = {}
    for col in range(8):
        params[col] = (int(rng.integers(-(1 << 20), 1 << 20)),
                       int(rng.integers(0, 1 << 15)), int(rng.integers(1, 63)))
    beats = []
    for i in range(200):
        col = int(rng.integers(0, 8))
        bias = params[col][0]
        acc = int(rng.integers(max(INT32_MIN, INT32_MIN - bias),
                               min(INT32_MAX, INT32_MAX - bias) + 1))
        # Cores emit rows below max_m (the tags are that wide).
        beats.append((i % config.max_m, col, acc))
    got, _ = _run(config, params, beats, raw=raw, relu=not raw, ready_prob=0.6, seed=seed)
    assert got == _golden(params, beats, raw, not raw)


@pytest.mark.parametrize("serial, interval", [(0, 1), (15, 1), (4, 4), (2, 8), (1, 15)])
def test_one_result_per_interval(serial, interval):
    config = AcceleratorConfig(max_n=4, requant_serial=serial)
    assert requantizer_interval(config) == interval
    params = {c: (c, 100 + 999 * c, 10) for c in range(4)}
    beats = [(i, i % 4, i * 1000 - 50000) for i in range(64)]
    got, timing = _run(config, params, beats)
    assert got == _golden(params, beats, False, False)
    # The collector starts counting with the parameter writes still going in.
    assert timing["cycles"] - timing["first"] == (len(beats) - 1) * interval + 1
    assert timing["first"] == len(params) + requantizer_latency(config)
    assert requantizer_latency(config) == (LATENCY + interval if serial else LATENCY)


def test_parameter_writes_outside_the_memory_are_dropped():
    config = AcceleratorConfig(max_n=4)
    params = {0: (7, 1, 1), 4: (1000, 2, 1), 1: (0, 1, 1)}
    beats = [(0, 0, 10), (0, 1, 10)]
    got, _ = _run(config, params, beats, raw=True)
    assert got == [(0, 0, 17), (0, 1, 10)]


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_rejects_a_non_config():
    with pytest.raises(TypeError, match="AcceleratorConfig"):
        Requantizer({"max_n": 4})


@pytest.mark.parametrize("serial", [0, 2])
def test_busy_while_a_beat_is_in_flight(serial):
    config = AcceleratorConfig(max_n=2, requant_serial=serial)
    latency = requantizer_latency(config)
    dut = Requantizer(config)
    trace = []

    async def testbench(ctx):
        ctx.set(dut.out.ready, 1)
        ctx.set(dut.acc.valid, 1)
        await ctx.tick()
        ctx.set(dut.acc.valid, 0)
        for _ in range(latency + 2):
            await ctx.delay(1e-9)
            trace.append((ctx.get(dut.busy), ctx.get(dut.out.valid)))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    assert trace == [(1, 0)] * (latency - 1) + [(1, 1), (0, 0), (0, 0)]


@pytest.mark.parametrize("serial", SERIAL)
def test_busy_is_beats_in_flight_under_backpressure(serial, seed):
    # `busy` is a register computed ahead: each cycle it must say whether some accepted
    # beat has not yet left on `out`, with beats offered and taken at random.
    rng = random.Random(seed)
    config = AcceleratorConfig(max_n=2, requant_serial=serial)
    dut = Requantizer(config)
    mismatches = []

    async def testbench(ctx):
        in_flight = 0
        for cycle in range(300):
            ctx.set(dut.acc.valid, rng.random() < 0.3)
            ctx.set(dut.acc.payload, {"row": 0, "col": rng.randrange(2), "acc": cycle})
            ctx.set(dut.out.ready, rng.random() < 0.5)
            await ctx.delay(1e-9)
            if ctx.get(dut.busy) != (in_flight > 0):
                mismatches.append((cycle, in_flight))
            in_flight += ctx.get(dut.acc.valid) and ctx.get(dut.acc.ready)
            in_flight -= ctx.get(dut.out.valid) and ctx.get(dut.out.ready)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    assert mismatches == []


@pytest.mark.slow
@pytest.mark.parametrize("serial, dsps", [(0, 2), (2, 0)])
def test_serial_multiply_takes_no_dsp_on_ice40(serial, dsps, tmp_path):
    # synth_ice40 -dsp, as the board builds run it: the multiply on DSP blocks takes two
    # SB_MAC16 (so the count can fail), the one in logic none, its adders on carry chains.
    import json
    import subprocess

    from tritile.sim.verilator import verilog_of
    from tritile.sw.toolchain import find_tool

    config = AcceleratorConfig(max_m=16, max_n=32, requant_serial=serial)
    (tmp_path / "requantizer.v").write_text(verilog_of(Requantizer(config), "requantizer"))
    # YoWASP tools see only their working directory: paths are relative to it.
    result = subprocess.run(
        [find_tool("yosys").path, "-q", "-p",
         "read_verilog requantizer.v; synth_ice40 -dsp -top requantizer; "
         "tee -q -o stat.json stat -json"],
        cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    cells = json.loads((tmp_path / "stat.json").read_text())["design"]["num_cells_by_type"]
    assert cells.get("SB_MAC16", 0) == dsps, cells
    assert cells["SB_CARRY"] > 0
