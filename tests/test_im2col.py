# amaranth: UnusedElaboratable=no
"""Implicit im2col addresses (hw/im2col.py) against the im2col rows of tritile.sw.conv.

The reference is :func:`im2col_word_addresses`: the im2col rows of a map whose words hold
their own addresses, computed by the numpy golden model, not by the walk's steps. The
walkers are driven in the two orders the engines read: row by row (the ternary unit: all
groups of a row, then the next row) and block by block (the systolic array: for each
group, R consecutive rows, then back to the block's first row).
"""

import dataclasses

import pytest
from amaranth.sim import Simulator

from tritile.hw.im2col import Im2colAddress, KStep, MStep
from tritile.sw.conv import Im2colWalk, Window, im2col_word_addresses

LIMITS = {"max_words": 4096, "max_side": 16, "max_kernel": 5, "max_chunks": 4}


def random_geometry(rng):
    kh, kw = (int(v) for v in rng.integers(1, 4, 2))
    pads = tuple(int(rng.integers(0, k)) for k in (kh, kw, kh, kw))
    window = Window((kh, kw), tuple(int(v) for v in rng.integers(1, 3, 2)), pads)
    height = int(rng.integers(max(1, kh - pads[0] - pads[2]), 7))
    width = int(rng.integers(max(1, kw - pads[1] - pads[3]), 7))
    return window, int(rng.integers(1, 3)), height, width, int(rng.integers(1, 4))


def ternary_order(walk):
    """(row, group, m_step, m_mark, k_step) per cycle: every group of a row, row by row."""
    for row in range(walk.rows):
        for g in range(walk.groups):
            last = g == walk.groups - 1
            yield row, g, MStep.NEXT if last else MStep.HOLD, 0, KStep.RESET if last else KStep.NEXT


def systolic_order(walk, block):
    """Blocks of ``block`` rows; per group, the block's rows one per cycle, then return."""
    for m0 in range(0, walk.rows, block):
        for g in range(walk.groups):
            last_g = g == walk.groups - 1
            for s in range(block):
                if s < block - 1:
                    yield m0 + s, g, MStep.NEXT, 0, KStep.HOLD
                elif last_g:      # on to the next block, which starts where this one ends
                    yield m0 + s, g, MStep.NEXT, 1, KStep.RESET
                else:
                    yield m0 + s, g, MStep.RETURN, 0, KStep.NEXT


def run_walk(walk, order, conv=True, stall_rng=None):
    """Drive the walkers through ``order``; return {(row, group): (addr, pad)} seen.

    With ``stall_rng``, each step is first offered for a random number of cycles without
    ``advance``, in which the walk must hold."""
    dut = Im2colAddress(**LIMITS, conv=conv)
    seen = {}

    async def bench(ctx):
        for name, value in dataclasses.asdict(walk).items():
            if hasattr(dut.walk, name):
                ctx.set(getattr(dut.walk, name), value)
        ctx.set(dut.m_step, MStep.RESET)
        ctx.set(dut.m_mark, 1)
        ctx.set(dut.k_step, KStep.RESET)
        await ctx.tick()
        for row, group, m_step, m_mark, k_step in order:
            seen[row, group] = (ctx.get(dut.addr), ctx.get(dut.pad))
            ctx.set(dut.m_step, m_step)
            ctx.set(dut.m_mark, m_mark)
            ctx.set(dut.k_step, k_step)
            for _ in range(0 if stall_rng is None else int(stall_rng.integers(0, 3))):
                ctx.set(dut.advance, 0)
                await ctx.tick()
                assert (ctx.get(dut.addr), ctx.get(dut.pad)) == seen[row, group]
            ctx.set(dut.advance, 1)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return seen


def check(seen, expected):
    for (row, group), (addr, pad) in seen.items():
        if row >= expected.shape[0]:
            continue        # rows past M: the engine discards them
        want = expected[row, group]
        assert pad == (want < 0), (row, group, addr, pad, want)
        if want >= 0:
            assert addr == want, (row, group, addr, want)


@pytest.mark.parametrize("order", ["ternary", "systolic"])
def test_walkers_produce_the_im2col_word_addresses(order, rng):
    for _ in range(4):
        window, images, height, width, chunks = random_geometry(rng)
        walk = Im2colWalk.of(window, images, height, width, chunks)
        expected = im2col_word_addresses(window, images, height, width, chunks)
        assert expected.shape == (walk.rows, walk.groups)
        sequence = (ternary_order(walk) if order == "ternary"
                    else systolic_order(walk, int(rng.integers(1, 5))))
        seen = run_walk(walk, sequence)
        assert len(seen) >= walk.rows * walk.groups
        check(seen, expected)


@pytest.mark.parametrize("conv", [True, False])
def test_walkers_hold_without_advance(conv, rng):
    # The systolic core offers the next step before it knows whether the row issues.
    window = Window(3, 1, 1) if conv else Window(1)
    walk = Im2colWalk.of(window, 1, 4 if conv else 1, 5, 2)
    expected = im2col_word_addresses(window, 1, 4 if conv else 1, 5, 2)
    seen = run_walk(walk, systolic_order(walk, 3), conv=conv, stall_rng=rng)
    check(seen, expected)


def test_dense_layer_is_the_row_major_layout():
    # A 1 x 1 window over a 1 x M map: row m's groups are words m*CT .. m*CT + CT - 1.
    walk = Im2colWalk.of(Window(1), 1, 1, 5, 3)
    seen = run_walk(walk, ternary_order(walk))
    assert [seen[m, g] for m in range(5) for g in range(3)] == [(w, 0) for w in range(15)]


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_limits_must_be_positive(name):
    with pytest.raises(ValueError, match=f"{name} must be a positive integer, not 0"):
        Im2colAddress(**{**LIMITS, name: 0})


def test_dense_walker_without_the_window_logic(rng):
    # conv=False (config conv_walk 0): the same dense words, in both engines' orders.
    walk = Im2colWalk.of(Window(1), 1, 1, 7, 3)
    expected = im2col_word_addresses(Window(1), 1, 1, 7, 3)
    for sequence in (ternary_order(walk), systolic_order(walk, int(rng.integers(1, 5)))):
        check(run_walk(walk, sequence, conv=False), expected)
