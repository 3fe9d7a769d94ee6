"""Models whose tensors live in external data files (as the dynamo exporter writes them)
load from their path; a missing or truncated data file is a one-line error naming it."""

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
from onnx_models import dynamo_style, ort_output  # noqa: E402

from tritile.sw.cli import main  # noqa: E402
from tritile.sw.onnx_import import OnnxImportError, import_onnx  # noqa: E402


def test_external_data_model_matches_onnxruntime(tmp_path, rng):
    path = dynamo_style(tmp_path / "mlp.onnx")
    assert (tmp_path / "mlp.onnx.data").stat().st_size == 4 * (64 * 32 + 32 + 32 * 10)
    model = import_onnx(path)
    assert [(l.in_features, l.out_features, l.activation) for l in model.layers] == \
        [(64, 32, "relu"), (32, 10, None)]
    X = rng.standard_normal((6, 64)).astype(np.float32)
    reference = ort_output(path, X)
    # float32 sums of 64 and 32 terms in another order than onnxruntime's: the rounding
    # scales with the outputs' size (about 10 here), so a logit near 0 may differ by about
    # 1e-6 (seen: 1.3e-6 at -0.018), whatever its own size.
    np.testing.assert_allclose(model.forward(X), reference, rtol=1e-5,
                               atol=1e-6 * np.abs(reference).max())


def test_missing_and_truncated_data_file_name_it(tmp_path):
    path = dynamo_style(tmp_path / "mlp.onnx")
    data = tmp_path / "mlp.onnx.data"
    content = data.read_bytes()
    data.write_bytes(content[:-7])
    with pytest.raises(OnnxImportError) as info:
        import_onnx(path)
    assert str(info.value).count("\n") == 0
    assert f"external data file {data} is truncated" in str(info.value)
    data.unlink()
    with pytest.raises(OnnxImportError, match=f"external data file {data} is missing"):
        import_onnx(path)
    with pytest.raises(OnnxImportError, match="import the model from its file path"):
        import_onnx(path.read_bytes())


def test_cli_reports_a_missing_data_file_in_one_line(tmp_path, capsys):
    path = dynamo_style(tmp_path / "mlp.onnx")
    np.save(tmp_path / "x.npy", np.zeros((2, 64), np.float32))
    (tmp_path / "mlp.onnx.data").unlink()
    status = main(["run", str(path), "--input", str(tmp_path / "x.npy"), "--device", "golden"])
    err = capsys.readouterr().err
    assert status == 2
    assert err.strip().count("\n") == 0 and "mlp.onnx.data is missing" in err
