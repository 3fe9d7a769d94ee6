"""PLL parameter search against the reference calculators icepll and ecppll (YoWASP)."""

import re
import subprocess

import pytest

from tritile.hw.pll import PLLError, ecp5_pll_params, ice40_pll_params
from tritile.sw.toolchain import find_tool


def _calculator(name):
    # icepll and ecppll ship with the nextpnr YoWASP packages, next to icepack/ecppack.
    return find_tool("icepack" if name == "icepll" else "ecppack").path.replace(
        "icepack" if name == "icepll" else "ecppack", name)


def _numbers(text, *labels):
    return [int(re.search(rf"{label}:?\s+(\d+)", text)[1]) for label in labels]


@pytest.mark.parametrize("f_out", [24e6, 30e6, 36e6, 48e6])
def test_ice40_matches_icepll(f_out):
    out = subprocess.run([_calculator("icepll"), "-i", "12", "-o", str(f_out / 1e6)],
                         capture_output=True, text=True, check=True).stdout
    divr, divf, divq, filter_range = _numbers(out, "DIVR", "DIVF", "DIVQ", "FILTER_RANGE")
    p = ice40_pll_params(12e6, f_out)
    assert (p.divr, p.divf, p.divq, p.filter_range) == (divr, divf, divq, filter_range)


@pytest.mark.parametrize("f_in, f_out", [(25e6, 100e6), (25e6, 75e6), (48e6, 48e6),
                                         (48e6, 64e6)])
def test_ecp5_matches_ecppll(f_in, f_out):
    out = subprocess.run([_calculator("ecppll"), "-i", str(f_in / 1e6), "-o",
                          str(f_out / 1e6)], capture_output=True, text=True, check=True).stdout
    refclk, feedback, output = _numbers(out, "Refclk divisor", "Feedback divisor",
                                        "clkout0 divisor")
    p = ecp5_pll_params(f_in, f_out)
    assert (p.clki_div, p.clkfb_div, p.clkop_div) == (refclk, feedback, output)
    assert p.f_out == pytest.approx(f_out, rel=1e-3)


def test_unreachable_frequency_is_an_error():
    with pytest.raises(PLLError, match="cannot make 1000.000 MHz"):
        ice40_pll_params(12e6, 1000e6)
