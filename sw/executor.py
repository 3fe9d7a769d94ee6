"""Run a compiled :class:`~tritile.sw.compiler.Program` on a device or on the golden model.

A backend is anything with the engine-call API of :class:`tritile.sw.device.Device`:
``info()``, ``upload_int8``, ``upload_ternary``, ``gemm`` and ``ternary``. The
:class:`GoldenBackend` computes those calls with the numerics of :mod:`tritile.sw.numerics`,
so running one program on a device and on the golden backend must give identical integer
outputs for every sample; :func:`agreement` counts the samples where they do.

The host does every float step between engine calls (quantizing an input, RMSNorm,
dequantizing a raw output, bias and ReLU after a ternary layer); those steps are the same
code for both backends, so any difference comes from the engine calls.

On a config with program mode a program runs as a device program
(:mod:`tritile.sw.program_lowering`): weights, parameters and descriptors uploaded once and
resident, then per image the input map, one RUN_PROGRAM per segment and the last layer's
results; the golden backend runs it on the program model
(:class:`~tritile.sw.program_model.ProgramMachine`). Layer by layer, the golden backend
computes each convolution with :mod:`tritile.sw.conv` (``conv2d_int8``,
``conv2d_ternary``), while a device gets it as one GEMM over im2col rows the host builds
from the int8 map (``im2col_nhwc``), the bias of a ternary layer added and its output
requantized by the host (the driver's ternary call has no bias). Pooling of the int8 map
is then done by the host (``maxpool_int8``, ``avgpool_int8``).

A backend that keeps a ``stats`` dict of cumulative ``busy_cycles``, ``bytes_sent`` and
``bytes_received`` (as :class:`~tritile.sw.device.Device` does) has its measured cycles and
bytes on the wire reported per layer next to the planner's prediction.
"""

import contextlib
import dataclasses
import time
import weakref

import numpy as np

from .compiler import CompileError, Program, StaticLayer, TernaryLayer
from .config import AcceleratorConfig
from .conv import avgpool_int8, conv2d_int8, conv2d_ternary, im2col_nhwc, maxpool_int8
from .engines import engine, engine_for_numerics
from .model import activate, input_batch, rms_norm
from .numerics import (gemm_int8, quantize_activations_absmax, quantize_activations_int8,
                       requantize, ternary_matmul)
from .packing import packed_size
from .program_lowering import TERNARY_PACKING, input_write, layer_packing, lowered
from .program_model import ProgramMachine, layer_cycles
from .protocol import PARAM_RECORD, Target
from .tiling import tile_problem

__all__ = ["ProgramMismatchError", "GoldenBackend", "LayerRun", "RunResult", "execute",
           "agreement", "open_backend", "backend_config", "run_checked",
           "GOLDEN", "TERNARY_PACKING", "MODES"]

#: The ``--device`` value that selects the golden model instead of a device.
GOLDEN = "golden"

#: How :func:`execute` runs a program: as a device program (descriptors run by
#: RUN_PROGRAM, weights resident), or layer by layer with engine calls.
MODES = ("program", "layers")


class ProgramMismatchError(ValueError):
    """A program was compiled for another config than the backend's."""


class _GoldenWeights:
    """Weights held by a :class:`GoldenBackend`, the counterpart of a device handle."""

    def __init__(self, config_id, kind, array):
        self.config_id = config_id
        self.kind = kind
        self.array = array


class GoldenBackend:
    """The golden model behind the :class:`~tritile.sw.device.Device` engine-call API.

    Parameters
    ----------
    config : AcceleratorConfig
        The design whose numerics and limits are modelled; its config_id is reported by
        :meth:`info` so programs are checked against it like against a device.
    """

    def __init__(self, config):
        self.config = config
        self._machine = None

    @property
    def machine(self):
        """The :class:`~tritile.sw.program_model.ProgramMachine` behind program mode."""
        if self._machine is None:
            self._machine = ProgramMachine(self.config)
        return self._machine

    def info(self):
        """Return the config parameters and ``config_id``, as a device reports them."""
        return {**self.config.to_dict(), "config_id": self.config.config_id}

    def upload_int8(self, Wq):
        """Keep int8 weights; return a handle for :meth:`gemm`."""
        return _GoldenWeights(self.config.config_id, "int8", np.array(Wq, copy=True))

    def upload_ternary(self, T, packing=TERNARY_PACKING):
        """Keep ternary weights; return a handle for :meth:`ternary`.

        ``packing`` is checked but has no effect: the golden model holds trits unpacked.
        """
        packed_size(0, packing)
        return _GoldenWeights(self.config.config_id, "ternary", np.array(T, copy=True))

    def _weights(self, W, kind):
        if not isinstance(W, _GoldenWeights):
            return W
        if W.config_id != self.config.config_id or W.kind != kind:
            raise ProgramMismatchError(
                f"handle holds {W.kind} weights for config {W.config_id}; this call needs "
                f"{kind} weights for config {self.config.config_id}")
        return W.array

    def gemm(self, Xq, W, bias=None, mult=None, shift=None, relu=False):
        """Return ``gemm_int8(Xq, W, bias)``, requantized when ``mult``/``shift`` are given."""
        acc = gemm_int8(Xq, self._weights(W, "int8"), bias)
        return acc if mult is None else requantize(acc, mult, shift, relu)

    def ternary(self, q, T, mult=None, shift=None, relu=False):
        """Return ``ternary_matmul(q, T)``, requantized when ``mult``/``shift`` are given."""
        acc = ternary_matmul(q, self._weights(T, "ternary"))
        return acc if mult is None else requantize(acc, mult, shift, relu)

    def conv(self, Xq, W, window, bias=None, mult=None, shift=None, relu=False):
        """Return the convolution of the int8 NHWC map ``Xq`` by the weights of handle ``W``
        (``conv2d_int8`` or ``conv2d_ternary``), plus ``bias``, requantized when ``mult``
        and ``shift`` are given."""
        if W.kind == "int8":
            acc = conv2d_int8(Xq, self._weights(W, "int8"), window, bias)
        else:
            acc = _add_bias(conv2d_ternary(Xq, self._weights(W, "ternary"), window), bias)
        return acc if mult is None else requantize(acc, mult, shift, relu)


    # --- program mode: the device's requests, on the program model ---------------------

    def write(self, target, image, *, addr=0, run=0, stride=0, label=None):
        """Write ``image`` to ``target`` as :meth:`Device.write <tritile.sw.device.Device.
        write>` does (the same WRITE requests)."""
        from .device import write_requests

        for _, args, data in write_requests(target, image, addr=addr, run=run,
                                            stride=stride):
            self.machine.request_write(args, data)

    def load_program(self, descriptors):
        """Write layer descriptors from layer 0."""
        self.machine.load_program(descriptors)

    def run_program(self, first=0, count=1):
        """Run layers ``first`` .. ``first + count - 1`` of the loaded program."""
        return self.machine.run_program(first, count)

    def read_output(self, m, n, *, raw=False, out_base=0):
        """Return the ``m x n`` results at output index ``out_base``."""
        return self.machine.read_output(m, n, raw=raw, out_base=out_base)


def _add_bias(acc, bias):
    return acc if bias is None else (acc.astype(np.int64) + bias).astype(np.int32)


def _predicted_cycles(config, spec, m, k, n):
    tiling = tile_problem(spec, config, m, k, n)
    return sum(spec.plan(config, *call.shape).cycles for call in tiling.calls())


@dataclasses.dataclass
class LayerRun:
    """What one layer of a run cost.

    Members
    -------
    engine : str
        "int8" or "ternary".
    m, k, n : int
        Problem size of the layer on the whole batch.
    calls : int
        Engine calls the batch takes (:func:`tritile.sw.tiling.tile_problem`).
    predicted_cycles : int
        Engine cycles of those calls by the planner's cycle model.
    weight_bytes : int
        Bytes of the layer's weights as uploaded (int8, or packed trits).
    stream_bytes : int
        Payload bytes of the batch: int8 activations in, results out (one byte per int8,
        four per int32), and the layer's output-stage parameters, one
        :data:`~tritile.sw.protocol.PARAM_RECORD` per channel (written once per layer;
        a raw output has a record of zeros).
    seconds : float
        Wall time of the layer's upload and engine call(s).
    cycles : int or None
        Busy cycles the device measured for the layer (None when the backend has no
        counters, e.g. the golden model).
    wire_bytes : int or None
        Bytes the layer sent and received on the link, framing included (None without a
        link).
    """

    engine: str
    m: int
    k: int
    n: int
    calls: int
    predicted_cycles: int
    weight_bytes: int
    stream_bytes: int
    seconds: float = 0.0
    cycles: int = None
    wire_bytes: int = None


@dataclasses.dataclass
class RunResult:
    """Outputs of a program run and what it cost.

    Members
    -------
    outputs : ndarray of float32, shape (M, N)
        The last layer's output, dequantized on the host.
    integers : list of ndarray or None
        Each layer's integer engine output (int8 requantized or int32 raw), M rows each;
        None for a layer whose output stayed on chip (program mode).
    layers : list of LayerRun
    seconds : float
        Wall time of the run.
    mode : str
        ``"program"`` or ``"layers"`` (:data:`MODES`).
    link : dict or None
        Program mode: ``upload_wire_bytes`` (weights, parameters and descriptors, sent
        once), ``inference_wire_bytes`` (every image's input, RUN_PROGRAM and output,
        measured; None without a link) and ``model_bytes_per_inference`` (the same from
        the protocol's framing, :meth:`~tritile.sw.program_lowering.DeviceProgram.
        link_bytes_per_inference`).
    """

    outputs: np.ndarray
    integers: list
    layers: list
    seconds: float
    mode: str = "layers"
    link: dict = None

    @property
    def predicted_cycles(self):
        """Engine cycles of the whole batch by the cycle model."""
        return sum(layer.predicted_cycles for layer in self.layers)

    @property
    def cycles(self):
        """Engine cycles the device measured for the whole batch, or None."""
        measured = [layer.cycles for layer in self.layers]
        return None if None in measured else sum(measured)

    @property
    def bytes_streamed(self):
        """Payload bytes of the weights and of the batch."""
        return sum(layer.weight_bytes + layer.stream_bytes for layer in self.layers)

    @property
    def wire_bytes(self):
        """Bytes on the link for the whole batch, framing included, or None."""
        if self.link is not None:
            parts = (self.link["upload_wire_bytes"], self.link["inference_wire_bytes"])
            return None if None in parts else sum(parts)
        measured = [layer.wire_bytes for layer in self.layers]
        return None if None in measured else sum(measured)

    @property
    def link_bytes_per_inference(self):
        """Bytes on the link per image, framing included, or None without a link.

        Program mode counts each image's traffic (the resident program's upload is
        ``link["upload_wire_bytes"]``); layer by layer, everything.
        """
        if self.link is not None:
            measured = self.link["inference_wire_bytes"]
            return None if measured is None else measured / len(self.outputs)
        return None if self.wire_bytes is None else self.wire_bytes / len(self.outputs)

    def to_dict(self):
        """Return the figures (not the arrays), for JSON output."""
        m = len(self.outputs)
        return {
            "samples": m,
            "mode": self.mode,
            "layers": [dataclasses.asdict(layer) for layer in self.layers],
            "cycles": self.cycles,
            "cycles_per_inference": None if self.cycles is None else self.cycles / m,
            "link_bytes_per_inference": self.link_bytes_per_inference,
            **({} if self.link is None else self.link),
            "predicted_cycles": self.predicted_cycles,
            "predicted_cycles_per_inference": self.predicted_cycles / m,
            "bytes_streamed": self.bytes_streamed,
            "wire_bytes": self.wire_bytes,
            "seconds": self.seconds,
        }


def _check_config(program, backend):
    if not isinstance(program, Program):
        raise TypeError(f"program must be a Program, not {type(program).__name__}")
    config_id = backend.info()["config_id"]
    if config_id != program.config_id:
        raise ProgramMismatchError(
            f"the program was compiled for config {program.config_id} but the device runs "
            f"config {config_id}; compile the model again for this device")


def _upload(layer, backend):
    if layer.engine == "int8":
        return backend.upload_int8(layer.Wq)
    trits = layer.Wq if isinstance(layer, StaticLayer) else layer.T
    return backend.upload_ternary(trits, packing=TERNARY_PACKING)


def _counters(backend):
    stats = getattr(backend, "stats", None)
    if not isinstance(stats, dict):
        return None
    return stats["busy_cycles"], stats["bytes_sent"] + stats["bytes_received"]


def _static_gemm(layer, handle, backend, Xq):
    """Return the int8 (requantized) or int32 (raw, bias added) output of a static layer."""
    if layer.engine == "int8":
        return backend.gemm(Xq, handle, bias=layer.bias, mult=layer.mult, shift=layer.shift,
                            relu=layer.relu and not layer.raw_output)
    acc = _add_bias(backend.ternary(Xq, handle), layer.bias)
    return acc if layer.raw_output else requantize(acc, layer.mult, layer.shift, layer.relu)


def _pool(y, pool):
    if pool.kind == "max":
        return maxpool_int8(y, pool.window)
    return avgpool_int8(y, pool.window, pool.mult, pool.shift)


def _run_conv(layer, handle, backend, Xq):
    """Run a convolution (pooled) on an int8 NHWC map; return its int8 or int32 map."""
    conv = layer.conv
    if hasattr(backend, "conv"):
        y = backend.conv(Xq, handle, conv.window, layer.bias, layer.mult, layer.shift,
                         layer.relu)
    else:   # until the device runs programs: one GEMM over host-built im2col rows
        y = _static_gemm(layer, handle, backend, im2col_nhwc(Xq, conv.window))
        y = y.reshape(len(Xq), *conv.out_shape)
    for pool in conv.pools:
        y = _pool(y, pool)
    return y


def _dequantize_raw(layer, acc):
    """Return a raw int32 output in float, with the layer's activation."""
    Y = (acc.astype(np.float32) * (np.float32(layer.s_x) * layer.s_w)).astype(np.float32)
    return activate(Y, layer.activation)


def _run_static(layer, handle, backend, X, Xq):
    """Run a static layer (int8 input scale, either engine); see :func:`_run_layer`."""
    if layer.quantize_input:
        Xq = quantize_activations_int8(layer_input(layer, X), scale=layer.s_x)[0]
    if layer.conv is not None:
        y = _run_conv(layer, handle, backend, Xq.reshape(len(Xq), *layer.conv.in_shape))
    else:
        y = _static_gemm(layer, handle, backend, Xq.reshape(len(Xq), -1))
    flat = y.reshape(len(y), -1)
    if layer.raw_output:
        return _dequantize_raw(layer, y), None, flat
    return None, y, flat


def _run_layer(layer, handle, backend, X, Xq):
    """Run one layer; return ``(float output or None, int8 output or None, integers)``."""
    if isinstance(layer, StaticLayer):
        return _run_static(layer, handle, backend, X, Xq)
    q, s = quantize_activations_absmax(layer_input(layer, X))
    acc = backend.ternary(q, handle)
    Y = (acc.astype(np.float32) * np.float32(layer.gamma) / s[:, None]
         + layer.bias).astype(np.float32)
    return activate(Y, layer.activation), None, acc


def layer_input(layer, X):
    """Return the float input a layer quantizes: ``X``, RMS-normalized if it has a norm."""
    return X if layer.norm is None else rms_norm(X, layer.norm)


def _costs(program, images):
    for layer in program.layers:
        k, n = layer.shape
        # A convolution runs as one GEMM over its im2col rows (the layer-by-layer mode).
        m = images * (1 if layer.conv is None else layer.conv.pixels)
        spec = engine_for_numerics(layer.engine)
        tiling = tile_problem(spec, program.config, m, k, n)
        # A static ternary layer's call returns int32: the host adds its bias (see above).
        raw = layer.raw_output or (layer.engine == "ternary" and isinstance(layer, StaticLayer))
        out_bytes = 4 if raw else 1
        yield LayerRun(layer.engine, m, k, n, len(tiling.calls()),
                       _predicted_cycles(program.config, spec, m, k, n),
                       spec.weight_bytes(k, n, layer_packing(spec)),
                       m * k + m * n * out_bytes + n * PARAM_RECORD.size, 0.0)


def execute(program, backend, X, progress=None, mode=None):
    """Run ``program`` on ``backend`` for the batch ``X`` (M samples).

    Parameters
    ----------
    program : Program
    backend : Device or GoldenBackend
        Must report the program's config_id, or :class:`ProgramMismatchError` is raised
        before anything is uploaded.
    X : array_like, shape (M, ...)
        Float inputs; trailing axes are reshaped to the program's input (a map NCHW or
        NHWC as the model took it).
    progress : callable, optional
        Called with a one-line message before each layer (each segment in program mode).
    mode : "program", "layers", "auto" or None
        ``"program"``: lower the program (:func:`~tritile.sw.program_lowering.
        lower_program`; CompileError if it does not fit), keep its weights, parameters
        and descriptors resident on the backend, and run one image at a time with
        RUN_PROGRAM. ``"layers"``: one engine call per layer and batch, weights uploaded
        per layer. ``"auto"``: program mode if the program lowers, else layer by layer
        (``progress`` says why). None: ``"auto"`` when the config has program mode
        (``max_layers > 0``) and the backend speaks it, else layer by layer.

    Returns
    -------
    RunResult
    """
    _check_config(program, backend)
    say = progress or (lambda message: None)
    has_program_mode = bool(program.config.max_layers) and hasattr(backend, "run_program")
    if mode is None:
        mode = "auto" if has_program_mode else "layers"
    if mode == "auto":
        mode = "layers"
        if has_program_mode:
            try:
                lowered(program)
                mode = "program"
            except CompileError as exc:
                say(f"running layer by layer: {exc}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES + ('auto',))}, not {mode!r}")
    X = input_batch(X, program.input_shape, program.channels_first)
    if X.shape[0] == 0:
        raise ValueError("the input must hold at least one sample")
    if mode == "program":
        return _execute_program(program, lowered(program), backend, X, say)
    _RESIDENT.pop(backend, None)    # engine calls overwrite the memories at word 0
    return _execute_layers(program, backend, X, say)


def _execute_layers(program, backend, X, say):
    runs = list(_costs(program, X.shape[0]))

    integers, Xq = [], None
    start = time.perf_counter()
    # Each layer's weights are uploaded just before it runs: a device keeps one set of
    # weights per engine resident, so uploading all layers first would send some twice.
    for index, (layer, run) in enumerate(zip(program.layers, runs)):
        say(f"layer {index}: {layer.engine} {run.m}x{run.k}x{run.n} in {run.calls} call(s)")
        layer_start, before = time.perf_counter(), _counters(backend)
        X, Xq, ints = _run_layer(layer, _upload(layer, backend), backend, X, Xq)
        run.seconds = time.perf_counter() - layer_start
        after = _counters(backend)
        if before is not None:
            run.cycles, run.wire_bytes = (a - b for a, b in zip(after, before))
        integers.append(ints)
    if X is None:   # a requantized last layer (a pre-quantized model's own int8 output)
        X = (Xq.astype(np.float32) * np.float32(program.layers[-1].out_scale)
             ).astype(np.float32)
    X = X.reshape(len(X), *program.output_shape)
    return RunResult(X, integers, runs, time.perf_counter() - start)


#: The device program each backend holds (weights, parameters, descriptors), by backend.
_RESIDENT = weakref.WeakKeyDictionary()
def _upload_program(device_program, backend, config):
    """Make ``device_program`` resident on ``backend`` unless it already is."""
    if _RESIDENT.get(backend) is device_program:
        return
    _RESIDENT.pop(backend, None)
    for name, image in device_program.weight_images.items():
        spec = engine(name)
        packing = layer_packing(spec)
        run, stride = spec.weight_runs(config, packing)
        backend.write(spec.protocol_target(spec.weight_core_target(packing)), image,
                      run=run, stride=stride, label=f"{name} weights")
    backend.write(Target.PARAMS, device_program.param_image, label="parameters")
    backend.load_program(device_program.descriptors)
    _RESIDENT[backend] = device_program


def _segment_input(layer, X, Xq):
    """Return ``(int8 input, per-row scales or None)`` the host computes for a segment."""
    if isinstance(layer, TernaryLayer):
        return quantize_activations_absmax(layer_input(layer, X))
    if Xq is not None and not layer.quantize_input:
        return Xq, None
    return quantize_activations_int8(layer_input(layer, X), scale=layer.s_x)[0], None


def _segment_output(layer, out, scales):
    """Return ``(float output or None, int8 output or None)`` of a segment's last layer."""
    if isinstance(layer, TernaryLayer):
        Y = (out.astype(np.float32) * np.float32(layer.gamma) / scales[:, None]
             + layer.bias).astype(np.float32)
        return activate(Y, layer.activation), None
    if layer.raw_output:
        return _dequantize_raw(layer, out), None
    return None, out


def _program_costs(program, device_program, images):
    """The LayerRun of each layer of a device program run on ``images`` images."""
    firsts = {segment.first for segment in device_program.segments}
    lasts = {segment.first + segment.count - 1: segment for segment in device_program.segments}
    for index, (layer, fields) in enumerate(zip(program.layers, device_program.descriptors)):
        spec = engine_for_numerics(layer.engine)
        m, k, n = fields["m"], fields["k"], fields["n"]
        stream = images * int(np.prod(_layer_in_shape(layer))) if index in firsts else 0
        if index in lasts:
            segment = lasts[index]
            stream += images * segment.out_rows * n * (4 if segment.raw else 1)
        yield LayerRun(layer.engine, images * m, k, n, images,
                       images * layer_cycles(program.config, spec, m, k, n),
                       spec.weight_bytes(k, n, layer_packing(spec)),
                       stream + n * PARAM_RECORD.size)


def _layer_in_shape(layer):
    return layer.conv.in_shape if layer.conv is not None else (layer.shape[0],)


def _execute_program(program, device_program, backend, X, say):
    """Run the device program one image at a time; see :func:`execute`."""
    config = program.config
    runs = list(_program_costs(program, device_program, X.shape[0]))
    start = time.perf_counter()
    before = _counters(backend)
    say(f"program: {len(program.layers)} layer(s) in {len(device_program.segments)} "
        f"segment(s), weights resident")
    _upload_program(device_program, backend, config)
    uploaded = _counters(backend)
    integers = [None] * len(program.layers)
    busy = [0] * len(program.layers)
    outputs = []
    for image in range(X.shape[0]):
        x, xq = X[image:image + 1], None
        for segment in device_program.segments:
            first = program.layers[segment.first]
            q, scales = _segment_input(first, x, xq)
            target, data, addr, run, stride = input_write(config, segment, q)
            backend.write(target, data, addr=addr, run=run, stride=stride, label="input map")
            counters = backend.run_program(segment.first, segment.count)
            for offset, layer_counters in enumerate(counters):
                busy[segment.first + offset] += layer_counters["busy_cycles"] or 0
            out = backend.read_output(segment.out_rows, segment.out_n, raw=segment.raw,
                                      out_base=segment.out_base).reshape(1, -1)
            last = segment.first + segment.count - 1
            integers[last] = (out if integers[last] is None
                              else np.concatenate([integers[last], out]))
            x, xq = _segment_output(program.layers[last], out, scales)
        outputs.append(x if x is not None else (
            xq.astype(np.float32) * np.float32(program.layers[-1].out_scale)
        ).astype(np.float32))
    after = _counters(backend)
    link = {"upload_wire_bytes": None, "inference_wire_bytes": None,
            "model_bytes_per_inference": device_program.link_bytes_per_inference(config)}
    if before is not None:
        for run, cycles in zip(runs, busy):
            run.cycles = cycles
        link.update(upload_wire_bytes=uploaded[1] - before[1],
                    inference_wire_bytes=after[1] - uploaded[1])
    seconds = time.perf_counter() - start
    for run in runs:
        run.seconds = seconds / len(runs)
    Y = np.concatenate(outputs).reshape(X.shape[0], *program.output_shape)
    return RunResult(Y, integers, runs, seconds, "program", link)


def agreement(a, b):
    """Return the fraction of samples whose integer outputs agree in every layer of two runs
    (every layer whose output both runs saw: in program mode, the outputs that leave the
    chip)."""
    if len(a.integers) != len(b.integers):
        raise ValueError(f"the runs have {len(a.integers)} and {len(b.integers)} layers")
    same = np.ones(len(a.outputs), dtype=bool)
    for x, y in zip(a.integers, b.integers):
        if x is None or y is None:      # a layer whose output stayed on chip in program mode
            continue
        if x.shape != y.shape:
            raise ValueError(f"integer outputs of shapes {x.shape} and {y.shape} differ")
        same &= np.all(x == y, axis=1)
    return float(np.mean(same))


@contextlib.contextmanager
def open_backend(device, config):
    """Open ``device`` (a URL, ``"sim"``, or :data:`GOLDEN` for ``GoldenBackend(config)``)."""
    if device == GOLDEN:
        yield GoldenBackend(config)
        return
    from .device import Device

    with Device.open(device, config=config) as backend:
        yield backend


def backend_config(backend):
    """Return the :class:`AcceleratorConfig` of a backend, checked against its config_id."""
    info = backend.info()
    config = getattr(backend, "config", None)
    if not isinstance(config, AcceleratorConfig) or config.config_id != info["config_id"]:
        raise ProgramMismatchError(f"the device reports config_id {info['config_id']} but "
                                   f"its parameters do not hash to it")
    return config


def run_checked(program, backend, X, progress=None, mode=None):
    """Run ``program`` on ``backend`` and on the golden model; return both and the agreement.

    The golden model runs the program layer by layer with the numerics of
    :mod:`tritile.sw.numerics` and :mod:`tritile.sw.conv`, so a program-mode run (on a
    device, or on the program model of a :class:`GoldenBackend`) is checked against an
    independent computation. Returns ``(result, golden, agreement)``; a layer-by-layer run
    on a :class:`GoldenBackend` is its own golden run.
    """
    result = execute(program, backend, X, progress, mode)
    if isinstance(backend, GoldenBackend) and result.mode == "layers":
        return result, result, 1.0
    golden = execute(program, GoldenBackend(program.config), X, mode="layers")
    return result, golden, agreement(result, golden)
