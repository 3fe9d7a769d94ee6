"""The trit decoders against tritile.sw.packing, for every byte value, in Amaranth's simulator."""

import numpy as np
from amaranth.sim import Simulator

from tritile.hw.trit_decoder import Trit2BitDecoder, TritBase3Decoder, trit_value
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
    # Bytes no packer writes still decode by DESIGN.md's multiply-by-3-and-shift rule.
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
