"""Byte formats of weights on the host link and in on-chip memory (docs/numerics.md).

All packers flatten their input in row-major order. Unpackers take the exact byte string a
packer produced for ``count`` values and reject anything else (wrong length, bytes that no
packer writes, non-zero padding) instead of guessing.
"""

import numpy as np

from .arith import ceil_div

__all__ = ["pack_int8", "pack_trits_2bit", "unpack_trits_2bit",
           "pack_trits_base3", "unpack_trits_base3", "packed_size", "TRITS_PER_BYTE"]

#: Trits per byte of each ternary packing.
TRITS_PER_BYTE = {"2bit": 4, "base3": 5}

_POW3 = np.array([81, 27, 9, 3, 1], dtype=np.uint16)   # first trit most significant

# Decoding table for the base-3 byte: trit i is (((q * 3**i) & 0xFF) * 3 >> 8) - 1.
_BASE3_DECODE = np.array(
    [[((((q * 3 ** i) & 0xFF) * 3) >> 8) - 1 for i in range(5)] for q in range(256)],
    dtype=np.int8)
# Decoding table for the 2-bit byte: code 0b01 -> +1, 0b11 -> -1, 0b00 -> 0; 0b10 is invalid.
_2BIT_CODES = (np.arange(256)[:, None] >> np.array([0, 2, 4, 6])) & 0b11
_2BIT_DECODE = np.choose(_2BIT_CODES, [0, 1, 0, -1]).astype(np.int8)
_2BIT_VALID = ~np.any(_2BIT_CODES == 0b10, axis=1)
_BASE3_VALID = np.zeros(256, dtype=bool)
_BASE3_VALID[(np.arange(243) * 256 + 242) // 243] = True


def packed_size(count, packing):
    """Return the bytes that ``count`` trits take in ``packing`` ("2bit" or "base3")."""
    if packing not in TRITS_PER_BYTE:
        raise ValueError(f"packing must be one of {', '.join(TRITS_PER_BYTE)}, not {packing!r}")
    per = TRITS_PER_BYTE[packing]
    return ceil_div(count, per)


def _trits(T):
    T = np.asarray(T)
    if T.dtype != np.int8:
        raise ValueError(f"T must have dtype int8, not {T.dtype}")
    flat = T.reshape(-1)
    if flat.size and (flat.min() < -1 or flat.max() > 1):
        bad = flat[(flat < -1) | (flat > 1)][0]
        raise ValueError(f"T values must be in {{-1, 0, 1}}, found {bad}")
    return flat


def _packed(data, count, packing):
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"data must be bytes, not {type(data).__name__}")
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
        raise ValueError(f"count must be a non-negative integer, not {count!r}")
    need = packed_size(int(count), packing)
    if len(data) != need:
        raise ValueError(f"{count} trits take {need} bytes in {packing} packing, "
                         f"not {len(data)}")
    return np.frombuffer(bytes(data), dtype=np.uint8)


def pack_int8(W):
    """Pack int8 weights, one two's-complement byte each."""
    W = np.asarray(W)
    if W.dtype != np.int8:
        raise ValueError(f"W must have dtype int8, not {W.dtype}")
    return np.ascontiguousarray(W).tobytes()


def pack_trits_2bit(T):
    """Pack trits four to a byte, code ``t & 0b11``, first trit in bits [1:0]."""
    flat = _trits(T)
    codes = np.zeros(packed_size(flat.size, "2bit") * 4, dtype=np.uint8)
    codes[:flat.size] = flat.view(np.uint8) & 0b11
    groups = codes.reshape(-1, 4)
    return (groups[:, 0] | groups[:, 1] << 2 | groups[:, 2] << 4 | groups[:, 3] << 6).tobytes()


def unpack_trits_2bit(data, count):
    """Unpack ``count`` trits from the 2-bit packing; code 0b10 is an error."""
    raw = _packed(data, count, "2bit")
    if not np.all(_2BIT_VALID[raw]):
        index = int(np.argmin(_2BIT_VALID[raw]))
        raise ValueError(f"byte {index} holds the invalid 2-bit trit code 0b10")
    trits = _2BIT_DECODE[raw].reshape(-1)
    if np.any(trits[count:]):
        raise ValueError("padding trits after the last one must be zero")
    return trits[:count].copy()


def pack_trits_base3(T):
    """Pack trits five to a byte: ``v = sum (t_i + 1) * 3**(4 - i)``,
    ``q = (v * 256 + 242) // 243``; a short last group is padded with zeros."""
    flat = _trits(T)
    digits = np.ones(packed_size(flat.size, "base3") * 5, dtype=np.uint16)
    digits[:flat.size] = (flat + 1).astype(np.uint16)
    v = digits.reshape(-1, 5) @ _POW3
    return ((v * 256 + 242) // 243).astype(np.uint8).tobytes()


def unpack_trits_base3(data, count):
    """Unpack ``count`` trits from the base-3 packing by multiply-by-3-and-shift."""
    raw = _packed(data, count, "base3")
    if not np.all(_BASE3_VALID[raw]):
        index = int(np.argmin(_BASE3_VALID[raw]))
        raise ValueError(f"byte {index} (0x{raw[index]:02x}) is not a base-3 trit code")
    trits = _BASE3_DECODE[raw].reshape(-1)
    if np.any(trits[count:]):
        raise ValueError("padding trits after the last one must be zero")
    return trits[:count].copy()
