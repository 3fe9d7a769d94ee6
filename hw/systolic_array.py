"""The weight-stationary systolic array: processing elements, input skew, output deskew.

Row ``r`` of the array reduces over index ``r`` of a K tile, column ``c`` produces output
channel ``c`` of an N tile. Activations move right, partial sums move down. Each PE holds
two weights: the *active* one it multiplies by, and a *shadow* one that the next tile's
weights are loaded into while the current tile computes. The ``swap`` flag travels with
the first activation of a tile, so every PE switches to the new weights exactly when that
activation reaches it and tiles follow each other without a bubble.
"""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .dsp import DualMul8

__all__ = ["ProcessingElement", "SystolicArray"]


class ProcessingElement(wiring.Component):
    """One multiply-accumulate cell of a weight-stationary array.

    Every cycle the PE registers the activation arriving from the left (passing it on to
    the right) and adds ``activation * active weight`` of the activation it registered
    the cycle before to the partial sum arriving from above. A ``swap`` arriving with an
    activation makes the shadow weight active for that activation and the ones after it.
    The product comes from outside (``mul_a * mul_b`` returned on ``mul_p``), so that the
    array can share one DSP block between two PEs where the FPGA allows it.

    Parameters
    ----------
    psum_width : int
        Width of the signed partial sums.

    Members
    -------
    a_in : In(signed(8))
        Activation from the left.
    swap_in : In(1)
        ``a_in`` is the first activation of a new tile.
    a_out, swap_out : Out(signed(8)), Out(1)
        The registered activation and flag, to the PE on the right.
    psum_in : In(signed(psum_width))
        Partial sum from the PE above (0 for the top row).
    psum_out : Out(signed(psum_width))
        Registered partial sum, to the PE below.
    weight_in : In(signed(8))
        Weight for the shadow register.
    weight_load : In(1)
        Write ``weight_in`` to the shadow register this cycle.
    mul_a, mul_b : Out(signed(8))
        The registered activation and the active weight, to be multiplied.
    mul_p : In(signed(16))
        ``mul_a * mul_b``, combinationally.
    """

    def __init__(self, psum_width):
        super().__init__({
            "a_in": In(signed(8)), "swap_in": In(1),
            "a_out": Out(signed(8)), "swap_out": Out(1),
            "psum_in": In(signed(psum_width)), "psum_out": Out(signed(psum_width)),
            "weight_in": In(signed(8)), "weight_load": In(1),
            "mul_a": Out(signed(8)), "mul_b": Out(signed(8)), "mul_p": In(signed(16)),
        })

    def elaborate(self, platform):
        m = Module()
        active = Signal(signed(8))
        shadow = Signal(signed(8))
        m.d.comb += [self.mul_a.eq(self.a_out), self.mul_b.eq(active)]
        m.d.sync += [
            self.a_out.eq(self.a_in),
            self.swap_out.eq(self.swap_in),
            self.psum_out.eq(self.psum_in + self.mul_p),
        ]
        # Swap and load may happen on the same edge: the old shadow becomes active.
        with m.If(self.swap_in):
            m.d.sync += active.eq(shadow)
        with m.If(self.weight_load):
            m.d.sync += shadow.eq(self.weight_in)
        return m


class SystolicArray(wiring.Component):
    """An R x C grid of :class:`ProcessingElement` with skewed inputs and deskewed sums.

    Feed one row of a tile's activations per cycle, unskewed; :data:`latency` cycles later
    ``psum`` holds the C column sums ``sum_r act[r] * W[r, c]`` of that row, aligned.
    Row ``r`` of the next tile's weights may be loaded in any cycle from the one in which
    the current tile's first activation row (with ``swap``) was fed plus ``r``, to the one
    in which the next tile's first row is fed plus ``r`` (exclusive): feeding weight row
    ``r`` together with activation row ``r`` of the current tile always satisfies this.

    Parameters
    ----------
    rows, cols : int
        Array size R x C.
    psum_width : int
        Width of the signed column sums; must hold R products of -128 x -128.

    Members
    -------
    act : In(ArrayLayout(signed(8), rows))
        One row of activations: element ``r`` for PE row ``r``.
    swap : In(1)
        ``act`` is the first row of a new tile: switch to the weights loaded since the
        previous swap.
    weight_row : In(ArrayLayout(signed(8), cols))
        One row of the next tile's weights: element ``c`` for PE column ``c``.
    weight_index : In(range(rows))
        The PE row ``weight_row`` is for.
    weight_load : In(1)
        Load ``weight_row`` this cycle.
    psum : Out(ArrayLayout(signed(psum_width), cols))
        Column sums of the row fed :attr:`latency` cycles ago.
    """

    def __init__(self, rows, cols, psum_width):
        for name, value in (("rows", rows), ("cols", cols)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        self.rows, self.cols, self.psum_width = rows, cols, psum_width
        super().__init__({
            "act": In(data.ArrayLayout(signed(8), rows)),
            "swap": In(1),
            "weight_row": In(data.ArrayLayout(signed(8), cols)),
            "weight_index": In(range(rows)),
            "weight_load": In(1),
            "psum": Out(data.ArrayLayout(signed(psum_width), cols)),
        })

    @property
    def latency(self):
        """Cycles from a row on ``act`` to its sums on ``psum``."""
        return self.rows + self.cols

    def elaborate(self, platform):
        m = Module()
        rows, cols = self.rows, self.cols
        pes = [[ProcessingElement(self.psum_width) for _ in range(cols)] for _ in range(rows)]
        for r in range(rows):
            for c in range(cols):
                m.submodules[f"pe_{r}_{c}"] = pes[r][c]

        # Products two at a time: one SB_MAC16 per pair on iCE40, one multiply each elsewhere.
        flat = [pe for row in pes for pe in row]
        for i in range(0, len(flat), 2):
            m.submodules[f"mul_{i // 2}"] = mul = DualMul8()
            first, *second = flat[i:i + 2]
            m.d.comb += [mul.a0.eq(first.mul_a), mul.b0.eq(first.mul_b),
                         first.mul_p.eq(mul.p0)]
            if second:
                m.d.comb += [mul.a1.eq(second[0].mul_a), mul.b1.eq(second[0].mul_b),
                             second[0].mul_p.eq(mul.p1)]

        def delayed(value, cycles, name):
            for i in range(cycles):
                reg = Signal.like(value, name=f"{name}_d{i + 1}")
                m.d.sync += reg.eq(value)
                value = reg
            return value

        # Input skew: row r sees its activation (and the tile's swap) r cycles late.
        for r in range(rows):
            m.d.comb += [
                pes[r][0].a_in.eq(delayed(self.act[r], r, f"act{r}")),
                pes[r][0].swap_in.eq(delayed(self.swap, r, f"swap{r}")),
            ]
            for c in range(1, cols):
                m.d.comb += [pes[r][c].a_in.eq(pes[r][c - 1].a_out),
                             pes[r][c].swap_in.eq(pes[r][c - 1].swap_out)]

        # Weights skew the same way along columns, so PE (r, c) is written no earlier than
        # the swap that retires its shadow weight (see the class docstring).
        for c in range(cols):
            weight = delayed(self.weight_row[c], c, f"weight{c}")
            index = delayed(self.weight_index, c, f"index{c}")
            load = delayed(self.weight_load, c, f"load{c}")
            for r in range(rows):
                m.d.comb += [pes[r][c].weight_in.eq(weight),
                             pes[r][c].weight_load.eq(load & (index == r))]

        # Partial sums flow down; column c finishes c cycles after column 0, so deskew.
        for c in range(cols):
            m.d.comb += pes[0][c].psum_in.eq(0)
            for r in range(1, rows):
                m.d.comb += pes[r][c].psum_in.eq(pes[r - 1][c].psum_out)
            m.d.comb += self.psum[c].eq(
                delayed(pes[rows - 1][c].psum_out, cols - 1 - c, f"psum{c}"))
        return m
