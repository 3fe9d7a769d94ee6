"""ONNX models for the import tests, written as the exporters users run write them, and
onnxruntime (the ONNX reference) to run them."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

def initializer(name, array, dtype=np.float32):
    return numpy_helper.from_array(np.asarray(array, dtype=dtype), name)


def weights(*shape, rng):
    return rng.standard_normal(shape).astype(np.float32) * 0.3


def graph_model(nodes, initializers, input_shape, output="y", inputs=(), opset=17,
                output_shape=("N", "out")):
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape), *inputs],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, list(output_shape))],
        initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def torch_style(seed=0):
    """PyTorch's exporter: Flatten, Gemm(x, W, b, transB=1) with W as (out, in), Relu.
    Weights are drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    W1, b1, W2, b2 = (weights(16, 64, rng=rng), weights(16, rng=rng),
                      weights(10, 16, rng=rng), weights(10, rng=rng))
    nodes = [
        helper.make_node("Flatten", ["x"], ["f"], axis=1, name="flatten"),
        helper.make_node("Gemm", ["f", "W1", "b1"], ["h"], transB=1, name="fc1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu1"),
        helper.make_node("Dropout", ["r"], ["d"], name="dropout"),
        helper.make_node("Gemm", ["d", "W2", "b2"], ["y"], transB=1, alpha=1.0, beta=1.0,
                         name="fc2"),
    ]
    return graph_model(nodes, [initializer("W1", W1), initializer("b1", b1),
                               initializer("W2", W2), initializer("b2", b2)], ["N", 1, 8, 8])


def keras_style(seed=0):
    """tf2onnx's exporter: Reshape by a constant, MatMul(x, W) with W as (in, out), Add.
    Weights are drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    W1, b1, W2, b2 = (weights(64, 16, rng=rng), weights(16, rng=rng),
                      weights(16, 10, rng=rng), weights(10, rng=rng))
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 64])
    nodes = [
        helper.make_node("Constant", [], ["s"], value=shape),
        helper.make_node("Reshape", ["x", "s"], ["f"]),
        helper.make_node("MatMul", ["f", "W1"], ["m1"]),
        helper.make_node("Add", ["m1", "b1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Identity", ["r"], ["i"]),
        helper.make_node("MatMul", ["i", "W2"], ["m2"]),
        helper.make_node("Add", ["b2", "m2"], ["y"]),
    ]
    return graph_model(nodes, [initializer("W1", W1), initializer("b1", b1),
                               initializer("W2", W2), initializer("b2", b2)], ["unk", 8, 8])


def dynamo_style(path, sizes=(64, 32, 10), seed=0):
    """Write an MLP as ``torch.onnx.export(..., dynamo=True)`` does, and return its path.

    Hand-built in that exporter's style (torch is too large a test dependency): opset 18,
    IR version 10, graph ``main_graph``, parameters named ``fc1.weight``/``fc1.bias`` and
    stored in ``MODEL.onnx.data`` beside the model, ``nn.Linear`` on a 2-D input as
    ``Gemm(x, weight, bias, transB=1)``, a second linear without bias as
    ``MatMul(x, Transpose(weight))`` and a dynamic batch axis named ``batch``. Weights
    are drawn from ``seed``.
    """
    rng = np.random.default_rng(seed)
    nodes, inits, data = [], [], "x"
    for index, (k, n) in enumerate(zip(sizes, sizes[1:]), start=1):
        last = index == len(sizes) - 1
        out = "linear" if index == 1 else f"linear_{index - 1}"
        inits.append(initializer(f"fc{index}.weight", weights(n, k, rng=rng)))
        if last:
            nodes.append(helper.make_node("Transpose", [f"fc{index}.weight"], [f"t_{index}"],
                                          perm=[1, 0], name=f"node_t_{index}"))
            nodes.append(helper.make_node("MatMul", [data, f"t_{index}"], [out],
                                          name=f"node_{out}"))
        else:
            inits.append(initializer(f"fc{index}.bias", weights(n, rng=rng)))
            nodes.append(helper.make_node("Gemm", [data, f"fc{index}.weight", f"fc{index}.bias"],
                                          [out], transB=1, name=f"node_{out}"))
            nodes.append(helper.make_node("Relu", [out], [f"relu_{index}"],
                                          name=f"node_relu_{index}"))
            out = f"relu_{index}"
        data = out
    return save_dynamo_style(path, nodes, inits, ["batch", sizes[0]], data,
                             ["batch", sizes[-1]])


def save_dynamo_style(path, nodes, inits, input_shape, output, output_shape):
    """Save a graph as the dynamo exporter does (opset 18, IR 10, graph ``main_graph``,
    every initializer in ``MODEL.onnx.data``); return ``path``."""
    graph = helper.make_graph(
        nodes, "main_graph",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, output_shape)],
        initializer=inits)
    proto = helper.make_model(graph, ir_version=10, producer_name="pytorch",
                              opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(proto, path, save_as_external_data=True, all_tensors_to_one_file=True,
              location=f"{path.name}.data", size_threshold=0)
    return path


def ort_session(model):
    """Return an onnxruntime session for a path or a ModelProto."""
    import onnxruntime

    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return onnxruntime.InferenceSession(source, providers=["CPUExecutionProvider"])


def ort_run(model, X):
    """Return onnxruntime's outputs of ``model`` for the input ``X``, by output name."""
    session = ort_session(model)
    feed = {session.get_inputs()[0].name: np.asarray(X, np.float32)}
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, feed)))


def ort_output(model, X):
    """Return onnxruntime's first output of ``model`` for ``X``."""
    return next(iter(ort_run(model, X).values()))


def sklearn_digits_mlp():
    """Return ``(classifier, split)``: scikit-learn's MLPClassifier trained on the digits.

    Hidden layers 48 and 24 with L2 regularization (alpha 0.01, seed 1), as users train
    it: the first hidden layer ends with a dead unit (input weights below 2e-10, bias
    about -0.13), which quantization must survive.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    from tritile.sw.digits import load_digits_split

    split = load_digits_split()
    classifier = MLPClassifier(hidden_layer_sizes=(48, 24), alpha=1e-2, max_iter=500,
                               random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        classifier.fit(split.X_train, split.y_train)
    return classifier, split


def sklearn_onnx(estimator, X, zipmap=True):
    """Return ``skl2onnx.to_onnx(estimator)`` as a user calls it (a classifier's ZipMap on
    or off; ``zipmap=True`` leaves the options at their defaults)."""
    from skl2onnx import to_onnx

    options = None if zipmap else {id(estimator): {"zipmap": False}}
    return to_onnx(estimator, X[:1].astype(np.float32), options=options)


def ort_probabilities(value):
    """Return ZipMap's list of {label: probability} as an (M, classes) array."""
    if isinstance(value, list):
        return np.array([[row[label] for label in sorted(row)] for row in value], np.float32)
    return value


def quantize_qdq(float_path, qdq_path, calib, per_channel=True, symmetric=True):
    """Quantize a float model file as onnxruntime's ``quantize_static`` does (QDQ format).

    ``symmetric`` selects int8 weights and symmetric int8 activations (the form tritile
    runs); otherwise asymmetric uint8 activations and int8 weights ("U8S8").
    """
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"x": calib[i:i + 16]} for i in range(0, len(calib), 16)])

        def get_next(self):
            return next(self.batches, None)

    options = dict(activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    if symmetric:
        options.update(activation_type=QuantType.QInt8,
                       extra_options={"ActivationSymmetric": True})
    quantize_static(str(float_path), str(qdq_path), Batches(), quant_format=QuantFormat.QDQ,
                    per_channel=per_channel, **options)
    return qdq_path


def conv_node(name, x, out, kernel, stride=1, pads=(0, 0, 0, 0), bias=True):
    """``nn.Conv2d`` as both PyTorch exporters write it: every attribute explicit."""
    inputs = [x, f"{name}.weight"] + ([f"{name}.bias"] if bias else [])
    return helper.make_node("Conv", inputs, [out], dilations=[1, 1], group=1,
                            kernel_shape=[kernel, kernel], pads=list(pads),
                            strides=[stride, stride], name=f"node_{name}")


def conv_params(name, c_in, c_out, kernel, bias=True, *, rng):
    params = [initializer(f"{name}.weight", weights(c_out, c_in, kernel, kernel, rng=rng))]
    return params + ([initializer(f"{name}.bias", weights(c_out, rng=rng))] if bias else [])


def _batch_norm_params(name, channels, rng):
    return [initializer(f"{name}.weight", 1 + weights(channels, rng=rng)),
            initializer(f"{name}.bias", weights(channels, rng=rng)),
            initializer(f"{name}.running_mean", weights(channels, rng=rng)),
            initializer(f"{name}.running_var", 0.5 + np.abs(weights(channels, rng=rng)))]


def _batch_norm_node(name, x, out, **attrs):
    return helper.make_node("BatchNormalization",
                            [x] + [f"{name}.{p}" for p in ("weight", "bias", "running_mean",
                                                           "running_var")],
                            [out], epsilon=1e-5, name=f"node_{name}", **attrs)


def torch_cnn(global_pool=False, seed=1):
    """A CNN as ``torch.onnx.export(..., dynamo=False)`` (TorchScript) writes it, opset 17.

    NCHW input (batch, 3, 9, 8); Conv with every attribute, BatchNormalization (as written
    with ``do_constant_folding=False``, momentum attribute included), Relu, MaxPool
    (``ceil_mode=0``), a second Conv without bias, AveragePool with ``count_include_pad=1``
    and padding, then ``Flatten(axis=1)`` (or, with ``global_pool``, ``nn.AdaptiveAvgPool2d(1)``
    as GlobalAveragePool first), ``Gemm(transB=1)`` and a LogSoftmax. Weights are drawn
    from ``seed``.
    """
    rng = np.random.default_rng(seed)
    features = 6 if global_pool else 6 * 4 * 4
    nodes = [
        conv_node("conv1", "x", "conv1_out", 3, pads=(1, 1, 1, 1)),
        _batch_norm_node("bn1", "conv1_out", "bn1_out", momentum=0.9),
        helper.make_node("Relu", ["bn1_out"], ["relu1"], name="relu1"),
        helper.make_node("MaxPool", ["relu1"], ["pool1"], ceil_mode=0, kernel_shape=[2, 2],
                         pads=[0, 0, 0, 0], strides=[2, 2], name="pool1"),
        conv_node("conv2", "pool1", "conv2_out", 2, bias=False),
        helper.make_node("Relu", ["conv2_out"], ["relu2"], name="relu2"),
        helper.make_node("AveragePool", ["relu2"], ["pool2"], ceil_mode=0,
                         count_include_pad=1, kernel_shape=[2, 2], pads=[1, 1, 1, 1],
                         strides=[1, 1], name="pool2"),
    ]
    last = "pool2"
    if global_pool:
        nodes.append(helper.make_node("GlobalAveragePool", [last], ["gap"], name="gap"))
        last = "gap"
    nodes += [
        helper.make_node("Flatten", [last], ["flat"], axis=1, name="flatten"),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], alpha=1.0,
                         beta=1.0, transB=1, name="fc"),
        helper.make_node("LogSoftmax", ["logits"], ["y"], axis=1, name="log_softmax"),
    ]
    inits = (conv_params("conv1", 3, 4, 3, rng=rng) + _batch_norm_params("bn1", 4, rng)
             + conv_params("conv2", 4, 6, 2, bias=False, rng=rng)
             + [initializer("fc.weight", weights(5, features, rng=rng)),
                initializer("fc.bias", weights(5, rng=rng))])
    return graph_model(nodes, inits, ["batch", 3, 9, 8], output_shape=("batch", 5))


def _global_mean_and_linear(x):
    """The dynamo exporter's ``AdaptiveAvgPool2d(1)`` (ReduceMean over axes given as a
    Constant input), ``flatten`` (a Reshape to a folded shape) and ``Linear(8, 3)``."""
    return [
        helper.make_node("Constant", [], ["mean_axes"],
                         value=helper.make_tensor("a", TensorProto.INT64, [2], [-1, -2])),
        helper.make_node("Constant", [], ["view_shape"],
                         value=helper.make_tensor("s", TensorProto.INT64, [2], [-1, 8])),
        helper.make_node("ReduceMean", [x, "mean_axes"], ["mean"], keepdims=1,
                         name="node_mean"),
        helper.make_node("Reshape", ["mean", "view_shape"], ["view"], name="node_view"),
        helper.make_node("Gemm", ["view", "fc.weight", "fc.bias"], ["linear"], transB=1,
                         name="node_linear"),
    ]


def _dynamo_params(rng):
    """Weights of the dynamo-style CNNs: conv1 (2 -> 4) with its BatchNorm, conv2 (4 -> 8),
    fc (8 -> 3), drawn in that order from ``rng``."""
    return (conv_params("conv1", 2, 4, 3, rng=rng) + _batch_norm_params("bn1", 4, rng)
            + conv_params("conv2", 4, 8, 3, rng=rng)
            + [initializer("fc.weight", weights(3, 8, rng=rng)),
               initializer("fc.bias", weights(3, rng=rng))])


def dynamo_cnn(path, seed=2):
    """Write a CNN as ``torch.onnx.export(..., dynamo=True)`` does; return its path.

    Opset 18, IR version 10, graph ``main_graph``, parameters in ``MODEL.onnx.data``:
    a Cast of the input (dtype promotion), Conv (stride 2), BatchNormalization after it
    (``training_mode`` left at 0), ``nn.ReLU6`` as Clip with min and max as constant
    inputs, a Conv with asymmetric pads, Relu, MaxPool, ``nn.AdaptiveAvgPool2d(1)`` as
    ReduceMean over axes ``[-1, -2]`` given as an input (keepdims=1), ``flatten`` as a
    Reshape to ``[-1, 8]`` (the exporter's optimizer folds the shape), the axes and the
    shape as Constant nodes, Gemm. Weights are drawn from ``seed``.
    """
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Cast", ["x"], ["x_f"], to=TensorProto.FLOAT, name="node_cast"),
        conv_node("conv1", "x_f", "conv2d", 3, stride=2, pads=(1, 1, 1, 1)),
        _batch_norm_node("bn1", "conv2d", "batch_norm"),
        helper.make_node("Constant", [], ["clip_min"],
                         value=helper.make_tensor("m", TensorProto.FLOAT, [], [0.0])),
        helper.make_node("Constant", [], ["clip_max"],
                         value=helper.make_tensor("m", TensorProto.FLOAT, [], [6.0])),
        helper.make_node("Clip", ["batch_norm", "clip_min", "clip_max"], ["hardtanh"],
                         name="node_hardtanh"),
        conv_node("conv2", "hardtanh", "conv2d_1", 3, pads=(0, 1, 1, 0)),
        helper.make_node("Relu", ["conv2d_1"], ["relu"], name="node_relu"),
        helper.make_node("MaxPool", ["relu"], ["max_pool2d"], kernel_shape=[2, 2],
                         strides=[1, 1], pads=[0, 0, 0, 0], dilations=[1, 1], ceil_mode=0,
                         name="node_max_pool2d"),
    ] + _global_mean_and_linear("max_pool2d")
    return save_dynamo_style(path, nodes, _dynamo_params(rng), ["batch", 2, 8, 8], "linear",
                             ["batch", 3])


def torch_program_cnn(seed=3):
    """A CNN as ``torch.onnx.export(..., dynamo=False)`` writes it whose layers the device
    runs as one program: NCHW input (batch, 1, 8, 8), Conv (pad 1) + BatchNormalization +
    Relu + MaxPool 2 (stride 2), Conv without bias + Relu + GlobalAveragePool, Flatten,
    ``Gemm(transB=1)`` and a LogSoftmax (host). Weights are drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    nodes = [
        conv_node("conv1", "x", "conv1_out", 3, pads=(1, 1, 1, 1)),
        _batch_norm_node("bn1", "conv1_out", "bn1_out", momentum=0.9),
        helper.make_node("Relu", ["bn1_out"], ["relu1"], name="relu1"),
        helper.make_node("MaxPool", ["relu1"], ["pool1"], ceil_mode=0, kernel_shape=[2, 2],
                         pads=[0, 0, 0, 0], strides=[2, 2], name="pool1"),
        conv_node("conv2", "pool1", "conv2_out", 3, pads=(1, 1, 1, 1), bias=False),
        helper.make_node("Relu", ["conv2_out"], ["relu2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["relu2"], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], axis=1, name="flatten"),
        helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], alpha=1.0,
                         beta=1.0, transB=1, name="fc"),
        helper.make_node("LogSoftmax", ["logits"], ["y"], axis=1, name="log_softmax"),
    ]
    inits = (conv_params("conv1", 1, 4, 3, rng=rng) + _batch_norm_params("bn1", 4, rng)
             + conv_params("conv2", 4, 8, 3, bias=False, rng=rng)
             + [initializer("fc.weight", weights(5, 8, rng=rng)),
                initializer("fc.bias", weights(5, rng=rng))])
    return graph_model(nodes, inits, ["batch", 1, 8, 8], output_shape=("batch", 5))


def dynamo_program_cnn(path, seed=4):
    """Write a CNN as ``torch.onnx.export(..., dynamo=True)`` does whose layers the device
    runs as one program; return its path. As :func:`dynamo_cnn` (Cast, external data,
    Constant inputs, Clip for ReLU6, asymmetric pads, ReduceMean, Reshape) on a (batch, 2,
    8, 8) input: Conv (pad 1) + BatchNormalization + Clip(0, 6) + MaxPool 2 (stride 2),
    Conv with pads (0, 1, 1, 0) + Relu + ReduceMean over the 3 x 3 map, Reshape, Gemm."""
    rng = np.random.default_rng(seed)
    constant = helper.make_tensor
    nodes = [
        helper.make_node("Cast", ["x"], ["x_f"], to=TensorProto.FLOAT, name="node_cast"),
        conv_node("conv1", "x_f", "conv2d", 3, pads=(1, 1, 1, 1)),
        _batch_norm_node("bn1", "conv2d", "batch_norm"),
        helper.make_node("Constant", [], ["clip_min"],
                         value=constant("m", TensorProto.FLOAT, [], [0.0])),
        helper.make_node("Constant", [], ["clip_max"],
                         value=constant("m", TensorProto.FLOAT, [], [6.0])),
        helper.make_node("Clip", ["batch_norm", "clip_min", "clip_max"], ["hardtanh"],
                         name="node_hardtanh"),
        helper.make_node("MaxPool", ["hardtanh"], ["max_pool2d"], kernel_shape=[2, 2],
                         strides=[2, 2], pads=[0, 0, 0, 0], dilations=[1, 1], ceil_mode=0,
                         name="node_max_pool2d"),
        conv_node("conv2", "max_pool2d", "conv2d_1", 3, pads=(0, 1, 1, 0)),
        helper.make_node("Relu", ["conv2d_1"], ["relu"], name="node_relu"),
    ] + _global_mean_and_linear("relu")
    return save_dynamo_style(path, nodes, _dynamo_params(rng), ["batch", 2, 8, 8], "linear",
                             ["batch", 3])
