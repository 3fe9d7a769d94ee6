"""``tritile sim gemm`` and ``tritile sim ternary``: the same flags, any problem size (tiled
as the driver tiles it, bit-exact, figures per tile), one-line errors with exit status 2."""

import json

import numpy as np
import pytest

from tritile.sw import requantize
from tritile.sw.cli import build_parser, main
from tritile.sw.commands.sim_engine import SUBCOMMANDS, _problem
from tritile.sw.engines import engine

from test_systolic_verilator import config_for
from test_ternary_verilator import config_for as ternary_config_for

# The designs of the engines' Verilator tests, so the builds are shared.
CONFIGS = {"gemm": config_for(4, 4), "ternary": ternary_config_for(3, 5, 0)}
COMMANDS = list(SUBCOMMANDS)


def _files(tmp_path, rng, command, m, k, n):
    weights = (-128, 128) if command == "gemm" else (-1, 2)
    arrays = {"x": rng.integers(-128, 128, (m, k)).astype(np.int8),
              "w": rng.integers(*weights, (k, n)).astype(np.int8),
              "bias": rng.integers(-3000, 3000, n).astype(np.int32),
              "mult": rng.integers(1 << 10, 1 << 12, n).astype(np.int32),
              "shift": np.full(n, 18, np.int32)}
    paths = {}
    for name, array in arrays.items():
        paths[name] = tmp_path / f"{name}.npy"
        np.save(paths[name], array)
    paths["config"] = tmp_path / "config.json"
    paths["config"].write_text(CONFIGS[command].to_json())
    return arrays, {name: str(path) for name, path in paths.items()}


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_a_problem_larger_than_the_config_is_tiled_and_bit_exact(command, tmp_path, rng,
                                                                 capsys):
    config = CONFIGS[command]
    # More rows than max_m and a K beyond max_k: the rows and K are split, the host adds
    # the partial sums, the bias, and requantizes.
    m, k, n = config.max_m + 3, config.max_k + 9, 7
    arrays, paths = _files(tmp_path, rng, command, m, k, n)
    out = tmp_path / "y.npy"
    status = main(["sim", command, "--x", paths["x"], "--w", paths["w"],
                   "--bias", paths["bias"], "--mult", paths["mult"], "--shift",
                   paths["shift"], "--relu", "--out", str(out), "--config", paths["config"],
                   "--json"])
    assert status == 0
    figures = json.loads(capsys.readouterr().out)
    spec = engine(SUBCOMMANDS[command][0])
    acc = spec.golden(arrays["x"], arrays["w"], arrays["bias"])
    np.testing.assert_array_equal(np.load(out), requantize(acc, arrays["mult"],
                                                            arrays["shift"], relu=True))
    assert (figures["m"], figures["k"], figures["n"]) == (m, k, n)
    assert figures["calls"] == len(figures["tiles"]) == 4          # 2 row blocks x 2 K tiles
    for tile in figures["tiles"]:
        assert tile["cycles"] == tile["predicted_cycles"]
    assert figures["cycles"] == sum(tile["cycles"] for tile in figures["tiles"])
    assert figures["macs"] == m * k * n


@pytest.mark.parametrize("command", COMMANDS)
def test_both_commands_take_the_same_flags_and_the_old_spellings(command):
    parser = build_parser()
    args = parser.parse_args(["sim", command, "--x", "X.npy", "--w", "W.npy", "--out",
                              "Y.npy", "--tile-k", "3", "--tile-n", "2"])
    assert (args.x, args.w, args.tile_k, args.tile_n) == ("X.npy", "W.npy", 3, 2)
    old = SUBCOMMANDS[command][2]
    args = parser.parse_args(["sim", command, old["x"], "X.npy", old["w"], "W.npy",
                              "--out", "Y.npy", old["tile_k"], "5", old["tile_n"], "6"])
    assert (args.x, args.w, args.tile_k, args.tile_n) == ("X.npy", "W.npy", 5, 6)
    # The registry's name of the engine is a subcommand too.
    args = parser.parse_args(["sim", SUBCOMMANDS[command][0], "--x", "X.npy", "--w",
                              "W.npy", "--out", "Y.npy"])
    assert args.engine == SUBCOMMANDS[command][0]


@pytest.mark.parametrize("command", COMMANDS)
def test_engine_size_alone_gives_a_design_sized_to_the_problem(command, tmp_path, rng):
    m, k, n = 9, 70, 30
    _, paths = _files(tmp_path, rng, command, m, k, n)
    args = build_parser().parse_args(["sim", command, "--x", paths["x"], "--w", paths["w"],
                                      "--out", "y.npy", "--tile-k", "6", "--tile-n", "5"])
    spec, config, tiling, *_ = _problem(args)
    assert spec.tile_size(config) == (6, 5)
    assert config.engines == (spec.name,)
    assert (tiling.tile_m, tiling.tile_k, tiling.tile_n) == (m, k, n)   # one call


def _error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    return err


@pytest.mark.parametrize("command", COMMANDS)
def test_bad_files_exit_2_with_one_line(command, tmp_path, rng, capsys):
    arrays, paths = _files(tmp_path, rng, command, 7, 13, 10)
    base = ["sim", command, "--out", str(tmp_path / "y.npy")]
    assert "does not exist" in _error(
        capsys, base + ["--x", str(tmp_path / "missing.npy"), "--w", paths["w"]])
    np.save(tmp_path / "f.npy", arrays["x"].astype(np.float32))
    assert "int8" in _error(capsys, base + ["--x", str(tmp_path / "f.npy"), "--w", paths["w"]])
    assert "K differs" in _error(capsys, base + ["--x", paths["w"], "--w", paths["w"]])
    np.save(tmp_path / "b3.npy", np.zeros(3, np.int32))
    assert "N = 10" in _error(capsys, base + ["--x", paths["x"], "--w", paths["w"],
                                              "--bias", str(tmp_path / "b3.npy")])
    assert "both --mult and --shift" in _error(
        capsys, base + ["--x", paths["x"], "--w", paths["w"], "--mult", paths["mult"]])
    assert "--relu needs --mult" in _error(
        capsys, base + ["--x", paths["x"], "--w", paths["w"], "--relu"])
    (tmp_path / "text.npy").write_text("not an array")
    assert "not a .npy" in _error(capsys, base + ["--x", str(tmp_path / "text.npy"),
                                                  "--w", paths["w"]])
    assert "unknown config" in _error(capsys, base + ["--x", paths["x"], "--w", paths["w"],
                                                      "--config", "no-such-preset"])
    assert "must both be 0" in _error(capsys, base + ["--x", paths["x"], "--w", paths["w"],
                                                      "--tile-n", "0"])


def test_ternary_weights_and_a_missing_engine_are_one_line_errors(tmp_path, rng, capsys):
    _, paths = _files(tmp_path, rng, "gemm", 7, 13, 10)
    base = ["sim", "ternary", "--x", paths["x"], "--w", paths["w"], "--out", "y.npy"]
    assert "values must be in" in _error(capsys, base)
    _, paths = _files(tmp_path, rng, "ternary", 7, 13, 10)
    base = ["sim", "ternary", "--x", paths["x"], "--w", paths["w"], "--out", "y.npy"]
    assert "has no ternary engine (it has systolic)" in _error(
        capsys, base + ["--config", "icebreaker"])
