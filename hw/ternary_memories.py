"""The ternary unit's two memories and their write path.

The activation memory holds words of P int8 activations, the weight memory words of
L x P trits in the 2-bit code, whatever their packing on the link: base-3 bytes are
transcoded as they are written. Both are read one word a cycle through synchronous read
ports (block RAM). The layout of both is :mod:`tritile.sw.ternary_layout`'s.

A write is registered, with its byte decoded as base-3, before it reaches a memory:
decoding and placing a base-3 byte in one cycle was the unit's longest path. ``holding``
says the register is full, so the unit can keep a problem from reading before every write
has landed.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from tritile.sw.ternary_layout import (TARGET_ACTIVATIONS, TARGET_WEIGHTS_2BIT,
                                      TARGET_WEIGHTS_BASE3)

from .requantizer import WRITE_LAYOUT
from .trit_decoder import Base3Transcoder, TritBase3Decoder, two_bit_codes

__all__ = ["TernaryMemories"]


def _word_and_byte(write, depth, stride):
    """Split a write's address into (word, byte within the word, word in range)."""
    byte_bits = (stride - 1).bit_length()
    word, byte = write.addr[byte_bits:], write.addr[:byte_bits]
    return word, byte, word < depth


class TernaryMemories(wiring.Component):
    """Activation and weight memories of the ternary unit, written byte by byte.

    Parameters
    ----------
    geometry : TernaryGeometry
        Word sizes, strides and depths (:func:`tritile.sw.ternary_layout.ternary_geometry`).

    Members
    -------
    write : In(stream.Signature(WRITE_LAYOUT))
        Byte writes: target 0 activations, 1 weights in the 2-bit packing, 2 weights in
        base-3 (a word's base-3 bytes in order from its first). Addresses outside a
        memory, and target 3, are dropped. Ready while ``accept``.
    accept : In(1)
        Take writes.
    holding : Out(1)
        A taken write has not reached its memory yet (it does in the next cycle).
    act_addr, weight_addr : In(range(words))
        Words to read; the data follows one cycle after a cycle with ``read_en``.
    read_en : In(1)
        Read both words at their addresses (the data holds otherwise).
    act_data : Out(8 * act_word_bytes)
        The activation word, byte ``j`` the ``j``-th input.
    weight_data : Out(8 * weight_word_bytes)
        The weight word in the 2-bit code, trit ``l * P + j`` in bits ``2t .. 2t + 1``.
    """

    def __init__(self, geometry):
        self.geometry = geometry
        super().__init__({
            "write": In(stream.Signature(WRITE_LAYOUT)),
            "accept": In(1),
            "holding": Out(1),
            "act_addr": In(range(geometry.act_words)),
            "weight_addr": In(range(geometry.weight_words)),
            "read_en": In(1),
            "act_data": Out(8 * geometry.act_word_bytes),
            "weight_data": Out(8 * geometry.weight_word_bytes),
        })

    def elaborate(self, platform):
        m = Module()
        geo = self.geometry
        m.submodules.act_mem = act_mem = Memory(
            shape=unsigned(8 * geo.act_word_bytes), depth=geo.act_words, init=[])
        m.submodules.weight_mem = weight_mem = Memory(
            shape=unsigned(8 * geo.weight_word_bytes), depth=geo.weight_words, init=[])

        request = Signal(WRITE_LAYOUT)
        m.d.comb += [self.write.ready.eq(self.accept)]
        m.submodules.decode_base3 = decoder = TritBase3Decoder()
        base3_codes = Signal(2 * TritBase3Decoder.TRITS)
        m.d.comb += decoder.byte.eq(self.write.payload.data)
        m.d.sync += [request.eq(self.write.payload),
                     self.holding.eq(self.write.valid & self.write.ready),
                     base3_codes.eq(two_bit_codes(decoder.trits))]
        self._activation_writes(m, act_mem, request)
        self._weight_writes(m, weight_mem, self.write.payload, request, base3_codes)

        act_read = act_mem.read_port()
        weight_read = weight_mem.read_port()
        m.d.comb += [
            act_read.addr.eq(self.act_addr), act_read.en.eq(self.read_en),
            weight_read.addr.eq(self.weight_addr), weight_read.en.eq(self.read_en),
            self.act_data.eq(act_read.data), self.weight_data.eq(weight_read.data),
        ]
        return m

    def _activation_writes(self, m, act_mem, write):
        """Write the registered request's byte into its activation word."""
        geo = self.geometry
        port = act_mem.write_port(granularity=8)
        word, byte, in_range = _word_and_byte(write, act_mem.depth, geo.act_stride)
        hit = (self.holding & (write.target == TARGET_ACTIVATIONS) & in_range
               & (byte < geo.act_word_bytes))
        m.d.comb += [port.addr.eq(word),
                     port.data.eq(Cat(*([write.data] * geo.act_word_bytes)))]
        for i in range(geo.act_word_bytes):
            m.d.comb += port.en[i].eq(hit & (byte == i))

    def _weight_writes(self, m, weight_mem, incoming, write, base3_codes):
        """Write 2-bit bytes as they come; transcode base-3 bytes into two 2-bit bytes.

        Base-3 byte ``i`` of a word writes 2-bit bytes ``B = i + i // 4`` and ``B + 1``
        (:class:`~tritile.hw.trit_decoder.Base3Transcoder`); the bytes of a word written in
        order, as the host writes them, leave every trit in place. Which bytes a write
        would enable is decided from the ``incoming`` payload and registered with it; the
        rest works on the registered request ``write``, present while ``holding``.
        """
        geo = self.geometry
        requested = self.holding
        port = weight_mem.write_port(granularity=8)
        _, in_byte, in_range = _word_and_byte(incoming, weight_mem.depth, geo.weight_stride)
        in_two_bit = in_range & (incoming.target == TARGET_WEIGHTS_2BIT) & (
            in_byte < geo.word_bytes("2bit"))
        in_base3 = in_range & (incoming.target == TARGET_WEIGHTS_BASE3) & (
            in_byte < geo.word_bytes("base3"))
        in_first = in_byte + in_byte[2:]
        enables = Signal(geo.weight_word_bytes)
        is_base3 = Signal()                        # the request is a base-3 byte
        odd_first = Signal()                       # ... whose 2-bit byte B is odd
        m.d.sync += [
            enables.eq(Cat(*((in_two_bit & (in_byte == i))
                             | (in_base3 & ((in_first == i) | (in_first + 1 == i)))
                             for i in range(geo.weight_word_bytes)))),
            is_base3.eq(in_base3), odd_first.eq(in_first[0]),
        ]
        base3 = requested & is_base3               # a base-3 byte is being written

        word, byte, _ = _word_and_byte(write, weight_mem.depth, geo.weight_stride)
        m.submodules.transcode = transcode = Base3Transcoder()
        next_word = Signal.like(word)              # where an in-order run continues
        next_byte = Signal(len(byte) + 1)
        with m.If(base3):
            m.d.sync += [next_word.eq(word), next_byte.eq(byte + 1)]
        m.d.comb += [
            transcode.codes.eq(base3_codes),
            transcode.phase.eq(byte[:2]),
            transcode.chained.eq((word == next_word) & (byte == next_byte)),
            transcode.load.eq(base3),
        ]
        # Byte positions alternate between the transcoder's two bytes, B even or odd.
        even = Mux(odd_first, transcode.second, transcode.first)
        odd = Mux(odd_first, transcode.first, transcode.second)
        m.d.comb += [
            port.addr.eq(word),
            port.data.eq(Cat(*(Mux(base3, odd if i % 2 else even, write.data)
                               for i in range(geo.weight_word_bytes)))),
            port.en.eq(Mux(requested, enables, 0)),
        ]
