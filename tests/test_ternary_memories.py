"""The ternary unit's memories and write path (hw/ternary_memories.py), read back word by word."""

import numpy as np
import pytest

from helpers import simulate, stream_put
from tritile.hw.ternary_memories import TernaryMemories
from tritile.sw import AcceleratorConfig, pack_trits_2bit, pack_trits_base3
from tritile.sw.ternary_layout import (PACKINGS, TARGET_ACTIVATIONS, TARGET_WEIGHTS_2BIT,
                                      TARGET_WEIGHTS_BASE3, ternary_geometry,
                                      ternary_memory_image)


def _config(lanes, fan_in):
    return AcceleratorConfig(ternary_lanes=lanes, ternary_fan_in=fan_in, max_m=4, max_k=9,
                             max_n=6, act_depth=36, trit_depth=54)


CONFIG = _config(3, 3)
#: Both memories with one port, as on iCE40's SPRAM (hw/engine_memory.py).
SINGLE_PORT = frozenset({"ternary_act", "ternary_weights"})


def _words(blob, stride, used, count):
    return [int.from_bytes(blob[w * stride:w * stride + used], "little") for w in range(count)]


def _write_and_read(config, *batches, single_port=frozenset()):
    """Write each batch of ``(target, addr, byte)`` and read both memories after each.

    Reads are enabled throughout, as the unit's are while it is idle.
    """
    geo = ternary_geometry(config)
    dut = TernaryMemories(geo, single_port)
    reads = []

    async def bench(ctx):
        ctx.set(dut.accept, 1)
        ctx.set(dut.read_en, 1)
        for batch in batches:
            for target, addr, byte in batch:
                await stream_put(ctx, dut.write, {"target": target, "addr": addr, "data": byte})
            await ctx.tick().until(~dut.holding)
            read = {}
            for name, words in (("act", geo.act_words), ("weight", geo.weight_words)):
                read[name] = []
                for word in range(words):
                    ctx.set(getattr(dut, f"{name}_addr"), word)
                    await ctx.tick()
                    read[name].append(ctx.get(getattr(dut, f"{name}_data")))
            reads.append(read)

    simulate(dut, bench)
    return reads


def _writes(image):
    return [(target, addr, byte) for target, blob in image.items()
            for addr, byte in enumerate(blob)]


@pytest.mark.parametrize("lanes, fan_in", [(3, 3), (4, 8), (1, 4), (1, 1)])
@pytest.mark.parametrize("packing", PACKINGS)
def test_both_packings_store_the_2bit_words(lanes, fan_in, packing, rng):
    config = _config(lanes, fan_in)
    geo = ternary_geometry(config)
    q = rng.integers(-128, 128, (4, 9)).astype(np.int8)
    T = rng.integers(-1, 2, (9, 6)).astype(np.int8)
    read, = _write_and_read(config, _writes(ternary_memory_image(config, q, T, packing)))
    two_bit = ternary_memory_image(config, q, T, "2bit")
    assert read["act"] == _words(two_bit[TARGET_ACTIVATIONS], geo.act_stride,
                                 geo.act_word_bytes, geo.act_words)
    words = len(two_bit[TARGET_WEIGHTS_2BIT]) // geo.weight_stride
    assert read["weight"][:words] == _words(two_bit[TARGET_WEIGHTS_2BIT], geo.weight_stride,
                                            geo.weight_word_bytes, words)


def test_writes_outside_a_memory_or_to_target_3_change_nothing(rng):
    geo = ternary_geometry(CONFIG)
    space = geo.weight_words * geo.weight_stride           # 2-bit bytes
    # The first base-3 byte b whose trit 0 (2-bit byte b + b // 4) lies past the memory.
    past = min(b for b in range(space) if b + b // 4 >= space)
    q = rng.integers(-128, 128, (4, 9)).astype(np.int8)
    T = rng.integers(-1, 2, (9, 6)).astype(np.int8)
    stray = [(TARGET_ACTIVATIONS, geo.act_words * geo.act_stride, 0x55),
             (TARGET_ACTIVATIONS, geo.act_word_bytes, 0x55),         # past a word's bytes
             (TARGET_WEIGHTS_2BIT, geo.weight_words * geo.weight_stride, 0x55),
             (TARGET_WEIGHTS_2BIT, geo.weight_word_bytes, 0x55),
             (TARGET_WEIGHTS_BASE3, past, 0x55),
             (TARGET_WEIGHTS_BASE3, geo.weight_words * geo.weight_stride, 0x55),
             (TARGET_WEIGHTS_BASE3, 1 << 23, 0x55),
             (3, 0, 0x55)]
    before, after = _write_and_read(
        CONFIG, _writes(ternary_memory_image(CONFIG, q, T, "2bit")), stray)
    assert after == before


def _stream_model(trits, stride, b0, stream):
    """Return the 2-bit trit space ``trits`` after base-3 bytes ``b0, b0 + 1, ...`` holding
    ``stream`` are written, as docs/numerics.md defines it."""
    new = trits.copy()
    start, end = 5 * b0, 5 * b0 + stream.size
    new[start:end] = stream
    new[start // 4 * 4:start] = 0                   # read as 0 before a stream's first
    if end % 4:
        tail = end // 4                             # the 2-bit byte holding the end
        if tail % stride:
            new[end:4 * tail + 4] = 0               # zeros after the stream's last trit
        else:                                       # ... unless it begins the next word
            new[4 * tail:4 * tail + 4] = trits[4 * tail:4 * tail + 4]
    return new[:trits.size]


@pytest.mark.parametrize("single_port", [frozenset(), SINGLE_PORT])
@pytest.mark.parametrize("lanes, fan_in", [(4, 8), (3, 3), (1, 4)])
def test_a_base3_stream_may_start_and_end_at_any_byte(lanes, fan_in, single_port, rng):
    # Over a random 2-bit image: streams of random lengths at random addresses, each a
    # new stream or going on from the last, with activation writes between them.
    config = _config(lanes, fan_in)
    geo = ternary_geometry(config)
    stride, used = geo.weight_stride, geo.weight_word_bytes
    space = 4 * stride * geo.weight_words
    trits = rng.integers(-1, 2, space).astype(np.int8)
    trits.reshape(-1, 4 * stride)[:, 4 * used:] = 0            # bytes no word has
    batches, expected = [[(TARGET_WEIGHTS_2BIT, a, byte) for a, byte
                          in enumerate(pack_trits_2bit(trits))]], [trits]
    start = None                  # the stream's first byte, the trits before it, its trits
    for _ in range(6):
        count = int(rng.integers(1, 12))
        stream = rng.integers(-1, 2, 5 * count).astype(np.int8)
        follows = None if start is None else start[0] + start[2].size // 5
        b0 = follows
        if b0 is None or rng.random() < 0.5 or 5 * (b0 + count) + 4 > space:
            b0 = int(rng.integers(0, (space - 4) // 5 - count))  # a new stream, unless
        if b0 == follows:                                        # ... it follows the last
            start = (start[0], start[1], np.concatenate([start[2], stream]))
        else:
            start = (b0, expected[-1], stream)
        writes = [(TARGET_WEIGHTS_BASE3, b0 + i, byte)
                  for i, byte in enumerate(pack_trits_base3(stream))]
        writes.insert(int(rng.integers(0, len(writes) + 1)), (TARGET_ACTIVATIONS, 0, 7))
        batches.append(writes)
        model = _stream_model(start[1], stride, start[0], start[2])
        model.reshape(-1, 4 * stride)[:, 4 * used:] = 0
        expected.append(model)
    reads = _write_and_read(config, *batches, single_port=single_port)
    for read, model in zip(reads, expected):
        assert read["weight"] == _words(pack_trits_2bit(model), stride, used,
                                        geo.weight_words)
