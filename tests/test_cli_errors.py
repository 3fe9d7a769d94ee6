"""Errors a user can reach from ``tritile build``, ``tritile program`` and ``tritile run``'s
link: each is one line on stderr with its exit status (no traceback), and nothing is
written, run or lost.

The programmer is a real executable on PATH (a shell script standing in for a board that
is not attached), so the command's own lookup, argument substitution and exit-status
handling run unchanged.
"""

import json
import os
import socket
import stat
import threading

import numpy as np
import pytest

from tritile.sw import PRESETS
from tritile.sw.cli import main


def _one_line_error(capsys, command):
    """Return the error line: the last on stderr, after the build's progress lines only."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert [line for line in lines if line.startswith("tritile ")] == lines[-1:], err
    assert lines[-1].startswith(f"tritile {command}: error: "), err
    return lines[-1]


def _programmer(tmp_path, name, status):
    """Put an executable ``name`` on PATH that records its arguments and exits ``status``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / f"{name}.args"
    script = bin_dir / name
    script.write_text(f'#!/bin/sh\necho "$@" >> "{log}"\n'
                      f'echo "{name}: no device attached" >&2\nexit {status}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return bin_dir, log


def test_build_without_yosys_is_one_line_and_writes_no_bitstream(tmp_path, capsys,
                                                                 monkeypatch):
    monkeypatch.setenv("YOSYS", str(tmp_path / "no-such-yosys"))
    out = tmp_path / "out"
    assert main(["build", "--board", "icebreaker", "--out", str(out)]) == 2
    line = _one_line_error(capsys, "build")
    assert f"yosys not found: $YOSYS={tmp_path / 'no-such-yosys'} is not an executable" in line
    assert not (out / "top.bin").exists() and not (out / "report.json").exists()


def test_build_with_an_unreadable_config_is_one_line(tmp_path, capsys):
    assert main(["build", "--board", "icebreaker", "--config", str(tmp_path / "none.json"),
                 "--out", str(tmp_path / "out")]) == 2
    line = _one_line_error(capsys, "build")
    assert f"cannot read config file {tmp_path / 'none.json'}" in line
    assert not (tmp_path / "out").exists()


def test_program_a_missing_bitstream_runs_no_programmer(tmp_path, capsys, monkeypatch):
    bin_dir, log = _programmer(tmp_path, "iceprog", 0)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    missing = tmp_path / "top.bin"
    assert main(["program", "--board", "icebreaker", str(missing)]) == 2
    assert _one_line_error(capsys, "program").endswith(f"bitstream {missing} does not exist")
    assert not log.exists()


def test_program_reports_a_failing_programmer_and_keeps_the_bitstream(tmp_path, capfd,
                                                                      monkeypatch):
    bin_dir, log = _programmer(tmp_path, "iceprog", 3)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    bitstream = tmp_path / "top.bin"
    bitstream.write_bytes(b"\xff\x00\xaa bitstream")
    assert main(["program", "--board", "icebreaker", str(bitstream)]) == 2
    captured = capfd.readouterr()
    assert "iceprog: no device attached" in captured.err        # the tool's own words
    line = captured.err.strip().splitlines()[-1]
    assert line == f"tritile program: error: iceprog {bitstream} failed with exit code 3"
    assert log.read_text().split() == [str(bitstream)]
    assert bitstream.read_bytes() == b"\xff\x00\xaa bitstream"


def test_program_runs_the_board_programmer_on_the_file(tmp_path, capsys, monkeypatch):
    bin_dir, log = _programmer(tmp_path, "openFPGALoader", 0)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    bitstream = tmp_path / "top.bit"
    bitstream.write_bytes(b"bits")
    assert main(["program", "--board", "ulx3s-85f", str(bitstream)]) == 0
    assert str(bitstream) in log.read_text().split()


@pytest.mark.slow
def test_build_of_a_config_too_big_for_the_board_is_one_line(tmp_path, capsys):
    # 64 int8 products need 32 SB_MAC16 even two to a block; the UP5K has 8. yosys runs,
    # the fit check stops the flow before nextpnr.
    config = tmp_path / "big.json"
    config.write_text(PRESETS["icebreaker"].replace(systolic_rows=8, systolic_cols=8).to_json())
    out = tmp_path / "out"
    assert main(["build", "--board", "icebreaker", "--config", str(config),
                 "--out", str(out)]) == 2
    line = _one_line_error(capsys, "build")
    assert "design does not fit iCE40UP5K" in line and "dsp: needs" in line
    assert "--config icebreaker" in line
    assert not (out / "nextpnr-report.json").exists() and not (out / "top.bin").exists()


@pytest.mark.slow
def test_build_that_misses_timing_exits_1_and_keeps_the_bitstream(tmp_path, capsys):
    # The preset fills the UP5K to 96-99 %; at twice its clock no placement meets timing.
    config = tmp_path / "fast.json"
    config.write_text(PRESETS["icebreaker"].replace(clock_hz=48_000_000).to_json())
    out = tmp_path / "out"
    assert main(["build", "--board", "icebreaker", "--config", str(config), "--out", str(out),
                 "--attempts", "1", "--json"]) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["timing_met"] is False
    assert any(not clock["met"] for clock in report["clocks"].values())
    assert captured.err.strip().splitlines()[-1] == (
        "tritile build: timing not met (see the clocks above); the bitstream is written but "
        "may not work at 48 MHz: lower clock_hz in the config")
    assert (out / "top.bin").stat().st_size > 0
    assert json.loads((out / "report.json").read_text())["timing_met"] is False


def _model_files(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx_models import torch_style

    onnx.save(torch_style(), tmp_path / "m.onnx")
    np.save(tmp_path / "x.npy", np.zeros((2, 1, 8, 8), np.float32))
    return ["run", str(tmp_path / "m.onnx"), "--input", str(tmp_path / "x.npy"),
            "--out", str(tmp_path / "y.npy")]


def test_run_on_a_closed_port_is_one_line_and_writes_nothing(tmp_path, capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"socket://127.0.0.1:{probe.getsockname()[1]}"
    assert main([*_model_files(tmp_path), "--device", url]) == 2
    assert _one_line_error(capsys, "run").startswith(
        f"tritile run: error: device {url}: cannot open {url}: ")
    assert not (tmp_path / "y.npy").exists()


def test_run_on_a_port_that_never_answers_times_out_in_one_line(tmp_path, capsys):
    # A listener that accepts and stays silent: the driver's 4 attempts of 2 s each.
    server = socket.create_server(("127.0.0.1", 0))
    accepted = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    url = f"socket://127.0.0.1:{server.getsockname()[1]}"
    try:
        assert main([*_model_files(tmp_path), "--device", url]) == 2
    finally:
        for conn, _ in accepted:
            conn.close()
        server.close()
    assert _one_line_error(capsys, "run") == (
        f"tritile run: error: device {url}: no response from {url} to INFO after 4 attempts "
        f"(is the device on, and is {PRESETS['sim-small'].baud} baud right?)")
    assert not (tmp_path / "y.npy").exists()
