# amaranth: UnusedElaboratable=no
"""The engine bank's constant dividers: CT = ceil(K / chunk) of the dense walk, and the
word and byte of a channel in a chunk (result placement, pooling), for any chunk; its
write ``ready``; placed bytes against a start that follows them; the widths of the
counters it passes on."""

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module, Signal
from helpers import TEST_CONFIG, simulate, stream_get, stream_put

from tritile.hw.engine_bank import EngineBank, ceil_div_const, counter_bits, divmod_const
from tritile.sw.config import PRESETS
from tritile.sw.engines import ENGINES, engine
from tritile.sw.planner import plan_in_place
from tritile.sw.protocol import Engine, Target


@pytest.mark.parametrize("divisor", [1, 3, 8, 12, 64])
def test_ceil_div_const_is_exact(divisor, py_rng):
    value = Signal(16)
    result = Signal(16)
    m = Module()
    m.domains.sync = ClockDomain()    # simulate() clocks it
    m.d.comb += result.eq(ceil_div_const(value, divisor))
    samples = [0, 1, divisor - 1, divisor, divisor + 1, (1 << 16) - 1,
               *(py_rng.randrange(1 << 16) for _ in range(200))]

    async def bench(ctx):
        for sample in samples:
            ctx.set(value, sample)
            assert ctx.get(result) == -(-sample // divisor), (sample, divisor)

    simulate(m, bench)


@pytest.mark.parametrize("divisor", [1, 4, 12, 32, 37])
def test_divmod_const_is_exact(divisor, py_rng):
    value = Signal(16)
    quotient, remainder = Signal(16), Signal(16)
    m = Module()
    m.domains.sync = ClockDomain()
    q, r = divmod_const(value, divisor)
    m.d.comb += [quotient.eq(q), remainder.eq(r)]
    samples = [0, 1, divisor - 1, divisor, (1 << 16) - 1,
               *(py_rng.randrange(1 << 16) for _ in range(200))]

    async def bench(ctx):
        for sample in samples:
            ctx.set(value, sample)
            assert (ctx.get(quotient), ctx.get(remainder)) == divmod(sample, divisor), sample

    simulate(m, bench)


def test_write_ready_is_the_held_write_register_being_empty(py_rng):
    """The bank's write ``ready`` depends on registers only: within a cycle no start, placed
    byte or write payload changes it, so no path runs from a core's write acceptance into
    the link; a write offered every cycle is taken every other cycle, base-3 bytes that
    straddle a weight word included."""
    bank = EngineBank(TEST_CONFIG, tuple(ENGINES), 16)
    write, start, place = bank.write, bank.start, bank.place
    targets = [Target.SYSTOLIC_ACT, Target.SYSTOLIC_WEIGHT, Target.TERNARY_ACT,
               Target.TERNARY_WEIGHT, Target.TERNARY_WEIGHT_BASE3, Target.PARAMS,
               Target.OUTPUT8]
    probes = [(start.valid, 1), (start.payload.engine, Engine.SYSTOLIC),
              (place.valid, 1), (place.payload.engine, Engine.TERNARY),
              (write.valid, 0), (write.payload.target, Target.TERNARY_WEIGHT_BASE3),
              (write.payload.addr, 3)]

    async def bench(ctx):
        ctx.set(start.payload.engine, Engine.TERNARY)
        ctx.set(write.valid, 1)
        taken = []
        for _ in range(400):
            target = py_rng.choice(targets)
            # Base-3 bytes 3 and 19 complete the last 2-bit byte of weight words 0 and 5
            # (4 bytes a word): the ternary memories refuse the cycle after them.
            straddles = target == Target.TERNARY_WEIGHT_BASE3 and py_rng.random() < 0.5
            ctx.set(write.payload, {"target": target,
                                    "addr": py_rng.choice((3, 19)) if straddles
                                    else py_rng.randrange(64),
                                    "data": py_rng.randrange(256)})
            ready = ctx.get(write.ready)
            for signal, value in probes:
                before = ctx.get(signal)
                ctx.set(signal, value)
                assert ctx.get(write.ready) == ready, (signal.name, value)
                ctx.set(signal, before)
            taken.append(ready)
            await ctx.tick()
        assert taken == [1, 0] * 200

    simulate(bank, bench)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_counter_bits_hold_the_counts_of_every_problem_that_fits(preset, py_rng):
    # The cycle model's count (exact on the device) and the MACs of problems the shape
    # check lets through: the limits, ragged sizes just past a tile, random ones.
    config = PRESETS[preset]
    for name in config.engines:
        spec = engine(name)
        busy_bits, mac_bits = counter_bits(config, spec)
        assert busy_bits < 32 and mac_bits < 32, (preset, name)
        limits = (config.max_m, config.max_k, config.max_n)
        tiles = {1, 2, config.systolic_rows + 1, config.systolic_cols + 1,
                 config.ternary_lanes + 1, config.ternary_fan_in + 1}
        sizes = [limits, *((py_rng.randint(1, a), py_rng.randint(1, b), py_rng.randint(1, c))
                           for a, b, c in [limits] * 40),
                 *((min(t, limits[0]), limits[1], min(u, limits[2]))
                   for t in tiles for u in tiles)]
        for m, k, n in sizes:
            while k * n > spec.weight_capacity(config):
                n -= 1
            if n < 1:
                continue
            cycles = plan_in_place(config, name, m, k, n).cycles
            assert cycles < 1 << busy_bits, (preset, name, m, k, n, cycles)
            assert m * k * n < 1 << mac_bits, (preset, name, m, k, n)


@pytest.mark.parametrize("name", ["systolic", "ternary"])
def test_a_start_offered_with_the_last_placed_byte_reads_it(name, rng):
    """A placed byte reaches its memory through the core's write register a cycle after
    ``place`` offered it; ``busy`` covers that cycle, and a start offered with the last
    placed byte (earlier than a program's next layer can come) reads it. Row 0's last byte
    is placed last, so the first row read is the one still on its way."""
    config, spec = TEST_CONFIG, engine(name)
    bank = EngineBank(config, (name,), 16)
    m, k, n = 3, spec.chunk(config), 2
    X = rng.integers(-128, 128, (m, k), dtype=np.int8)
    low, high = (-1, 2) if spec.numerics == "ternary" else (-128, 128)
    W = rng.integers(low, high, (k, n), dtype=np.int8)
    weight_target = spec.weight_core_target(None)
    weights = spec.memory_image(config, X, W)[weight_target]
    placed = [(row, b) for row in reversed(range(m)) for b in range(k)]

    async def bench(ctx):
        ctx.set(bank.layer.engine, spec.protocol_id)
        for addr, byte in enumerate(weights):
            await stream_put(ctx, bank.write, {"target": spec.protocol_target(weight_target),
                                               "addr": addr, "data": byte})
        busy = []
        ctx.set(bank.start.payload, {"engine": spec.protocol_id, "raw": 1,
                                     "m": m, "k": k, "n": n})
        for i, (row, b) in enumerate(placed):
            ctx.set(bank.place.payload, {"engine": spec.protocol_id, "word": row, "byte": b,
                                         "data": int(X[row, b]) & 0xFF})
            ctx.set(bank.place.valid, 1)
            ctx.set(bank.start.valid, i == len(placed) - 1)
            await ctx.tick()
            busy.append(ctx.get(bank.busy))
        ctx.set(bank.place.valid, 0)
        assert all(busy), busy
        await ctx.tick().until(bank.start.ready)
        ctx.set(bank.start.valid, 0)
        results = np.zeros((m, n), np.int64)
        for _ in range(m * n):
            beat = await stream_get(ctx, bank.results)
            results[beat.row, beat.col] = beat.value
        np.testing.assert_array_equal(results, spec.golden(X, W))

    simulate(bank, bench)
