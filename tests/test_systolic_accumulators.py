"""The systolic core's accumulator buffers and read-out (hw/systolic_accumulators.py)."""

import pytest

from helpers import simulate, stream_get_many, watch_stream
from tritile.hw.systolic_accumulators import READ_TO_WRITE, SystolicAccumulators
from tritile.sw import AcceleratorConfig

COLS = 3
DELAY = 3
IDLE = {"valid": 0, "buf": 0, "row": 0, "first": 0, "block_end": 0}


# R < READ_TO_WRITE adds to a word while an earlier row's sum of it is on its way in (the
# forwards); idle cycles between rows move the earlier row to each distance in turn.
@pytest.mark.parametrize("rows", range(1, READ_TO_WRITE + 2))
@pytest.mark.parametrize("idle_share", [0, 0.4])
def test_blocks_sum_across_k_tiles_and_leave_cropped_in_order(rows, idle_share, rng, py_rng):
    config = AcceleratorConfig(systolic_rows=rows, systolic_cols=COLS, max_m=8, max_k=8,
                               max_n=8)
    dut = SystolicAccumulators(config, 18, DELAY)
    # Three blocks: buffer 0 a full R x 3 block of four K tiles at (0, 0); buffer 1 a
    # ragged block (one row fewer, unless R = 1; two columns) of one K tile at (R, 3);
    # buffer 2 a full block of three K tiles at (2R, 0).
    blocks = [({"row0": 0, "col0": 0, "rows": rows, "cols": 3}, 4),
              ({"row0": rows, "col0": 3, "rows": max(rows - 1, 1), "cols": 2}, 1),
              ({"row0": 2 * rows, "col0": 0, "rows": rows, "cols": 3}, 3)]
    psums = [rng.integers(-1000, 1000, (k_tiles, rows, COLS)) for _, k_tiles in blocks]
    expected = {}
    for (block, _), psum in zip(blocks, psums):
        total = psum.sum(axis=0)
        for r in range(block["rows"]):
            for c in range(block["cols"]):
                expected[block["row0"] + r, block["col0"] + c] = int(total[r, c])
    got, violations = {}, []
    schedule = []               # (entry, psum, block opened, buffer) per cycle
    for buf, ((block, k_tiles), psum) in enumerate(zip(blocks, psums)):
        for k in range(k_tiles):
            for row in range(rows):
                while py_rng.random() < idle_share:
                    schedule.append((IDLE, [0] * COLS, None, buf))
                schedule.append(({"valid": 1, "buf": buf, "row": row, "first": int(k == 0),
                                  "block_end": int(k == k_tiles - 1 and row == rows - 1)},
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
                ctx.set(dut.entry, IDLE)
                ctx.set(dut.open, 0)
            # The sums arrive DELAY cycles after their row's entry.
            ctx.set(dut.psum, schedule[cycle - DELAY][1] if cycle >= DELAY else [0] * COLS)
            await ctx.tick()
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
