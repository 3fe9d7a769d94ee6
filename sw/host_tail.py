"""The host-side tail of a model: the operators after its last layer.

A classifier exported by skl2onnx ends in ``Softmax`` (or ``Sigmoid``), ``ArgMax``, a
class-label lookup (``ArrayFeatureExtractor``), ``Cast``/``Reshape`` and optionally
``ZipMap``. None of these is a matmul, and all are cheap: the device computes the dense
layers, and the host computes the tail from the device's (dequantized) logits, producing
every output of the model under the name the model gives it.

Only NumPy is needed to run a :class:`HostTail`; the ONNX importer builds one (resolving
element types and attributes when it reads the file).
"""

import numpy as np

__all__ = ["HostTail", "TailNode", "TAIL_OPS"]


def _softmax(x, axis):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return (e / np.sum(e, axis=axis, keepdims=True)).astype(x.dtype)


def _argmax(x, axis, keepdims, select_last_index):
    if select_last_index:
        flipped = np.flip(x, axis=axis)
        index = x.shape[axis] - 1 - np.argmax(flipped, axis=axis)
    else:
        index = np.argmax(x, axis=axis)
    index = index.astype(np.int64)
    return np.expand_dims(index, axis) if keepdims else index


def _array_feature_extractor(x, indices):
    # onnxruntime's rule: select along the last axis; a 1-D input gives shape (1, n).
    picked = x[..., np.asarray(indices, np.int64).reshape(-1)]
    return picked.reshape(1, -1) if x.ndim == 1 else picked


def _reshape(x, shape, allowzero):
    shape = [int(d) for d in np.asarray(shape).reshape(-1)]
    if not allowzero:
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return x.reshape(shape)


def _quantize(x, scale, zero=None):
    zero = np.zeros((), np.uint8) if zero is None else zero
    info = np.iinfo(zero.dtype)
    q = np.rint(x / np.float32(scale)) + zero.astype(np.float32)
    return np.clip(q, info.min, info.max).astype(zero.dtype)


def _dequantize(q, scale, zero=None):
    zero = 0 if zero is None else zero.astype(np.int32)
    return ((q.astype(np.int32) - zero) * np.float32(scale)).astype(np.float32)


def _float(x):
    return x.astype(np.float32) if x.dtype == np.float64 else x


#: Operators a tail can hold, by (domain, op_type), with their NumPy evaluation. Each
#: takes the node's input arrays and its attributes as :class:`TailNode` keeps them.
TAIL_OPS = {
    ("", "Softmax"): lambda a, x: _softmax(x, a["axis"]),
    ("", "LogSoftmax"): lambda a, x: (x - np.max(x, axis=a["axis"], keepdims=True) - np.log(
        np.sum(np.exp(x - np.max(x, axis=a["axis"], keepdims=True)), axis=a["axis"],
               keepdims=True))).astype(x.dtype),
    ("", "Sigmoid"): lambda a, x: (1 / (1 + np.exp(-x))).astype(x.dtype),
    ("", "Identity"): lambda a, x: x,
    ("", "Add"): lambda a, x, y: _float(np.add(x, y)),
    ("", "Sub"): lambda a, x, y: _float(np.subtract(x, y)),
    ("", "Mul"): lambda a, x, y: _float(np.multiply(x, y)),
    ("", "Div"): lambda a, x, y: _float(np.divide(x, y)),
    ("", "Concat"): lambda a, *xs: np.concatenate(xs, axis=a["axis"]),
    ("", "ArgMax"): lambda a, x: _argmax(x, a["axis"], a["keepdims"], a["select_last_index"]),
    ("", "Reshape"): lambda a, x, shape: _reshape(x, shape, a["allowzero"]),
    ("", "Cast"): lambda a, x: x.astype(a["to"]),
    # A pre-quantized model's QDQ pairs after its last layer (per-tensor scales).
    ("", "QuantizeLinear"): lambda a, x, *scale_zero: _quantize(x, *scale_zero),
    ("", "DequantizeLinear"): lambda a, q, *scale_zero: _dequantize(q, *scale_zero),
    ("ai.onnx.ml", "ArrayFeatureExtractor"): lambda a, x, i: _array_feature_extractor(x, i),
    # ZipMap turns each row into a {label: probability} map; the tail keeps the rows as
    # they are, an (M, classes) array whose columns are the labels in order.
    ("ai.onnx.ml", "ZipMap"): lambda a, x: np.asarray(x, np.float32),
}


class TailNode:
    """One operator of a :class:`HostTail`.

    Parameters
    ----------
    op : tuple of (domain, op_type)
        A key of :data:`TAIL_OPS`.
    inputs, outputs : sequence of str
        Tensor names, as in the model.
    attributes : dict
        What the operator's evaluation reads (``axis``, ``to`` as a NumPy dtype...).
    """

    def __init__(self, op, inputs, outputs, attributes):
        if op not in TAIL_OPS:
            raise ValueError(f"operator {op[1]} (domain {op[0]!r}) cannot run in a host tail")
        self.op, self.inputs, self.outputs = op, tuple(inputs), tuple(outputs)
        self.attributes = dict(attributes)

    def __repr__(self):
        return f"TailNode({self.op[1]}, {self.inputs} -> {self.outputs})"


class HostTail:
    """The operators that turn a model's last-layer output into its named outputs.

    Parameters
    ----------
    input_name : str
        Name of the last layer's output (the logits) in the model.
    nodes : sequence of TailNode
        In evaluation order; empty when the model's output is the last layer's.
    constants : dict of str to ndarray
        Constant operands the nodes use (class labels, shapes...).
    outputs : sequence of str
        The model's outputs, in the model's order.
    """

    def __init__(self, input_name, nodes=(), constants=None, outputs=None):
        self.input_name = input_name
        self.nodes = tuple(nodes)
        self.constants = dict(constants or {})
        self.outputs = tuple(outputs or (input_name,))
        known = {input_name, *self.constants}
        for node in self.nodes:
            missing = [name for name in node.inputs if name and name not in known]
            if missing:
                raise ValueError(f"{node!r} reads {missing[0]!r} before anything computes it")
            known.update(node.outputs)
        missing = [name for name in self.outputs if name not in known]
        if missing:
            raise ValueError(f"output {missing[0]!r} is not computed by the tail")

    def __call__(self, logits):
        """Return ``{output name: array}`` computed from the last layer's output."""
        values = {**self.constants, self.input_name: np.asarray(logits)}
        for node in self.nodes:
            args = [values[name] for name in node.inputs if name]
            values[node.outputs[0]] = TAIL_OPS[node.op](node.attributes, *args)
        return {name: values[name] for name in self.outputs}

    def __repr__(self):
        ops = ", ".join(node.op[1] for node in self.nodes)
        return f"HostTail({self.input_name} -> [{ops}] -> {', '.join(self.outputs)})"
