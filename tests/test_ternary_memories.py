"""The ternary unit's memories and write path (hw/ternary_memories.py), read back word by word."""

import numpy as np
import pytest

from helpers import simulate, stream_put
from tritile.hw.ternary_memories import TernaryMemories
from tritile.sw import AcceleratorConfig
from tritile.sw.ternary_layout import (PACKINGS, TARGET_ACTIVATIONS, TARGET_WEIGHTS_2BIT,
                                      ternary_geometry, ternary_memory_image)

CONFIG = AcceleratorConfig(ternary_lanes=3, ternary_fan_in=3, max_m=4, max_k=9, max_n=6,
                           act_depth=36, trit_depth=54)


def _words(blob, stride, used, count):
    return [int.from_bytes(blob[w * stride:w * stride + used], "little") for w in range(count)]


def _write_and_read(image, extra=()):
    """Write ``image`` ({target: bytes}) and then ``extra`` writes; return both memories."""
    geo = ternary_geometry(CONFIG)
    dut = TernaryMemories(geo)
    read = {}

    async def bench(ctx):
        ctx.set(dut.accept, 1)
        for target, blob in image.items():
            for addr, byte in enumerate(blob):
                await stream_put(ctx, dut.write, {"target": target, "addr": addr, "data": byte})
        for target, addr, byte in extra:
            await stream_put(ctx, dut.write, {"target": target, "addr": addr, "data": byte})
        await ctx.tick()
        assert not ctx.get(dut.holding)
        ctx.set(dut.read_en, 1)
        for name, words in (("act", geo.act_words), ("weight", geo.weight_words)):
            read[name] = []
            for word in range(words):
                ctx.set(getattr(dut, f"{name}_addr"), word)
                await ctx.tick()
                read[name].append(ctx.get(getattr(dut, f"{name}_data")))

    simulate(dut, bench)
    return read


@pytest.mark.parametrize("packing", PACKINGS)
def test_both_packings_store_the_2bit_words(packing, rng):
    geo = ternary_geometry(CONFIG)
    q = rng.integers(-128, 128, (4, 9)).astype(np.int8)
    T = rng.integers(-1, 2, (9, 6)).astype(np.int8)
    read = _write_and_read(ternary_memory_image(CONFIG, q, T, packing))
    two_bit = ternary_memory_image(CONFIG, q, T, "2bit")
    assert read["act"] == _words(two_bit[TARGET_ACTIVATIONS], geo.act_stride,
                                 geo.act_word_bytes, geo.act_words)
    assert read["weight"] == _words(two_bit[TARGET_WEIGHTS_2BIT], geo.weight_stride,
                                    geo.weight_word_bytes, geo.weight_words)


def test_writes_outside_a_memory_or_to_target_3_change_nothing(rng):
    geo = ternary_geometry(CONFIG)
    q = rng.integers(-128, 128, (4, 9)).astype(np.int8)
    T = rng.integers(-1, 2, (9, 6)).astype(np.int8)
    image = ternary_memory_image(CONFIG, q, T, "2bit")
    before = _write_and_read(image)
    stray = [(TARGET_ACTIVATIONS, geo.act_words * geo.act_stride, 0x55),
             (TARGET_ACTIVATIONS, geo.act_word_bytes, 0x55),         # past a word's bytes
             (TARGET_WEIGHTS_2BIT, geo.weight_words * geo.weight_stride, 0x55),
             (TARGET_WEIGHTS_2BIT, geo.weight_word_bytes, 0x55),
             (3, 0, 0x55)]
    assert _write_and_read(image, stray) == before
