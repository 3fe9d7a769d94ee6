"""Lower a compiled :class:`~tritile.sw.compiler.Program` to a device program.

A device program is what program mode (protocol version 3, docs/protocol.md) runs: one
layer descriptor per layer, the weights of every layer side by side in each engine's
weight memory (loaded once, resident across inferences), the requantizer parameter table
and a plan of the activation buffers. A convolution is one descriptor over one image
(M = OH*OW), its pooling fused into it; a dense layer is the 1 x 1 walk over one row.

Each layer's int8 output is placed into the activation memory of the engine of the next
layer, at the other end of the memory from the map the layer reads when both are on the
same engine (ping-pong from both ends), so a layer never writes the words it reads. Layers
whose input the host computes in float (a BitLinear layer's per-token absmax, an RMSNorm,
the input of the first layer) start a :class:`Segment`: the host writes the segment's
int8 input map, runs its layers with one RUN_PROGRAM and reads the last one's results
(int32 raw, or int8) from the output memory.

:func:`lower_program` raises :class:`~tritile.sw.compiler.CompileError` with one line
naming the memory and by how much a model misses it when it does not fit.
"""

import dataclasses
import weakref

import numpy as np

from .arith import ceil_div
from .compiler import CompileError, TernaryLayer
from .conv import Im2colWalk, Window
from .engines import engine, engine_for_numerics
from .program_model import (act_words, descriptor_problems, layer_weight_words,
                            param_capacity, weight_words)
from .protocol import (ARGS_SIZE, FRAMING_SIZE, MAX_RESPONSE_DATA, LayerFlag, LayerPool,
                       Opcode, decode_layer, encode_layer, param_records)
from .ternary_layout import base3_stream

__all__ = ["Segment", "DeviceProgram", "lower_program", "lowered", "input_write",
           "layer_packing", "TERNARY_PACKING"]

#: Packing of the ternary weights a device program uploads (1.6 bits per weight).
TERNARY_PACKING = "base3"


def _stored_packing(spec):
    """The packing of a layer's weight words as placed side by side in the memory: the
    2-bit words for base-3 uploads, which are one stream over the whole image."""
    return "2bit" if layer_packing(spec) == "base3" else layer_packing(spec)


def _wire_image(config, spec, image):
    """Return the bytes that write the weight memory ``image`` (words from word 0) in the
    packing :func:`layer_packing` uploads it in."""
    return base3_stream(config, image) if layer_packing(spec) == "base3" else image


def layer_packing(spec):
    """Return the packing the weights of ``spec``'s layers are uploaded in."""
    return TERNARY_PACKING if TERNARY_PACKING in spec.packings else None


@dataclasses.dataclass(frozen=True)
class Segment:
    """Consecutive layers the device runs with one RUN_PROGRAM, between host steps.

    Members
    -------
    first, count : int
        The descriptors (= layers of the Program) it runs.
    input_engine : str
        Engine whose activation memory receives the host's int8 input map.
    input_base : int
        Word where that map starts.
    input_shape : tuple of int
        One image's input: (H, W, C) for a map, (K,) for a vector.
    out_rows, out_n : int
        The last layer's results per image: rows (pooled pixels, 1 for a vector) x N.
    raw : bool
        The results are int32 accumulators (else requantized int8).
    out_base : int
        Output-memory index of the first result.
    """

    first: int
    count: int
    input_engine: str
    input_base: int
    input_shape: tuple
    out_rows: int
    out_n: int
    raw: bool
    out_base: int = 0


@dataclasses.dataclass(frozen=True, eq=False)
class DeviceProgram:
    """A Program lowered for program mode on one config.

    Members
    -------
    config_id : str
    descriptors : tuple of dict
        One descriptor's fields per layer (:data:`~tritile.sw.protocol.LAYER_FIELDS`).
    weight_images : dict of str to bytes
        Per engine name, the bytes of its weight target from word 0, every layer's
        weights at its ``weight_base`` (ternary weights base-3 packed).
    params : (ndarray, ndarray, ndarray)
        bias, mult and shift of every PARAMS record from record 0.
    segments : tuple of Segment
    placements : tuple of dict
        Per layer: where its weights live and where its output goes (for summaries).
    """

    config_id: str
    descriptors: tuple
    weight_images: dict
    params: tuple
    segments: tuple
    placements: tuple

    def same_as(self, other):
        """Return whether ``other`` uploads and runs exactly the same."""
        return (self.config_id == other.config_id
                and list(self.descriptors) == list(other.descriptors)
                and self.weight_images == other.weight_images
                and all(np.array_equal(a, b) for a, b in zip(self.params, other.params))
                and self.segments == other.segments)

    @property
    def param_image(self):
        """The PARAMS bytes from record 0."""
        return param_records(*self.params)

    def link_bytes_per_inference(self, config):
        """Return the bytes one inference puts on the link, both directions, framing
        included: per segment the input WRITE(s), RUN_PROGRAM and its 8 bytes per layer,
        the output READ(s), each with its response."""
        from .device import write_requests

        total = 0
        for segment in self.segments:
            target, image, addr, run, stride = input_write(
                config, segment, np.zeros(segment.input_shape, np.int8))
            for _, args, data in write_requests(target, image, addr=addr, run=run,
                                                stride=stride):
                total += FRAMING_SIZE + len(args) + len(data) + FRAMING_SIZE + 1
            total += (FRAMING_SIZE + ARGS_SIZE[Opcode.RUN_PROGRAM]
                      + FRAMING_SIZE + 1 + 8 * segment.count)
            out = segment.out_rows * segment.out_n * (4 if segment.raw else 1)
            for offset in range(0, out, MAX_RESPONSE_DATA):
                count = min(MAX_RESPONSE_DATA, out - offset)
                total += FRAMING_SIZE + ARGS_SIZE[Opcode.READ] + FRAMING_SIZE + 1 + count
        return total


def input_write(config, segment, x):
    """Return ``(target, image, addr, run, stride)`` of the WRITE of one image's int8 input
    ``x`` (``segment.input_shape``) to the segment's activation memory.

    The map's words are as the contract lays them out; of a map with fewer channels than
    a word holds only the channels are sent: the bytes past them keep what they held, and
    the layer's weights for them are zero rows, so they add nothing.
    """
    from .device import feature_map_words

    spec = engine(segment.input_engine)
    run, stride = spec.act_runs(config)
    x = np.asarray(x, np.int8).reshape(1, *segment.input_shape)
    words = feature_map_words(x if x.ndim == 4 else x.reshape(1, -1), run)
    image = np.zeros((len(words), stride), np.uint8)
    image[:, :run] = words.view(np.uint8)
    return (spec.targets[0], image.tobytes(), segment.input_base * stride,
            min(run, segment.input_shape[-1]), stride)


def _input_source(layer):
    """True when the host computes the layer's int8 input (it starts a segment)."""
    return isinstance(layer, TernaryLayer) or layer.quantize_input


def _weights(layer):
    return layer.T if isinstance(layer, TernaryLayer) else layer.Wq


def _geometry(layer, chunk):
    """Return ``(walk, K, weights padded to K rows, (out_h, out_w), pool)`` of a layer."""
    W = _weights(layer)
    conv = layer.conv
    if conv is None:
        k = layer.shape[0]
        chunks = ceil_div(k, chunk)
        walk = Im2colWalk.of(Window(1), 1, 1, 1, chunks)
        padded = np.zeros((chunks * chunk, W.shape[1]), np.int8)
        padded[:k] = W
        return walk, chunks * chunk, padded, (1, 1), None
    if len(conv.pools) > 1:
        raise CompileError(f"a convolution followed by {len(conv.pools)} poolings; a "
                           f"descriptor pools once")
    pool = conv.pools[0] if conv.pools else None
    if pool is not None:
        (ph, pw), stride, pads = pool.window.kernel, pool.window.stride, pool.window.pads
        whole_map = (ph, pw) == tuple(conv.out_shape[:2])     # one window: any stride
        if ph != pw or not (stride == (ph, pw) or whole_map) or any(pads):
            raise CompileError(f"{pool.kind} pooling {pool.window.kernel} stride {stride} "
                               f"pads {pads}: the device pools square windows whose stride "
                               f"is their size, without padding")
        if pool.kind == "avg" and len(set(np.asarray(pool.mult).tolist())) > 1:
            raise CompileError("average pooling with per-channel scales; the device has one")
    return conv.walk(1), conv.padded_k, conv.padded_weights(W).astype(np.int8), \
        conv.out_shape[:2], pool


def _pool_fields(pool, out_h, out_w):
    if pool is None:
        return {}, 0, (out_h, out_w)
    pk = pool.window.kernel[0]
    kind = LayerPool.MAX if pool.kind == "max" else LayerPool.AVERAGE
    fields = {"pool_k": pk, "pool_out_h": out_h // pk, "pool_out_w": out_w // pk}
    if kind is LayerPool.AVERAGE:
        fields.update(pool_mult=int(pool.mult[0]), pool_shift=int(pool.shift[0]))
    return fields, kind << 4, (out_h // pk, out_w // pk)


def _record_params(layer, n):
    if isinstance(layer, TernaryLayer):
        bias = np.zeros(n, np.int64)     # BitLinear's bias is float, added by the host
    else:
        bias = np.asarray(layer.bias, np.int64)
    if layer.raw_output:
        return bias, np.zeros(n, np.int64), np.ones(n, np.int64)
    return bias, np.asarray(layer.mult, np.int64), np.asarray(layer.shift, np.int64)


def _check_fit(what, needed, capacity):
    if needed > capacity:
        raise CompileError(f"{what} need {needed}; it holds {capacity} ({needed - capacity} "
                           f"too many)")


def lower_program(program):
    """Return the :class:`DeviceProgram` of ``program`` on its config.

    Raises CompileError (one line) when the config has no program mode, a layer has no
    descriptor form, or the program misses a memory (which, and by how much).
    """
    config = program.config
    layers = program.layers
    if not config.max_layers:
        raise CompileError(f"config {config.config_id} has no program mode (max_layers = 0)")
    _check_fit(f"the program's {len(layers)} layers: the descriptor memory (max_layers) "
               f"would", len(layers), config.max_layers)
    if any(layer.conv is not None and layer.conv.window.kernel != (1, 1)
           for layer in layers) and not config.conv_walk:
        raise CompileError(f"config {config.config_id} has no convolution walk (conv_walk = 0)")

    descriptors, placements, segments = [], [], []
    weight_parts, weight_used = {}, {}
    params, param_used = [], 0
    source = None        # (engine name, base, words, at the high end) of the live map
    segment_start = 0
    for index, layer in enumerate(layers):
        spec = engine_for_numerics(layer.engine)
        chunk = spec.chunk(config)
        walk, k, W, (out_h, out_w), pool = _geometry(layer, chunk)
        n = layer.shape[1]
        stored = _stored_packing(spec)
        core = spec.weight_core_target(stored)
        try:
            image = spec.memory_image(config, np.zeros((1, k), np.int8), W, stored)[core]
        except ValueError as exc:
            raise CompileError(f"layer {index} does not fit program mode: {exc}") from None
        words = layer_weight_words(config, spec, k, n)
        weight_base = weight_used.get(spec.name, 0)
        _check_fit(f"the weights of layers 0 .. {index} on the {spec.name} engine: words of "
                   f"its weight memory they", weight_base + words, weight_words(config, spec))
        weight_parts.setdefault(spec.name, []).append(image)
        weight_used[spec.name] = weight_base + words
        _check_fit(f"the requantizer parameters of layers 0 .. {index}: records they",
                   param_used + n, param_capacity(config))
        params.append(_record_params(layer, n))

        if _input_source(layer):
            segment_start = index
            in_words = walk.words
            _check_fit(f"layer {index}'s input map: words of the {spec.name} activation "
                       f"memory it", in_words, act_words(config, spec))
            source = (spec.name, 0, in_words, False)
            input_shape = (tuple(layer.conv.in_shape) if layer.conv is not None
                           else (layer.shape[0],))
        src_engine, src_base, src_words, src_high = source
        pool_fields, pool_flag, (res_h, res_w) = _pool_fields(pool, out_h, out_w)
        fields = dict(
            engine=spec.protocol_id, m=out_h * out_w, k=k, n=n, in_h=walk.in_h,
            in_w=walk.in_w, chunks=walk.chunks, out_h=walk.out_h, out_w=walk.out_w,
            kernel_w=walk.kernel_w, stride_y=walk.stride_y, stride_x=walk.stride_x,
            pad_top=walk.pad_top, pad_left=walk.pad_left, base0=walk.base0 + src_base,
            x_step=walk.x_step, row_step=walk.row_step, image_step=walk.image_step,
            tap_row_step=walk.tap_row_step, weight_base=weight_base, param_base=param_used,
            **pool_fields)
        param_used += n
        flags = pool_flag | (LayerFlag.RELU if layer.relu and not layer.raw_output else 0)
        last = index + 1 == len(layers) or _input_source(layers[index + 1])
        placement = {"layer": index, "weights": f"resident in the {spec.name} weight memory, "
                     f"words {weight_base} .. {weight_base + words - 1}",
                     "output_stays_on_chip": not last}
        if last:
            flags |= LayerFlag.TO_OUTPUT | (LayerFlag.RAW if layer.raw_output else 0)
            _check_fit(f"layer {index}'s results: entries of the output memory they",
                       res_h * res_w * n, config.out_depth)
            segments.append(Segment(segment_start, index + 1 - segment_start,
                                    engine_for_numerics(layers[segment_start].engine).name,
                                    0, input_shape, res_h * res_w, n, layer.raw_output))
            placement["placement"] = "to the host (output memory)"
        else:
            if layer.raw_output:
                raise CompileError(f"layer {index} has a raw int32 output that the next "
                                   f"layer reads without a host step")
            dest = engine_for_numerics(layers[index + 1].engine)
            dest_chunks = ceil_div(n, dest.chunk(config))
            dest_words = res_h * res_w * dest_chunks
            capacity = act_words(config, dest)
            if dest.name == src_engine:
                _check_fit(f"layer {index}'s input ({src_words}) and output map: words of the "
                           f"{dest.name} activation memory they", src_words + dest_words,
                           capacity)
                high = not src_high
            else:
                _check_fit(f"layer {index}'s output map: words of the {dest.name} activation "
                           f"memory it", dest_words, capacity)
                high = False
            dest_base = capacity - dest_words if high else 0
            fields.update(dest_engine=dest.protocol_id, dest_base=dest_base,
                          dest_chunks=dest_chunks)
            source = (dest.name, dest_base, dest_words, high)
            placement["placement"] = (f"stays on chip: {dest.name} activation memory words "
                                   f"{dest_base} .. {dest_base + dest_words - 1}")
        fields["flags"] = int(flags)
        try:    # every field, the defaults filled in, each within its width
            fields = decode_layer(encode_layer(**fields))
        except ValueError as exc:
            raise CompileError(f"layer {index} does not fit program mode: {exc}") from None
        problems = descriptor_problems(config, fields)
        if problems:
            raise CompileError(f"layer {index} does not fit program mode: "
                               + "; ".join(problems))
        descriptors.append(fields)
        placements.append(placement)

    images = {name: _wire_image(config, engine(name), b"".join(parts))
              for name, parts in weight_parts.items()}
    bias, mult, shift = (np.concatenate(column) for column in zip(*params))
    return DeviceProgram(config.config_id, tuple(descriptors), images, (bias, mult, shift),
                         tuple(segments), tuple(placements))


#: The device program of each Program: lowered once, or read from its program file.
_LOWERED = weakref.WeakKeyDictionary()


def lowered(program, device_program=None):
    """Return the :class:`DeviceProgram` of ``program`` (lowered once and remembered).

    ``device_program``, when given, is what a program file holds for ``program``; it must
    equal the lowering (CompileError otherwise) and is remembered in its place.
    """
    if device_program is not None:
        if not device_program.same_as(lower_program(program)):
            raise CompileError("its device program differs from what this tritile lowers "
                               "its layers to")
        _LOWERED[program] = device_program
    if program not in _LOWERED:
        _LOWERED[program] = lower_program(program)
    return _LOWERED[program]
