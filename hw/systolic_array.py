"""The weight-stationary systolic array: processing elements, input skew.

Row ``r`` of the array reduces over index ``r`` of a K tile, column ``c`` produces output
channel ``c`` of an N tile. Each row's activation is registered once and goes to every
PE of the row; partial sums move down. Row ``r`` sees its activations ``r`` cycles late,
so the partial sum from the row above meets the activation it belongs to; the columns
need no skew, and the column sums leave the last row together. Each PE holds two
weights: the *active* one it multiplies by, and a *shadow* one that the next tile's
weights are loaded into while the current tile computes. The ``swap`` flag travels with
the first activation of a tile, so a row switches to the new weights exactly when that
activation reaches it and tiles follow each other without a bubble.

A row's activation fans out to C multipliers rather than passing from PE to PE: for the
arrays an FPGA holds (C up to 12 on an ECP5-85F) that is a short net, and it saves each
PE an activation register and the array the column skew of its weights and the deskew
of its sums (on iCE40 each of those bits is a logic cell). With C even, the two PEs that
share a multiplier block sit in one row and swap together, so the block's own input
registers hold the row's activation and the PEs' active weights (on iCE40, 8 flip-flops
a PE and 8 a row fewer in logic).

The products are registered in their multiplier blocks (:class:`~tritile.hw.dsp.DualMul8`
``pipelined``), one cycle of the array's latency: on the ECP5-85F the 144 multipliers
fill 148 of the 156 DSP sites, so the placer cannot put them near their adders, and the
route from the operand registers through the multiplier to the adder a die's width away
was the SoC's critical path. The register is the block's own (the MULT18X18D's output
register; on iCE40 the SB_MAC16's 8 x 8 product registers where its two PEs share a row,
C even, and a fabric register behind the cell otherwise), and a flip-flop in
simulation, so every platform has the same latency.
"""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .dsp import DualMul8
from .facts import systolic_array_latency

__all__ = ["ProcessingElement", "SystolicArray"]


class ProcessingElement(wiring.Component):
    """One multiply-accumulate cell of a weight-stationary array.

    Every cycle the PE adds ``activation * active weight`` to the partial sum arriving
    from above and registers it. The activation is its row's register, held by the array,
    which also multiplies (``mul_p`` is the row's activation times ``mul_b``, registered),
    so that it can share one DSP block between two PEs where the FPGA allows it. A ``swap`` at an
    edge makes the shadow weight active from that edge on.

    Parameters
    ----------
    psum_width : int
        Width of the signed partial sums.
    weight_in_multiplier : bool
        The multiplier holds the active weight, taking ``mul_b`` (then the shadow weight)
        at a ``swap``; the PE has no register of its own for it.

    Members
    -------
    swap : In(1)
        The row's activation registered at this edge is the first of a new tile.
    psum_in : In(signed(psum_width))
        Partial sum from the PE above (0 for the top row).
    psum_out : Out(signed(psum_width))
        Registered partial sum, to the PE below.
    weight_in : In(signed(8))
        Weight for the shadow register.
    weight_load : In(1)
        Write ``weight_in`` to the shadow register this cycle.
    mul_b : Out(signed(8))
        The active weight, to be multiplied by the row's activation (the shadow weight
        with ``weight_in_multiplier``).
    mul_p : In(signed(16))
        The row's activation times ``mul_b``, of the previous clock edge.
    """

    def __init__(self, psum_width, weight_in_multiplier=False):
        self.weight_in_multiplier = weight_in_multiplier
        super().__init__({
            "swap": In(1),
            "psum_in": In(signed(psum_width)), "psum_out": Out(signed(psum_width)),
            "weight_in": In(signed(8)), "weight_load": In(1),
            "mul_b": Out(signed(8)), "mul_p": In(signed(16)),
        })

    def elaborate(self, platform):
        m = Module()
        # Datapath registers without a reset: the controls that travel with the rows say
        # when they hold a value, and the reset net then reaches only the controls.
        shadow = Signal(signed(8), reset_less=True)
        psum = Signal.like(self.psum_out, reset_less=True)
        m.d.comb += self.psum_out.eq(psum)
        m.d.sync += psum.eq(self.psum_in + self.mul_p)
        # Swap and load may happen on the same edge: the old shadow becomes active.
        if self.weight_in_multiplier:
            m.d.comb += self.mul_b.eq(shadow)
        else:
            active = Signal(signed(8), reset_less=True)
            m.d.comb += self.mul_b.eq(active)
            with m.If(self.swap):
                m.d.sync += active.eq(shadow)
        with m.If(self.weight_load):
            m.d.sync += shadow.eq(self.weight_in)
        return m


class SystolicArray(wiring.Component):
    """An R x C grid of :class:`ProcessingElement` with skewed rows.

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
        return systolic_array_latency(self.rows)

    def elaborate(self, platform):
        m = Module()
        rows, cols = self.rows, self.cols
        # With C even, a multiplier block's two PEs are in one row: it holds their operands.
        held = cols % 2 == 0
        pes = [[ProcessingElement(self.psum_width, weight_in_multiplier=held)
                for _ in range(cols)] for _ in range(rows)]
        for r in range(rows):
            for c in range(cols):
                m.submodules[f"pe_{r}_{c}"] = pes[r][c]

        def delayed(value, cycles, name, reset_less=False):
            for i in range(cycles):
                reg = Signal.like(value, name=f"{name}_d{i + 1}", reset_less=reset_less)
                m.d.sync += reg.eq(value)
                value = reg
            return value

        # Input skew: row r registers its activation (and the tile's swap) r cycles late,
        # in a register of its own or in its multiplier blocks.
        row_act = [delayed(self.act[r], r, f"act{r}", reset_less=True) for r in range(rows)]
        row_swap = [delayed(self.swap, r, f"swap{r}") for r in range(rows)]
        if not held:
            row_act = [delayed(act, 1, f"row_act{r}", reset_less=True)
                       for r, act in enumerate(row_act)]
        for r in range(rows):
            for c in range(cols):
                m.d.comb += [
                    pes[r][c].swap.eq(row_swap[r]),
                    pes[r][c].weight_in.eq(self.weight_row[c]),
                    pes[r][c].weight_load.eq(self.weight_load & (self.weight_index == r)),
                ]

        # Products two at a time, registered: one SB_MAC16 per pair on iCE40, one
        # multiplier block each elsewhere.
        flat = [(r, pes[r][c]) for r in range(rows) for c in range(cols)]
        for i in range(0, len(flat), 2):
            m.submodules[f"mul_{i // 2}"] = mul = DualMul8(registered=held, pipelined=True)
            (row, pe0), *second = flat[i:i + 2]
            act0 = row_act[row]
            if held:
                m.d.comb += mul.b_load.eq(row_swap[row])
            m.d.comb += [mul.a0.eq(act0), mul.b0.eq(pe0.mul_b), pe0.mul_p.eq(mul.p0)]
            if second:
                (row1, pe1), = second
                act1 = row_act[row1]
                m.d.comb += [mul.a1.eq(act1), mul.b1.eq(pe1.mul_b), pe1.mul_p.eq(mul.p1)]

        # Partial sums flow down; the last row's are the column sums.
        for c in range(cols):
            m.d.comb += pes[0][c].psum_in.eq(0)
            for r in range(1, rows):
                m.d.comb += pes[r][c].psum_in.eq(pes[r - 1][c].psum_out)
            m.d.comb += self.psum[c].eq(pes[rows - 1][c].psum_out)
        return m
