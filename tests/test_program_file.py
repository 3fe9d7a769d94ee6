"""Compiled program files: round trips, and one-line refusals of truncated, corrupt,
foreign, other-version and other-config files before anything runs."""

import json
import re
import struct
import zlib

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
from tritile.sw.program_lowering import lowered

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


def _rewrite_meta(path, change):
    """Rewrite a program file's metadata with ``change(meta)``, header and CRC made valid."""
    blob = path.read_bytes()
    _, version, meta_size, data_size = struct.unpack_from("<8sHIQ", blob)
    meta = json.loads(blob[22:22 + meta_size])
    change(meta)
    text = json.dumps(meta).encode()
    body = struct.pack("<8sHIQ", MAGIC, version, len(text), data_size) + text + \
        blob[22 + meta_size:-4]
    path.write_bytes(body + struct.pack("<I", zlib.crc32(body)))


@pytest.mark.parametrize("engine", ["int8", "ternary"])
def test_device_programs_round_trip(tmp_path, engine, rng):
    """On a config with program mode the file carries the device program (descriptors,
    weight and parameter images, buffers), which must be what the layers lower to."""
    config = CONFIG.replace(max_layers=8)
    model = import_onnx(keras_style())
    X = rng.standard_normal((12, 8, 8)).astype(np.float32)
    program = compile_model(model, config, engine, calib=X)
    path = tmp_path / "p.tritile"
    save_program(program, path)
    loaded = load_program(path)
    assert lowered(loaded).same_as(lowered(program))
    a = execute(program, GoldenBackend(config), X)
    b = execute(loaded, GoldenBackend(config), X)
    assert a.mode == b.mode == "program"
    np.testing.assert_array_equal(a.outputs, b.outputs)
    assert loaded.summary() == program.summary()

    def shift_weights(meta):
        meta["device_program"]["descriptors"][0]["weight_base"] += 1

    _rewrite_meta(path, shift_weights)
    with pytest.raises(ProgramFileError, match="device program differs") as info:
        load_program(path)
    assert "\n" not in str(info.value)


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


def test_run_as_a_program_on_golden(tmp_path, rng, capsys):
    """tritile run on a config with program mode: a .tritile file runs as a device program
    and reports its bytes and cycles per inference; a model with no descriptor form is a
    one-line error under --mode program and runs under --mode auto."""
    config = tmp_path / "programs.json"
    config.write_text(json.dumps({"max_layers": 8}))
    onnx.save(keras_style(), tmp_path / "k.onnx")
    onnx.save(torch_cnn(), tmp_path / "t.onnx")
    np.save(tmp_path / "k.npy", rng.standard_normal((4, 8, 8)).astype(np.float32))
    np.save(tmp_path / "t.npy", rng.standard_normal((4, 3, 9, 8)).astype(np.float32))
    out = tmp_path / "k.tritile"
    assert main(["compile", str(tmp_path / "k.onnx"), "--calib", str(tmp_path / "k.npy"),
                 "--config", str(config), "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["run", str(out), "--input", str(tmp_path / "k.npy"), "--device", "golden",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["mode"] == "program" and report["golden_agreement"] == 1.0
    assert report["model_bytes_per_inference"] > 0
    assert report["predicted_cycles_per_inference"] > 0
    argv = ["run", str(tmp_path / "t.onnx"), "--input", str(tmp_path / "t.npy"),
            "--device", "golden", "--config", str(config)]
    assert main(argv + ["--mode", "program"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("tritile run: error:") and "does not fit program mode" in err
    assert "--mode layers" in err
    assert main(argv + ["--mode", "auto", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mode"] == "layers"


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
