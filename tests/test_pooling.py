# amaranth: UnusedElaboratable=no
"""Pooling on the device (hw/pooling.py) against the golden pooling of tritile.sw.conv.

Results arrive in an engine's order (N tiles of the engine's tile, rows in order,
columns within the tile), with gaps; the pooled values must be exactly ``maxpool_int8`` /
``avgpool_int8``.
"""

import numpy as np
import pytest
from helpers import simulate

from tritile.hw.pooling import Pooling
from tritile.sw.conv import Window, avgpool_int8, maxpool_int8
from tritile.sw.protocol import LayerPool

TILES = {0: 4, 1: 12}       # a power of two, and a tile the line buffer must divide by


def _engine_order(images, out_h, out_w, n, tile):
    """Yield ``(row, col)`` in the order an engine with N tile ``tile`` emits them."""
    rows = images * out_h * out_w
    for n0 in range(0, n, tile):
        for row in range(rows):
            for col in range(n0, min(n, n0 + tile)):
                yield row, col


def _pool(rng, mode, engine, images, out_h, out_w, n, k, relu_map=False):
    lo = 0 if relu_map else -128
    Y = rng.integers(lo, 128, size=(images, out_h, out_w, n), dtype=np.int8)
    window = Window(k, k)
    mult, shift = int(rng.integers(1, 1 << 15)), int(rng.integers(8, 20))
    if mode == LayerPool.MAX:
        golden = maxpool_int8(Y, window)
    else:
        golden = avgpool_int8(Y, window, np.full(n, mult, np.int32), np.full(n, shift, np.int32))
    ph, pw = out_h // k, out_w // k
    dut = Pooling(TILES, max_pooled_w=8)
    flat = Y.reshape(-1, n)
    order = list(_engine_order(images, out_h, out_w, n, TILES[engine]))
    got = {}

    async def bench(ctx):
        layer = dut.layer
        for name, value in (("mode", mode), ("k", k), ("out_h", out_h), ("out_w", out_w),
                            ("pooled_w", pw), ("mult", mult), ("shift", shift),
                            ("engine", engine)):
            ctx.set(getattr(layer, name), value)
        for row, col in order:
            while rng.random() < 0.3:
                ctx.set(dut.results.valid, 0)
                await ctx.tick()
            ctx.set(dut.results.payload, {"row": row, "col": col,
                                          "value": int(flat[row, col])})
            ctx.set(dut.results.valid, 1)
            await ctx.tick()
        ctx.set(dut.results.valid, 0)
        await ctx.tick().repeat(Pooling.LATENCY + 2)
        assert not ctx.get(dut.busy)

    async def collect(ctx):
        async for _, _, valid, payload in ctx.tick().sample(dut.pooled.valid,
                                                             dut.pooled.payload):
            if valid:
                key = (payload.row, payload.col)
                assert key not in got, f"pooled pixel {key} sent twice"
                got[key] = payload.value

    simulate(dut, bench, processes=[collect])
    expected = {(r, c): int(v) for r, row in enumerate(golden.reshape(-1, n))
                for c, v in enumerate(row)}
    assert len(expected) == images * ph * pw * n
    assert got == expected


@pytest.mark.parametrize("engine", [0, 1])
@pytest.mark.parametrize("mode", [LayerPool.MAX, LayerPool.AVERAGE])
def test_pooling_matches_golden(engine, mode, rng):
    # 5 x 7 with k = 2: the last row and column of each image are outside every window.
    _pool(rng, mode, engine, images=2, out_h=5, out_w=7, n=14, k=2)


def test_a_3x3_window_over_images_whose_edges_it_leaves_out(rng):
    # The walk's steps at every edge: a window row's end, a map row's end inside a
    # window, the last (partial) window row and the next image.
    _pool(rng, LayerPool.MAX, 1, images=3, out_h=7, out_w=8, n=3, k=3)


@pytest.mark.parametrize("mode", [LayerPool.MAX, LayerPool.AVERAGE])
def test_a_1x1_window_needs_no_line_buffer(mode, rng):
    # Rows wider than the line buffer's 8 pooled pixels: every window is one result.
    _pool(rng, mode, 0, images=1, out_h=2, out_w=12, n=5, k=1)


@pytest.mark.parametrize("engine", [0, 1])
def test_global_average_pool(engine, rng):
    _pool(rng, LayerPool.AVERAGE, engine, images=2, out_h=4, out_w=4, n=6, k=4,
          relu_map=True)


def test_no_pooling_passes_every_result_with_its_row():
    dut = Pooling(TILES, max_pooled_w=4)
    got = []
    sent = [(0, 0, -5), (0, 1, 7), (1, 0, 1), (2, 1, 100), (3, 0, -128)]

    async def bench(ctx):
        for name, value in (("mode", LayerPool.NONE), ("k", 1), ("out_h", 2),
                            ("out_w", 2), ("pooled_w", 2), ("engine", 0)):
            ctx.set(getattr(dut.layer, name), value)
        for row, col, value in sent:
            ctx.set(dut.results.payload, {"row": row, "col": col, "value": value})
            ctx.set(dut.results.valid, 1)
            await ctx.tick()
        ctx.set(dut.results.valid, 0)
        await ctx.tick().repeat(Pooling.LATENCY + 1)

    async def collect(ctx):
        async for _, _, valid, payload in ctx.tick().sample(dut.pooled.valid,
                                                             dut.pooled.payload):
            if valid:
                got.append((payload.row, payload.col, payload.value))

    simulate(dut, bench, processes=[collect])
    assert got == sent
