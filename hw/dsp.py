"""Two signed 8 x 8 products per multiplier block.

yosys maps each 8 x 8 multiply to a whole SB_MAC16 on iCE40, so an iCE40UP5K's 8 DSPs
would give 8 int8 MACs per cycle. An SB_MAC16 in 8 x 8 mode holds two independent signed
8 x 8 multipliers (upper bytes of A and B, lower bytes of A and B), which this component
instantiates directly on iCE40; elsewhere it writes plain multiplies that yosys maps to
one DSP each or that simulators evaluate. With registers asked for, it instantiates the
MULT18X18D on ECP5 too, whose input and output registers yosys does not infer.
"""

from amaranth import Cat, ClockSignal, Const, Instance, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["DualMul8", "SerialMultiplier", "shift_add_product", "times_const", "balanced_sum",
           "is_ice40", "is_ecp5",
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
# The attribute that marks those of them whose products are registered (``pipelined``).
_DUAL_MUL8_PIPELINED = "tritile_dual_mul8_pipelined"
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
    return (f"setparam {sets} a:{_DUAL_MUL8_ATTRIBUTE}; "
            f"setparam -set TOP_8x8_MULT_REG 1 -set BOT_8x8_MULT_REG 1 a:{_DUAL_MUL8_PIPELINED}")


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


def is_ecp5(platform):
    """Return whether ``platform`` is a Lattice ECP5 platform."""
    from amaranth.vendor import LatticePlatform

    return isinstance(platform, LatticePlatform) and platform.family == "ecp5"


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
        they take no logic cell. On ECP5 they are the MULT18X18D's own input registers.
    pipelined : bool
        The products are registered: ``p0`` and ``p1`` hold the products of the operands
        (held or not) of the previous clock edge. The register is the multiplier block's
        own (the MULT18X18D's output register; the SB_MAC16's 8 x 8 product registers
        behind its operand registers, with ``registered``; a fabric register behind an
        SB_MAC16 without registers otherwise), so on an FPGA no route runs from the
        operands through the multiplier to its users within one cycle.

    Members
    -------
    a0, b0, a1, b1 : In(signed(8))
        Operands.
    b_load : In(1)
        With ``registered``: take ``b0`` and ``b1`` at this edge.
    p0, p1 : Out(signed(16))
        ``a0 * b0`` and ``a1 * b1`` (of the held operands with ``registered``, one cycle
        late with ``pipelined``).
    """

    def __init__(self, registered=False, pipelined=False):
        self.registered, self.pipelined = registered, pipelined
        super().__init__({
            "a0": In(signed(8)), "b0": In(signed(8)), "a1": In(signed(8)),
            "b1": In(signed(8)), **({"b_load": In(1)} if registered else {}),
            "p0": Out(signed(16)), "p1": Out(signed(16)),
        })

    def elaborate(self, platform):
        if platform is not None and is_ecp5(platform) and (self.registered or self.pipelined):
            return self._ecp5_multipliers()
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
        ice40 = platform is not None and is_ice40(platform)
        # The SB_MAC16's own 8 x 8 product registers only behind its operand registers
        # (``registered``): ice40_dsp ties CLK and CE low on a cell into which it moves no
        # operand register, so behind fabric operands the product registers would never
        # load (the icebreaker preset's netlist check found it; tests/test_dsp.py). Elsewhere
        # the products are registered in the fabric (or the simulator) behind the multiply.
        in_cell = ice40 and self.pipelined and self.registered
        if ice40:
            products = self._sb_mac16(m, a, b, in_cell)
        else:
            products = Cat(a[:8].as_signed() * b[:8].as_signed(),
                           a[8:].as_signed() * b[8:].as_signed())
        if self.pipelined and not in_cell:
            held = Signal(32, reset_less=True)
            m.d.sync += held.eq(products)
            products = held
        m.d.comb += [self.p0.eq(products[0:16]), self.p1.eq(products[16:32])]
        return m

    def _sb_mac16(self, m, a, b, in_cell):
        # Both products of one SB_MAC16 in 8 x 8 mode, on O[15:0] and O[31:16]; with
        # ``in_cell`` registered in its 8 x 8 product registers.
        out = Signal(32)
        registers = {"TOP_8x8_MULT_REG": 1, "BOT_8x8_MULT_REG": 1} if in_cell else {}
        m.submodules.mac = Instance(
            "SB_MAC16", **{f"a_{_DUAL_MUL8_ATTRIBUTE}": 1},
            **({f"a_{_DUAL_MUL8_PIPELINED}": 1} if in_cell else {}),
            **{f"p_{name}": value
               for name, value in {**DUAL_MUL8_SB_MAC16, **registers}.items()},
            i_CLK=ClockSignal() if in_cell else 0, i_CE=1, i_A=a, i_B=b, i_C=0,
            i_D=0, i_AHOLD=0, i_BHOLD=0, i_CHOLD=0, i_DHOLD=0,
            i_IRSTTOP=0, i_IRSTBOT=0, i_ORSTTOP=0, i_ORSTBOT=0,
            i_OLOADTOP=0, i_OLOADBOT=0, i_ADDSUBTOP=0, i_ADDSUBBOT=0,
            i_OHOLDTOP=0, i_OHOLDBOT=0, i_CI=0, i_ACCUMCI=0, i_SIGNEXTIN=0,
            o_O=out, o_CO=Signal(), o_ACCUMCO=Signal(), o_SIGNEXTOUT=Signal())
        return out

    def _ecp5_multipliers(self):
        # yosys' synth_ecp5 packs no flip-flop into a MULT18X18D, so the registers are
        # the instance's: A every edge (CE0 high), B at ``b_load`` (CE1), the product
        # every edge. All on CLK0, the only clock nextpnr times a MULT18X18D by. The
        # other clock, enable and reset pins stay unconnected: nextpnr shares them
        # between the multipliers of a DSP block, and a constant on a clock pin does not
        # route (the first build with CLK1-3 tied low failed on the ground net).
        m = Module()
        clocked = "CLK0" if self.registered else "NONE"
        for a, b, p in ((self.a0, self.b0, self.p0), (self.a1, self.b1, self.p1)):
            product = Signal(36)
            # Signed operands sign-extended to the block's 18 bits.
            a18, b18 = Cat(a, a[7].replicate(10)), Cat(b, b[7].replicate(10))
            m.submodules += Instance(
                "MULT18X18D",
                p_REG_INPUTA_CLK=clocked, p_REG_INPUTA_CE="CE0", p_REG_INPUTA_RST="RST0",
                p_REG_INPUTB_CLK=clocked, p_REG_INPUTB_CE="CE1", p_REG_INPUTB_RST="RST0",
                p_REG_INPUTC_CLK="NONE", p_REG_PIPELINE_CLK="NONE",
                p_REG_OUTPUT_CLK="CLK0" if self.pipelined else "NONE",
                p_REG_OUTPUT_CE="CE0", p_REG_OUTPUT_RST="RST0",
                p_CLK0_DIV="ENABLED", p_CLK1_DIV="ENABLED", p_CLK2_DIV="ENABLED",
                p_CLK3_DIV="ENABLED", p_HIGHSPEED_CLK="NONE", p_GSR="DISABLED",
                p_CAS_MATCH_REG="FALSE", p_SOURCEB_MODE="B_SHIFT", p_MULT_BYPASS="DISABLED",
                p_RESETMODE="SYNC",
                **{f"i_A{i}": a18[i] for i in range(18)},
                **{f"i_B{i}": b18[i] for i in range(18)},
                **{f"i_C{i}": 0 for i in range(18)},
                i_SIGNEDA=1, i_SIGNEDB=1, i_SOURCEA=0, i_SOURCEB=0,
                i_CLK0=ClockSignal(), i_CE0=1, i_RST0=0,
                **({"i_CE1": self.b_load} if self.registered else {}),
                **{f"o_P{i}": product[i] for i in range(36)})
            m.d.comb += p.eq(product[:16])
        return m
