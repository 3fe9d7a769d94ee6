"""Compiled program files: round trips, and one-line refusals of truncated, corrupt,
foreign, other-version and other-config files before anything runs."""

import json
import re
import struct

import numpy as np
import onnx
import pytest

from onnx_models import keras_style, torch_cnn
from tritile.sw.cli import main
from tritile.sw.compiler import compile_model
from tritile.sw.config import PRESETS
from tritile.sw.executor import GoldenBackend, execute
from tritile.sw.onnx_import import import_onnx
from tritile.sw.program_file import MAGIC, ProgramFileError, load_program, save_program

CONFIG = PRESETS["sim-small"]


@pytest.mark.parametrize("source, shape, engine", [
    (torch_cnn, (3, 9, 8), "int8"), (torch_cnn, (3, 9, 8), "ternary"),
    (keras_style, (8, 8), "int8"), (keras_style, (8, 8), "ternary")])
def test_programs_round_trip(tmp_path, source, shape, engine, rng):
    model = import_onnx(source())
    X = rng.standard_normal((12, *shape)).astype(np.float32)
    program = compile_model(model, CONFIG, engine, calib=X)
    save_program(program, tmp_path / "p.tritile")
    loaded = load_program(tmp_path / "p.tritile")
    assert loaded.config_id == program.config_id and loaded.config == program.config
    a, b = (execute(p, GoldenBackend(CONFIG), X) for p in (program, loaded))
    for x, y in zip(a.integers, b.integers):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.outputs, b.outputs)
    for name, value in program.named_outputs(a.outputs).items():
        np.testing.assert_array_equal(loaded.named_outputs(b.outputs)[name], value)
    assert loaded.summary() == program.summary()


@pytest.fixture
def program_file(tmp_path, rng):
    model = import_onnx(torch_cnn())
    X = rng.standard_normal((4, 3, 9, 8)).astype(np.float32)
    path = tmp_path / "cnn.tritile"
    save_program(compile_model(model, CONFIG, "int8", calib=X), path)
    np.save(tmp_path / "x.npy", X)
    return path


def _damaged(path, name, data):
    out = path.with_name(name)
    out.write_bytes(data)
    return out


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:100], "is truncated: its header gives \\d+ bytes, the file has 100"),
    (lambda b: b[:10], "is truncated: 10 bytes, fewer than a header"),
    (lambda b: b + b"x", "is followed by extra bytes"),
    (lambda b: b[:300] + bytes([b[300] ^ 1]) + b[301:], "is corrupt: its CRC-32 is"),
    (lambda b: b"\x93NUMPY" + b[6:], "is not a tritile program file"),
    (lambda b: b"", "is not a tritile program file"),
    (lambda b: b[:8] + struct.pack("<H", 9) + b[10:], "is a version 9 program file"),
])
def test_damaged_files_are_one_line_errors(program_file, damage, message):
    path = _damaged(program_file, "bad.tritile", damage(program_file.read_bytes()))
    with pytest.raises(ProgramFileError, match=message) as info:
        load_program(path)
    assert "\n" not in str(info.value) and "bad.tritile" in str(info.value)


def test_run_refuses_bad_files_before_opening_the_device(program_file, capsys):
    X = str(program_file.with_name("x.npy"))
    bad = _damaged(program_file, "t.tritile", program_file.read_bytes()[:-1])
    # An unreachable device URL: any attempt to open it would be a different error.
    for argv, message in [
            ([str(bad)], "t.tritile is truncated"),
            ([str(program_file), "--config", "icebreaker"],
             "was compiled for config .* not for --config icebreaker"),
            ([str(program_file), "--engine", "ternary"], "--engine applies to ONNX models"),
            ([str(program_file), "--calib", X], "--calib applies to ONNX models")]:
        assert main(["run", *argv, "--input", X, "--device", "socket://127.0.0.1:9"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("tritile run: error:")
        assert re.search(message, err[0])


def test_compile_then_run_on_golden(tmp_path, rng, capsys):
    onnx.save(torch_cnn(), tmp_path / "m.onnx")
    X = rng.standard_normal((5, 3, 9, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    out = tmp_path / "m.tritile"
    assert main(["compile", str(tmp_path / "m.onnx"), "--calib", str(tmp_path / "x.npy"),
                 "--engine", "ternary", "-o", str(out)]) == 0
    assert out.read_bytes().startswith(MAGIC)
    capsys.readouterr()
    assert main(["run", str(out), "--input", str(tmp_path / "x.npy"), "--device", "golden",
                 "--json", "--out", str(tmp_path / "y.npz")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["engine"] == "ternary" and report["samples"] == 5
    assert report["golden_agreement"] == 1.0
    assert "link_bytes_per_inference" in report and "cycles_per_inference" in report
    y = np.load(tmp_path / "y.npz")["y"]
    assert y.shape == (5, 5) and np.allclose(np.exp(y).sum(axis=1), 1, atol=1e-5)
    assert main(["compile", str(tmp_path / "m.onnx"), "-o", str(out)]) == 2
    assert "need calibration inputs" in capsys.readouterr().err


@pytest.mark.slow
def test_pytorch_style_cnns_run_on_the_simulated_board(tmp_path, rng, capsys):
    """Both exporter styles (one per engine), as ONNX and as compiled files, agree with the
    golden model on every sample on the simulated board."""
    pytest.importorskip("tritile.sw.device")
    from onnx_models import dynamo_cnn

    onnx.save(torch_cnn(), tmp_path / "torch.onnx")
    dynamo_cnn(tmp_path / "dynamo.onnx")
    for name, shape, engine in (("torch", (3, 9, 8), "int8"),
                                ("dynamo", (2, 8, 8), "ternary")):
        X = rng.standard_normal((6, *shape)).astype(np.float32)
        np.save(tmp_path / "x.npy", X)
        model, compiled = tmp_path / f"{name}.onnx", tmp_path / f"{name}.tritile"
        assert main(["compile", str(model), "--calib", str(tmp_path / "x.npy"), "--engine",
                     engine, "-o", str(compiled)]) == 0
        for source, extra in ((model, ["--engine", engine]), (compiled, [])):
            capsys.readouterr()
            assert main(["run", str(source), "--input", str(tmp_path / "x.npy"), "--json",
                         *extra]) == 0
            report = json.loads(capsys.readouterr().out)
            assert report["golden_agreement"] == 1.0 and report["samples"] == 6
            assert report["cycles"] == report["predicted_cycles"]
            assert report["link_bytes_per_inference"] > 0
