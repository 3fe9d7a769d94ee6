"""Import an ONNX model into a :class:`~tritile.sw.model.Model`.

Supported: a chain of Gemm (with transA, transB, alpha, beta and a bias C), MatMul (with a
following Add as bias), Relu, Clip(0, 6), Flatten, Reshape, Identity, Dropout (inference),
Cast to a float type and Transpose of a weight, and for convolutional models over an NCHW
input Conv (2-D, group 1), BatchNormalization folded into the layer before it, MaxPool,
AveragePool (count_include_pad=1), GlobalAveragePool and ReduceMean over the spatial axes;
weights, biases and reshape targets are initializers or Constant nodes, as PyTorch (both
exporters), Keras/tf2onnx and skl2onnx export them. The graph's one data input has a
sample axis first. Tensors kept in external data files are read from beside a model given
by its path. A map becomes NHWC (:mod:`tritile.sw.model`); the Gemm after its flatten has
its rows permuted so that ONNX's NCHW flatten still holds.

A weight operand may come first (``W @ x`` with samples in columns, as some exporters write
``Gemm(W, x^T)``): the importer tracks whether samples are rows or columns of each tensor,
so every combination of transA/transB is honoured, and reports the ones that would mix
samples with features.

Operators after the last layer that compute the model's outputs from it (a classifier's
Softmax, ArgMax, label lookup, ZipMap...) become the model's
:class:`~tritile.sw.host_tail.HostTail`, run on the host. QuantizeLinear/DequantizeLinear
pairs (onnxruntime's QDQ format, symmetric int8) give each layer its
:class:`~tritile.sw.model.Quantization`: the model's own integer weights and scales.

Every problem (unsupported operator, dynamic weight, shape the device cannot run, malformed
file...) is collected, and all of them are reported together in one
:class:`OnnxImportError` before anything runs. ``onnx`` is imported inside the functions,
so :mod:`tritile.sw` does not need it to load.
"""

import os

import numpy as np

from .compiler import ENGINES, layer_limit_problems
from .host_tail import TAIL_OPS, HostTail, TailNode
from .model import (AvgPool2d, Conv2d, Dense, GlobalAvgPool, MaxPool2d, Model,
                    ModelError, Quantization, nchw_flatten_rows)

__all__ = ["OnnxImportError", "import_onnx", "SUPPORTED_OPS"]

SUPPORTED_OPS = ("Gemm", "MatMul", "Conv", "BatchNormalization", "MaxPool", "AveragePool",
                 "GlobalAveragePool", "ReduceMean", "Add", "Relu", "Clip", "Flatten",
                 "Reshape", "Identity", "Dropout", "Cast", "Transpose", "QuantizeLinear",
                 "DequantizeLinear", "Constant")

# Operators that start the host tail when they read the last layer's output (the others
# of TAIL_OPS are also layer-chain operators, and join the tail only after one of these).
_TAIL_STARTS = {op for op in TAIL_OPS
                if op[1] not in ("Add", "Identity", "Reshape", "Cast", "QuantizeLinear",
                                 "DequantizeLinear")}

# Element types of the data input (onnx.TensorProto FLOAT, DOUBLE, FLOAT16, BFLOAT16).
_FLOAT_TYPES = (1, 11, 10, 16)


class OnnxImportError(ValueError):
    """An ONNX model cannot be imported; :attr:`problems` lists every reason."""

    def __init__(self, source, problems):
        self.source = source
        self.problems = list(problems)
        if len(self.problems) == 1:
            super().__init__(f"cannot import {source}: {self.problems[0]}")
            return
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"cannot import {source}: {len(self.problems)} problem(s):\n{lines}")


class _Activation:
    """A data tensor of the chain: its feature shape and whether samples are its rows."""

    def __init__(self, features, samples_first=True, layer=None, open=True, scale=None,
                 map_shape=None, nchw_flat=None):
        self.features = tuple(features)
        # (H, W, C) of a feature map a conv or pooling layer produced (``features`` is
        # then ONNX's (C, H, W)); the map's shape when this is its NCHW flatten, whose
        # next Dense layer has its rows permuted to the NHWC flatten the device holds.
        self.map_shape, self.nchw_flat = map_shape, nchw_flat
        self.samples_first = samples_first
        # The layer whose output this is (None for the model input), and whether a bias
        # can still be fused into it (not after its activation).
        self.layer = layer
        self.open = open
        # The scale of the int8 grid its values lie on (after QuantizeLinear and
        # DequantizeLinear), or None for a float tensor.
        self.scale = scale

    @property
    def size(self):
        return int(np.prod(self.features, dtype=np.int64))

    def derive(self, **changes):
        """Return a copy with ``changes`` to its attributes."""
        other = _Activation.__new__(_Activation)
        other.__dict__.update(self.__dict__, **changes)
        return other


class _Layer:
    def __init__(self, where, W, b, quant=None):
        self.where, self.W, self.b, self.activation = where, W, b, None
        # (Wq, s_w, s_x) of a pre-quantized layer, and the scale its output is quantized to.
        self.quant, self.output_scale = quant, None

    @property
    def gemm_shape(self):
        return self.W.shape

    def build(self):
        quant = None
        if self.quant is not None:
            Wq, s_w, s_x = self.quant
            quant = Quantization(Wq, s_w, s_x, self.output_scale)
        return Dense(self.W, self.b, self.activation, quant=quant)


class _ConvLayer:
    def __init__(self, where, W, b, stride, pads):
        self.where, self.W, self.b, self.stride, self.pads = where, W, b, stride, pads
        self.activation = None

    @property
    def gemm_shape(self):
        n, c, kh, kw = self.W.shape
        return kh * kw * c, n

    def build(self):
        return Conv2d(self.W, self.b, self.stride, self.pads, self.activation)


class _PoolLayer:
    def __init__(self, where, layer):
        self.where, self.layer = where, layer

    def build(self):
        return self.layer


class _Importer:
    def __init__(self, graph, config, engines):
        from onnx import numpy_helper

        self.config, self.engines = config, engines
        self.problems, self.layers = [], []
        self.constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        # Constants that are DequantizeLinear of integers: name -> (integers, scales,
        # zero points), scales and zero points broadcast to the integers' shape.
        self.quantized = {}
        self.fake_quant = {}        # QuantizeLinear output -> (scale, zero point)
        self.asymmetric = False     # reported once
        self.tensors = {}           # name -> _Activation (None: unknown after a problem)
        self.dynamic = set()        # graph inputs other than the data input
        self.branched = set()       # tensors already reported as feeding several nodes
        self.batch = None           # fixed size of the data input's sample axis, if any
        self.tail_input = None      # the last layer's output that the host tail reads
        self.tail_nodes = []
        self.tail_tensors = set()   # tensors the host tail computes
        self.tail = None
        self.consumers = {}
        for node in graph.node:
            for name in node.input:
                if name:
                    self.consumers.setdefault(name, []).append(node)
        for output in graph.output:
            self.consumers.setdefault(output.name, []).append(None)

    def problem(self, where, text):
        self.problems.append(f"{where}: {text}" if where else text)

    # -- operands ---------------------------------------------------------------------

    def constant(self, where, name, role):
        """Return the initializer or Constant ``name``, or report why it is not one."""
        if name in self.constants:
            return np.asarray(self.constants[name])
        if name in self.dynamic:
            self.problem(where, f"{role} {name!r} is a graph input, not an initializer: "
                                f"dynamic weight inputs are not supported")
        elif name in self.tensors:
            self.problem(where, f"{role} {name!r} is computed at run time; weights, biases "
                                f"and shapes must be initializers or Constant nodes")
        elif name:
            self.problem(where, f"{role} {name!r} is not defined in the graph")
        return None

    def activation(self, where, name, quantized=False):
        """Return the data tensor ``name``; None (reported or not) when it is unusable.

        The int8 output of a QuantizeLinear is usable only by a DequantizeLinear
        (``quantized``).
        """
        if name in self.fake_quant and not quantized:
            self.problem(where, f"input {name!r} is the integer output of a QuantizeLinear; "
                                f"only a DequantizeLinear can read it (QDQ format)")
            return None
        if name in self.tensors:
            act = self.tensors[name]
            users = self.consumers.get(name, [])
            if act is not None and len(users) > 1:
                if name not in self.branched:
                    self.branched.add(name)
                    self.problem(where, f"tensor {name!r} feeds {len(users)} nodes: only a "
                                        f"chain of layers is supported (no branches)")
                return None
            return act
        if name in self.constants:
            self.problem(where, f"input {name!r} is a constant; this operator needs the "
                                f"data tensor")
        elif name in self.dynamic:
            self.problem(where, f"input {name!r} is a second graph input; a model takes "
                                f"one data input")
        else:
            self.problem(where, f"input {name!r} is not defined in the graph")
        return None

    # -- graph input and output ---------------------------------------------------------

    def add_input(self, value):
        tensor_type = value.type.tensor_type
        where = f"graph input {value.name!r}"
        if not value.type.HasField("tensor_type"):
            self.problem(where, "is not a tensor")
        elif tensor_type.elem_type not in _FLOAT_TYPES:
            self.problem(where, f"has element type {tensor_type.elem_type}; a float type "
                                f"(float, double, float16, bfloat16) is needed")
        if not tensor_type.HasField("shape") or len(tensor_type.shape.dim) < 2:
            self.problem(where, "needs a shape with a sample axis first and at least one "
                                "feature axis")
            self.tensors[value.name] = None
            return
        features = []
        for axis, dim in enumerate(tensor_type.shape.dim[1:], start=1):
            if not dim.HasField("dim_value") or dim.dim_value < 1:
                self.problem(where, f"axis {axis} has no fixed size ({dim.dim_param or '?'}); "
                                    f"only the sample axis (axis 0) may be dynamic")
            features.append(dim.dim_value)
        batch = tensor_type.shape.dim[0]
        self.batch = batch.dim_value if batch.HasField("dim_value") else None
        self.tensors[value.name] = _Activation(features) if all(features) else None
        self.input_features = tuple(features)

    def finish(self, graph):
        outputs = [o.name for o in graph.output]
        if self.tail_input is not None:
            self.finish_tail(outputs)
            return
        if len(outputs) != 1:
            self.problem("graph", f"has {len(outputs)} outputs ({', '.join(outputs)}) but "
                                  f"no output operators after its last layer; a model "
                                  f"without them has one output")
            return
        act = self.tensors.get(outputs[0], "missing")
        if act == "missing":
            self.problem("graph", f"output {outputs[0]!r} is not produced by any supported node")
        elif act is not None and not self.layers:
            self.problem("graph", "has no Gemm or MatMul layer")
        elif act is not None and not act.samples_first:
            self.problem("graph", f"output {outputs[0]!r} holds samples in columns; transpose "
                                  f"the last layer so that samples are rows")
        elif act is not None and len(act.features) != 1 and act.map_shape is None:
            self.problem("graph", f"output {outputs[0]!r} has feature shape {act.features}; "
                                  f"a model outputs one feature axis")
        else:
            self.tail = HostTail(outputs[0])

    def finish_tail(self, outputs):
        stray = [name for name in outputs
                 if name != self.tail_input and name not in self.tail_tensors]
        for name in stray:
            self.problem("graph", f"output {name!r} is neither the last layer's output "
                                  f"{self.tail_input!r} nor computed from it")
        if not self.layers:
            self.problem("graph", "has no Gemm or MatMul layer")
        if stray or self.problems:
            return
        constants = {name: self.constants[name] for node in self.tail_nodes
                     for name in node.inputs if name in self.constants}
        self.tail = HostTail(self.tail_input, self.tail_nodes, constants, outputs)

    # -- the host tail: operators after the last layer -----------------------------------

    def in_tail(self, node, op):
        """Return whether ``node`` belongs to the host tail."""
        data = [name for name in node.input if name and name not in self.constants]
        if any(name in self.tail_tensors for name in data):
            return True
        return op in _TAIL_STARTS and bool(data)

    def tail_node(self, where, node, op):
        self.tail_tensors.update(name for name in node.output if name)
        if op not in TAIL_OPS:
            after = next((name for name in node.input if name in self.tail_tensors), None)
            self.problem(where, f"operator {node.op_type} reads {after!r}, which the host "
                                f"computes after the last layer: only output operators "
                                f"({', '.join(sorted({o for _, o in TAIL_OPS}))}) can "
                                f"follow it")
            return
        for name in node.input:
            if not name or name in self.constants or name in self.tail_tensors:
                continue
            act = self.tensors.get(name)
            if act is None:
                if name not in self.tensors:
                    self.activation(where, name)      # reports what the name is
                return
            if self.tail_input not in (None, name):
                self.problem(where, f"reads {name!r} but the output operators already read "
                                    f"{self.tail_input!r}; they must all follow one layer")
            elif not act.samples_first or len(act.features) != 1:
                self.problem(where, f"reads {name!r} of feature shape {act.features} with "
                                    f"samples in {'rows' if act.samples_first else 'columns'}; "
                                    f"the last layer's output must be samples by features")
            else:
                self.tail_input = name
        attrs = {a.name: _attribute(a) for a in node.attribute}
        attributes = {"axis": attrs.get("axis", -1 if node.op_type in ("Softmax", "LogSoftmax")
                                            else 0),
                      "keepdims": attrs.get("keepdims", 1),
                      "select_last_index": attrs.get("select_last_index", 0),
                      "allowzero": attrs.get("allowzero", 0)}
        if node.op_type == "Cast":
            attributes["to"] = _numpy_type(attrs["to"])
        self.tail_nodes.append(TailNode(op, node.input, node.output, attributes))

    # -- operators ----------------------------------------------------------------------

    def node(self, index, node):
        where = f"node {index} {node.name!r} ({node.op_type})" if node.name else \
            f"node {index} ({node.op_type})"
        op = ("" if node.domain == "ai.onnx" else node.domain, node.op_type)
        if self.in_tail(node, op):
            self.tail_node(where, node, op)
            return
        if node.domain not in ("", "ai.onnx"):
            self.problem(where, f"operator domain {node.domain!r} is not supported; only "
                                f"the standard ONNX domain is")
        elif node.op_type not in SUPPORTED_OPS:
            self.problem(where, f"operator {node.op_type} is not supported (supported: "
                                f"{', '.join(SUPPORTED_OPS[:-1])})")
        else:
            attrs = {a.name: _attribute(a) for a in node.attribute}
            result = getattr(self, f"op_{node.op_type.lower()}")(where, node, attrs)
            if node.output and node.output[0] in self.constants:
                return      # folded into a constant (Constant, or an op on constants)
            if result is not None:
                self.tensors[node.output[0]] = result
                for extra in node.output[1:]:
                    self.check_unused(where, extra)
                return
        for output in node.output:
            self.tensors[output] = None

    def check_unused(self, where, name):
        if name and self.consumers.get(name):
            self.problem(where, f"output {name!r} (a training-time mask) is used; only "
                                f"inference outputs are supported")

    def op_constant(self, where, node, attrs):
        for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
            if key in attrs:
                self.constants[node.output[0]] = np.asarray(attrs[key])
                return
        self.problem(where, f"only value, value_float(s) and value_int(s) constants are "
                            f"supported, not {', '.join(attrs) or 'none'}")
        self.tensors[node.output[0]] = None

    def op_transpose(self, where, node, attrs):
        if node.input[0] not in self.constants:
            self.problem(where, "Transpose is supported on weights (constants) only")
            return None
        perm = attrs.get("perm")
        self.constants[node.output[0]] = np.transpose(self.constants[node.input[0]], perm)
        return None

    def op_cast(self, where, node, attrs):
        if node.input[0] in self.constants:
            self.constants[node.output[0]] = self.constants[node.input[0]].astype(
                _numpy_type(attrs["to"]))
            return None
        if attrs.get("to") not in _FLOAT_TYPES:
            self.problem(where, f"Cast of the data to element type {attrs.get('to')} is not "
                                f"supported; the layers compute in float")
            return None
        return self.activation(where, node.input[0])

    def op_identity(self, where, node, attrs):
        return self.activation(where, node.input[0])

    def op_dropout(self, where, node, attrs):
        if len(node.input) > 2 and node.input[2]:
            mode = self.constant(where, node.input[2], "training_mode")
            if mode is not None and bool(mode):
                self.problem(where, "training_mode is true; only inference is supported")
        return self.activation(where, node.input[0])

    def op_relu(self, where, node, attrs):
        act = self.activation(where, node.input[0])
        if act is None:
            return None
        if act.layer is None:
            self.problem(where, "Relu must follow a Gemm, MatMul or Conv (and its bias), or a "
                                "MaxPool of one")
            return None
        # After a MaxPool too: max pooling commutes with a monotonic activation.
        act.layer.activation = act.layer.activation or "relu"
        return act.derive(open=False)

    def op_clip(self, where, node, attrs):
        act = self.activation(where, node.input[0])
        bounds = [attrs.get("min"), attrs.get("max")]      # attributes before opset 11
        for index, role in ((1, "min"), (2, "max")):
            if len(node.input) > index and node.input[index]:
                bounds[index - 1] = self.constant(where, node.input[index], role)
        if act is None:
            return None
        if any(b is None for b in bounds) or (float(bounds[0]), float(bounds[1])) != (0, 6):
            self.problem(where, f"only Clip(0, 6) (ReLU6) is supported, not Clip with bounds "
                                f"{[None if b is None else float(b) for b in bounds]}")
            return None
        if act.layer is None:
            self.problem(where, "Clip(0, 6) must follow a Gemm, MatMul or Conv (and its "
                                "bias), or a MaxPool of one")
            return None
        act.layer.activation = "relu6"
        return act.derive(open=False)

    # -- convolutions and pooling ----------------------------------------------------------

    def map_of(self, where, act):
        """Return the (H, W, C) of a feature map tensor, or report that it is not one."""
        if act.map_shape is not None:
            return act.map_shape
        if (act.layer is None and not self.layers and act.samples_first
                and len(act.features) == 3 and act.features == self.input_features):
            c, h, w = act.features
            return h, w, c
        self.problem(where, f"needs an NCHW feature map (the graph input or the output of a "
                            f"Conv or pooling), not features of shape {act.features}")
        return None

    def window_attributes(self, where, attrs, kernel):
        """Return ``(stride, pads)`` of a 2-D window operator, or report what is unsupported."""
        ok = True
        if attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            self.problem(where, f"auto_pad={attrs['auto_pad']} is not supported; give "
                                f"explicit pads (NOTSET) or VALID")
            ok = False
        if any(d != 1 for d in attrs.get("dilations", [1, 1])):
            self.problem(where, f"dilations={list(attrs['dilations'])} are not supported "
                                f"(only 1)")
            ok = False
        if attrs.get("ceil_mode", 0):
            self.problem(where, "ceil_mode=1 is not supported (only the floor of ceil_mode=0)")
            ok = False
        if attrs.get("storage_order", 0):
            self.problem(where, "storage_order=1 is not supported")
            ok = False
        strides = list(attrs.get("strides", [1, 1]))
        pads = [0] * 4 if attrs.get("auto_pad") == "VALID" else list(attrs.get("pads", [0] * 4))
        if len(kernel) != 2 or len(strides) != 2 or len(pads) != 4:
            self.problem(where, f"only 2-D windows are supported, not kernel {list(kernel)}, "
                                f"strides {strides}, pads {pads}")
            ok = False
        return (strides, pads) if ok else None

    def add_map_layer(self, where, builder, act, shape, keeps_layer):
        """Add a conv or pooling layer reading the map ``act``; return its output tensor."""
        try:
            h, w, c = (builder.build() if isinstance(builder, _ConvLayer)
                       else builder.layer).output_shape(shape)
        except ModelError as exc:
            self.problem(where, str(exc))
            return None
        self.layers.append(builder)
        # The tensor's layer is the one a following Relu or Clip applies to: the conv's
        # own, or the conv before a MaxPool (they commute), never an average.
        layer = builder if isinstance(builder, _ConvLayer) else (
            act.layer if keeps_layer else None)
        return _Activation((c, h, w), True, layer, isinstance(builder, _ConvLayer),
                           map_shape=(h, w, c))

    def op_conv(self, where, node, attrs):
        act = self.activation(where, node.input[0])
        W = self.constant(where, node.input[1], "weight")
        has_bias = len(node.input) > 2 and bool(node.input[2])
        b = self.constant(where, node.input[2], "bias") if has_bias else None
        if act is None or W is None or (has_bias and b is None):
            return None
        if act.scale is not None or node.input[1] in self.quantized:
            self.problem(where, "pre-quantized (QDQ) convolutions are not supported; import "
                                "the float model with calibration inputs")
            return None
        shape = self.map_of(where, act)
        if shape is None:
            return None
        if W.ndim != 4:
            self.problem(where, f"only 2-D convolutions are supported, not weight shape "
                                f"{W.shape}")
            return None
        if attrs.get("group", 1) != 1:
            self.problem(where, f"group={attrs['group']} is not supported (only group=1: no "
                                f"depthwise or grouped convolutions)")
            return None
        if list(attrs.get("kernel_shape", W.shape[2:])) != list(W.shape[2:]):
            self.problem(where, f"kernel_shape {list(attrs['kernel_shape'])} does not match "
                                f"the weight's {list(W.shape[2:])}")
            return None
        window = self.window_attributes(where, attrs, W.shape[2:])
        if window is None:
            return None
        W = np.asarray(W, np.float32)
        b = np.zeros(W.shape[0], np.float32) if b is None else np.asarray(b, np.float32)
        return self.add_map_layer(where, _ConvLayer(where, W, b, *window), act, shape, False)

    def pool(self, where, node, attrs, make):
        act = self.activation(where, node.input[0])
        if act is None:
            return None
        shape = self.map_of(where, act)
        kernel = list(attrs.get("kernel_shape", []))
        window = self.window_attributes(where, attrs, kernel)
        if shape is None or window is None:
            return None
        for extra in node.output[1:]:
            self.check_unused(where, extra)
        try:
            layer = make(kernel, *window)
        except ModelError as exc:
            self.problem(where, str(exc))
            return None
        return self.add_map_layer(where, _PoolLayer(where, layer), act, shape,
                                  isinstance(layer, MaxPool2d))

    def op_maxpool(self, where, node, attrs):
        return self.pool(where, node, attrs, MaxPool2d)

    def op_averagepool(self, where, node, attrs):
        if attrs.get("count_include_pad", 0) == 0 and any(attrs.get("pads", [0])):
            self.problem(where, f"count_include_pad=0 with pads {list(attrs['pads'])} is not "
                                f"supported: the device divides by the whole window "
                                f"(count_include_pad=1)")
            return None
        return self.pool(where, node, attrs, AvgPool2d)

    def op_globalaveragepool(self, where, node, attrs):
        act = self.activation(where, node.input[0])
        shape = None if act is None else self.map_of(where, act)
        if shape is None:
            return None
        return self.add_map_layer(where, _PoolLayer(where, GlobalAvgPool()), act, shape, False)

    def op_reducemean(self, where, node, attrs):
        axes = attrs.get("axes")            # an attribute before opset 18, then an input
        if len(node.input) > 1 and node.input[1]:
            axes = self.constant(where, node.input[1], "axes")
            if axes is None:
                return None
        act = self.activation(where, node.input[0])
        if act is None:
            return None
        spatial = axes is not None and sorted(int(a) % 4 for a in np.reshape(axes, -1)) == [2, 3]
        if not spatial or act.map_shape is None:
            self.problem(where, f"ReduceMean is supported over the spatial axes (2, 3) of a "
                                f"feature map only, not axes "
                                f"{None if axes is None else [int(a) for a in np.reshape(axes, -1)]} of "
                                f"features {act.features}")
            return None
        out = self.op_globalaveragepool(where, node, attrs)
        if out is None or attrs.get("keepdims", 1):
            return out
        return out.derive(features=(out.size,), map_shape=None)

    def op_batchnormalization(self, where, node, attrs):
        act = self.activation(where, node.input[0])
        params = [self.constant(where, name, role) for name, role in
                  zip(node.input[1:5], ("scale", "bias", "mean", "variance"))]
        if act is None or any(p is None for p in params):
            return None
        if attrs.get("training_mode", 0):
            self.problem(where, "training_mode=1; only inference is supported")
            return None
        for extra in node.output[1:]:
            self.check_unused(where, extra)
        layer = act.layer
        if layer is None or not act.open or getattr(layer, "quant", None) is not None \
                or not act.samples_first:
            self.problem(where, "BatchNormalization is supported only right after a float "
                                "Conv, Gemm or MatMul (before its activation), where it is "
                                "folded into the weights and bias")
            return None
        conv = isinstance(layer, _ConvLayer)
        n = layer.W.shape[0] if conv else layer.W.shape[1]
        gamma, beta, mean, var = (np.asarray(p, np.float64).reshape(-1) for p in params)
        if not all(len(p) == n for p in (gamma, beta, mean, var)):
            self.problem(where, f"parameters of shapes {[p.shape for p in params]} do not "
                                f"match the {n} channels of the layer before")
            return None
        scale = gamma / np.sqrt(var + float(attrs.get("epsilon", 1e-5)))
        layer.W = (layer.W * (scale[:, None, None, None] if conv else scale[None, :])
                   ).astype(np.float32)
        layer.b = ((layer.b - mean) * scale + beta).astype(np.float32)
        return act

    def op_add(self, where, node, attrs):
        names = [name for name in node.input]
        if len(names) != 2:
            self.problem(where, f"needs 2 inputs, not {len(names)}")
            return None
        data = [n for n in names if n not in self.constants]
        if len(data) != 1:
            self.problem(where, "Add is supported only as the bias of a Gemm or MatMul "
                                "(one data input and one constant)")
            return None
        act = self.activation(where, data[0])
        bias = self.constant(where, next(n for n in names if n != data[0]), "bias")
        if act is None or bias is None:
            return None
        if act.layer is None or not act.open:
            self.problem(where, "Add is supported only as the bias of a Gemm or MatMul, "
                                "before its activation")
            return None
        b = _bias_vector(where, bias, act, self.problem)
        if b is not None:
            act.layer.b = act.layer.b + b
        return act.derive(scale=None)

    def op_flatten(self, where, node, attrs):
        act = self.activation(where, node.input[0])
        if act is None:
            return None
        rank = 1 + len(act.features)
        axis = attrs.get("axis", 1)
        axis = axis + rank if axis < 0 else axis
        if not act.samples_first:
            self.problem(where, "the input holds samples in columns; Flatten would mix them")
            return None
        if axis < 1 or any(d != 1 for d in act.features[:axis - 1]):
            self.problem(where, f"axis={attrs.get('axis', 1)} merges the sample axis with "
                                f"features {act.features}; use axis=1")
            return None
        return act.derive(features=(act.size,), map_shape=None,
                          nchw_flat=act.map_shape or act.nchw_flat)

    def op_reshape(self, where, node, attrs):
        act = self.activation(where, node.input[0])
        shape = self.constant(where, node.input[1], "shape")
        if act is None or shape is None:
            return None
        if attrs.get("allowzero", 0):
            self.problem(where, "allowzero=1 is not supported")
            return None
        if not act.samples_first:
            self.problem(where, "the input holds samples in columns; Reshape would mix them")
            return None
        shape = [int(d) for d in np.asarray(shape).reshape(-1)]
        in_dims = [None] + list(act.features)
        features = [in_dims[i] if d == 0 and i < len(in_dims) else d
                    for i, d in enumerate(shape)][1:]
        first = shape[0] if shape else None
        batch_kept = first == 0 or (first is not None and first > 0
                                    and first in (1, self.batch))
        if first == -1 and -1 not in features:
            batch_kept = True
        known = int(np.prod([d for d in features if d != -1], dtype=np.int64))
        if features.count(-1) == 1 and batch_kept and known and act.size % known == 0:
            features[features.index(-1)] = act.size // known
        if (not batch_kept or not features or any(d is None or d < 1 for d in features)
                or int(np.prod(features, dtype=np.int64)) != act.size):
            self.problem(where, f"target shape {shape} does not keep the sample axis first "
                                f"with the {act.size} features of {act.features}")
            return None
        if act.map_shape is not None and len(features) != 1 and \
                tuple(features) != act.features:
            self.problem(where, f"reshapes the feature map {act.features} (C, H, W) to "
                                f"{tuple(features)}; only its flatten to one feature axis "
                                f"is supported")
            return None
        flat = len(features) == 1 and act.map_shape is not None
        return act.derive(features=tuple(features),
                          map_shape=None if flat else act.map_shape,
                          nchw_flat=act.map_shape if flat else act.nchw_flat)

    def op_matmul(self, where, node, attrs):
        return self.linear(where, node, node.input[0], node.input[1], False, False, 1.0)

    def op_gemm(self, where, node, attrs):
        out = self.linear(where, node, node.input[0], node.input[1],
                          bool(attrs.get("transA", 0)), bool(attrs.get("transB", 0)),
                          float(attrs.get("alpha", 1.0)))
        if out is not None and len(node.input) > 2 and node.input[2]:
            C = self.constant(where, node.input[2], "bias C")
            if C is None:
                return None
            b = _bias_vector(where, C, out, self.problem)
            if b is None:
                return None
            out.layer.b = out.layer.b + np.float32(attrs.get("beta", 1.0)) * b
        return out

    def linear(self, where, node, a, b, trans_a, trans_b, alpha):
        """Add the layer of ``alpha * op(A) @ op(B)``, one operand data, one a weight."""
        a_data, b_data = a not in self.constants, b not in self.constants
        if a_data and b_data:
            # Both run-time tensors: one of them would be a weight computed at run time.
            weight = b if (b in self.dynamic or a in self.tensors) else a
            self.constant(where, weight, "weight")
            return None
        if not (a_data or b_data):
            self.problem(where, "both operands are constants; the layer has no data input")
            return None
        data, weight = (a, b) if a_data else (b, a)
        act = self.activation(where, data)
        W = self.constant(where, weight, "weight")
        if act is None or W is None:
            return None
        if W.ndim != 2 or len(act.features) != 1:
            self.problem(where, f"needs a 2-D weight and a 2-D data tensor, not weight shape "
                                f"{W.shape} and data features {act.features}")
            return None
        W = np.asarray(W, dtype=np.float32)
        quantized = self.quantized.get(weight)
        if (act.scale is None) != (quantized is None):
            self.problem(where, f"the input is {'float' if act.scale is None else 'quantized'} "
                                f"but the weight {weight!r} is "
                                f"{'float' if quantized is None else 'quantized'}: a "
                                f"pre-quantized (QDQ) layer needs both quantized")
            return None
        trans_data, trans_weight = (trans_a, trans_b) if a_data else (trans_b, trans_a)
        # Samples must be the rows of op(A) when the data is A, the columns of op(B) when
        # the data is B; otherwise the product would mix samples.
        rows_are_samples = act.samples_first != trans_data
        if rows_are_samples != a_data:
            side, flag = ("A", "transA") if a_data else ("B", "transB")
            self.problem(where, f"with {flag}={int(trans_data)}, operand {side} "
                                f"{data!r} would hold samples in "
                                f"{'columns' if a_data else 'rows'}, mixing them with features")
            return None

        def orient(M):
            # Data first: Y = X @ W (samples in rows). Weight first: Y = W @ X^T, whose
            # per-sample layer is X @ W.T (samples in columns of Y).
            M = M.T if trans_weight else M
            return M if a_data else M.T

        W = orient(W) * np.float32(alpha)
        if W.shape[0] != act.size:
            self.problem(where, f"the weight takes {W.shape[0]} features but the data has "
                                f"{act.size}")
            return None
        if act.nchw_flat is not None:
            if quantized is not None:
                self.problem(where, "a pre-quantized (QDQ) layer after a convolution is "
                                    "not supported")
                return None
            W = nchw_flatten_rows(W, act.nchw_flat)
        quant = None
        if quantized is not None:
            quant = self.weight_quantization(where, weight, *map(orient, quantized), alpha,
                                             act.scale)
            if quant is None:
                return None
        layer = _Layer(where, W, np.zeros(W.shape[1], np.float32), quant)
        self.layers.append(layer)
        return _Activation((W.shape[1],), a_data, layer)

    def weight_quantization(self, where, name, Wq, scales, zero_points, alpha, s_x):
        """Return ``(Wq, s_w, s_x)`` of a quantized K x N weight, or report why not."""
        if Wq.dtype != np.int8 or np.any(zero_points != 0):
            self.problem(where, f"weight {name!r} is quantized as {Wq.dtype} with zero points "
                                f"{np.unique(zero_points)[:4]}; symmetric int8 weights are "
                                f"needed (quantize_static's default weight_type=QInt8)")
            return None
        if np.any(scales != scales[:1]):
            self.problem(where, f"weight {name!r} has scales that vary along the input "
                                f"features; they must be per output channel or per tensor")
            return None
        if alpha <= 0:
            self.problem(where, f"alpha={alpha} of a quantized layer must be positive")
            return None
        return Wq, (scales[0] * np.float32(alpha)).astype(np.float32), s_x

    def op_dequantizelinear(self, where, node, attrs):
        name = node.input[0]
        scale = self.constant(where, node.input[1], "scale")
        zero = self.constant(where, node.input[2], "zero point") if len(node.input) > 2 \
            and node.input[2] else np.zeros((), np.int32)
        if scale is None or zero is None:
            return None
        if name in self.constants:
            q = np.asarray(self.constants[name])
            axis = attrs.get("axis", 1)
            if attrs.get("block_size"):
                self.problem(where, "blocked quantization (block_size) is not supported")
                return None
            shape = [1] * q.ndim
            if np.size(scale) > 1:      # per axis (a 1-D tensor's only axis)
                axis = 0 if q.ndim == 1 else axis % max(q.ndim, 1)
                if q.ndim == 0 or q.shape[axis] != np.size(scale):
                    self.problem(where, f"{np.size(scale)} scales do not match axis {axis} "
                                        f"of {name!r} (shape {q.shape})")
                    return None
                shape[axis] = -1
            scales = np.broadcast_to(np.reshape(scale, shape), q.shape).astype(np.float32)
            zeros = np.broadcast_to(np.reshape(zero, shape), q.shape)
            self.constants[node.output[0]] = (
                (q.astype(np.int64) - zeros).astype(np.float32) * scales).astype(np.float32)
            self.quantized[node.output[0]] = (q, scales, zeros)
            return None
        if name in self.tensors and self.tensors[name] is None:
            return None     # its producer was reported
        if name not in self.fake_quant:
            self.problem(where, f"dequantizes {name!r}, which is not the output of a "
                                f"QuantizeLinear or a constant")
            return None
        act = self.activation(where, name, quantized=True)
        q_scale, q_zero = self.fake_quant[name]
        if act is None or not self.symmetric(where, name, q_zero):
            return None
        if np.ndim(scale) or float(scale) != q_scale or np.any(zero != q_zero):
            self.problem(where, f"dequantizes {name!r} with another scale or zero point "
                                f"than it was quantized with")
            return None
        if act.layer is not None:
            act.layer.output_scale = q_scale
        return act.derive(scale=q_scale)

    def op_quantizelinear(self, where, node, attrs):
        scale = self.constant(where, node.input[1], "scale")
        zero = self.constant(where, node.input[2], "zero point") if len(node.input) > 2 \
            and node.input[2] else np.zeros((), np.uint8)
        if node.input[0] in self.constants and scale is not None and zero is not None:
            # A float weight quantized in the graph: fold it to its integers.
            info = np.iinfo(zero.dtype)
            x = np.asarray(self.constants[node.input[0]], np.float32)
            q = np.clip(np.rint(x / np.float32(scale)) + zero, info.min, info.max)
            self.constants[node.output[0]] = q.astype(zero.dtype)
            return None
        act = self.activation(where, node.input[0])
        if act is None or scale is None or zero is None:
            return None
        if np.ndim(scale) or not float(scale) > 0:
            self.problem(where, f"activation {node.input[0]!r} needs one positive scale "
                                f"(per tensor), not {scale!r}")
            return None
        self.fake_quant[node.output[0]] = (float(scale), zero)
        return act

    def symmetric(self, where, name, zero):
        if zero.dtype == np.int8 and not np.any(zero):
            return True
        if not self.asymmetric:
            self.asymmetric = True
            self.problem(where, f"activation {name!r} is quantized as {zero.dtype} with zero "
                                f"point {int(np.reshape(zero, -1)[0])}; tritile runs "
                                f"symmetric int8 activations: quantize with quantize_static"
                                f"(..., activation_type=QuantType.QInt8, weight_type="
                                f"QuantType.QInt8, extra_options={{'ActivationSymmetric': "
                                f"True}})")
        return False

    # -- result ---------------------------------------------------------------------------

    def check_limits(self):
        if self.config is None:
            return
        gemms = [layer for layer in self.layers if not isinstance(layer, _PoolLayer)]
        engines = self.engines * len(gemms) if len(self.engines) == 1 else self.engines
        if len(engines) != len(gemms):
            self.problem("engine", f"{len(engines)} engines given for {len(gemms)} "
                                   f"layers; give one engine or one per Gemm, MatMul or Conv")
            return
        for index, (layer, engine) in enumerate(zip(gemms, engines)):
            k, n = layer.gemm_shape
            for text in layer_limit_problems(self.config, k, n, engine):
                self.problem(layer.where, f"layer {index} ({k}x{n}) does not fit config "
                                          f"{self.config.config_id} ({engine}): {text}")


def _bias_vector(where, value, act, problem):
    """Return a bias of shape (N,) broadcast from ``value``, or report why it cannot be."""
    n = act.size
    value = np.asarray(value, dtype=np.float32)
    shape = value.shape
    squeezed = tuple(d for d in shape if d != 1)
    fits = len(shape) <= 2 and (squeezed == () or (
        squeezed == (n,) and (shape[-1] == n if act.samples_first else
                              len(shape) == 2 and shape[0] == n)))
    if not fits:
        problem(where, f"bias of shape {shape} does not broadcast to one value per output "
                       f"feature ({n}, {'samples in rows' if act.samples_first else 'samples in columns'})")
        return None
    return np.broadcast_to(value.reshape(-1), (n,)).astype(np.float32)


def _numpy_type(element_type):
    from onnx import helper

    return helper.tensor_dtype_to_np_dtype(element_type)


def _attribute(attribute):
    from onnx import helper, numpy_helper

    value = helper.get_attribute_value(attribute)
    if attribute.type == attribute.TENSOR:
        return numpy_helper.to_array(value)
    if isinstance(value, bytes):
        return value.decode()
    return value


def _load(source):
    """Return ``(proto, display name)`` or raise OnnxImportError for an unreadable file.

    Tensors kept in external data files (``save_as_external_data``, as PyTorch's dynamo
    exporter writes ``MODEL.onnx.data``) are read from beside a model given by its path.
    """
    import onnx
    from google.protobuf.message import DecodeError

    base_dir = None
    if isinstance(source, onnx.ModelProto):
        proto, name = source, "the ONNX model"
    else:
        if isinstance(source, (bytes, bytearray)):
            data, name = bytes(source), "the ONNX bytes"
        else:
            name = os.fspath(source)
            base_dir = os.path.dirname(os.path.abspath(name))
            try:
                with open(name, "rb") as file:
                    data = file.read()
            except OSError as exc:
                raise OnnxImportError(name, [f"cannot read the file: {exc.strerror}"]
                                      ) from None
        proto = onnx.ModelProto()
        try:
            proto.ParseFromString(data)
        except DecodeError as exc:
            raise OnnxImportError(name, [f"not an ONNX model (protobuf decoding failed: "
                                         f"{exc})"]) from None
    if proto.ir_version < 1 or not proto.graph.node:
        raise OnnxImportError(name, ["not an ONNX model (no IR version or no graph nodes)"])
    _load_external_data(proto, name, base_dir)
    return proto, name


def _external_tensors(graph):
    from onnx.external_data_helper import uses_external_data

    tensors = list(graph.initializer) + [attribute.t for node in graph.node
                                         for attribute in node.attribute
                                         if attribute.type == attribute.TENSOR]
    return [tensor for tensor in tensors if uses_external_data(tensor)]


def _load_external_data(proto, name, base_dir):
    """Read external tensor data into ``proto``; raise naming a missing or short file."""
    from onnx import external_data_helper, helper

    tensors = _external_tensors(proto.graph)
    if not tensors:
        return
    problems = {}
    for tensor in tensors:
        info = external_data_helper.ExternalDataInfo(tensor)
        where = f"tensor {tensor.name!r} is stored in external data file {info.location!r}"
        if base_dir is None:
            problems.setdefault(info.location, f"{where}; import the model from its file "
                                               f"path so that the data file beside it is found")
            continue
        path = os.path.normpath(os.path.join(base_dir, info.location))
        if os.path.isabs(info.location) or os.path.commonpath([base_dir, path]) != base_dir:
            problems.setdefault(path, f"{where}, outside the model's directory {base_dir}")
            continue
        if not os.path.isfile(path):
            problems.setdefault(path, f"external data file {path} is missing (it holds tensor "
                                      f"{tensor.name!r})")
            continue
        offset = info.offset or 0
        length = info.length
        if not length:
            itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
            length = itemsize * int(np.prod(tensor.dims, dtype=np.int64))
        size = os.path.getsize(path)
        if offset + length > size:
            problems.setdefault(path, f"external data file {path} is truncated: tensor "
                                      f"{tensor.name!r} needs bytes {offset}..{offset + length} "
                                      f"but the file has {size}")
    if problems:
        raise OnnxImportError(name, problems.values())
    external_data_helper.load_external_data_for_model(proto, base_dir)


def import_onnx(source, config=None, engine="int8"):
    """Import an ONNX model as a :class:`~tritile.sw.model.Model`.

    Parameters
    ----------
    source : str, path, bytes or onnx.ModelProto
    config : AcceleratorConfig, optional
        When given, every layer is also checked against the device's limits for
        ``engine`` ("int8", "ternary" or one per layer).

    Raises
    ------
    OnnxImportError
        With every problem found: unreadable or malformed file, unsupported operators,
        dynamic weights, branches, shapes the device cannot run.
    """
    import onnx

    proto, name = _load(source)
    engines = (engine,) if isinstance(engine, str) else tuple(engine)
    if not engines or any(e not in ENGINES for e in engines):
        raise ValueError(f"engine must be one of {ENGINES} or a list of them, not {engine!r}")
    problems = []
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        problems.append(f"the ONNX checker rejects the model: {' '.join(str(exc).split())}")
    graph = proto.graph
    importer = _Importer(graph, config, engines)
    importer.problems = problems
    inputs = [v for v in graph.input if v.name not in importer.constants]
    if not inputs:
        importer.problem("graph", "has no data input")
    else:
        importer.add_input(inputs[0])
        for extra in inputs[1:]:
            importer.dynamic.add(extra.name)
    for index, node in enumerate(graph.node):
        importer.node(index, node)
    importer.finish(graph)
    importer.check_limits()
    if importer.problems:
        raise OnnxImportError(name, importer.problems)
    first = importer.layers[0] if importer.layers else None
    if isinstance(first, _Layer):
        return Model([layer.build() for layer in importer.layers], tail=importer.tail)
    c, h, w = importer.input_features
    return Model([layer.build() for layer in importer.layers], tail=importer.tail,
                 input_shape=(h, w, c), channels_first=True)
