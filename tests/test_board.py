"""Bitstream builds: board table, fit check, reports of real yosys + nextpnr runs."""

import pytest

from tritile.hw.bitstream import DEVICES, FitError, check_fit, cell_usage
from tritile.hw.board import BOARDS, get_board
from tritile.hw.board_build import build_board
from tritile.sw import PRESETS
from tritile.sw.cli import main


def test_every_board_has_a_device_and_a_valid_preset():
    assert {"icebreaker", "ulx3s-85f", "orangecrab-25f"} <= set(BOARDS)
    for board in BOARDS.values():
        assert board.device in DEVICES and board.preset in PRESETS


def test_unknown_board_is_a_one_line_error(capsys):
    assert main(["build", "--board", "icebreaker2"]) == 2
    assert "unknown board 'icebreaker2'; supported boards: icebreaker" in capsys.readouterr().err
    with pytest.raises(ValueError, match="supported boards"):
        get_board("de10")


def test_program_names_the_missing_programmer(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    bitstream = tmp_path / "top.bin"
    bitstream.write_bytes(b"\0")
    assert main(["program", "--board", "icebreaker", str(bitstream)]) == 2
    err = capsys.readouterr().err
    assert "iceprog is needed to program the icebreaker but is not on PATH" in err


def test_fit_check_names_resource_need_and_advice():
    stat = {"design": {"num_cells_by_type": {"SB_LUT4": 6000, "SB_DFF": 100,
                                             "SB_MAC16": 9, "SB_RAM40_4K": 3}}}
    usage = cell_usage(stat, "ice40")
    assert usage == {"logic": 6000, "dsp": 9, "bram": 3, "spram": 0}
    with pytest.raises(FitError) as info:
        check_fit(usage, DEVICES["iCE40UP5K-SG48"], lambda over: f"advice for {over}")
    message = str(info.value)
    assert "logic: needs 6000, iCE40UP5K has 5280" in message
    assert "dsp: needs 9, iCE40UP5K has 8" in message
    assert "advice for ['logic', 'dsp']" in message


@pytest.mark.slow
def test_oversized_config_stops_before_place_and_route(tmp_path):
    # 64 int8 products need 32 SB_MAC16 even two to a block; the UP5K has 8.
    config = PRESETS["icebreaker"].replace(systolic_rows=8, systolic_cols=8)
    with pytest.raises(FitError) as info:
        build_board(BOARDS["icebreaker"], config, tmp_path)
    message = str(info.value)
    assert "dsp: needs" in message and "iCE40UP5K has 8" in message
    assert "--config icebreaker" in message
    assert not (tmp_path / "nextpnr-report.json").exists()
