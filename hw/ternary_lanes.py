"""The ternary unit's lanes: pass, negate or zero P int8 inputs by their trits, then add.

Each of the L lanes takes the same P activations and its own P trits (2-bit codes, lane
``l``'s trit ``j`` at ``l * P + j``). A lane negates by inversion, ``-x = ~x + 1``: the
adder tree adds ``~x`` and feeds the "+1" of each negated input in as a carry-in of one
adder (``a + b + c`` computed as ``((a << 1 | c) + (b << 1 | 1)) >> 1``), so a negation
costs no adder of its own. A tree of P leaves has P - 1 adders and leaves one carry at its
root, which the accumulator behind it takes. Every tree level is registered.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from tritile.sw.arith import ceil_div

from .trit_decoder import Trit2BitDecoder

__all__ = ["TernaryLanes", "add_with_carry"]


def add_with_carry(a, b, carry):
    """Return ``a + b + carry`` (signed) through one adder, ``carry`` entering as bit 0."""
    total = Cat(carry, a).as_signed() + Cat(Const(1, 1), b).as_signed()
    return total[1:].as_signed()


class TernaryLanes(wiring.Component):
    """L lanes of P-input ternary dot products, an adder tree of registered levels each.

    Lane ``l``'s result is ``sum_j t[l, j] * x[j] = sums[l] + carries[l]``, :attr:`latency`
    cycles of ``advance`` after its inputs (``latency = ceil(log2 P)``; 0 for P = 1, whose
    result is combinational).

    Parameters
    ----------
    lanes, fan_in : int
        L and P.

    Members
    -------
    activations : In(8 * P)
        The P int8 inputs, input ``j`` in bits ``8j .. 8j + 7``.
    codes : In(8 * ceil(L * P / 4))
        The weight word in the 2-bit code (bits past ``2 L P`` are ignored).
    advance : In(1)
        Move every tree level one step; the pipeline holds otherwise.
    sums : Out(data.ArrayLayout(signed(8 + latency), L))
        Each lane's tree root.
    carries : Out(L)
        Each lane's carry still to be added to its root.
    """

    def __init__(self, lanes, fan_in):
        for name, value in (("lanes", lanes), ("fan_in", fan_in)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        self.lanes, self.fan_in = lanes, fan_in
        self.latency = (fan_in - 1).bit_length()
        super().__init__({
            "activations": In(8 * fan_in),
            "codes": In(8 * ceil_div(lanes * fan_in, Trit2BitDecoder.TRITS)),
            "advance": In(1),
            "sums": Out(data.ArrayLayout(signed(8 + self.latency), lanes)),
            "carries": Out(lanes),
        })

    def elaborate(self, platform):
        m = Module()
        trits = []
        for i in range(len(self.codes) // 8):
            m.submodules[f"decode_{i}"] = decoder = Trit2BitDecoder()
            m.d.comb += decoder.byte.eq(self.codes[8 * i:8 * i + 8])
            trits.extend(decoder.trits[j] for j in range(Trit2BitDecoder.TRITS))
        nonzero = Cat(*(trit.nonzero for trit in trits))
        negative = Cat(*(trit.negative for trit in trits))
        for lane in range(self.lanes):
            nodes = []
            for j in range(self.fan_in):
                x = self.activations[8 * j:8 * j + 8]
                trit = lane * self.fan_in + j
                term = Signal(signed(8), name=f"term_l{lane}_{j}")
                # ~v stands for -v - 1; the missing 1 rides as a carry (see module doc).
                # A zero with its sign set is ~0 + 1 = 0, so the sign needs no gate.
                passed = Mux(nonzero[trit], x, 0)
                m.d.comb += term.eq(Mux(negative[trit], ~passed, passed))
                nodes.append((term, [negative[trit]]))
            root, carries = self._tree(m, lane, nodes)
            m.d.comb += [self.sums[lane].eq(root), self.carries[lane].eq(carries[0])]
        return m

    def _tree(self, m, lane, nodes):
        """Add ``nodes`` ((value, carries) pairs) pairwise, a register per level."""
        level = 0
        while len(nodes) > 1:
            level += 1
            merged = []
            for i in range(0, len(nodes), 2):
                pair = nodes[i:i + 2]
                carries = [c for _, cs in pair for c in cs]
                if len(pair) == 2:
                    value = add_with_carry(pair[0][0], pair[1][0], carries[0])
                    carries = carries[1:]
                else:
                    value = pair[0][0]
                reg = Signal(signed(len(value)), name=f"sum_l{lane}_v{level}_{i // 2}",
                             reset_less=True)
                regs = [Signal(name=f"carry_l{lane}_v{level}_{i // 2}_{c}", reset_less=True)
                        for c in range(len(carries))]
                with m.If(self.advance):
                    m.d.sync += reg.eq(value)
                    m.d.sync += [r.eq(c) for r, c in zip(regs, carries)]
                merged.append((reg, regs))
            nodes = merged
        return nodes[0]
