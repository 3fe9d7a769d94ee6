"""Compiled program files (``.tritile``): a :class:`~tritile.sw.compiler.Program` on disk.

What ``tritile compile`` writes and ``tritile run`` reads, without pickle:

====================  =========================================================
bytes                 content
====================  =========================================================
8                     magic ``TRITILE\\x1a``
2                     format version, little-endian (:data:`VERSION`)
4                     length of the metadata, little-endian
8                     length of the array data, little-endian
metadata length       UTF-8 JSON: the config (parameters and config_id), the
                      input and output shapes, the layers (every field; an array
                      field refers to an entry of ``arrays``), the host tail, the
                      device program (null when the config has no program mode or
                      the model runs layer by layer: the descriptors' fields, the
                      weight image of each engine and the PARAMS records as arrays,
                      the segments and the placement of each layer), and
                      ``arrays``: dtype, shape, offset and size of each array
array data length     the arrays' raw bytes, C order, little-endian
4                     CRC-32 (zlib) of every byte before it, little-endian
====================  =========================================================

Reading checks the magic, the version, the lengths against the file's size and the CRC
before it decodes anything, then rebuilds every layer through its own constructor and
checks the device program against the lowering of those layers
(:func:`~tritile.sw.program_lowering.lowered`), which then runs the file's; any failure is
one :class:`ProgramFileError` line naming the file.
"""

import dataclasses
import json
import struct
import zlib

import numpy as np

from .compiler import CompileError, ConvStep, PoolStep, Program, StaticLayer, TernaryLayer
from .config import AcceleratorConfig, ConfigError
from .conv import Window
from .host_tail import HostTail, TailNode
from .program_lowering import DeviceProgram, Segment, lowered

__all__ = ["ProgramFileError", "save_program", "load_program", "MAGIC", "VERSION"]

MAGIC = b"TRITILE\x1a"
#: Version of the format this module writes and reads (2: with the device program).
VERSION = 2
_HEADER = struct.Struct("<8sHIQ")
_CRC = struct.Struct("<I")

# Classes a file may name; nothing else is ever constructed from a file.
_CLASSES = {cls.__name__: cls for cls in (StaticLayer, TernaryLayer, ConvStep, PoolStep)}
# Array dtypes a file may hold (kind letters: bool, int, uint, float, unicode string).
_ARRAY_KINDS = "biufU"


class ProgramFileError(ValueError):
    """A program file is unreadable, truncated, corrupt, foreign or malformed."""


class _Writer:
    def __init__(self):
        self.arrays, self.chunks, self.offset = [], [], 0

    def array(self, value):
        value = np.ascontiguousarray(value)
        if value.dtype.kind not in _ARRAY_KINDS:
            raise TypeError(f"cannot store an array of dtype {value.dtype}")
        data = value.astype(value.dtype.newbyteorder("<")).tobytes()
        self.arrays.append({"dtype": value.dtype.newbyteorder("<").str,
                            "shape": list(value.shape), "offset": self.offset,
                            "size": len(data)})
        self.chunks.append(data)
        self.offset += len(data)
        return {"array": len(self.arrays) - 1}

    def encode(self, value):
        if isinstance(value, np.ndarray):
            return self.array(value)
        if isinstance(value, Window):
            return {"window": [list(value.kernel), list(value.stride), list(value.pads)]}
        if dataclasses.is_dataclass(value):
            return {"class": type(value).__name__,
                    "fields": {f.name: self.encode(getattr(value, f.name))
                               for f in dataclasses.fields(value)}}
        if isinstance(value, (tuple, list)):
            return [self.encode(item) for item in value]
        if isinstance(value, np.generic):
            return value.item()
        return value

    def tail(self, tail):
        if tail is None:
            return None
        nodes = [{"op": list(node.op), "inputs": list(node.inputs),
                  "outputs": list(node.outputs),
                  "attributes": {key: (np.dtype(value).str if key == "to" else self.encode(value))
                                 for key, value in node.attributes.items()}}
                 for node in tail.nodes]
        return {"input": tail.input_name, "nodes": nodes, "outputs": list(tail.outputs),
                "constants": {name: self.array(value) for name, value in tail.constants.items()}}


    def device_program(self, program):
        if not program.config.max_layers:
            return None
        try:
            device = lowered(program)
        except CompileError:
            return None     # runs layer by layer
        return {"descriptors": [dict(fields) for fields in device.descriptors],
                "weight_images": {name: self.array(np.frombuffer(image, np.uint8))
                                  for name, image in device.weight_images.items()},
                "params": [self.array(column) for column in device.params],
                "segments": [dataclasses.asdict(segment) for segment in device.segments],
                "placements": [dict(place) for place in device.placements]}


def save_program(program, path):
    """Write ``program`` to ``path`` in the format above."""
    if not isinstance(program, Program):
        raise TypeError(f"program must be a Program, not {type(program).__name__}")
    writer = _Writer()
    meta = {"config": program.config.to_dict(), "config_id": program.config_id,
            "input_shape": list(program.input_shape),
            "channels_first": program.channels_first,
            "output_shape": list(program.output_shape),
            "layers": [writer.encode(layer) for layer in program.layers],
            "tail": writer.tail(program.tail),
            "device_program": writer.device_program(program)}
    meta["arrays"] = writer.arrays
    text = json.dumps(meta, separators=(",", ":")).encode()
    body = _HEADER.pack(MAGIC, VERSION, len(text), writer.offset) + text + b"".join(writer.chunks)
    with open(path, "wb") as file:
        file.write(body + _CRC.pack(zlib.crc32(body)))


class _Reader:
    def __init__(self, meta, data):
        self.arrays = []
        for entry in meta["arrays"]:
            dtype = np.dtype(entry["dtype"])
            if dtype.kind not in _ARRAY_KINDS:
                raise ValueError(f"array dtype {dtype} is not allowed")
            start, size = int(entry["offset"]), int(entry["size"])
            if start < 0 or start + size > len(data):
                raise ValueError(f"array at bytes {start}..{start + size} lies outside the "
                                 f"{len(data)} bytes of array data")
            array = np.frombuffer(data[start:start + size], dtype)
            self.arrays.append(array.reshape(entry["shape"]).astype(dtype.newbyteorder("=")))

    def decode(self, value):
        if isinstance(value, list):
            return tuple(self.decode(item) for item in value)
        if not isinstance(value, dict):
            return value
        if "array" in value:
            return self.arrays[value["array"]]
        if "window" in value:
            return Window(*(tuple(item) for item in value["window"]))
        cls = _CLASSES.get(value.get("class"))
        if cls is None:
            raise ValueError(f"unknown class {value.get('class')!r}")
        return cls(**{key: self.decode(item) for key, item in value["fields"].items()})

    def tail(self, data):
        if data is None:
            return None
        nodes = [TailNode(tuple(node["op"]), node["inputs"], node["outputs"],
                          {key: (np.dtype(value) if key == "to" else self.decode(value))
                           for key, value in node["attributes"].items()})
                 for node in data["nodes"]]
        constants = {name: self.arrays[ref["array"]] for name, ref in data["constants"].items()}
        return HostTail(data["input"], nodes, constants, data["outputs"])

    def device_program(self, data, config_id):
        if data is None:
            return None
        segments = tuple(Segment(**{**segment, "input_shape": tuple(segment["input_shape"])})
                         for segment in data["segments"])
        return DeviceProgram(
            config_id, tuple(dict(fields) for fields in data["descriptors"]),
            {name: self.arrays[ref["array"]].astype(np.uint8).tobytes()
             for name, ref in data["weight_images"].items()},
            tuple(self.arrays[ref["array"]] for ref in data["params"]), segments,
            tuple(dict(place) for place in data["placements"]))


def _read_bytes(path):
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as exc:
        raise ProgramFileError(f"cannot read {path}: {exc.strerror}") from None


def load_program(path):
    """Return the :class:`Program` stored in ``path``; raise :class:`ProgramFileError`."""
    blob = _read_bytes(path)
    if len(blob) < _HEADER.size + _CRC.size:
        if not MAGIC.startswith(blob[:len(MAGIC)]) or not blob:
            raise ProgramFileError(f"{path} is not a tritile program file")
        raise ProgramFileError(f"{path} is truncated: {len(blob)} bytes, fewer than a header")
    magic, version, meta_size, data_size = _HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise ProgramFileError(f"{path} is not a tritile program file (it starts with "
                               f"{blob[:8]!r}, not {MAGIC!r})")
    if version != VERSION:
        raise ProgramFileError(f"{path} is a version {version} program file; this tritile "
                               f"reads version {VERSION}: compile the model again")
    size = _HEADER.size + meta_size + data_size + _CRC.size
    if len(blob) != size:
        what = "truncated" if len(blob) < size else "followed by extra bytes"
        raise ProgramFileError(f"{path} is {what}: its header gives {size} bytes, the file "
                               f"has {len(blob)}")
    body = blob[:-_CRC.size]
    (crc,) = _CRC.unpack_from(blob, len(body))
    if zlib.crc32(body) != crc:
        raise ProgramFileError(f"{path} is corrupt: its CRC-32 is {zlib.crc32(body):#010x}, "
                               f"the file records {crc:#010x}")
    start = _HEADER.size
    try:
        meta = json.loads(body[start:start + meta_size].decode())
        reader = _Reader(meta, body[start + meta_size:])
        config = AcceleratorConfig.from_dict(meta["config"])
        if config.config_id != meta["config_id"]:
            raise ValueError(f"its config hashes to {config.config_id}, not the recorded "
                             f"{meta['config_id']}")
        layers = tuple(reader.decode(layer) for layer in meta["layers"])
        program = Program(config, meta["config_id"], layers, tuple(meta["input_shape"]),
                          bool(meta["channels_first"]), tuple(meta["output_shape"]),
                          reader.tail(meta["tail"]))
        device = reader.device_program(meta["device_program"], program.config_id)
        if device is not None:
            lowered(program, device)
        return program
    except (ValueError, KeyError, TypeError, IndexError, ConfigError) as exc:
        text = " ".join(str(exc).split())
        raise ProgramFileError(f"{path} has malformed metadata: {type(exc).__name__}: "
                               f"{text}") from None
