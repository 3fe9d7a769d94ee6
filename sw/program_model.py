"""The golden model of program mode: a device's memories and the execution of descriptors.

A :class:`ProgramMachine` holds what a device in program mode holds, at the level of the
protocol's targets (docs/protocol.md): each engine's activation and weight memories as the
bytes its WRITE targets address, the PARAMS records, the layer-descriptor memory and the
output memory. :meth:`ProgramMachine.run_program` executes descriptors exactly as the
contract says:

- the activation rows are read through the implicit-im2col walk of the descriptor
  (``base0`` and the steps of :class:`~tritile.sw.conv.Im2colWalk`, addresses computed by
  adding the steps as the hardware does; a tap outside the ``in_h`` x ``in_w`` map reads
  zeros);
- the K x N weights are read from the engine's weight memory from word ``weight_base``
  in the engine's layout (:mod:`tritile.sw.systolic_layout`,
  :mod:`tritile.sw.ternary_layout`);
- the GEMM is the engine's exact numerics plus the bias of record ``param_base + n``, then
  (unless RAW) :func:`~tritile.sw.numerics.requantize` with that record's mult and shift,
  ReLU when flagged;
- pooling (window = stride = ``pool_k``, floor) takes the maximum, or the window sum
  requantized with ``pool_mult`` / ``pool_shift`` (:func:`~tritile.sw.conv.avgpool_int8`);
- result (m', n) goes to word ``dest_base + m'*dest_chunks + n // chunk'``, byte
  ``n % chunk'`` of the destination engine's activation memory, or with TO_OUTPUT to
  output index ``out_base + m'*N + n``.

Requests the device refuses raise :class:`ProgramModelError` with the device's
:class:`~tritile.sw.protocol.Status`: a target the build lacks (BAD_TARGET), bytes outside
a target (BAD_ADDRESS), layers past ``max_layers`` or an engine the config lacks
(UNAVAILABLE), a descriptor whose shape the rules of :func:`descriptor_problems` refuse
(BAD_SHAPE; the program stops there and that layer writes nothing).
"""

import numpy as np

from .arith import ceil_div
from .engines import ENGINES, engine
from .numerics import requantize
from .packing import unpack_trits_2bit
from .planner import plan_in_place
from .protocol import (LAYER_SIZE, PARAM_RECORD, WRITABLE_TARGETS, Engine, LayerFlag,
                       LayerPool, ProtocolError, Status, Target, decode_layer, target_size)
from .ternary_layout import base3_write, ternary_geometry

__all__ = ["ProgramModelError", "ProgramMachine", "param_capacity", "act_words",
           "weight_words", "layer_weight_words", "layer_cycles", "descriptor_problems",
           "walk_addresses"]


class ProgramModelError(ValueError):
    """A request the device refuses; ``status`` is the :class:`Status` it answers."""

    def __init__(self, status, message):
        super().__init__(f"{Status(status).name}: {message}")
        self.status = Status(status)


def param_capacity(config):
    """Return the requantizer parameter records (PARAMS entries) a device holds."""
    return config.param_entries


def act_words(config, spec):
    """Return the words of ``spec``'s activation memory on ``config`` (0 if absent)."""
    spec = engine(spec)
    return target_size(config, spec.targets[0]) // spec.act_runs(config)[1] \
        if spec.present(config) else 0


def weight_words(config, spec):
    """Return the words of ``spec``'s weight memory on ``config`` (0 if absent)."""
    spec = engine(spec)
    if not spec.present(config):
        return 0
    return target_size(config, spec.targets[1]) // spec.weight_runs(config, None)[1]


def layer_weight_words(config, spec, k, n):
    """Return the weight-memory words of a K x N layer on ``spec`` (K a multiple of the chunk).

    Systolic: ``ceil(N / C) * K`` (word ``j*K + k``); ternary: ``ceil(N / L) * ceil(K / P)``
    (word ``t*G + g``).
    """
    spec = engine(spec)
    tile_k, tile_n = spec.tile_size(config)
    if spec.name == "systolic":
        return ceil_div(n, tile_n) * k
    return ceil_div(n, tile_n) * ceil_div(k, tile_k)


def layer_cycles(config, spec, m, k, n):
    """Return the cycle model's cycles of a descriptor's M x K x N GEMM on ``spec``.

    The planner's schedule without RUN's ``m*k <= act_depth`` rule: a layer reads its
    map in place, whose size :func:`descriptor_problems` checks instead.
    """
    return plan_in_place(config, engine(spec).name, m, k, n).cycles


def descriptor_problems(config, fields):
    """Return why the device refuses descriptor ``fields`` (a dict of
    :data:`~tritile.sw.protocol.LAYER_FIELDS`; empty if it runs).

    RUN's rules with the map in place of the im2col rows (as
    :func:`~tritile.sw.planner.plan_conv`): ``1 <= m, k, n <= max_m, max_k, max_n``,
    ``m*n <= out_depth``, ``k*n`` within the weight depth; the walk consistent with M and
    K; the source map, the weights, the parameter records, the destination map or the
    output inside their memories; pooling that fits the map.
    """
    f = fields
    problems = []
    try:
        spec = engine(Engine(f["engine"]))
    except ValueError:
        return [f"engine {f['engine']} does not exist"]
    m, k, n = f["m"], f["k"], f["n"]
    for name, value, limit in (("m", m, config.max_m), ("k", k, config.max_k),
                               ("n", n, config.max_n)):
        if not 1 <= value <= limit:
            problems.append(f"{name} = {value} outside 1 .. {limit}")
    if m * n > config.out_depth:
        problems.append(f"m*n = {m * n} exceeds out_depth = {config.out_depth}")
    if k * n > spec.weight_capacity(config):
        problems.append(f"k*n = {k * n} exceeds {spec.weight_depth_field}")
    if problems:
        return problems
    chunk = spec.chunk(config)
    pixels = f["out_h"] * f["out_w"]
    groups_per_row = f["kernel_w"] * f["chunks"]
    if (min(f["in_h"], f["in_w"], f["chunks"], f["kernel_w"], f["stride_y"], f["stride_x"])
            < 1 or pixels < 1 or m % pixels or k % (chunk * groups_per_row)):
        return [f"the walk ({f['in_h']}x{f['in_w']}x{f['chunks']} words, out "
                f"{f['out_h']}x{f['out_w']}, kernel_w {f['kernel_w']}) does not match "
                f"m = {m}, k = {k}"]
    kernel_h = k // (chunk * groups_per_row)
    if not config.conv_walk and (kernel_h, f["kernel_w"], f["stride_y"], f["stride_x"],
                                 f["pad_top"], f["pad_left"]) != (1, 1, 1, 1, 0, 0):
        problems.append("a window walk on a device without conv_walk")
    images = m // pixels
    addresses = walk_addresses(f, kernel_h, images)
    read = addresses[addresses >= 0]
    if read.size and (read.min() < 0 or read.max() >= act_words(config, spec)):
        problems.append(f"the walk reads words {read.min()} .. {read.max()} outside the "
                        f"{act_words(config, spec)}-word activation memory")
    words = layer_weight_words(config, spec, k, n)
    if f["weight_base"] + words > weight_words(config, spec):
        problems.append(f"weights at words {f['weight_base']} .. "
                        f"{f['weight_base'] + words - 1} outside the "
                        f"{weight_words(config, spec)}-word weight memory")
    if f["param_base"] + n > param_capacity(config):
        problems.append(f"parameter records {f['param_base']} .. {f['param_base'] + n - 1} "
                        f"outside the {param_capacity(config)} records")
    flags = LayerFlag(f["flags"] & 0x37)
    pool = LayerPool((f["flags"] >> 4) & 3) if (f["flags"] >> 4) & 3 < 3 else None
    if pool is None:
        return problems + ["pooling kind 3 does not exist"]
    out_h, out_w = f["out_h"], f["out_w"]
    if pool is not LayerPool.NONE:
        pk = f["pool_k"]
        if not 1 <= pk <= min(out_h, out_w) or (f["pool_out_h"], f["pool_out_w"]) != (
                out_h // pk, out_w // pk):
            problems.append(f"pooling {pk}x{pk} to {f['pool_out_h']}x{f['pool_out_w']} does "
                            f"not fit the {out_h}x{out_w} map")
        out_h, out_w = out_h // max(pk, 1), out_w // max(pk, 1)
    if LayerFlag.RAW in flags and LayerFlag.TO_OUTPUT not in flags:
        problems.append("RAW results go only to the output memory (TO_OUTPUT)")
    results = images * out_h * out_w
    if LayerFlag.TO_OUTPUT in flags:
        if f["out_base"] + results * n > config.out_depth:
            problems.append(f"results {f['out_base']} .. {f['out_base'] + results * n - 1} "
                            f"outside out_depth = {config.out_depth}")
        return problems
    try:
        dest = engine(Engine(f["dest_engine"]))
    except ValueError:
        return problems + [f"destination engine {f['dest_engine']} does not exist"]
    if not dest.present(config):
        return problems + [f"destination engine {dest.name} is not in this build"]
    if f["dest_chunks"] < ceil_div(n, dest.chunk(config)):
        problems.append(f"dest_chunks = {f['dest_chunks']} holds fewer than the {n} channels")
    end = f["dest_base"] + results * f["dest_chunks"]
    if end > act_words(config, dest):
        problems.append(f"the output map's words {f['dest_base']} .. {end - 1} are outside "
                        f"the {act_words(config, dest)}-word {dest.name} activation memory")
    return problems


def walk_addresses(fields, kernel_h, images):
    """Return the M x groups word addresses the walk of descriptor ``fields`` reads, -1
    where a tap falls in the padding.

    The origins and tap offsets are sums of the descriptor's steps (``x_step`` per output
    column, ``row_step`` per output row, ``image_step`` per image; +1 per word of a kernel
    row, ``tap_row_step`` per kernel row), as the address generator adds them; a tap is
    padding when its input row or column, counted from the window's corner, leaves the map.
    """
    f = fields
    oh, ow, kw, ct = f["out_h"], f["out_w"], f["kernel_w"], f["chunks"]
    # Origin of output pixel (b, y, x): the sum of the steps taken to reach it.
    x_steps = np.arange(ow) * f["x_step"]
    y_steps = np.concatenate(([0], np.cumsum(np.full(oh - 1, f["row_step"] + (ow - 1)
                                                     * f["x_step"]))))
    b_steps = np.concatenate(([0], np.cumsum(np.full(images - 1, f["image_step"]
                                                     + (oh - 1) * (f["row_step"] + (ow - 1)
                                                                   * f["x_step"])
                                                     + (ow - 1) * f["x_step"]))))
    origin = (f["base0"] + b_steps[:, None, None] + y_steps[None, :, None]
              + x_steps[None, None, :]).reshape(-1)
    row_words = kw * ct
    taps = (np.arange(kernel_h)[:, None] * (row_words - 1 + f["tap_row_step"])
            + np.arange(row_words)[None, :]).reshape(-1)
    addresses = origin[:, None] + taps[None, :]
    # Coordinates of each tap in the map, for the padding test.
    ys = (np.arange(oh) * f["stride_y"] - f["pad_top"])[:, None] + np.arange(kernel_h)
    xs = (np.arange(ow) * f["stride_x"] - f["pad_left"])[:, None] + np.arange(kw)
    inside_y = (ys >= 0) & (ys < f["in_h"])                 # (oh, kh)
    inside_x = (xs >= 0) & (xs < f["in_w"])                 # (ow, kw)
    inside = (inside_y[:, None, :, None, None] & inside_x[None, :, None, :, None]
              & np.ones(ct, bool))                          # (oh, ow, kh, kw, ct)
    inside = np.broadcast_to(inside.reshape(1, oh * ow, -1), (images, oh * ow,
                                                               kernel_h * row_words))
    return np.where(inside.reshape(addresses.shape), addresses, -1)


class ProgramMachine:
    """The memories of a device in program mode and the execution of its descriptors.

    Parameters
    ----------
    config : AcceleratorConfig
        The design modelled: its engines, memory sizes, ``max_layers`` and limits.

    Members
    -------
    memory : dict of Target to ndarray of uint8
        Every writable target's bytes (an engine's targets are absent from a build
        without it). The ternary weight targets are one memory of trits, ``trits``.
    output : ndarray of int32, shape (out_depth,)
    """

    def __init__(self, config):
        self.config = config
        self.memory = {target: np.zeros(target_size(config, target), np.uint8)
                       for target in WRITABLE_TARGETS if target_size(config, target)}
        self.output = np.zeros(config.out_depth, np.int32)
        ternary = ENGINES["ternary"]
        self._trit_word = config.ternary_lanes * config.ternary_fan_in
        self.trits = np.zeros((weight_words(config, ternary), self._trit_word), np.int8)

    # --- requests ---------------------------------------------------------------------

    def write(self, target, image, *, addr=0, run=0, stride=0):
        """Do a WRITE of ``image`` to ``target`` from byte ``addr`` (runs as the protocol's)."""
        try:
            target = Target(target)
        except ValueError:
            raise ProgramModelError(Status.BAD_TARGET, f"no target {target}") from None
        if target not in self.memory:
            raise ProgramModelError(Status.BAD_TARGET, f"{target.name} is not in this build")
        image = bytes(image)
        if (run, stride) != (0, 0) and not 1 <= run <= stride:
            raise ProgramModelError(Status.BAD_ADDRESS, f"run {run}, stride {stride}")
        if run:
            if len(image) % run:
                raise ProgramModelError(Status.BAD_ADDRESS, "data is not whole runs")
            runs = np.arange(len(image) // run)
            addresses = (addr + runs[:, None] * stride + np.arange(run)).reshape(-1)
        else:
            addresses = addr + np.arange(len(image))
        memory = self.memory[target]
        if len(addresses) and (addresses.min() < 0 or addresses.max() >= len(memory)):
            raise ProgramModelError(Status.BAD_ADDRESS, f"bytes {addresses.min()} .. "
                                    f"{addresses.max()} outside {target.name}'s {len(memory)}")
        memory[addresses] = np.frombuffer(image, np.uint8)
        if target in (Target.TERNARY_WEIGHT, Target.TERNARY_WEIGHT_BASE3):
            self._transcode(target, addresses)

    def request_write(self, args, data):
        """Do the WRITE request with argument block ``args`` (:func:`~tritile.sw.protocol.
        write_args`) and ``data``."""
        target, addr = args[0], int.from_bytes(args[1:4], "little")
        run, stride = int.from_bytes(args[4:6], "little"), int.from_bytes(args[6:8], "little")
        self.write(target, data, addr=addr, run=run, stride=stride)

    def _transcode(self, target, addresses):
        """Store the trits of every ternary weight word the write touched; a base-3 write
        first becomes the 2-bit bytes the device's transcoder writes (one stream per run
        of consecutive addresses, :func:`~tritile.sw.ternary_layout.base3_write`)."""
        geometry = ternary_geometry(self.config)
        used, stride = geometry.weight_word_bytes, geometry.weight_stride
        two_bit = self.memory[Target.TERNARY_WEIGHT]
        if target == Target.TERNARY_WEIGHT_BASE3:
            data = self.memory[target]
            breaks = np.flatnonzero(np.diff(addresses) != 1) + 1
            touched = []
            for run in np.split(addresses, breaks):
                first, image = base3_write(self.config, int(run[0]), data[run].tobytes())
                where = first + np.arange(len(image))
                keep = (where % stride < used) & (where < len(two_bit))
                two_bit[where[keep]] = np.frombuffer(image, np.uint8)[keep]
                touched.append(where[keep])
            addresses = np.concatenate(touched)
        for word in np.unique(addresses // stride):
            data = two_bit[word * stride:word * stride + used].tobytes()
            try:
                self.trits[word] = unpack_trits_2bit(data, self._trit_word)
            except ValueError as exc:
                raise ProgramModelError(Status.BAD_ADDRESS,
                                        f"weight word {word}: {exc}") from None

    def write_input_map(self, engine_name, x, base=0):
        """Write int8 map ``x`` (NHWC, or M x K) to an activation memory from word ``base``."""
        from .device import feature_map_words

        spec = engine(engine_name)
        run, stride = spec.act_runs(self.config)
        words = feature_map_words(np.asarray(x, np.int8), run)
        self.write(spec.targets[0], words.tobytes(), addr=base * stride, run=run,
                   stride=stride)

    def read_output(self, m, n, *, raw=False, out_base=0):
        """Return the ``m x n`` results at output index ``out_base`` (int32 with ``raw``)."""
        if out_base < 0 or out_base + m * n > len(self.output):
            raise ProgramModelError(Status.BAD_ADDRESS, f"results {out_base} .. "
                                    f"{out_base + m * n - 1} past out_depth")
        values = self.output[out_base:out_base + m * n].reshape(m, n)
        return values.copy() if raw else values.astype(np.int8)

    def load_program(self, descriptors):
        """Write layer descriptors (bytes or dicts of fields) from layer 0."""
        from .protocol import encode_layer

        image = b"".join(d if isinstance(d, (bytes, bytearray)) else encode_layer(**d)
                         for d in descriptors)
        self.write(Target.PROGRAM, image)

    def run_program(self, first=0, count=1):
        """Run layers ``first`` .. ``first + count - 1``; return each layer's planned
        ``{"busy_cycles", "mac_cycles"}`` (the cycle model's; the model has no clock)."""
        if not self.config.max_layers or count < 1 or first + count > self.config.max_layers:
            raise ProgramModelError(Status.UNAVAILABLE, f"layers {first} .. "
                                    f"{first + count - 1} of {self.config.max_layers}")
        cycles = []
        for index in range(first, first + count):
            raw = self.memory[Target.PROGRAM][index * LAYER_SIZE:
                                              (index + 1) * LAYER_SIZE].tobytes()
            try:
                fields = decode_layer(raw)
            except ProtocolError as exc:
                raise ProgramModelError(Status.BAD_SHAPE, f"layer {index}: {exc}") from None
            cycles.append(self.run_layer(index, fields))
        return cycles

    # --- one layer --------------------------------------------------------------------

    def run_layer(self, index, fields):
        """Execute one descriptor; return its planned cycles."""
        try:
            spec = engine(Engine(fields["engine"]))
        except ValueError:
            spec = None
        if spec is None or not spec.present(self.config):
            raise ProgramModelError(Status.UNAVAILABLE, f"layer {index}: engine "
                                    f"{fields['engine']} is not in this build")
        problems = descriptor_problems(self.config, fields)
        if problems:
            raise ProgramModelError(Status.BAD_SHAPE, f"layer {index}: " + "; ".join(problems))
        f = fields
        m, k, n = f["m"], f["k"], f["n"]
        chunk = spec.chunk(self.config)
        kernel_h = k // (chunk * f["kernel_w"] * f["chunks"])
        images = m // (f["out_h"] * f["out_w"])
        addresses = walk_addresses(f, kernel_h, images)
        words = self._act_words(spec)
        rows = np.where((addresses >= 0)[..., None], words[np.maximum(addresses, 0)], 0)
        X = rows.reshape(m, k).astype(np.int8)
        W = self._layer_weights(spec, f["weight_base"], k, n)
        bias, mult, shift = self._params(f["param_base"], n)
        acc = (spec.golden(X, W).astype(np.int64) + bias).astype(np.int32)
        flags = LayerFlag(f["flags"] & 0x37)
        if LayerFlag.RAW in flags:
            y = acc
        else:
            y = requantize(acc, mult, shift, LayerFlag.RELU in flags)
        y = y.reshape(images, f["out_h"], f["out_w"], n)
        pool = LayerPool((f["flags"] >> 4) & 3)
        if pool is not LayerPool.NONE:
            y = self._pool(y, pool, f)
        results = y.reshape(-1, n)
        if LayerFlag.TO_OUTPUT in flags:
            self.output[f["out_base"]:f["out_base"] + results.size] = results.reshape(-1)
        else:
            self._place(results, f)
        return {"busy_cycles": layer_cycles(self.config, spec, m, k, n), "mac_cycles": None}

    def _act_words(self, spec):
        run, stride = spec.act_runs(self.config)
        return self.memory[spec.targets[0]].view(np.int8).reshape(-1, stride)[:, :run]

    def _layer_weights(self, spec, base, k, n):
        tile_k, tile_n = spec.tile_size(self.config)
        tiles = ceil_div(n, tile_n)
        if spec.name == "systolic":
            _, stride = spec.weight_runs(self.config, None)
            memory = self.memory[spec.targets[1]].view(np.int8)
            words = memory.reshape(-1, stride)[base:base + tiles * k, :tile_n]
            W = words.reshape(tiles, k, tile_n).transpose(1, 0, 2).reshape(k, -1)
        else:
            groups = ceil_div(k, tile_k)
            words = self.trits[base:base + tiles * groups]
            # word (t, g), trit l*P + j  ->  T[g*P + j, t*L + l]
            W = words.reshape(tiles, groups, tile_n, tile_k).transpose(1, 3, 0, 2)
            W = W.reshape(groups * tile_k, tiles * tile_n)
        return np.ascontiguousarray(W[:k, :n])

    def _params(self, base, n):
        memory = self.memory[Target.PARAMS].tobytes()
        records = [PARAM_RECORD.unpack_from(memory, (base + i) * PARAM_RECORD.size)
                   for i in range(n)]
        bias, mult, shift = zip(*records)
        return np.array(bias, np.int64), np.array(mult, np.int32), np.array(shift, np.int32)

    def _pool(self, y, pool, f):
        pk = f["pool_k"]
        ph, pw = f["pool_out_h"], f["pool_out_w"]
        blocks = y[:, :ph * pk, :pw * pk].reshape(y.shape[0], ph, pk, pw, pk, y.shape[3])
        if pool is LayerPool.MAX:
            return blocks.max(axis=(2, 4)).astype(y.dtype)
        sums = blocks.astype(np.int64).sum(axis=(2, 4)).astype(np.int32)
        channels = y.shape[3]
        return requantize(sums, np.full(channels, f["pool_mult"], np.int32),
                          np.full(channels, f["pool_shift"], np.int32))

    def _place(self, results, f):
        dest = engine(Engine(f["dest_engine"]))
        run, stride = dest.act_runs(self.config)
        target = dest.targets[0]
        memory = self.memory[target].view(np.int8).reshape(-1, stride)
        pixels, n = results.shape
        # Only the bytes of channels below N are written: the rest of a word keeps what it
        # held (the next layer's weights for those channels are zero rows).
        channel = np.arange(n)
        words = (f["dest_base"] + np.arange(pixels)[:, None] * f["dest_chunks"]
                 + channel // run)
        memory[words, channel % run] = results.astype(np.int8)
