# amaranth: UnusedElaboratable=no
"""The engine bank's dense walk: CT = ceil(K / chunk) without a divider, for any chunk."""

import pytest
from amaranth.hdl import ClockDomain, Module, Signal
from helpers import simulate

from tritile.hw.engine_bank import ceil_div_const


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
