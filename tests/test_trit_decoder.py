"""The trit decoders against tritile.sw.packing, for every byte value, in Amaranth's simulator."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from tritile.hw.trit_decoder import (Base3Transcoder, Trit2BitDecoder, TritBase3Decoder,
                                     trit_value)
from tritile.sw import pack_trits_base3, unpack_trits_2bit, unpack_trits_base3


def _decode_all(decoder):
    """Return ``{byte: [trits]}`` of the decoder for every byte value."""
    table = {}

    async def bench(ctx):
        for byte in range(256):
            ctx.set(decoder.byte, byte)
            await ctx.delay(1e-9)
            table[byte] = [trit_value(t) for t in ctx.get(decoder.trits)]

    sim = Simulator(decoder)
    sim.add_testbench(bench)
    sim.run()
    return table


def _golden(unpack, byte, count):
    try:
        return [int(t) for t in unpack(bytes([byte]), count)]
    except ValueError:
        return None                      # a byte that no packer writes


def test_2bit_decoder_matches_unpack_for_every_byte():
    table = _decode_all(Trit2BitDecoder())
    valid = 0
    for byte, trits in table.items():
        golden = _golden(unpack_trits_2bit, byte, 4)
        if golden is not None:
            valid += 1
            assert trits == golden, f"byte 0x{byte:02x}"
    assert valid == 3 ** 4


def test_2bit_decoder_reads_the_invalid_code_as_zero():
    table = _decode_all(Trit2BitDecoder())
    for byte, trits in table.items():
        codes = [(byte >> (2 * i)) & 0b11 for i in range(4)]
        for code, trit in zip(codes, trits):
            assert trit == {0b00: 0, 0b01: 1, 0b11: -1, 0b10: 0}[code], f"byte 0x{byte:02x}"


def test_base3_decoder_matches_unpack_for_every_byte():
    table = _decode_all(TritBase3Decoder())
    valid = 0
    for byte, trits in table.items():
        golden = _golden(unpack_trits_base3, byte, 5)
        if golden is not None:
            valid += 1
            assert trits == golden, f"byte 0x{byte:02x}"
    assert valid == 3 ** 5


def test_base3_decoder_applies_the_design_formula_to_invalid_bytes():
    # Bytes no packer writes still decode by the multiply-by-3-and-shift rule of
    # docs/numerics.md.
    table = _decode_all(TritBase3Decoder())
    invalid = [b for b in range(256) if _golden(unpack_trits_base3, b, 5) is None]
    assert len(invalid) == 256 - 3 ** 5
    for byte in invalid:
        expected = [((((byte * 3 ** i) & 0xFF) * 3) >> 8) - 1 for i in range(5)]
        assert table[byte] == expected, f"byte 0x{byte:02x}"


def test_base3_stream_round_trips_through_the_decoder():
    rng = np.random.default_rng(0)
    T = rng.integers(-1, 2, size=5 * 40, dtype=np.int8)
    table = _decode_all(TritBase3Decoder())
    decoded = [t for byte in pack_trits_base3(T) for t in table[byte]]
    assert decoded == T.tolist()


def _transcode(runs):
    """Feed base-3 byte writes ``[(byte index, byte)]``, decoded, to a Base3Transcoder in
    order, as the unit does; return the 2-bit bytes it writes, ``{2-bit index: byte}``."""
    dut = Base3Transcoder()
    written = {}

    async def bench(ctx):
        expected = None                       # the index that continues the run
        for index, byte in runs:
            trits = unpack_trits_base3(bytes([byte]), 5).astype(np.int64)
            ctx.set(dut.codes, sum((int(t) & 0b11) << (2 * j) for j, t in enumerate(trits)))
            ctx.set(dut.phase, index % 4)
            ctx.set(dut.chained, index == expected)
            ctx.set(dut.load, 1)
            await ctx.delay(1e-9)
            first = index + index // 4
            written[first] = ctx.get(dut.first)
            written[first + 1] = ctx.get(dut.second)
            await ctx.tick()
            assert ctx.get(dut.held) == written[first + 1]    # what byte i + 1 carries
            expected = index + 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return written


@pytest.mark.parametrize("trits", [1, 4, 5, 8, 13, 20, 21, 64, 127, 128])
def test_base3_run_written_in_order_becomes_its_2bit_packing(trits, rng):
    T = rng.integers(-1, 2, size=trits, dtype=np.int8)
    padded = np.zeros(-(-trits // 20) * 20, np.int8)
    padded[:trits] = T
    written = _transcode(list(enumerate(pack_trits_base3(padded[:-(-trits // 5) * 5]))))
    two_bit = bytes(written[b] for b in range(-(-trits // 4)))
    assert unpack_trits_2bit(two_bit, trits).tolist() == T.tolist()


def test_base3_byte_out_of_order_reads_the_missing_trits_as_zero():
    T = np.array([1, -1, 1, -1, 1, -1, 1, -1, 1, -1], np.int8)   # bytes 0 and 1
    packed = pack_trits_base3(T)
    written = _transcode([(1, packed[1])])            # byte 1 without byte 0 before it
    # 2-bit byte 1 holds trits 4-7: trit 4 came from byte 0, so it reads 0.
    assert unpack_trits_2bit(bytes([written[1]]), 4).tolist() == [0, -1, 1, -1]
