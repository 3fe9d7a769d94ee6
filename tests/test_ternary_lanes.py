"""The ternary lanes (hw/ternary_lanes.py) in Amaranth's simulator: dot products of trits."""

import numpy as np
import pytest

from helpers import simulate
from tritile.hw.ternary_lanes import TernaryLanes
from tritile.sw import pack_trits_2bit


@pytest.mark.parametrize("lanes, fan_in", [(2, 2), (2, 3), (3, 8), (1, 5)])
def test_each_lane_returns_its_dot_product_after_the_tree_latency(lanes, fan_in, rng):
    dut = TernaryLanes(lanes, fan_in)
    groups = 6
    x = rng.integers(-128, 128, (groups, fan_in)).astype(np.int8)
    t = rng.integers(-1, 2, (groups, lanes, fan_in)).astype(np.int8)
    expected = np.einsum("gj,glj->gl", x.astype(np.int64), t.astype(np.int64))
    got = []

    async def bench(ctx):
        ctx.set(dut.advance, 1)
        # One group a cycle; a group's result leaves `latency` cycles later.
        for cycle in range(groups + dut.latency):
            if cycle < groups:
                ctx.set(dut.activations, int.from_bytes(x[cycle].tobytes(), "little"))
                ctx.set(dut.codes, int.from_bytes(pack_trits_2bit(t[cycle].reshape(-1)),
                                                  "little"))
            await ctx.delay(1e-9)
            if cycle >= dut.latency:
                sums, carries = ctx.get(dut.sums), ctx.get(dut.carries)
                got.append([sums[lane] + ((carries >> lane) & 1) for lane in range(lanes)])
            await ctx.tick()

    simulate(dut, bench)
    assert got == expected.tolist()


def test_the_trees_hold_while_advance_is_low(rng):
    dut = TernaryLanes(2, 4)
    x = rng.integers(-128, 128, 4).astype(np.int8)
    t = rng.integers(-1, 2, (2, 4)).astype(np.int8)
    expected = (t.astype(np.int64) @ x.astype(np.int64)).tolist()

    async def bench(ctx):
        ctx.set(dut.activations, int.from_bytes(x.tobytes(), "little"))
        ctx.set(dut.codes, int.from_bytes(pack_trits_2bit(t.reshape(-1)), "little"))
        ctx.set(dut.advance, 1)
        await ctx.tick()
        ctx.set(dut.activations, 0)              # the next group, held back
        ctx.set(dut.advance, 0)
        for _ in range(5):
            await ctx.tick()
        ctx.set(dut.advance, 1)
        await ctx.tick()
        sums, carries = ctx.get(dut.sums), ctx.get(dut.carries)
        assert [sums[lane] + ((carries >> lane) & 1) for lane in range(2)] == expected

    simulate(dut, bench)


def test_rejects_an_empty_lane():
    with pytest.raises(ValueError, match="fan_in must be a positive integer, not 0"):
        TernaryLanes(2, 0)
