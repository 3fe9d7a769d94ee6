"""The ternary unit's two memories and their write path.

The activation memory holds words of P int8 activations, the weight memory words of
L x P trits in the 2-bit code, whatever their packing on the link: base-3 bytes are
transcoded as they are written. Both are read one word a cycle through synchronous read
ports: block RAM, or the iCE40's SPRAMs where
:func:`~tritile.hw.engine_memory.single_port_memories` says (a write cycle then does not
read). The layout of both is :mod:`tritile.sw.ternary_layout`'s.

A write is registered, with its byte decoded as base-3, before it reaches a memory:
decoding and placing a base-3 byte in one cycle was the unit's longest path. ``holding``
says the register is full, so the unit can keep a problem from reading before every write
has landed.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from tritile.sw.ternary_layout import (TARGET_ACTIVATIONS, TARGET_WEIGHTS_2BIT,
                                      TARGET_WEIGHTS_BASE3)

from .constant_compare import exceeds
from .engine_memory import EngineMemory
from .requantizer import WRITE_LAYOUT
from .trit_decoder import Base3Transcoder, TritBase3Decoder, two_bit_codes

__all__ = ["TernaryMemories"]


def _first_past(space):
    """Return the first base-3 byte ``b`` whose 2-bit byte ``A = b + b // 4`` is at least
    ``space`` (the 2-bit bytes of the weight memory)."""
    b = max(0, 4 * space // 5 - 4)
    while b + b // 4 < space:
        b += 1
    return b


def _word_and_byte(write, depth, stride):
    """Split a write's address into (word, byte within the word, word in range)."""
    byte_bits = (stride - 1).bit_length()
    word, byte = write.addr[byte_bits:], write.addr[:byte_bits]
    return word, byte, ~exceeds(word, depth - 1)


class TernaryMemories(wiring.Component):
    """Activation and weight memories of the ternary unit, written byte by byte.

    Parameters
    ----------
    geometry : TernaryGeometry
        Word sizes, strides and depths (:func:`tritile.sw.ternary_layout.ternary_geometry`).
    single_port : set of str
        ``ternary_act`` and/or ``ternary_weights``: the memories with one port
        (:func:`tritile.hw.engine_memory.single_port_memories`); none by default.
    program_mode : bool
        Results are placed into the activation memory while the unit reads it, so a
        two-port activation memory keeps the read-during-write promise (the old word).
        Otherwise neither memory is written while the unit reads, and neither makes it:
        on iCE40 the promise costs a register and a multiplexer per bit of the word.

    Members
    -------
    write : In(stream.Signature(WRITE_LAYOUT))
        Byte writes: target 0 activations, 1 weights in the 2-bit packing, 2 weights in
        base-3, one stream across words (see :meth:`_weight_writes`): a base-3 byte at
        the address after the last base-3 byte's continues its stream, any other starts
        one (the trits its first 2-bit byte holds before its own read as 0). Addresses
        outside a memory, and target 3, are dropped. Ready while ``accept``, but for the
        cycle after a base-3 byte that completes a byte of the next word.
    accept : In(1)
        Take writes.
    holding : Out(1)
        A taken write has not reached its memory yet.
    act_addr, weight_addr : In(range(words))
        Words to read; the data follows one cycle after a cycle with ``read_en``.
    read_en : In(1)
        Read both words at their addresses (the data holds otherwise).
    act_data : Out(8 * act_word_bytes)
        The activation word, byte ``j`` the ``j``-th input.
    weight_data : Out(8 * weight_word_bytes)
        The weight word in the 2-bit code, trit ``l * P + j`` in bits ``2t .. 2t + 1``.
    """

    def __init__(self, geometry, single_port=frozenset(), program_mode=False):
        self.geometry = geometry
        self.single_port = single_port
        self.program_mode = program_mode
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
        m.submodules.act_mem = act_mem = EngineMemory(
            8 * geo.act_word_bytes, geo.act_words,
            single_port="ternary_act" in self.single_port,
            read_during_write=self.program_mode)
        # Weights are written only while the unit is idle, when reads go unused.
        m.submodules.weight_mem = weight_mem = EngineMemory(
            8 * geo.weight_word_bytes, geo.weight_words,
            single_port="ternary_weights" in self.single_port, read_during_write=False)

        request = Signal(WRITE_LAYOUT)
        m.submodules.decode_base3 = decoder = TritBase3Decoder()
        base3_codes = Signal(2 * TritBase3Decoder.TRITS)
        m.d.comb += decoder.byte.eq(self.write.payload.data)
        requested = Signal()                       # `request` is to be written
        m.d.sync += [request.eq(self.write.payload),
                     requested.eq(self.write.valid & self.write.ready),
                     base3_codes.eq(two_bit_codes(decoder.trits))]
        self._activation_writes(m, act_mem, self.write.payload, request, requested)
        self._weight_writes(m, weight_mem, self.write.payload, request, requested,
                            base3_codes)

        m.d.comb += [
            act_mem.read_addr.eq(self.act_addr), act_mem.read_en.eq(self.read_en),
            weight_mem.read_addr.eq(self.weight_addr), weight_mem.read_en.eq(self.read_en),
            self.act_data.eq(act_mem.read_data), self.weight_data.eq(weight_mem.read_data),
        ]
        return m

    def _activation_writes(self, m, act_mem, incoming, write, requested):
        """Write the registered request's byte into its activation word.

        Whether the ``incoming`` payload hits the memory is decided before the register,
        so the register keeps no more address bits than a word's.
        """
        geo = self.geometry
        _, in_byte, in_range = _word_and_byte(incoming, act_mem.depth, geo.act_stride)
        hit = Signal()
        m.d.sync += hit.eq((incoming.target == TARGET_ACTIVATIONS) & in_range
                           & (in_byte < geo.act_word_bytes))
        word, byte, _ = _word_and_byte(write, act_mem.depth, geo.act_stride)
        m.d.comb += [act_mem.write_addr.eq(word),
                     act_mem.write_data.eq(Cat(*([write.data] * geo.act_word_bytes)))]
        for i in range(geo.act_word_bytes):
            m.d.comb += act_mem.write_en[i].eq(requested & hit & (byte == i))

    def _weight_writes(self, m, weight_mem, incoming, write, requested, base3_codes):
        """Write 2-bit bytes as they come; transcode base-3 bytes into 2-bit bytes.

        The base-3 target is the 2-bit target's trits re-encoded five to a byte: base-3
        byte ``b`` holds the trits at positions ``5b .. 5b + 4``, position ``4A + i`` being
        trit ``i`` of 2-bit byte address ``A`` (word ``A // stride``, byte ``A % stride``),
        so a stream runs on across words. Byte ``b`` completes 2-bit byte
        ``A = b + b // 4`` and starts ``A + 1``
        (:class:`~tritile.hw.trit_decoder.Base3Transcoder`); the next byte of the stream
        completes ``A + 1``. Which bytes a write enables, and in which word, is decided
        from the ``incoming`` payload and registered with it; the rest works on the
        registered request ``write``, present while ``requested``.

        When ``A`` is the last byte of its word, ``A + 1`` lies in the next word. A byte of
        phase 3 (``b % 4 == 3``) completes it, so the write path takes one more cycle to
        write it there, taking no write meanwhile; a byte of another phase leaves it to
        the next byte of the stream, whose ``A`` it is.
        """
        geo = self.geometry
        depth, stride, word_bytes = weight_mem.depth, geo.weight_stride, geo.weight_word_bytes
        byte_bits = (stride - 1).bit_length()
        _, in_byte, in_range = _word_and_byte(incoming, depth, stride)
        in_two_bit = in_range & (incoming.target == TARGET_WEIGHTS_2BIT) & (
            in_byte < word_bytes)

        # A base-3 address needs no more bits than the 2-bit space it covers.
        addr_bits = (depth * stride - 1).bit_length()
        b3_addr = incoming.addr[:addr_bits]
        first = Signal(addr_bits + 1)              # 2-bit address A of the byte's trit 0
        m.d.comb += first.eq(b3_addr + b3_addr[2:])
        first_byte, first_word = first[:byte_bits], first[byte_bits:]
        second_byte = Signal(byte_bits + 1)        # = stride: A + 1 is in the next word
        m.d.comb += second_byte.eq(first_byte + 1)
        is_base3_target = incoming.target == TARGET_WEIGHTS_BASE3
        # A grows with b, so "A's word is in the memory" is "b is below the first byte
        # whose A lies past it": a compare with a constant, no adder before the enables.
        in_base3 = is_base3_target & ~exceeds(incoming.addr, _first_past(depth * stride) - 1)
        taken = self.write.valid & self.write.ready

        next_addr = Signal(addr_bits + 1)          # where the stream goes on
        in_chained = b3_addr == next_addr
        # A byte that completes a byte of the next word takes a second cycle to write it:
        # `straddled` while its request writes its own word (no write is taken), then
        # `flush` writes the next word's byte 0.
        straddled = Signal()
        flush = Signal()
        m.d.comb += self.write.ready.eq(self.accept & ~straddled)
        m.d.sync += [straddled.eq(0), flush.eq(straddled)]
        with m.If(taken & in_base3):
            m.d.sync += [next_addr.eq(b3_addr + 1),
                         straddled.eq((b3_addr[:2] == 3) & second_byte[byte_bits]
                                      & (first_word != depth - 1))]

        enables = Signal(word_bytes)
        is_base3 = Signal()                        # the request is a base-3 byte
        odd_first = Signal()                       # ... whose 2-bit byte A is odd
        phase = Signal(2)
        chained = Signal()
        word = Signal(range(depth))                # held for the flush after it
        with m.If(taken):
            m.d.sync += word.eq(Mux(is_base3_target, first_word, incoming.addr[byte_bits:]))
        m.d.sync += [
            enables.eq(Cat(*((in_two_bit & (in_byte == i))
                             | (in_base3 & ((first_byte == i) | (second_byte == i)))
                             for i in range(word_bytes)))),
            is_base3.eq(in_base3), odd_first.eq(first_byte[0] if byte_bits else 0),
            phase.eq(b3_addr[:2]), chained.eq(in_chained),
        ]
        base3 = requested & is_base3               # a base-3 byte is being written

        m.submodules.transcode = transcode = Base3Transcoder()
        m.d.comb += [
            transcode.codes.eq(base3_codes),
            transcode.phase.eq(phase),
            transcode.chained.eq(chained),
            transcode.load.eq(base3),
        ]
        # Byte positions alternate between the transcoder's two bytes, A even or odd.
        even = Mux(odd_first, transcode.second, transcode.first)
        odd = Mux(odd_first, transcode.first, transcode.second)
        data = [Mux(base3, odd if i % 2 else even, write.data) for i in range(word_bytes)]
        data[0] = Mux(flush, transcode.held, data[0])
        m.d.comb += [
            weight_mem.write_addr.eq(Mux(flush, word + 1, word)),
            weight_mem.write_data.eq(Cat(*data)),
            weight_mem.write_en.eq(Mux(requested, enables, Cat(flush))),
            self.holding.eq(requested | flush),
        ]
