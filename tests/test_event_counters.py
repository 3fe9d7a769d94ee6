"""Block-RAM event counters: exact counts across byte carries, shared counters, the
constant table next to them, reads that wait for pending events."""

import numpy as np
import pytest

from tritile.hw.event_counters import EventCounters

from helpers import seed, simulate


async def _read(ctx, dut, address, count=4):
    """Read ``count`` bytes from ``address`` one at a time, as the responder does; return
    them as a little-endian integer."""
    value = 0
    for byte in range(count):
        ctx.set(dut.read_addr, address + byte)
        while not ctx.get(dut.read_ready):
            await ctx.tick()
        await ctx.tick()
        value |= ctx.get(dut.read_data) << (8 * byte)
    return value


def test_counts_are_exact_across_byte_carries_and_shared_counters():
    rng = np.random.default_rng(seed())
    table = bytes(range(1, 6))
    # Sources 0 and 1 share the counter at 9 (bytes 9-11: a counter ends with its aligned
    # word); source 2 counts into the one at 5, right after the table; source 3 into the
    # one-byte counter at 15, which wraps without a carry; bytes 12-14 stay 0.
    dut = EventCounters(16, (9, 9, 5, 15), init=table)
    expected = {9: 0, 5: 0, 15: 0}

    async def bench(ctx):
        for _ in range(700):
            fired = [int(b) for b in rng.integers(0, 2, 4)]
            ctx.set(dut.event, fired[0] | fired[1] << 1 | fired[2] << 2 | fired[3] << 3)
            expected[9] += fired[0] + fired[1]
            expected[5] += fired[2]
            expected[15] += fired[3]
            await ctx.tick()
            ctx.set(dut.event, 0)
            # Sources fire at most once per 2 + 5 * len(sources) cycles.
            await ctx.tick().repeat(int(rng.integers(22, 30)))
        assert await _read(ctx, dut, 9, 3) == expected[9]
        assert await _read(ctx, dut, 5, 3) == expected[5]
        assert await _read(ctx, dut, 0, 5) == int.from_bytes(table, "little")
        assert await _read(ctx, dut, 12, 3) == 0
        assert await _read(ctx, dut, 15, 1) == expected[15] % 256

    simulate(dut, bench)
    assert expected[9] > 256 and expected[15] > 256     # low bytes wrapped at least once


def test_a_read_waits_for_pending_events():
    dut = EventCounters(8, (4,))          # the event counts at 4; bytes 0-3 stay 0

    async def bench(ctx):
        ctx.set(dut.event, 1)
        await ctx.tick()
        ctx.set(dut.event, 0)
        # The event is pending: a read issued now must wait and then see it.
        ctx.set(dut.read_addr, 4)
        assert not ctx.get(dut.read_ready)
        assert await _read(ctx, dut, 4) == 1
        # An event in the cycle a read is served is counted after it.
        ctx.set(dut.read_addr, 4)
        ctx.set(dut.event, 1)
        await ctx.tick()
        ctx.set(dut.event, 0)
        assert ctx.get(dut.read_data) == 1
        assert await _read(ctx, dut, 4) == 2
        assert await _read(ctx, dut, 0) == 0

    simulate(dut, bench)


def test_counters_must_lie_past_the_table_and_inside_the_ram():
    with pytest.raises(ValueError, match="counter addresses from 2 to 7"):
        EventCounters(8, (8,), init=b"ab")
    with pytest.raises(ValueError, match="counter addresses from 2 to 7"):
        EventCounters(8, (1,), init=b"ab")
