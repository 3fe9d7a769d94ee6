"""On-chip decoders of the packed trit formats of docs/numerics.md, without a multiplier.

A decoder turns one packed byte into trits in the form the ternary lanes consume: a
:data:`TRIT_LAYOUT` of ``nonzero`` and ``negative`` flags, so that a lane passes, negates or
zeroes an input with one look-up per bit and never forms ``t * x``.

- 2-bit packing: four trits per byte, code ``t & 0b11`` with the first trit in bits [1:0].
  Code bit 0 is ``nonzero`` and bit 1 ``negative``, so decoding is wiring. The code
  ``0b10``, which no packer writes, is a zero with its sign set: it decodes as 0.
- base-3 packing: five trits per byte. Trit ``i`` is ``(((q * 3**i) & 0xFF) * 3 >> 8) - 1``,
  i.e. the base-3 digits of the fraction ``q / 256``. With ``q_i = q * 3**i mod 256``, the
  top four bits of ``9 * q_i`` (0 to 8) are trits ``i`` and ``i + 1`` plus one, as
  ``3 * (t_i + 1) + t_{i+1} + 1``, and its low byte is ``q_{i+2}``; ``9 * x`` is one 8-bit
  adder, ``x + (x >> 3)`` above bit 3. Trits 0-1 come from ``9 * q``, trits 2-3 from
  ``9 * q_2``, and trit 4 from the top two bits of ``3 * q_4`` (``x + (x >> 1)`` above bit
  1), ``q_4 = (q + (q << 4) + (q << 6)) mod 256`` being formed from ``q`` directly, so no
  path through the decoder crosses more than two byte-wide adders.
  Bytes that no packer writes decode by the same formula.

The ternary unit stores every trit in the 2-bit code (:class:`Trit2BitDecoder` reads its
words by wiring) and turns base-3 bytes into that code once, as they are written:
:class:`TritBase3Decoder` decodes one base-3 byte a cycle and :class:`Base3Transcoder`
emits the 2-bit bytes it completes.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["TRIT_LAYOUT", "Trit2BitDecoder", "TritBase3Decoder", "Base3Transcoder",
           "two_bit_codes", "trit_value"]

#: One decoded trit: ``nonzero`` negated when ``negative``, so (1, 0) is +1, (1, 1) is -1
#: and (0, either) is 0. A lane forms ``~v`` and adds one for a ``negative`` trit whatever
#: ``v`` is (``v = x`` or 0), so a zero may carry either sign and the flags need no gate.
TRIT_LAYOUT = data.StructLayout({"nonzero": 1, "negative": 1})


def trit_value(trit):
    """Return the integer value (-1, 0 or +1) of a decoded trit read from a simulation."""
    return (-1 if trit.negative else 1) if trit.nonzero else 0


class Trit2BitDecoder(wiring.Component):
    """Decode one byte of the 2-bit packing into four trits (combinational).

    Members
    -------
    byte : In(8)
        Packed byte, first trit in bits [1:0].
    trits : Out(data.ArrayLayout(TRIT_LAYOUT, 4))
        The decoded trits, first trit at index 0.
    """

    TRITS = 4

    byte: In(8)
    trits: Out(data.ArrayLayout(TRIT_LAYOUT, 4))

    def elaborate(self, platform):
        m = Module()
        for i in range(self.TRITS):
            code = self.byte[2 * i:2 * i + 2]
            m.d.comb += [
                self.trits[i].nonzero.eq(code[0]),
                self.trits[i].negative.eq(code[1]),
            ]
        return m


class TritBase3Decoder(wiring.Component):
    """Decode one byte of the base-3 packing into five trits (combinational).

    Members
    -------
    byte : In(8)
        Packed byte ``q = (v * 256 + 242) // 243`` of the digits ``v``.
    trits : Out(data.ArrayLayout(TRIT_LAYOUT, 5))
        The decoded trits, first (most significant) trit at index 0.
    """

    TRITS = 5

    byte: In(8)
    trits: Out(data.ArrayLayout(TRIT_LAYOUT, 5))

    def elaborate(self, platform):
        m = Module()
        q = self.byte

        def nine_times(x, name):
            # 9 * x = ((x + (x >> 3)) << 3) | x[0:3]: return bits 8-11 and the low byte.
            upper = Signal(9, name=name)
            m.d.comb += upper.eq(x + x[3:])
            return upper[5:9], Cat(x[0:3], upper[0:5])

        def set_trit(i, is_zero, is_negative):
            m.d.comb += [self.trits[i].nonzero.eq(~is_zero),
                         self.trits[i].negative.eq(is_negative)]

        q2 = None
        for i in (0, 2):
            pair, low = nine_times(q if i == 0 else q2, f"nine_q{i}")
            q2 = low
            # pair = 3 * (t_i + 1) + (t_{i+1} + 1), 0 to 8. A zero trit may carry either
            # sign, so trit i may read as negative for pair < 4 (3 is a zero): two bits.
            set_trit(i, (pair >= 3) & (pair <= 5), ~(pair[3] | pair[2]))
            set_trit(i + 1, (pair == 1) | (pair == 4) | (pair == 7),
                     ~((pair == 2) | (pair == 5) | (pair == 8)))
        q4 = Signal(8)
        m.d.comb += q4.eq(q + (q << 4) + (q << 6))     # 81 * q mod 256, shifts and adds
        tripled = Signal(9)                            # 3 * q4 = tripled << 1 | q4[0]
        m.d.comb += tripled.eq(q4 + q4[1:])
        digit = tripled[7:9]                           # trit 4 plus one
        set_trit(4, digit == 1, ~digit[1])
        return m


def two_bit_codes(trits):
    """Return decoded ``trits`` (TRIT_LAYOUT views) as 2-bit codes, first trit lowest.

    A code is ``nonzero`` in bit 0 and the sign in bit 1, the sign of a zero cleared, so
    the codes are exactly what :func:`tritile.sw.pack_trits_2bit` writes.
    """
    return Cat(*(Cat(trit.nonzero, trit.negative & trit.nonzero) for trit in trits))


class Base3Transcoder(wiring.Component):
    """Turn a run of base-3 bytes, decoded, into 2-bit bytes, one base-3 byte per cycle.

    Base-3 byte ``i`` of a run holds trits ``5i .. 5i+4``; 2-bit byte ``b`` holds trits
    ``4b .. 4b+3``. Byte ``i`` completes 2-bit byte ``B = i + i // 4`` (with the
    ``i % 4`` trits that byte ``i - 1`` left over) and starts ``B + 1`` with its own
    remaining trits, zeros after them; byte ``i + 1`` completes that byte in turn. So a
    run written in order, from its byte 0, leaves every 2-bit byte complete, and the last
    byte of a run needs nothing special.

    Members
    -------
    codes : In(10)
        The five trits of base-3 byte ``i`` as 2-bit codes (:func:`two_bit_codes` of a
        :class:`TritBase3Decoder`'s output).
    phase : In(2)
        ``i % 4``: how many trits of 2-bit byte ``B`` came from byte ``i - 1``.
    chained : In(1)
        The last ``load`` was byte ``i - 1`` of the same run; otherwise the trits it would
        have left over read as 0.
    load : In(1)
        Byte ``i`` is written in this cycle: keep its left-over trits for byte ``i + 1``.
    first, second : Out(8)
        2-bit bytes ``B`` and ``B + 1``.
    held : Out(8)
        The last ``load``'s ``second``: byte ``B + 1`` of the byte before, as written.
    """

    codes: In(10)
    phase: In(2)
    chained: In(1)
    load: In(1)
    first: Out(8)
    second: Out(8)
    held: Out(8)

    def elaborate(self, platform):
        m = Module()
        new = [self.codes[2 * t:2 * t + 2] for t in range(TritBase3Decoder.TRITS)]
        left_over = self.held                  # byte i - 1's `second`
        carried = Mux(self.chained, left_over, 0)
        zero = Const(0, 2)
        with m.Switch(self.phase):
            for phase in range(4):
                with m.Case(phase):
                    codes = [carried[2 * t:2 * t + 2] for t in range(phase)] + new
                    codes += [zero] * (8 - len(codes))
                    m.d.comb += [self.first.eq(Cat(*codes[:4])),
                                 self.second.eq(Cat(*codes[4:8]))]
        with m.If(self.load):
            m.d.sync += left_over.eq(self.second)
        return m
