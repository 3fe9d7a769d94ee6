"""CNNs in both PyTorch exporter styles run whole on the simulated board as programs.

The models are built with onnx.helper in the style each exporter writes
(tests/onnx_models.py: ``torch_program_cnn`` as ``torch.onnx.export(..., dynamo=False)``,
``dynamo_program_cnn`` as ``dynamo=True`` with external data); ``tritile run --mode
program`` must run them as one device program (weights resident, one RUN_PROGRAM per
image), every output equal to the golden model's layer-by-layer numerics, the int8 output
close to onnxruntime's float output, and the link bytes per inference within issue #14's
bound ``(input bytes + output bytes) * 1.1 + 128``.
"""

import json

import numpy as np
import onnx
import pytest

from onnx_models import dynamo_program_cnn, ort_output, torch_program_cnn
from tritile.sw.cli import main


@pytest.mark.slow
@pytest.mark.parametrize("style", ["torchscript", "dynamo"])
@pytest.mark.parametrize("engine", ["int8", "ternary"])
def test_exporter_cnns_run_as_programs_on_the_simulated_board(tmp_path, rng, capsys, style,
                                                              engine):
    if style == "torchscript":
        path, shape = tmp_path / "cnn.onnx", (1, 8, 8)
        onnx.save(torch_program_cnn(), path)
        outputs = 5
    else:
        path, shape = dynamo_program_cnn(tmp_path / "cnn.onnx"), (2, 8, 8)
        outputs = 3
    X = rng.standard_normal((12, *shape)).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    capsys.readouterr()
    code = main(["run", str(path), "--input", str(tmp_path / "x.npy"), "--engine", engine,
                 "--mode", "program", "--out", str(tmp_path / "y.npz"), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert report["mode"] == "program" and report["device"] == "sim"
    assert report["golden_agreement"] == 1.0      # device vs the layer-by-layer numerics
    input_bytes, output_bytes = int(np.prod(shape)), 4 * outputs   # int8 in, int32 logits
    assert report["link_bytes_per_inference"] <= (input_bytes + output_bytes) * 1.1 + 128
    if engine == "int8":
        y = next(iter(np.load(tmp_path / "y.npz").values()))
        ref = ort_output(onnx.load(path), X)
        assert y.shape == ref.shape
        assert np.max(np.abs(y - ref)) < 0.1 * np.max(np.abs(ref)) + 0.05
