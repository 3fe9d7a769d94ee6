"""The ternary unit synthesizes without a multiplier: no $mul, SB_MAC16 or MULT18X18D cells."""

import json
import subprocess

import pytest

from tritile.hw.ternary import TernaryUnit
from tritile.sim.verilator import verilog_of
from tritile.sw import AcceleratorConfig
from tritile.sw.toolchain import find_tool

MULTIPLIER_CELLS = {"$mul", "$macc", "$__MUL16X16", "$__MUL18X18", "SB_MAC16", "MULT18X18D",
                    "ALU54B"}


def _cell_types(netlist):
    return {cell["type"] for module in netlist["modules"].values()
            for cell in module.get("cells", {}).values()}


@pytest.mark.slow
@pytest.mark.parametrize("synth", ["synth_ice40", "synth_ecp5"])
def test_unit_netlist_has_no_multiplier(synth, tmp_path):
    yosys = find_tool("yosys")
    if not yosys.found:
        pytest.fail(f"yosys not found: {yosys.fix}")
    # The base-3 write decoder, the transcoder and a full adder tree, one read stage;
    # memories small to keep synthesis quick.
    config = AcceleratorConfig(ternary_lanes=4, ternary_fan_in=6, ternary_read_stages=1,
                               max_m=4, max_k=48, max_n=8, act_depth=192, trit_depth=384,
                               out_depth=32)
    (tmp_path / "unit.v").write_text(verilog_of(TernaryUnit(config), "ternary_unit"))
    # The coarse netlist (before any multiplier could be dissolved into LUTs) and the
    # mapped one with DSP inference on (synth_ice40 maps to SB_MAC16 only with -dsp).
    # YoWASP tools see only their working directory: paths are relative to it.
    dsp = " -dsp" if synth == "synth_ice40" else ""
    result = subprocess.run(
        [yosys.path, "-q", "-p",
         "read_verilog unit.v; hierarchy -top ternary_unit; proc; flatten; opt; "
         f"write_json coarse.json; {synth}{dsp} -top ternary_unit -json unit.json"],
        cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    coarse = _cell_types(json.loads((tmp_path / "coarse.json").read_text()))
    cells = _cell_types(json.loads((tmp_path / "unit.json").read_text()))
    assert "$add" in coarse, "the coarse netlist has no adder tree"
    assert not coarse & MULTIPLIER_CELLS, f"multiplier cells: {coarse & MULTIPLIER_CELLS}"
    assert not cells & MULTIPLIER_CELLS, f"multiplier cells: {cells & MULTIPLIER_CELLS}"
    # Sanity: the adder tree was mapped to carry logic, so the netlist is the real unit.
    assert cells & {"SB_CARRY", "CCU2C"}


@pytest.mark.slow
def test_the_check_recognizes_a_multiplier(tmp_path):
    # The same flow on a plain a * b must report DSP cells, or the check above proves nothing.
    (tmp_path / "mul.v").write_text(
        "module mul(input clk, input signed [7:0] a, b, output reg signed [15:0] p);\n"
        "  always @(posedge clk) p <= a * b;\nendmodule\n")
    result = subprocess.run(
        [find_tool("yosys").path, "-q", "-p",
         "read_verilog mul.v; synth_ice40 -dsp -top mul -json mul.json"],
        cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert _cell_types(json.loads((tmp_path / "mul.json").read_text())) & MULTIPLIER_CELLS
