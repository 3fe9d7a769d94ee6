"""Models as users export them, against onnxruntime (the ONNX reference).

Prints one JSON object. Usage::

    python bench/models.py [--device sim|golden|URL] [--samples N]

Every model comes from a real exporter, trained on the 8x8 digits (the demo's split):

- ``classifier``: scikit-learn's ``MLPClassifier`` (hidden 48 and 24, L2 alpha 0.01, seed 1;
  its first hidden layer has a dead unit) written by ``skl2onnx.to_onnx`` (with ZipMap)
  and run by ``tritile run``'s path: int8 on the device with calibration, the classifier's
  tail on the host. Figures: scikit-learn's own accuracy, tritile's, golden agreement, and
  the float reference against onnxruntime (largest relative difference of the
  probabilities, label agreement).
- ``qdq``: the same file and a second classifier (hidden 32, alpha 1e-4, seed 0) through
  ``onnxruntime.quantization``: ``quant_pre_process`` (MatMul+Add fused into Gemm), cut
  at the logits (``onnx.utils.extract_model``), ``quantize_static`` in QDQ format with
  symmetric int8 activations and int8 weights, per tensor and per channel; also the
  classifier with its tail, the logits model quantized without pre-processing, and the
  demo's float MLP (64-32-10) written as PyTorch's exporter writes ``nn.Linear`` layers
  (hand-built in that style: torch is not a dependency), whose float reference is also
  compared with onnxruntime's.
  Figures: the device's int8 output against onnxruntime's own int8 execution of the
  same file: top-1 agreement, outputs that differ and the largest difference in output
  LSBs (units of the output scale), and both accuracies.
"""

import argparse
import datetime
import json
import logging
import os
import platform
import sys
import tempfile
import warnings

import numpy as np

from tritile.sw.compiler import compile_model
from tritile.sw.config import load_config
from tritile.sw.digits import load_digits_split, train_demo_models
from tritile.sw.executor import backend_config, open_backend, run_checked
from tritile.sw.onnx_import import import_onnx

try:
    from onnxruntime.quantization.shape_inference import quant_pre_process
except ImportError:
    sys.exit("bench/models.py needs onnxruntime and skl2onnx: pip install -e '.[test]'")


def train(split, hidden, alpha, seed):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    classifier = MLPClassifier(hidden_layer_sizes=hidden, alpha=alpha, max_iter=500,
                               random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return classifier.fit(split.X_train, split.y_train)


def ort_run(path, X):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    outputs = session.run(names, {session.get_inputs()[0].name: X})
    return {name: (np.array([[row[k] for k in sorted(row)] for row in value], np.float32)
                   if isinstance(value, list) else value)
            for name, value in zip(names, outputs)}


def export(classifier, split, path):
    import onnx
    from skl2onnx import to_onnx

    onnx.save(to_onnx(classifier, split.X_train[:1]), path)
    return path


def linear_style(model, path):
    """Write a tritile Model as PyTorch's exporter writes ``nn.Linear`` layers: Gemm(x, W,
    b, transB=1) with W as (out, in) and a 1-D bias, then Relu (hand-built in that style)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, data = [], [], "x"
    for index, layer in enumerate(model.layers):
        inits += [numpy_helper.from_array(layer.W.T.copy(), f"fc{index}.weight"),
                  numpy_helper.from_array(layer.b, f"fc{index}.bias")]
        nodes.append(helper.make_node("Gemm", [data, f"fc{index}.weight", f"fc{index}.bias"],
                                      [f"linear{index}"], transB=1))
        data = f"linear{index}"
        if layer.activation == "relu":
            nodes.append(helper.make_node("Relu", [data], [f"relu{index}"]))
            data = f"relu{index}"
    graph = helper.make_graph(
        nodes, "main_graph",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", model.in_features])],
        [helper.make_tensor_value_info(data, TensorProto.FLOAT, ["batch", model.out_features])],
        initializer=inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def logits_model(float_path, path, pre_process=True):
    """Cut the classifier at its logits, pre-processed (MatMul+Add -> Gemm) or not."""
    import onnx

    if pre_process:
        quant_pre_process(str(float_path), f"{path}.pre.onnx", skip_symbolic_shape=True)
        float_path = f"{path}.pre.onnx"
    graph = onnx.load(str(float_path)).graph
    logits = next(node.input[0] for node in graph.node if node.op_type == "Softmax")
    onnx.utils.extract_model(str(float_path), str(path), [graph.input[0].name], [logits])
    return path


def quantize(float_path, path, calib, per_channel):
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    import onnx

    name = onnx.load(str(float_path)).graph.input[0].name

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{name: calib[i:i + 128]} for i in range(0, len(calib), 128)])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(str(float_path), str(path), Batches(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    per_channel=per_channel, extra_options={"ActivationSymmetric": True})
    return path


def run(backend, path, X, calib=None):
    """Run ``path`` as ``tritile run`` does; return (model, result, agreement, named outputs)."""
    model = import_onnx(path)
    program = compile_model(model, backend_config(backend), "int8", calib=calib)
    result, _, agreement = run_checked(program, backend, X)
    return model, program, result, agreement, model.named_outputs(result.outputs)


def classifier_figures(backend, classifier, split, path, X, y):
    model, program, result, agreement, outputs = run(backend, path, X, calib=split.X_train)
    reference, ours = ort_run(path, X), model.predict(X)
    probabilities = reference["output_probability"]
    rel = np.abs(ours["output_probability"] - probabilities) / np.maximum(
        np.abs(probabilities), 1e-6)
    dead = np.max(np.abs(classifier.coefs_[0]), axis=0) < 2e-10
    return {
        "hidden": list(classifier.hidden_layer_sizes), "alpha": classifier.alpha,
        "dead_units": int(dead.sum()),
        "dead_unit_bias": [float(b) for b in classifier.intercepts_[0][dead]],
        "scikit_learn_accuracy": float(np.mean(classifier.predict(X) == y)),
        "tritile_int8_accuracy": float(np.mean(outputs["output_label"] == y)),
        "golden_agreement": agreement,
        "cycles_per_inference": None if result.cycles is None else result.cycles / len(X),
        "float_reference_vs_onnxruntime": {
            "largest_relative_difference": float(rel[probabilities > 1e-6].max()),
            "label_agreement": float(np.mean(ours["output_label"]
                                             == reference["output_label"])),
        },
    }


def qdq_figures(backend, path, X, y):
    model, program, result, agreement, outputs = run(backend, path, X)
    reference = ort_run(path, X)
    figures = {"golden_agreement": agreement}
    label = next((name for name in outputs if "label" in name), None)
    if label is not None:
        probabilities = next(name for name in outputs if name != label)
        figures.update(
            largest_probability_difference=float(np.max(np.abs(
                outputs[probabilities] - reference[probabilities]))),
            top1_agreement=float(np.mean(outputs[label] == reference[label])),
            tritile_accuracy=float(np.mean(outputs[label] == y)),
            onnxruntime_accuracy=float(np.mean(reference[label] == y)))
        return figures
    s_y = np.float32(program.layers[-1].s_y)
    ours = result.integers[-1].astype(np.int64)
    theirs = np.rint(next(iter(reference.values())) / s_y).astype(np.int64)
    figures.update(
        top1_agreement=float(np.mean(ours.argmax(axis=1) == theirs.argmax(axis=1))),
        outputs_differing=int(np.sum(ours != theirs)), outputs=int(ours.size),
        largest_difference_lsb=int(np.max(np.abs(ours - theirs))),
        tritile_accuracy=float(np.mean(ours.argmax(axis=1) == y)),
        onnxruntime_accuracy=float(np.mean(theirs.argmax(axis=1) == y)))
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="sim")
    parser.add_argument("--config", default="sim-small")
    parser.add_argument("--samples", type=int, help="first N held-out images (default 450)")
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.ERROR)     # quantize_static's pre-processing hint
    import onnxruntime

    split = load_digits_split()
    X, y = split.X_test[:args.samples], split.y_test[:args.samples]
    dead_unit = train(split, (48, 24), 1e-2, 1)
    plain = train(split, (32,), 1e-4, 0)
    report = {"date": datetime.date.today().isoformat(), "device": args.device,
              "samples": len(X), "python": platform.python_version(),
              "onnxruntime": onnxruntime.__version__}
    with tempfile.TemporaryDirectory() as tmp, \
            open_backend(args.device, load_config(args.config)) as backend:
        report["config_id"] = backend_config(backend).config_id
        at = lambda name: os.path.join(tmp, name)        # noqa: E731
        classifier = export(dead_unit, split, at("classifier.onnx"))
        report["classifier"] = classifier_figures(backend, dead_unit, split, classifier, X, y)
        second = export(plain, split, at("second.onnx"))
        cases = [("classifier logits", classifier, True, False),
                 ("classifier logits", classifier, True, True),
                 ("second logits", second, True, False),
                 ("second logits", second, True, True),
                 ("second logits, MatMul+Add without pre-processing", second, False, True)]
        demo = linear_style(train_demo_models(split)[0], at("demo.onnx"))
        reference = next(iter(ort_run(demo, X).values()))
        report["demo_float_vs_onnxruntime"] = {"largest_relative_difference": float(np.max(
            np.abs(import_onnx(demo).forward(X) - reference)
            / np.maximum(np.abs(reference), 1e-6)))}
        cases += [("demo MLP (nn.Linear style)", demo, None, False),
                  ("demo MLP (nn.Linear style)", demo, None, True)]
        qdq = {}
        for index, (label, float_path, pre_process, per_channel) in enumerate(cases):
            name = f"{label}, {'per-channel' if per_channel else 'per-tensor'}"
            logits = float_path if pre_process is None else \
                logits_model(float_path, at(f"logits{index}.onnx"), pre_process)
            try:
                path = quantize(logits, at(f"qdq{index}.onnx"), split.X_train, per_channel)
            except ValueError as exc:   # onnxruntime's own failure, reported as such
                qdq[name] = {"quantize_static_failed": str(exc)}
                continue
            qdq[name] = qdq_figures(backend, path, X, y)
        for pre_process in (True, False):
            float_path = classifier
            if pre_process:
                float_path = at("classifier-pre.onnx")
                quant_pre_process(classifier, float_path, skip_symbolic_shape=True)
            path = quantize(float_path, at(f"classifier-qdq-{pre_process}.onnx"),
                            split.X_train, False)
            name = "pre-processed" if pre_process else "no pre-processing"
            qdq[f"classifier with its tail (ZipMap), {name}, per-tensor"] = \
                qdq_figures(backend, path, X, y)
        report["qdq"] = qdq
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    sys.exit(main())
