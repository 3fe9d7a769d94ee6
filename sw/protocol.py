"""The host link's framed protocol: one definition for the driver, the tests and the gateware.

Every frame, in both directions, is::

    SYNC  opcode  seq  length(2)  payload(length)  crc(2)

Multi-byte fields are little-endian. ``crc`` is CRC-16/CCITT-FALSE (polynomial 0x1021,
initial value 0xFFFF, no reflection, no final XOR) over ``opcode`` through the last payload
byte. A response carries ``opcode | RESPONSE_BIT``, the request's ``seq`` and a payload that
starts with a :class:`Status` byte. A request payload is the opcode's fixed argument block
(:data:`ARGS_SIZE`) followed by data bytes (only ``WRITE`` carries data).
docs/protocol.md describes every field; the SoC takes its constants from this module at
generation time, so the two cannot disagree.
"""

import enum
import struct
from dataclasses import dataclass

from .config import AcceleratorConfig

__all__ = [
    "SYNC", "RESPONSE_BIT", "HEADER_SIZE", "CRC_SIZE", "FRAMING_SIZE", "MAX_DATA",
    "MAX_ARGS", "MAX_PAYLOAD", "MAX_RESPONSE_DATA", "VERSION", "FRAME_TIMEOUT_MS",
    "PARAM_RECORD", "STATS_FIELDS", "Opcode", "Status", "Target", "Engine", "RunFlag",
    "LayerFlag", "LayerPool", "LAYER_FIELDS", "LAYER_SIGNED", "LAYER_SIZE",
    "ENGINE_TARGETS", "ARGS_FIELDS", "ARGS_SIZE", "WRITABLE_TARGETS", "READABLE_TARGETS",
    "ProtocolError", "Frame", "FrameDecoder",
    "crc16", "encode_frame", "encode_request", "encode_response",
    "write_args", "read_args", "run_args", "run_program_args", "target_size",
    "frame_timeout_cycles", "capability_bytes", "parse_capability", "parse_run",
    "parse_program_run", "parse_stats", "param_records", "encode_layer", "decode_layer",
]

SYNC = 0xA5
RESPONSE_BIT = 0x80
#: SYNC, opcode, seq and the two length bytes.
HEADER_SIZE = 5
CRC_SIZE = 2
FRAMING_SIZE = HEADER_SIZE + CRC_SIZE
#: Most data bytes one WRITE carries: the size of the device's frame buffer.
MAX_DATA = 2048
#: Largest argument block of any opcode.
MAX_ARGS = 8
#: Largest request payload the device accepts; a longer ``length`` is rejected at once.
MAX_PAYLOAD = MAX_ARGS + MAX_DATA
#: Most data bytes one READ returns (the response also has its status byte).
MAX_RESPONSE_DATA = MAX_DATA
VERSION = 3
#: A frame whose next byte does not arrive within this time is abandoned.
FRAME_TIMEOUT_MS = 10


class Opcode(enum.IntEnum):
    """Request opcodes."""
    PING = 0x01
    INFO = 0x02
    WRITE = 0x03
    READ = 0x04
    RUN = 0x05
    STATS = 0x06
    #: Run layers ``first`` .. ``first + count - 1`` of the loaded program (version 3).
    RUN_PROGRAM = 0x07


#: The fields of each opcode's argument block, in wire order: (name, bits), little-endian.
#: The gateware decodes requests with layouts generated from this (hw/request_checker.py).
ARGS_FIELDS = {
    Opcode.PING: (),
    Opcode.INFO: (),
    Opcode.WRITE: (("target", 8), ("addr", 24), ("run", 16), ("stride", 16)),
    Opcode.READ: (("target", 8), ("addr", 24), ("count", 16)),
    Opcode.RUN: (("engine", 8), ("flags", 8), ("m", 16), ("k", 16), ("n", 16)),
    Opcode.STATS: (),
    Opcode.RUN_PROGRAM: (("first", 8), ("count", 8)),
}

#: Bytes of the fixed argument block of each opcode.
ARGS_SIZE = {op: sum(bits for _, bits in fields) // 8 for op, fields in ARGS_FIELDS.items()}


class Status(enum.IntEnum):
    """First payload byte of every response."""
    OK = 0
    BAD_CRC = 1
    BAD_LENGTH = 2
    UNKNOWN_OPCODE = 3
    BAD_TARGET = 4
    BAD_ADDRESS = 5
    BAD_SHAPE = 6
    #: The engine is missing from this build, or the simulated board serves another client.
    UNAVAILABLE = 7
    #: A RUN is in progress: the request was not acted on (send it again after the RUN's
    #: response).
    BUSY = 8


class Target(enum.IntEnum):
    """Memories a WRITE or READ addresses (byte addresses within each)."""
    SYSTOLIC_ACT = 0
    SYSTOLIC_WEIGHT = 1
    TERNARY_ACT = 2
    #: Ternary weights in the 2-bit packing.
    TERNARY_WEIGHT = 3
    #: Requantization parameters, :data:`PARAM_RECORD` bytes per output channel.
    PARAMS = 4
    #: Output memory as int32 little-endian words (read only).
    OUTPUT32 = 5
    #: Output memory, low byte of each word (read only; requantized int8 results).
    OUTPUT8 = 6
    #: Ternary weights in the base-3 packing (the same memory as ``TERNARY_WEIGHT``,
    #: transcoded as it is written: one stream across words, in address order).
    TERNARY_WEIGHT_BASE3 = 7
    #: The layer-descriptor memory: ``max_layers`` descriptors of :data:`LAYER_SIZE` bytes,
    #: layer ``i`` at byte ``i * LAYER_SIZE`` (version 3).
    PROGRAM = 8


WRITABLE_TARGETS = (Target.SYSTOLIC_ACT, Target.SYSTOLIC_WEIGHT, Target.TERNARY_ACT,
                    Target.TERNARY_WEIGHT, Target.TERNARY_WEIGHT_BASE3, Target.PARAMS,
                    Target.PROGRAM)
READABLE_TARGETS = (Target.OUTPUT32, Target.OUTPUT8)


class Engine(enum.IntEnum):
    """The ``engine`` argument of RUN; bit ``1 << engine`` of the capability's engine mask."""
    SYSTOLIC = 0
    TERNARY = 1


#: The write targets of each engine, in the order of its cores' ``write.target`` field:
#: activations, then weights (the ternary engine's in both packings). A device without the
#: engine has none of them (their size is 0). :mod:`tritile.sw.engines` serves this with
#: the rest of each engine's facts.
ENGINE_TARGETS = {Engine.SYSTOLIC: (Target.SYSTOLIC_ACT, Target.SYSTOLIC_WEIGHT),
                  Engine.TERNARY: (Target.TERNARY_ACT, Target.TERNARY_WEIGHT,
                                   Target.TERNARY_WEIGHT_BASE3)}


class RunFlag(enum.IntFlag):
    """The ``flags`` argument of RUN."""
    RAW = 1
    RELU = 2


class LayerPool(enum.IntEnum):
    """Bits 4-5 of a layer descriptor's ``flags``: pooling of the requantized output."""
    NONE = 0
    MAX = 1
    AVERAGE = 2


class LayerFlag(enum.IntFlag):
    """The ``flags`` field of a layer descriptor."""
    #: int32 results, no requantization (only with ``TO_OUTPUT``).
    RAW = 1
    RELU = 2
    #: Results go to the output memory; else as int8 into an activation memory.
    TO_OUTPUT = 4
    MAX_POOL = LayerPool.MAX << 4
    AVERAGE_POOL = LayerPool.AVERAGE << 4


#: The fields of a layer descriptor in wire order: (name, bits), little-endian. One
#: descriptor describes one layer of a program (docs/protocol.md, "Layer descriptor").
LAYER_FIELDS = (
    ("engine", 8), ("flags", 8), ("m", 16), ("k", 16), ("n", 16),
    ("in_h", 16), ("in_w", 16), ("chunks", 16), ("out_h", 16), ("out_w", 16),
    ("kernel_w", 8), ("stride_y", 8), ("stride_x", 8), ("pad_top", 8), ("pad_left", 8),
    ("base0", 32), ("x_step", 32), ("row_step", 32), ("image_step", 32),
    ("tap_row_step", 32),
    ("weight_base", 24), ("param_base", 16), ("dest_engine", 8), ("dest_base", 24),
    ("dest_chunks", 16), ("pool_k", 8), ("pool_out_h", 16), ("pool_out_w", 16),
    ("pool_mult", 16), ("pool_shift", 8), ("out_base", 24),
)
#: Descriptor fields that are two's complement (the walk's steps).
LAYER_SIGNED = frozenset({"base0", "x_step", "row_step", "image_step", "tap_row_step"})
#: Bytes of one descriptor: the fields, then zero bytes.
LAYER_SIZE = 80
#: Values of the fields :func:`encode_layer` is not given.
_LAYER_DEFAULTS = {"pool_k": 1}

#: One channel's requantization parameters in the PARAMS target: bias, mult, shift, pad.
PARAM_RECORD = struct.Struct("<iHBx")

#: Counters of the STATS response, each a uint32, in this order; ``cycles`` is a
#: free-running clock counter (wraps), for measuring link and simulation speed.
STATS_FIELDS = ("frames", "bad_crc", "bad_length", "timeouts", "overruns", "runs", "cycles")


class ProtocolError(Exception):
    """Bytes from the device that do not form the frame the protocol requires."""


def _crc_table():
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1) & 0xFFFF
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


def crc16(data, crc=0xFFFF):
    """Return the CRC-16/CCITT-FALSE of ``data`` (continuing from ``crc``)."""
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[(crc >> 8) ^ byte]
    return crc


def encode_frame(opcode, seq, payload=b""):
    """Return the bytes of one frame (request or response) with its CRC."""
    if not 0 <= opcode <= 0xFF or not 0 <= seq <= 0xFF:
        raise ValueError(f"opcode and seq must be bytes, not {opcode!r} and {seq!r}")
    if len(payload) > 0xFFFF:
        raise ValueError(f"a payload has at most 65535 bytes, not {len(payload)}")
    body = bytes([opcode, seq]) + struct.pack("<H", len(payload)) + bytes(payload)
    return bytes([SYNC]) + body + struct.pack("<H", crc16(body))


def encode_request(opcode, seq, args=b"", data=b""):
    """Return a request frame, checking the argument block and data size of ``opcode``."""
    opcode = Opcode(opcode)
    if len(args) != ARGS_SIZE[opcode]:
        raise ValueError(f"{opcode.name} takes {ARGS_SIZE[opcode]} argument bytes, "
                         f"not {len(args)}")
    limit = MAX_DATA if opcode == Opcode.WRITE else 0
    if len(data) > limit or (opcode == Opcode.WRITE and not data):
        raise ValueError(f"{opcode.name} carries 1 to {MAX_DATA} data bytes, not {len(data)}"
                         if opcode == Opcode.WRITE else
                         f"{opcode.name} carries no data, not {len(data)} bytes")
    return encode_frame(opcode, seq, bytes(args) + bytes(data))


def encode_response(opcode, seq, status, data=b""):
    """Return the response frame to ``opcode`` (as the device sends it)."""
    return encode_frame(opcode | RESPONSE_BIT, seq, bytes([status]) + bytes(data))


def _target_addr(target, addr):
    if not 0 <= addr < 1 << 24:
        raise ValueError(f"addr must be in [0, 2**24), not {addr}")
    return bytes([Target(target)]) + addr.to_bytes(3, "little")


def write_args(target, addr, run=0, stride=0):
    """Return WRITE's argument block: target, 24-bit start address, ``run``, ``stride``.

    With ``run = 0`` the data goes to consecutive addresses. Otherwise it is written in
    runs of ``run`` bytes that start ``stride`` bytes apart (``stride >= run``), which
    skips the unused tail of memory words without sending it.
    """
    if not (run == stride == 0 or 1 <= run <= stride <= 0xFFFF):
        raise ValueError(f"run and stride must both be 0 or satisfy 1 <= run <= stride "
                         f"<= 65535, not {run} and {stride}")
    return _target_addr(target, addr) + struct.pack("<HH", run, stride)


def read_args(target, addr, count):
    """Return READ's argument block: target, 24-bit start address, 16-bit byte count."""
    if not 1 <= count <= MAX_RESPONSE_DATA:
        raise ValueError(f"count must be in [1, {MAX_RESPONSE_DATA}], not {count}")
    return _target_addr(target, addr) + struct.pack("<H", count)


def run_args(engine, flags, m, k, n):
    """Return RUN's argument block: engine, flags, then M, K, N as uint16."""
    for name, value in (("m", m), ("k", k), ("n", n)):
        if not 0 <= value <= 0xFFFF:
            raise ValueError(f"{name} must fit in 16 bits, not {value}")
    return bytes([Engine(engine), int(flags)]) + struct.pack("<HHH", m, k, n)


def run_program_args(first, count):
    """Return RUN_PROGRAM's argument block: the first layer and the number of layers."""
    for name, value in (("first", first), ("count", count)):
        if not 0 <= value <= 0xFF:
            raise ValueError(f"{name} must fit in 8 bits, not {value}")
    return bytes([first, count])


def encode_layer(**fields):
    """Return the :data:`LAYER_SIZE` bytes of a layer descriptor with ``fields``.

    A field not given is 0 (``pool_k`` 1); an unknown field or a value that does not fit
    its width raises ValueError.
    """
    widths = dict(LAYER_FIELDS)
    unknown = sorted(set(fields) - set(widths))
    if unknown:
        raise ValueError(f"unknown layer field(s) {', '.join(unknown)}; known: "
                         f"{', '.join(widths)}")
    word = offset = 0
    for name, bits in LAYER_FIELDS:
        value = int(fields.get(name, _LAYER_DEFAULTS.get(name, 0)))
        lo, hi = ((-(1 << bits - 1), (1 << bits - 1) - 1) if name in LAYER_SIGNED
                  else (0, (1 << bits) - 1))
        if not lo <= value <= hi:
            raise ValueError(f"layer field {name} must be in [{lo}, {hi}], not {value}")
        word |= (value & ((1 << bits) - 1)) << offset
        offset += bits
    return word.to_bytes(LAYER_SIZE, "little")


def decode_layer(data):
    """Return the fields of a layer descriptor as a dict (inverse of :func:`encode_layer`)."""
    if len(data) != LAYER_SIZE:
        raise ProtocolError(f"a layer descriptor has {LAYER_SIZE} bytes, not {len(data)}")
    word = int.from_bytes(data, "little")
    fields, offset = {}, 0
    for name, bits in LAYER_FIELDS:
        value = word >> offset & ((1 << bits) - 1)
        if name in LAYER_SIGNED and value >> (bits - 1):
            value -= 1 << bits
        fields[name] = value
        offset += bits
    if word >> offset:
        raise ProtocolError("a layer descriptor's reserved bytes must be zero")
    return fields


def target_size(config, target):
    """Return the size in bytes of ``target`` on a device built for ``config``.

    An engine's memories are as large as its layout makes them
    (:meth:`tritile.sw.engines.EngineSpec.target_size`); the memories of an engine the
    config leaves out have size 0.
    """
    from .engines import engine_of_target   # the registry is built on this module

    target = Target(target)
    owner = engine_of_target(target)
    if owner is not None:
        return owner.target_size(config, target)
    return {Target.PARAMS: config.param_entries * PARAM_RECORD.size,
            Target.PROGRAM: config.max_layers * LAYER_SIZE,
            Target.OUTPUT32: config.out_depth * 4,
            Target.OUTPUT8: config.out_depth}[target]


def frame_timeout_cycles(config):
    """Return the clock cycles after which the device abandons a silent partial frame."""
    return config.clock_hz // 1000 * FRAME_TIMEOUT_MS


def param_records(bias, mult, shift):
    """Return the PARAMS bytes of per-channel ``bias``, ``mult`` and ``shift`` arrays."""
    if not len(bias) == len(mult) == len(shift):
        raise ValueError(f"bias, mult and shift differ in length: "
                         f"{len(bias)}, {len(mult)}, {len(shift)}")
    return b"".join(PARAM_RECORD.pack(int(b), int(m), int(s))
                    for b, m, s in zip(bias, mult, shift))


_FIELDS = [name for name in AcceleratorConfig.__dataclass_fields__]
_CAP_HEAD = struct.Struct("<BBHIB")


def capability_bytes(config, engines):
    """Return the capability ROM: version, engine mask, MAX_DATA, config_id, parameters.

    ``engines`` is an iterable of :class:`Engine`. The parameters are every field of
    :class:`AcceleratorConfig` as uint32, in declaration order, after their count.
    """
    mask = sum(1 << Engine(e) for e in engines)
    head = _CAP_HEAD.pack(VERSION, mask, MAX_DATA, int(config.config_id, 16), len(_FIELDS))
    return head + b"".join(struct.pack("<I", getattr(config, f)) for f in _FIELDS)


def parse_capability(data):
    """Return ``(info_dict, config)`` from a capability ROM image.

    ``info_dict`` holds every config parameter, ``config_id``, ``engines`` (names),
    ``version`` and ``max_data``. Raises ProtocolError on a malformed or foreign image.
    """
    if len(data) < _CAP_HEAD.size:
        raise ProtocolError(f"capability has {len(data)} bytes, fewer than its "
                            f"{_CAP_HEAD.size}-byte header")
    version, mask, max_data, config_id, count = _CAP_HEAD.unpack_from(data)
    if version != VERSION:
        raise ProtocolError(f"device speaks protocol version {version}; this driver "
                            f"speaks {VERSION}")
    if count != len(_FIELDS) or len(data) != _CAP_HEAD.size + 4 * count:
        raise ProtocolError(f"capability lists {count} parameters in {len(data)} bytes; "
                            f"this driver expects {len(_FIELDS)}")
    values = struct.unpack_from(f"<{count}I", data, _CAP_HEAD.size)
    config = AcceleratorConfig(**dict(zip(_FIELDS, values)))
    info = dict(zip(_FIELDS, values))
    info.update(config_id=f"{config_id:08x}", version=version, max_data=max_data,
                engines=[e.name.lower() for e in Engine if mask >> e & 1])
    if info["config_id"] != config.config_id:
        raise ProtocolError(f"device reports config_id {info['config_id']} but its "
                            f"parameters hash to {config.config_id}")
    return info, config


def parse_run(data):
    """Return ``(busy_cycles, mac_cycles)`` from RUN's response data."""
    if len(data) != 8:
        raise ProtocolError(f"RUN response data has {len(data)} bytes, not 8")
    return struct.unpack("<II", data)


def parse_program_run(data, count):
    """Return ``[(busy_cycles, mac_cycles)]`` of ``count`` layers from RUN_PROGRAM's data."""
    if len(data) != 8 * count:
        raise ProtocolError(f"RUN_PROGRAM response data has {len(data)} bytes, not "
                            f"8 x {count} layers")
    return [struct.unpack_from("<II", data, 8 * i) for i in range(count)]


def parse_stats(data):
    """Return the STATS counters as a dict."""
    if len(data) != 4 * len(STATS_FIELDS):
        raise ProtocolError(f"STATS response data has {len(data)} bytes, "
                            f"not {4 * len(STATS_FIELDS)}")
    return dict(zip(STATS_FIELDS, struct.unpack(f"<{len(STATS_FIELDS)}I", data)))


@dataclass(frozen=True)
class Frame:
    """One decoded frame: ``opcode``, ``seq`` and ``payload`` (CRC already checked)."""
    opcode: int
    seq: int
    payload: bytes

    @property
    def status(self):
        """The status byte of a response, as a :class:`Status` if it is a known one."""
        if not self.payload:
            raise ProtocolError("response has an empty payload (no status byte)")
        try:
            return Status(self.payload[0])
        except ValueError:
            return self.payload[0]

    @property
    def data(self):
        """The response payload after the status byte."""
        return self.payload[1:]


class FrameDecoder:
    """Turn a byte stream into frames, skipping noise and frames with a bad CRC.

    Parameters
    ----------
    max_payload : int
        Longest payload accepted; a header announcing more is treated as noise.
    """

    def __init__(self, max_payload=1 + MAX_RESPONSE_DATA):
        self.max_payload = max_payload
        self._buffer = bytearray()
        #: Frames skipped because of a bad CRC or an impossible length.
        self.errors = 0

    def feed(self, data):
        """Add received bytes; return the list of complete, CRC-checked frames."""
        self._buffer += data
        frames = []
        while True:
            start = self._buffer.find(SYNC)
            if start < 0:
                self._buffer.clear()
                return frames
            del self._buffer[:start]
            if len(self._buffer) < HEADER_SIZE:
                return frames
            length = int.from_bytes(self._buffer[3:5], "little")
            if length > self.max_payload:
                self.errors += 1
                del self._buffer[:1]
                continue
            end = HEADER_SIZE + length + CRC_SIZE
            if len(self._buffer) < end:
                return frames
            body = bytes(self._buffer[1:HEADER_SIZE + length])
            crc = int.from_bytes(self._buffer[end - CRC_SIZE:end], "little")
            if crc16(body) != crc:
                self.errors += 1
                del self._buffer[:1]
                continue
            frames.append(Frame(body[0], body[1], body[4:]))
            del self._buffer[:end]

    @property
    def pending(self):
        """Bytes held while waiting for the rest of a frame."""
        return len(self._buffer)
