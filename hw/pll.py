"""PLL parameter search and PLL primitives for iCE40 (SB_PLL40) and ECP5 (EHXPLLL).

The searches follow the rules of icepll and ecppll (Project IceStorm / Trellis), which
``tests/test_board.py`` checks against the YoWASP builds of those tools.
"""

import dataclasses

from amaranth import ClockDomain, ClockSignal, Const, Elaboratable, Instance, Module, Signal

__all__ = ["PLLError", "ICE40PLLParams", "ECP5PLLParams", "ice40_pll_params",
           "ecp5_pll_params", "PLLClockDomain"]


class PLLError(ValueError):
    """No PLL setting reaches the requested frequency within tolerance."""


@dataclasses.dataclass(frozen=True)
class ICE40PLLParams:
    """Divider settings of an iCE40 SB_PLL40 in SIMPLE feedback mode."""

    divr: int
    divf: int
    divq: int
    filter_range: int
    f_in: float
    f_out: float


@dataclasses.dataclass(frozen=True)
class ECP5PLLParams:
    """Divider settings of an ECP5 EHXPLLL with CLKOP feedback."""

    clki_div: int
    clkfb_div: int
    clkop_div: int
    f_in: float
    f_out: float


def _check(name, f_in, f_out, best, tolerance):
    if best is None or abs(best.f_out - f_out) > tolerance * f_out:
        got = f"{best.f_out / 1e6:.3f} MHz" if best else "nothing"
        raise PLLError(f"{name} PLL cannot make {f_out / 1e6:.3f} MHz from "
                       f"{f_in / 1e6:.3f} MHz within {tolerance:.1%} (best: {got})")
    return best


def ice40_pll_params(f_in, f_out, tolerance=0.01):
    """Return the SB_PLL40 setting closest to ``f_out`` (Hz) from ``f_in`` (Hz)."""
    best = None
    for divr in range(16):
        f_pfd = f_in / (divr + 1)
        if not 10e6 <= f_pfd <= 133e6:
            continue
        for divf in range(128):
            f_vco = f_pfd * (divf + 1)
            if not 533e6 <= f_vco <= 1066e6:
                continue
            for divq in range(1, 7):
                out = f_vco / (1 << divq)
                if best is None or abs(out - f_out) < abs(best.f_out - f_out):
                    filter_range = next((i for i, limit in enumerate(
                        (17e6, 26e6, 44e6, 66e6, 101e6), start=1) if f_pfd < limit), 6)
                    best = ICE40PLLParams(divr, divf, divq, filter_range, f_in, out)
    return _check("iCE40", f_in, f_out, best, tolerance)


def ecp5_pll_params(f_in, f_out, tolerance=0.01):
    """Return the EHXPLLL setting closest to ``f_out`` (Hz) from ``f_in`` (Hz)."""
    best, best_key = None, None
    for clki_div in range(1, 129):
        f_pfd = f_in / clki_div
        if not 3.125e6 <= f_pfd <= 400e6:
            continue
        for clkfb_div in range(1, 81):
            out = f_pfd * clkfb_div
            if not 10e6 <= out <= 400e6:
                continue
            for clkop_div in range(1, 129):
                f_vco = out * clkop_div
                if not 400e6 <= f_vco <= 800e6:
                    continue
                # Closest output first; among equals, the VCO nearest 600 MHz (as ecppll).
                key = (abs(out - f_out), abs(f_vco - 600e6))
                if best is None or key < best_key:
                    best, best_key = ECP5PLLParams(clki_div, clkfb_div, clkop_div, f_in, out), key
    return _check("ECP5", f_in, f_out, best, tolerance)


class PLLClockDomain(Elaboratable):
    """Drive a clock domain at ``f_out`` from a board's input clock through its PLL.

    The domain (a ``ClockDomain`` its parent defines, usually ``sync``) is held in reset
    until the PLL reports lock. ``family`` is ``"ice40"`` or ``"ecp5"``; ``clk_pad`` is the
    input clock from ``platform.request(..., dir="-")`` for iCE40 (SB_PLL40_PAD sits on the
    pad) or a clock signal for ECP5.
    """

    def __init__(self, family, clk_pad, f_in, f_out, domain):
        if family not in ("ice40", "ecp5"):
            raise ValueError(f"family must be 'ice40' or 'ecp5', not {family!r}")
        self.family = family
        self.clk_pad = clk_pad
        self.domain = domain
        self.params = (ice40_pll_params if family == "ice40" else ecp5_pll_params)(f_in, f_out)

    def elaborate(self, platform):
        m = Module()
        sync = self.domain
        locked = Signal()
        p = self.params
        if self.family == "ice40":
            m.submodules.pll = Instance(
                "SB_PLL40_PAD",
                p_FEEDBACK_PATH="SIMPLE", p_DIVR=p.divr, p_DIVF=p.divf, p_DIVQ=p.divq,
                p_FILTER_RANGE=p.filter_range,
                io_PACKAGEPIN=self.clk_pad,
                i_RESETB=Const(1), i_BYPASS=Const(0),
                o_PLLOUTGLOBAL=sync.clk, o_LOCK=locked)
        else:
            feedback = Signal()
            m.submodules.pll = Instance(
                "EHXPLLL",
                a_FREQUENCY_PIN_CLKI=str(p.f_in / 1e6), a_FREQUENCY_PIN_CLKOP=str(p.f_out / 1e6),
                a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
                a_MFG_GMCREF_SEL="2",
                p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_CLKOP_ENABLE="ENABLED",
                p_CLKOP_DIV=p.clkop_div, p_CLKOP_CPHASE=p.clkop_div - 1, p_CLKOP_FPHASE=0,
                p_FEEDBK_PATH="CLKOP", p_CLKFB_DIV=p.clkfb_div, p_CLKI_DIV=p.clki_div,
                i_CLKI=self.clk_pad, i_CLKFB=feedback, i_RST=Const(0), i_STDBY=Const(0),
                i_PHASESEL0=Const(0), i_PHASESEL1=Const(0), i_PHASEDIR=Const(1),
                i_PHASESTEP=Const(1), i_PHASELOADREG=Const(1), i_PLLWAKESYNC=Const(0),
                i_ENCLKOP=Const(0),
                o_CLKOP=feedback, o_LOCK=locked)
            m.d.comb += sync.clk.eq(feedback)
        # Hold the design in reset until the PLL is locked (and for a few cycles after).
        m.submodules.reset = _ResetSync(locked, sync)
        # No clock constraint of our own: nextpnr derives the output's frequency from the
        # PLL's parameters and the board's constraint on its input pin (ice40 and ecp5
        # alike), and a constraint on sync.clk would name a net that yosys's flattening
        # renames, which nextpnr then ignores with a warning.
        return m


class _ResetSync(Elaboratable):
    # Counts a few cycles of the PLL clock after lock before releasing the domain's reset.
    def __init__(self, locked, domain):
        self.locked = locked
        self.domain = domain

    def elaborate(self, platform):
        m = Module()
        m.domains.por = ClockDomain("por", reset_less=True, local=True)
        m.d.comb += ClockSignal("por").eq(self.domain.clk)
        count = Signal(4)
        # The reset reaches every flip-flop of the design: it comes from a register, so
        # that nextpnr routes it from one driver, with no LUT on its way.
        reset = Signal(init=1)
        with m.If(~self.locked):
            m.d.por += count.eq(0)
        with m.Elif(count != 15):
            m.d.por += count.eq(count + 1)
        m.d.por += reset.eq(count != 15)
        m.d.comb += self.domain.rst.eq(reset)
        return m
