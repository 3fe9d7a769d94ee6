"""On-chip decoders of the packed trit formats of DESIGN.md, without a multiplier.

A decoder turns one packed byte into trits in the form the ternary lanes consume: a
:data:`TRIT_LAYOUT` of ``nonzero`` and ``negative`` flags, so that a lane passes, negates or
zeroes an input with one look-up per bit and never forms ``t * x``.

- 2-bit packing: four trits per byte, code ``t & 0b11`` with the first trit in bits [1:0].
  Code bit 0 is the magnitude and bit 1 the sign, so decoding is wiring. The code ``0b10``,
  which no packer writes, decodes as 0.
- base-3 packing: five trits per byte. Trit ``i`` is ``(((q * 3**i) & 0xFF) * 3 >> 8) - 1``;
  each ``* 3`` is written as ``(x << 1) + x`` (and ``* 9`` as ``(x << 3) + x``); the adder
  that triples ``q_i = q * 3**i mod 256`` gives the trit in its bits [9:8] and ``q_{i+1}``
  in its low byte.
  Bytes that no packer writes decode by the same formula.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["TRIT_LAYOUT", "Trit2BitDecoder", "TritBase3Decoder", "trit_value"]

#: One decoded trit: ``nonzero`` = 1 for +1 and -1, ``negative`` = 1 for -1.
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
                # 0b10 is not a trit code; gating the sign keeps it a plain zero.
                self.trits[i].negative.eq(code[0] & code[1]),
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

        def times(value, factor, name):
            # x * 3 = (x << 1) + x and x * 9 = (x << 3) + x: shifts and adds, no multiplier.
            shift = {3: 1, 9: 3}[factor]
            result = Signal(len(value) + shift + 1, name=name)
            m.d.comb += result.eq((value << shift) + value)
            return result

        # q_i = q * 3**i mod 256. Deriving q_2 and q_4 by * 9 keeps the longest chain at
        # three adders (q -> q_2 -> q_3 or q_4 -> trit) instead of five.
        q = [self.byte, None, times(self.byte, 9, "q2")[:8], None, None]
        q[4] = times(q[2], 9, "q4")[:8]
        for i in (0, 1, 2, 3, 4):
            tripled = times(q[i], 3, f"tripled{i}")
            if i in (0, 2):
                q[i + 1] = tripled[:8]
            digit = tripled[8:10]                       # trit + 1, in {0, 1, 2}
            m.d.comb += [
                self.trits[i].nonzero.eq(digit != 1),
                self.trits[i].negative.eq(digit == 0),
            ]
        return m
