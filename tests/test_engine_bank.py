# amaranth: UnusedElaboratable=no
"""The engine bank's constant dividers: CT = ceil(K / chunk) of the dense walk, and the
word and byte of a channel in a chunk (result placement, pooling), for any chunk."""

import pytest
from amaranth.hdl import ClockDomain, Module, Signal
from helpers import simulate

from tritile.hw.engine_bank import ceil_div_const, divmod_const


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
