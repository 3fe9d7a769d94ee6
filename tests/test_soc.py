"""The SoC: construction rules, generated RTL, and the real UART pins through the board."""

import json
import os
import subprocess

import numpy as np
import pytest

from tritile.hw.soc import SoC
from tritile.sim.verilator import WAIVED_WARNINGS, ports_of
from tritile.sw import ternary_matmul
from tritile.sw.cli import main
from tritile.sw.device import Device
from tritile.sw.toolchain import find_verilator, verilator_env

from test_device import TEST_CONFIG


def test_engine_names_are_checked():
    with pytest.raises(ValueError, match="engines must be distinct names from systolic"):
        SoC(TEST_CONFIG, engines=("gpu",))
    with pytest.raises(TypeError, match="config must be an AcceleratorConfig"):
        SoC({"max_m": 4})


def test_engines_default_to_the_configs():
    int8_only = TEST_CONFIG.replace(ternary_lanes=0, ternary_fan_in=0)
    assert SoC(int8_only).engines == ("systolic",)
    assert SoC(TEST_CONFIG).engines == ("systolic", "ternary")
    with pytest.raises(ValueError, match="has no ternary engine"):
        SoC(int8_only, engines=("ternary",))


def test_capability_rom_holds_config_and_engines():
    soc = SoC(TEST_CONFIG, engines=("ternary",))
    from tritile.sw.protocol import parse_capability
    info, config = parse_capability(soc.capability)
    assert config == TEST_CONFIG and info["engines"] == ["ternary"]


@pytest.mark.slow
def test_generate_writes_rtl_that_verilator_lints_clean(tmp_path, capsys):
    config_file = tmp_path / "config.json"
    config_file.write_text(TEST_CONFIG.to_json())
    assert main(["generate", "--top", "soc", "--config", str(config_file),
                 "--out", str(tmp_path / "out")]) == 0
    sidecar = json.loads((tmp_path / "out" / "tritile_soc.json").read_text())
    assert sidecar["config_id"] == TEST_CONFIG.config_id
    verilog = (tmp_path / "out" / sidecar["file"]).read_text()
    assert sorted(ports_of(verilog, "tritile_soc")) == sorted(
        (p["direction"], p["name"], p["width"]) for p in sidecar["ports"])
    assert {p["name"] for p in sidecar["ports"]} == {"clk", "rst", "uart_rx", "uart_tx"}
    lint = subprocess.run(
        [find_verilator().path, "--lint-only", "-Wall",
         *(f"-Wno-{w}" for w in WAIVED_WARNINGS), "--top-module", "tritile_soc",
         str(tmp_path / "out" / sidecar["file"])],
        env=verilator_env(), capture_output=True, text=True)
    assert lint.returncode == 0 and "%Warning" not in lint.stderr, lint.stderr[:3000]


def test_generate_rtlil_and_bad_config(tmp_path, capsys):
    assert main(["generate", "--top", "ternary", "--format", "rtlil",
                 "--out", str(tmp_path)]) == 0
    assert (tmp_path / "tritile_ternary.il").read_text().startswith("attribute")
    assert main(["generate", "--config", "nonsense", "--out", str(tmp_path)]) == 2
    assert "unknown config 'nonsense'" in capsys.readouterr().err


@pytest.mark.slow
def test_bit_mode_drives_the_uart_pins():
    seed = int(os.environ.get("TRITILE_SEED", np.random.SeedSequence().entropy % (1 << 32)))
    print(f"seed={seed} (replay with TRITILE_SEED={seed})")
    rng = np.random.default_rng(seed)
    with Device.open("sim", config=TEST_CONFIG, mode="bit", progress=False) as dev:
        assert dev.info()["config_id"] == TEST_CONFIG.config_id
        q = rng.integers(-128, 128, (3, 7), dtype=np.int8)
        T = rng.integers(-1, 2, (7, 5), dtype=np.int8)
        np.testing.assert_array_equal(dev.ternary(q, T), ternary_matmul(q, T))
        counters = dev.counters()
        assert counters["bad_crc"] == counters["overruns"] == counters["timeouts"] == 0
