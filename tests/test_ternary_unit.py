"""The ternary unit core in Amaranth's simulator, against tritile.sw.ternary_matmul."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from helpers import stream_put
from tritile.hw.engine_memory import single_port_memories
from tritile.hw.ternary import TernaryUnit
from tritile.sim.engine_sim import start_fields
from tritile.sw import AcceleratorConfig, ConfigError, plan_ternary, ternary_matmul
from tritile.sw.engines import engine
from tritile.sw.ternary_layout import PACKINGS, TARGET_WEIGHTS_2BIT, ternary_memory_image


def _config(lanes, fan_in, **limits):
    base = dict(ternary_lanes=lanes, ternary_fan_in=fan_in, max_m=8, max_k=40, max_n=12,
                act_depth=160, trit_depth=480, out_depth=96)
    return AcceleratorConfig(**{**base, **limits})


def _run(config, q, T, packing, *, ready_prob=1.0, seed=0, dims=None, image=None, then=()):
    """Load the image, run one problem; return ``{(row, col): acc}``, cycles and counters.

    ``then``: the dims of further problems run after it on the same image; their
    counters go to ``info["then"]`` and their results are not kept.
    """
    dut = TernaryUnit(config)
    image = image or ternary_memory_image(config, q, T, packing)
    m, k = q.shape
    n = T.shape[1]
    dims = dims or (m, k, n)
    rng = random.Random(seed)
    results, info = {}, {"then": []}

    async def bench(ctx):
        for target, blob in image.items():
            for addr, byte in enumerate(blob):
                await stream_put(ctx, dut.write, {"target": target, "addr": addr, "data": byte})
        walk = engine("ternary").walk(config, q.shape)     # the layout of the image
        await problem(ctx, walk, dims, results, info)
        for later in then:
            info["then"].append({})
            await problem(ctx, walk, later, {}, info["then"][-1])

    async def problem(ctx, walk, dims, results, info):
        ctx.set(dut.start.payload, start_fields(walk, *dims))
        ctx.set(dut.start.valid, 1)
        await ctx.tick().until(dut.start.ready)
        ctx.set(dut.start.valid, 0)
        for _ in range(100 * (m * n + k + 50)):
            ready = rng.random() < ready_prob
            ctx.set(dut.acc.ready, ready)
            await ctx.delay(1e-9)
            if ready and ctx.get(dut.acc.valid):
                beat = ctx.get(dut.acc.payload)
                key = (beat.row, beat.col)
                assert key not in results, f"result {key} emitted twice"
                results[key] = beat.acc
            if ctx.get(dut.done):
                break
            await ctx.tick()
        else:
            raise AssertionError("the unit never finished")
        info["busy_cycles"] = ctx.get(dut.busy_cycles)
        info["mac_cycles"] = ctx.get(dut.mac_cycles)
        assert not ctx.get(dut.busy)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return results, info


def _as_dict(acc):
    return {(r, c): int(acc[r, c]) for r in range(acc.shape[0]) for c in range(acc.shape[1])}


# Without the int8 engine (int8 0), both memories get one port, as on iCE40's SPRAM.
@pytest.mark.parametrize("lanes, fan_in, read_stages, conv_walk, int8",
                         [(1, 1, 0, 1, 4), (2, 3, 0, 1, 4), (4, 8, 0, 1, 4), (2, 3, 1, 1, 4),
                          (4, 8, 2, 1, 4), (2, 3, 0, 0, 4), (2, 3, 0, 1, 0)])
@pytest.mark.parametrize("packing", PACKINGS)
def test_random_problem_matches_golden(lanes, fan_in, read_stages, conv_walk, int8, packing,
                                       seed):
    rng = np.random.default_rng(seed)
    config = _config(lanes, fan_in, ternary_read_stages=read_stages, conv_walk=conv_walk,
                     systolic_rows=int8, systolic_cols=int8)
    if not int8:
        assert set(single_port_memories(config)) == {"ternary_act", "ternary_weights"}
    m, k, n = 3, int(rng.integers(5, 24)), int(rng.integers(3, 12))
    q = rng.integers(-128, 128, size=(m, k), dtype=np.int8)
    T = rng.integers(-1, 2, size=(k, n), dtype=np.int8)
    got, info = _run(config, q, T, packing)
    assert got == _as_dict(ternary_matmul(q, T))
    assert info["busy_cycles"] == plan_ternary(config, m, k, n).cycles


def test_one_lane_at_the_extremes_of_its_sum():
    # K at the limit, all activations -128 and all trits -1: the largest positive sum.
    config = _config(1, 4, max_k=40)
    q = np.full((2, 40), -128, np.int8)
    T = np.full((40, 1), -1, np.int8)
    got, _ = _run(config, q, T, "base3")
    assert got == {(0, 0): 40 * 128, (1, 0): 40 * 128}
    q[1] = 127
    T[:, 0] = 1
    got, _ = _run(config, q, T, "2bit")
    assert got == {(0, 0): -40 * 128, (1, 0): 40 * 127}


def test_the_2bit_code_no_packer_writes_adds_nothing(seed):
    # 0b10 is a zero with its sign set: the lane adds ~0 and a carry, i.e. nothing.
    rng = np.random.default_rng(seed)
    config = _config(4, 8)
    q = rng.integers(-128, 128, size=(3, 21), dtype=np.int8)
    T = rng.integers(-1, 2, size=(21, 7), dtype=np.int8)
    image = ternary_memory_image(config, q, T, "2bit")
    weights = bytearray(image[TARGET_WEIGHTS_2BIT])
    for i, byte in enumerate(weights):
        for field in range(4):
            if (byte >> (2 * field)) & 0b11 == 0:
                weights[i] |= 0b10 << (2 * field)
    image[TARGET_WEIGHTS_2BIT] = bytes(weights)
    got, _ = _run(config, q, T, "2bit", image=image)
    assert got == _as_dict(ternary_matmul(q, T))


def test_backpressure_on_the_output_loses_nothing(seed):
    rng = np.random.default_rng(seed)
    config = _config(4, 2, ternary_read_stages=1)
    q = rng.integers(-128, 128, size=(5, 3), dtype=np.int8)
    T = rng.integers(-1, 2, size=(3, 10), dtype=np.int8)
    got, _ = _run(config, q, T, "2bit", ready_prob=0.3, seed=seed)
    assert got == _as_dict(ternary_matmul(q, T))


def test_zero_dimension_finishes_without_output():
    config = _config(2, 2)
    q = np.ones((1, 2), np.int8)
    T = np.ones((2, 2), np.int8)
    got, info = _run(config, q, T, "2bit", dims=(0, 2, 2))
    assert got == {} and info["mac_cycles"] == 0


def test_counters_restart_with_each_problem():
    # The counters restart the cycle after a start: a second problem's counts are its own.
    config = _config(2, 4)
    q = np.ones((3, 8), np.int8)
    T = np.ones((8, 3), np.int8)
    _, info = _run(config, q, T, "2bit", then=[(2, 8, 3), (0, 8, 3)])
    second, empty = info["then"]
    assert info["busy_cycles"] == plan_ternary(config, 3, 8, 3).cycles
    assert info["mac_cycles"] == 3 * 2 * 2          # rows x K groups x N tiles
    assert second["busy_cycles"] == plan_ternary(config, 2, 8, 3).cycles
    assert second["mac_cycles"] == 2 * 2 * 2
    assert empty["mac_cycles"] == 0 and 0 < empty["busy_cycles"] < second["busy_cycles"]


def test_rejects_a_non_config():
    with pytest.raises(TypeError, match="AcceleratorConfig"):
        TernaryUnit({"ternary_lanes": 4})
    with pytest.raises(ConfigError, match="ternary_lanes"):
        _config(0, 4)


def test_dimensions_above_the_limits_are_clamped_to_them(seed):
    rng = np.random.default_rng(seed)
    config = _config(4, 8, max_m=3, max_k=16, max_n=5, act_depth=48, trit_depth=80,
                     out_depth=15)
    q = rng.integers(-128, 128, size=(3, 16), dtype=np.int8)
    T = rng.integers(-1, 2, size=(16, 5), dtype=np.int8)
    got, info = _run(config, q, T, "base3", dims=(1000, 1000, 1000))
    assert got == _as_dict(ternary_matmul(q, T))
    assert info["busy_cycles"] == plan_ternary(config, 3, 16, 5).cycles
