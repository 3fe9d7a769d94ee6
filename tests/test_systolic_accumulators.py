"""The systolic core's accumulator buffers and read-out (hw/systolic_accumulators.py)."""

import numpy as np

from helpers import simulate, stream_get_many, watch_stream
from tritile.hw.systolic_accumulators import SystolicAccumulators
from tritile.sw import AcceleratorConfig

CONFIG = AcceleratorConfig(systolic_rows=2, systolic_cols=3, max_m=8, max_k=8, max_n=8)
DELAY = 3


def test_blocks_sum_across_k_tiles_and_leave_cropped_in_order(rng, py_rng):
    dut = SystolicAccumulators(CONFIG, 18, DELAY)
    # Two blocks: buffer 0 a full 2 x 3 block of three K tiles at (0, 0); buffer 1 a
    # ragged 1 x 2 block of one K tile at (2, 3).
    blocks = [({"row0": 0, "col0": 0, "rows": 2, "cols": 3}, 3),
              ({"row0": 2, "col0": 3, "rows": 1, "cols": 2}, 1)]
    psums = [rng.integers(-1000, 1000, (k_tiles, 2, 3)) for _, k_tiles in blocks]
    expected = {}
    for (block, _), psum in zip(blocks, psums):
        total = psum.sum(axis=0)
        for r in range(block["rows"]):
            for c in range(block["cols"]):
                expected[block["row0"] + r, block["col0"] + c] = int(total[r, c])
    got, violations = {}, []
    schedule = []               # (entry, psum) per cycle; psum arrives DELAY cycles later

    for buf, ((block, k_tiles), psum) in enumerate(zip(blocks, psums)):
        for k in range(k_tiles):
            for row in range(2):
                schedule.append(({"valid": 1, "buf": buf, "row": row, "first": int(k == 0),
                                  "block_end": int(k == k_tiles - 1 and row == 1)},
                                 [int(v) for v in psum[k, row]],
                                 block if (k, row) == (0, 0) else None, buf))

    async def feed(ctx):
        ctx.set(dut.restart, 1)
        await ctx.tick()
        ctx.set(dut.restart, 0)
        for cycle in range(len(schedule) + DELAY):
            if cycle < len(schedule):
                entry, _, block, buf = schedule[cycle]
                ctx.set(dut.entry, entry)
                ctx.set(dut.open, block is not None)
                ctx.set(dut.fill, buf)
                if block is not None:
                    ctx.set(dut.block, block)
            else:
                ctx.set(dut.entry, {"valid": 0, "buf": 0, "row": 0, "first": 0,
                                    "block_end": 0})
                ctx.set(dut.open, 0)
            if cycle >= DELAY:
                ctx.set(dut.psum, schedule[cycle - DELAY][1])
            await ctx.tick()
            if cycle == 0:
                assert ctx.get(dut.pending) == 0b001
        assert ctx.get(dut.pending) != 0

    async def drain(ctx):
        beats = await stream_get_many(ctx, dut.acc, len(expected), py_rng, 0.5)
        got.update(((beat.row, beat.col), beat.acc) for beat in beats)
        assert len(got) == len(beats), "a result was sent twice"
        for _ in range(3):
            await ctx.tick()
        assert ctx.get(dut.pending) == 0 and not ctx.get(dut.acc.valid)

    simulate(dut, feed, drain, processes=[watch_stream(dut.acc, "acc", violations)])
    assert got == expected and list(got) == sorted(got) and not violations
