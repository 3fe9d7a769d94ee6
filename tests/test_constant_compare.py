"""``exceeds``: a comparison with a constant written as logic, against Python's ``>``."""

import pytest
from amaranth.hdl import ClockDomain, Module, Signal

from tritile.hw.constant_compare import exceeds

from helpers import simulate


@pytest.mark.parametrize("limit", [0, 1, 5, 32, 37, 62, 63, 64, 200])
def test_exceeds_is_greater_than_for_every_six_bit_value(limit):
    m = Module()
    m.domains.sync = ClockDomain()      # the shared simulate() runs a clock
    value, greater = Signal(6), Signal()
    m.d.comb += greater.eq(exceeds(value, limit))
    seen = []

    async def every_value(ctx):
        for v in range(64):
            ctx.set(value, v)
            seen.append(ctx.get(greater))

    simulate(m, every_value, name="constant_compare")
    assert seen == [v > limit for v in range(64)]


def test_a_negative_limit_is_refused():
    with pytest.raises(ValueError, match="not -1"):
        exceeds(Signal(4), -1)
