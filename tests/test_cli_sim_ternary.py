"""``tritile sim ternary``: bit-exact output through the command line, one-line errors."""

import json
import subprocess
import sys

import numpy as np
import pytest

from tritile.sw import AcceleratorConfig, requant_params, requantize, ternary_matmul
from tritile.sw.cli import main

# The (4, 8) design of test_ternary_verilator.py, so the Verilator build is shared.
CONFIG = AcceleratorConfig(ternary_lanes=4, ternary_fan_in=8, max_m=6, max_k=40, max_n=20,
                           act_depth=240, trit_depth=800, out_depth=120)


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(7)
    X = rng.integers(-128, 128, size=(5, 37), dtype=np.int8)
    T = rng.integers(-1, 2, size=(37, 11), dtype=np.int8)
    mult, shift = requant_params(np.full(11, 1 / 150))
    paths = {"x": tmp_path / "X.npy", "t": tmp_path / "T.npy", "m": tmp_path / "M.npy",
             "s": tmp_path / "S.npy", "config": tmp_path / "config.json"}
    for key, value in (("x", X), ("t", T), ("m", mult), ("s", shift)):
        np.save(paths[key], value)
    paths["config"].write_text(CONFIG.to_json())
    return paths, X, T, mult, shift


def _cli(*argv):
    return subprocess.run([sys.executable, "-m", "tritile.sw.cli", "sim", "ternary", *argv],
                          capture_output=True, text=True)


@pytest.mark.slow
def test_raw_and_requantized_runs_are_bit_exact(files, tmp_path):
    paths, X, T, mult, shift = files
    out = tmp_path / "acc.npy"
    result = _cli("--x", str(paths["x"]), "--t", str(paths["t"]), "--out", str(out),
                  "--config", str(paths["config"]), "--packing", "2bit", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout)
    assert {"cycles", "ternary_macs", "macs_per_cycle", "utilization", "predicted_cycles",
            "wall_seconds", "cycles_per_second"} <= set(figures)
    assert figures["cycles"] == figures["predicted_cycles"]
    assert figures["ternary_macs"] == 5 * 37 * 11
    acc = np.load(out)
    assert acc.dtype == np.int32
    np.testing.assert_array_equal(acc, ternary_matmul(X, T))

    result = _cli("--x", str(paths["x"]), "--t", str(paths["t"]), "--out", str(out),
                  "--config", str(paths["config"]), "--mult", str(paths["m"]),
                  "--shift", str(paths["s"]), "--relu")
    assert result.returncode == 0, result.stderr[-2000:]
    y = np.load(out)
    assert y.dtype == np.int8
    np.testing.assert_array_equal(y, requantize(ternary_matmul(X, T), mult, shift, relu=True))


@pytest.mark.parametrize("change, message", [
    ({"t": np.ones((37, 11), np.float32)}, "T must have dtype int8"),
    ({"t": np.full((37, 11), 2, np.int8)}, "values must be in"),
    ({"t": np.ones((36, 11), np.int8)}, "inner dimensions differ"),
    ({"x": np.ones((5, 41), np.int8), "t": np.ones((41, 11), np.int8)},
     "K must be an integer between 1 and 40"),
])
def test_bad_arrays_exit_2_with_one_line(files, capsys, change, message):
    paths, *_ = files
    for key, value in change.items():
        np.save(paths[key], value)
    status = main(["sim", "ternary", "--x", str(paths["x"]), "--t", str(paths["t"]),
                   "--out", str(paths["x"].parent / "o.npy"), "--config", str(paths["config"])])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert message in err and "\n" not in err


@pytest.mark.parametrize("extra, message", [
    (["--mult", "M"], "both --mult and --shift"),
    (["--relu"], "--relu needs --mult"),
    (["--lanes", "0"], "ternary_lanes and ternary_fan_in must both be 0"),
    (["--config", "no-such-preset"], "unknown config"),
    (["--config", "icebreaker"], "has no ternary engine (it has systolic)"),
])
def test_bad_options_exit_2(files, capsys, extra, message):
    paths, *_ = files
    extra = [str(paths["m"]) if item == "M" else item for item in extra]
    status = main(["sim", "ternary", "--x", str(paths["x"]), "--t", str(paths["t"]),
                   "--out", str(paths["x"].parent / "o.npy"), *extra])
    assert status == 2
    assert message in capsys.readouterr().err


def test_missing_file_exits_2(files, capsys):
    paths, *_ = files
    status = main(["sim", "ternary", "--x", str(paths["x"].parent / "nope.npy"),
                   "--t", str(paths["t"]), "--out", "o.npy"])
    assert status == 2
    assert "cannot read X" in capsys.readouterr().err
