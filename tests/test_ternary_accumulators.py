"""The ternary unit's lane accumulators and output bank (hw/ternary_accumulators.py)."""

import numpy as np

from helpers import simulate, stream_get_many, watch_stream
from tritile.hw.ternary_accumulators import TernaryAccumulators
from tritile.sw import AcceleratorConfig

CONFIG = AcceleratorConfig(ternary_lanes=3, ternary_fan_in=2, max_m=4, max_k=8, max_n=8)


def test_rows_leave_numbered_in_issue_order_under_backpressure(rng, py_rng):
    m, n, groups = 3, 5, 2
    tiles = -(-n // 3)
    dut = TernaryAccumulators(CONFIG, 9)
    # sums[tile, row, group, lane] and carries, the lanes' tree outputs.
    sums = rng.integers(-256, 256, (tiles, m, groups, 3))
    carries = rng.integers(0, 2, (tiles, m, groups, 3))
    totals = (sums + carries).sum(axis=2)
    expected = {(r, t * 3 + lane): int(totals[t, r, lane])
                for t in range(tiles) for r in range(m) for lane in range(3) if t * 3 + lane < n}
    got, violations = {}, []

    async def feed(ctx):
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        ctx.set(dut.m, m)
        ctx.set(dut.n, n)
        for t in range(tiles):
            for r in range(m):
                for g in range(groups):
                    ctx.set(dut.sums, [int(v) for v in sums[t, r, g]])
                    ctx.set(dut.carries, sum(int(c) << lane
                                             for lane, c in enumerate(carries[t, r, g])))
                    ctx.set(dut.valid, 1)
                    ctx.set(dut.last, g == groups - 1)
                    await ctx.tick().until(~dut.stall)
        ctx.set(dut.valid, 0)

    async def drain(ctx):
        beats = await stream_get_many(ctx, dut.acc, len(expected), py_rng, 0.4)
        got.update(((beat.row, beat.col), beat.acc) for beat in beats)
        assert len(got) == len(beats), "a result was sent twice"

    simulate(dut, feed, drain, processes=[watch_stream(dut.acc, "acc", violations)])
    assert got == expected and not violations
