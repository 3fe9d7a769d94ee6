"""``tritile sim gemm``: results equal the golden model; bad files exit 2 with one line."""

import json

import numpy as np
import pytest

from tritile.sw import gemm_int8, requantize
from tritile.sw.cli import main

from test_systolic_verilator import config_for


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(7)
    arrays = {"a": rng.integers(-128, 128, (7, 13)).astype(np.int8),
              "w": rng.integers(-128, 128, (13, 10)).astype(np.int8),
              "bias": rng.integers(-3000, 3000, 10).astype(np.int32),
              "mult": rng.integers(1 << 13, 1 << 15, 10).astype(np.int32),
              "shift": np.full(10, 20, np.int32)}
    paths = {}
    for name, array in arrays.items():
        paths[name] = tmp_path / f"{name}.npy"
        np.save(paths[name], array)
    # Same design as the 4x4 Verilator test, so the two share one cached build.
    paths["config"] = tmp_path / "config.json"
    paths["config"].write_text(config_for(4, 4).to_json())
    return arrays, paths


@pytest.mark.slow
def test_requantized_gemm_with_json_figures(files, tmp_path, capsys):
    arrays, paths = files
    out = tmp_path / "y.npy"
    status = main(["sim", "gemm", "--a", str(paths["a"]), "--w", str(paths["w"]),
                   "--bias", str(paths["bias"]), "--mult", str(paths["mult"]),
                   "--shift", str(paths["shift"]), "--relu", "--out", str(out),
                   "--config", str(paths["config"]), "--json"])
    assert status == 0
    figures = json.loads(capsys.readouterr().out)
    expected = requantize(gemm_int8(arrays["a"], arrays["w"], arrays["bias"]),
                          arrays["mult"], arrays["shift"], relu=True)
    result = np.load(out)
    assert result.dtype == np.int8
    np.testing.assert_array_equal(result, expected)
    assert set(figures) == {"cycles", "mac_cycles", "utilization", "predicted_cycles",
                            "wall_seconds", "cycles_per_second"}
    assert figures["mac_cycles"] == 7 * 13 * 10
    assert figures["cycles"] == figures["predicted_cycles"]


def _error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    return err


def test_bad_files_exit_2_with_one_line(files, tmp_path, capsys):
    arrays, paths = files
    base = ["sim", "gemm", "--out", str(tmp_path / "y.npy")]
    assert "does not exist" in _error(
        capsys, base + ["--a", str(tmp_path / "missing.npy"), "--w", str(paths["w"])])
    np.save(tmp_path / "f.npy", arrays["a"].astype(np.float32))
    assert "int8" in _error(
        capsys, base + ["--a", str(tmp_path / "f.npy"), "--w", str(paths["w"])])
    assert "K differs" in _error(
        capsys, base + ["--a", str(paths["w"]), "--w", str(paths["w"])])
    np.save(tmp_path / "b3.npy", np.zeros(3, np.int32))
    assert "N = 10" in _error(
        capsys, base + ["--a", str(paths["a"]), "--w", str(paths["w"]),
                        "--bias", str(tmp_path / "b3.npy")])
    assert "both --mult and --shift" in _error(
        capsys, base + ["--a", str(paths["a"]), "--w", str(paths["w"]),
                        "--mult", str(paths["mult"])])
    (tmp_path / "text.npy").write_text("not an array")
    assert "not a .npy" in _error(
        capsys, base + ["--a", str(tmp_path / "text.npy"), "--w", str(paths["w"])])


def test_a_problem_beyond_the_config_is_refused(files, tmp_path, capsys):
    _, paths = files
    np.save(tmp_path / "big.npy", np.zeros((17, 13), np.int8))
    err = _error(capsys, ["sim", "gemm", "--a", str(tmp_path / "big.npy"), "--w",
                          str(paths["w"]), "--out", str(tmp_path / "y.npy"),
                          "--config", str(paths["config"])])
    assert "max_m" in err
