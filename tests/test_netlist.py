"""The synthesized netlist (what goes into the bitstream) runs the device checks in Verilator.

The slow tests synthesize the icebreaker preset once (yosys, as ``tritile build`` does),
serve its netlist as a simulated board and compare it with the golden model; a netlist
simulated with a deliberately wrong SB_MAC16 model must fail the same checks, so the
check is shown to bite.
"""

import json

import numpy as np
import pytest

from tritile.sim.netlist import (NetlistError, cell_library, cell_models, defined_constants,
                                 read_netlist_info)
from tritile.sim.netlist_check import NetlistMismatchError, first_difference, verify_netlist
from tritile.sw.cli import main


@pytest.fixture(scope="module")
def icebreaker_netlist(tmp_path_factory):
    from tritile.hw.board import get_board
    from tritile.hw.board_build import synthesize_board

    out = tmp_path_factory.mktemp("icebreaker")
    synthesize_board(get_board("icebreaker"), None, out)
    return out


@pytest.mark.slow
def test_icebreaker_netlist_matches_the_golden_model(icebreaker_netlist):
    report = verify_netlist(icebreaker_netlist)
    names = [c["check"] for c in report["netlist_checks"]]
    assert report["netlist_verified"]
    assert names[:2] == ["ping", "info"]
    assert any(name.startswith("systolic int8") for name in names)


@pytest.mark.slow
def test_a_wrong_sb_mac16_model_is_caught(icebreaker_netlist, tmp_path):
    right = cell_library("ice40")[0]["SB_MAC16"]
    # Bit 0 of every product the DSPs compute is flipped.
    wrong = right.replace("assign O = {Oh, Ol};", "assign O = {Oh, Ol} ^ 32'h1;")
    assert wrong != right
    models = tmp_path / "wrong_sb_mac16.v"
    models.write_text(wrong)
    with pytest.raises(NetlistMismatchError,
                       match=r"fails 'systolic int8 [^']*' \(seed \d+\): .* output \[\d+, \d+\] "
                             r"is -?\d+, the golden model says -?\d+"):
        verify_netlist(icebreaker_netlist, cell_models=models)


def test_undefined_constant_bits_become_zero():
    text = ".CI(1'hx), .INIT_0(8'bx0x1_0000), .A(16'h00x1), .P(32'sd5), .B(\\x.y [3])"
    assert defined_constants(text) == (".CI(1'h0), .INIT_0(8'b0001_0000), .A(16'h0001), "
                                       ".P(32'sd5), .B(\\x.y [3])")


def test_cells_without_a_model_are_named():
    netlist = "module top();\n  SB_LUT4 #(.LUT_INIT(16'h0)) a (.O(x));\n" \
              "  SB_MYSTERY b (.O(y));\nendmodule\n"
    with pytest.raises(NetlistError, match="no simulation model for the cells SB_MYSTERY"):
        cell_models("ice40", netlist)
    assert "module SB_LUT4" in cell_models("ice40", netlist.replace("SB_MYSTERY", "SB_LUT4"))


def test_first_difference_names_the_first_differing_output():
    expected = np.arange(6).reshape(2, 3)
    got = expected.copy()
    assert first_difference("x", got, expected) is None
    got[1, 0] = 7
    got[1, 2] = 9
    assert first_difference("x", got, expected) == \
        "x: output [1, 0] is 7, the golden model says 3 (2 of 6 outputs differ)"


def _error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    return err


def test_sim_board_netlist_errors_are_one_line(tmp_path, capsys):
    assert "holds no synthesized netlist" in _error(
        capsys, ["sim-board", "--netlist", str(tmp_path)])
    (tmp_path / "netlist.json").write_text(json.dumps({"netlist": "top.netlist.v",
                                                       "config": {}}))
    assert "stopped before synthesis finished" in _error(
        capsys, ["sim-board", "--netlist", str(tmp_path)])
    assert "has no byte port" in _error(
        capsys, ["sim-board", "--netlist", str(tmp_path), "--uart", "byte"])
    assert "--cell-models needs --netlist" in _error(
        capsys, ["sim-board", "--cell-models", "x.v"])
    with pytest.raises(NetlistError):
        read_netlist_info(tmp_path)
