"""Two signed 8 x 8 products per multiplier block.

yosys maps each 8 x 8 multiply to a whole SB_MAC16 on iCE40, so an iCE40UP5K's 8 DSPs
would give 8 int8 MACs per cycle. An SB_MAC16 in 8 x 8 mode holds two independent signed
8 x 8 multipliers (upper bytes of A and B, lower bytes of A and B), which this component
instantiates directly on iCE40; elsewhere it writes plain multiplies that yosys maps to
one DSP each (MULT18X18D on ECP5) or that simulators evaluate.
"""

from amaranth import Cat, Const, Instance, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["DualMul8", "SerialMultiplier", "shift_add_product", "times_const", "balanced_sum",
           "is_ice40",
           "DUAL_MUL8_SB_MAC16", "ice40_dual_mul8_restore"]

#: The SB_MAC16 configuration of :class:`DualMul8` on iCE40: 8 x 8 mode,
#: F = A[15:8] * B[15:8] on O[31:16], G = A[7:0] * B[7:0] on O[15:0], both signed; no
#: registers, no accumulators (the array adds in logic).
DUAL_MUL8_SB_MAC16 = {
    "MODE_8x8": 1, "A_SIGNED": 1, "B_SIGNED": 1,
    "TOPOUTPUT_SELECT": 2, "BOTOUTPUT_SELECT": 2,
    "TOPADDSUB_LOWERINPUT": 0, "TOPADDSUB_UPPERINPUT": 0, "TOPADDSUB_CARRYSELECT": 0,
    "BOTADDSUB_LOWERINPUT": 0, "BOTADDSUB_UPPERINPUT": 0, "BOTADDSUB_CARRYSELECT": 0,
    "C_REG": 0, "A_REG": 0, "B_REG": 0, "D_REG": 0,
    "TOP_8x8_MULT_REG": 0, "BOT_8x8_MULT_REG": 0,
    "PIPELINE_16x16_MULT_REG1": 0, "PIPELINE_16x16_MULT_REG2": 0,
}
# The attribute that marks DualMul8's SB_MAC16 cells for ice40_dual_mul8_restore.
_DUAL_MUL8_ATTRIBUTE = "tritile_dual_mul8"
# What ice40_dual_mul8_restore sets back: the two 8 x 8 products. The registers are
# ice40_dsp's: it moves the flip-flops in front of A and B into the cell (A_REG, B_REG,
# CLK, BHOLD), which is where DualMul8(registered=True) wants them.
_DUAL_MUL8_PRODUCTS = {name: value for name, value in DUAL_MUL8_SB_MAC16.items()
                       if not name.endswith("_REG") and "MULT_REG" not in name}


def ice40_dual_mul8_restore():
    """Return the yosys command that gives :class:`DualMul8`'s SB_MAC16 cells back their
    configuration after ``synth_ice40 -dsp``.

    yosys' ``ice40_dsp`` knows only the 16 x 16 mode and reconfigures every SB_MAC16 it
    finds, instantiated ones included, as a 16 x 16 multiply (``MODE_8x8`` 0, 32-bit
    output): the two products then become one, and ``p0`` carries ``(a0 * b1 + a1 * b0)
    << 8`` on top of ``a0 * b0``. The netlist simulation of ``tritile build --verify``
    found this (docs/boards.md); it runs after synthesis, before the netlist is written.
    """
    sets = " ".join(f"-set {name} {value}" for name, value in _DUAL_MUL8_PRODUCTS.items())
    return f"setparam {sets} a:{_DUAL_MUL8_ATTRIBUTE}"


def shift_add_product(a, b):
    """Return ``a * b`` of two narrow unsigned values as shifted adds.

    For address and counter arithmetic: it stays in logic, so the FPGA's few DSP blocks are
    left to the datapath (an iCE40UP5K has 8). Size ``a`` to the fewest bits possible: the
    result costs one adder per bit of ``a``.
    """
    total = Const(0, len(a) + len(b))
    for bit in range(len(a)):
        total = total + Mux(a[bit], b << bit, 0)
    return total


def times_const(value, constant):
    """Return ``value * constant`` for an unsigned ``value`` and a constant: one shifted
    copy of ``value`` per set bit of ``constant``, summed as a balanced tree, so the path
    is ``ceil(log2 ones)`` adders, not one per bit."""
    terms = [value << bit for bit in range(constant.bit_length()) if constant >> bit & 1]
    return balanced_sum(terms) if terms else Const(0, 1)


def balanced_sum(terms):
    """Return the sum of ``terms`` (a non-empty list) as a balanced tree of adders: the
    path is ``ceil(log2 len(terms))`` adders."""
    while len(terms) > 1:
        terms = [a + b for a, b in zip(terms[::2], terms[1::2])] + terms[len(terms) & ~1:]
    return terms[0]


class SerialMultiplier(wiring.Component):
    """Unsigned ``a * b`` by shifts and adds, one bit of ``b`` per cycle.

    For products that are needed rarely (the shape checks of a RUN): a few logic cells
    and a short path, where :func:`shift_add_product` is one adder per bit in a chain.

    Parameters
    ----------
    width : int
        Width of both operands.

    Members
    -------
    a, b : In(width)
        Operands, taken while ``start`` is high.
    start : In(1)
        Begin a product (abandoning any in progress).
    product : Out(2 * width)
        ``a * b`` once ``done``.
    done : Out(1)
        The product is complete: from ``1 + (bits of b up to its highest one)`` cycles
        after ``start`` until the next ``start``.
    """

    def __init__(self, width):
        self.width = width
        super().__init__({"a": In(width), "b": In(width), "start": In(1),
                          "product": Out(2 * width), "done": Out(1)})

    def elaborate(self, platform):
        m = Module()
        shifted = Signal(2 * self.width)
        left = Signal(self.width)          # bits of b not yet added
        m.d.comb += self.done.eq(left == 0)
        with m.If(self.start):
            m.d.sync += [shifted.eq(self.a), left.eq(self.b), self.product.eq(0)]
        with m.Elif(~self.done):
            m.d.sync += [shifted.eq(shifted << 1), left.eq(left >> 1)]
            with m.If(left[0]):
                m.d.sync += self.product.eq(self.product + shifted)
        return m


def is_ice40(platform):
    """Return whether ``platform`` is an iCE40 (SiliconBlue) platform."""
    from amaranth.vendor import SiliconBluePlatform

    return isinstance(platform, SiliconBluePlatform)


class DualMul8(wiring.Component):
    """Two independent signed 8 x 8 -> 16 products.

    Parameters
    ----------
    registered : bool
        False: the products of the operands, combinationally. True: of operands held in
        registers, ``a0`` and ``a1`` taken at every clock edge, ``b0`` and ``b1`` at an
        edge with ``b_load``; the registers have no reset, so that on iCE40 yosys'
        ``ice40_dsp`` moves them into the SB_MAC16 (its A and B input registers), where
        they take no logic cell.

    Members
    -------
    a0, b0, a1, b1 : In(signed(8))
        Operands.
    b_load : In(1)
        With ``registered``: take ``b0`` and ``b1`` at this edge.
    p0, p1 : Out(signed(16))
        ``a0 * b0`` and ``a1 * b1`` (of the held operands with ``registered``).
    """

    def __init__(self, registered=False):
        self.registered = registered
        super().__init__({
            "a0": In(signed(8)), "b0": In(signed(8)), "a1": In(signed(8)),
            "b1": In(signed(8)), **({"b_load": In(1)} if registered else {}),
            "p0": Out(signed(16)), "p1": Out(signed(16)),
        })

    def elaborate(self, platform):
        m = Module()
        # A and B as the SB_MAC16 takes them: each one register (ice40_dsp moves a
        # register into the cell only whole).
        a, b = Cat(self.a0, self.a1), Cat(self.b0, self.b1)
        if self.registered:
            held_a, held_b = Signal(16, reset_less=True), Signal(16, reset_less=True)
            m.d.sync += held_a.eq(a)
            with m.If(self.b_load):
                m.d.sync += held_b.eq(b)
            a, b = held_a, held_b
        if platform is None or not is_ice40(platform):
            m.d.comb += [self.p0.eq(a[:8].as_signed() * b[:8].as_signed()),
                         self.p1.eq(a[8:].as_signed() * b[8:].as_signed())]
            return m
        out = Signal(32)
        m.submodules.mac = Instance(
            "SB_MAC16", **{f"a_{_DUAL_MUL8_ATTRIBUTE}": 1},
            **{f"p_{name}": value for name, value in DUAL_MUL8_SB_MAC16.items()},
            i_CLK=0, i_CE=1, i_A=a, i_B=b, i_C=0, i_D=0,
            i_AHOLD=0, i_BHOLD=0, i_CHOLD=0, i_DHOLD=0,
            i_IRSTTOP=0, i_IRSTBOT=0, i_ORSTTOP=0, i_ORSTBOT=0,
            i_OLOADTOP=0, i_OLOADBOT=0, i_ADDSUBTOP=0, i_ADDSUBBOT=0,
            i_OHOLDTOP=0, i_OHOLDBOT=0, i_CI=0, i_ACCUMCI=0, i_SIGNEXTIN=0,
            o_O=out, o_CO=Signal(), o_ACCUMCO=Signal(), o_SIGNEXTOUT=Signal())
        m.d.comb += [self.p0.eq(out[0:16]), self.p1.eq(out[16:32])]
        return m
