"""`python -m tritile.sw.cli` (how the driver starts the simulated board) reports user
errors in one line, like the `tritile` script."""

import subprocess
import sys


def test_module_entry_point_reports_command_errors_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "tritile.sw.cli", "sim-board", "--netlist", str(tmp_path)],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"tritile sim-board: error: {tmp_path} holds no synthesized netlist (no netlist.json): "
        "give the output directory of 'tritile build'"]
