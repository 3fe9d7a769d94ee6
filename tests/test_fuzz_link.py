"""Robustness of the link: 10^4 random, corrupted and truncated frames against the SoC.

After each burst the device must answer ``ping`` and every stored weight must read back
unchanged. Weights are read back through the engines: with the identity as activations,
a raw gemm returns W and a raw ternary matmul returns T, so the memories the engines
compute from are exactly what is checked.
"""

import os
import random

import numpy as np
import pytest

from tritile.sw import protocol
from tritile.sw.device import Device
from tritile.sw.protocol import Opcode, Target

from helpers import TEST_CONFIG, seed

pytestmark = pytest.mark.slow

FRAMES = int(os.environ.get("TRITILE_FUZZ_FRAMES", 10_000))
BURST = 200


def _harmless_request(rng):
    """A well-formed request that must not change a stored weight."""
    c = TEST_CONFIG
    kind = rng.randrange(7)
    seq = rng.randrange(256)
    if kind == 0:
        return protocol.encode_request(Opcode.PING, seq)
    if kind == 1:       # a write that ends past its target: must be refused whole
        target = rng.choice([Target.SYSTOLIC_WEIGHT, Target.TERNARY_WEIGHT,
                             Target.TERNARY_WEIGHT_BASE3])
        size = protocol.target_size(c, target)
        length = rng.randrange(1, 64)
        run = rng.choice([0, 1, 3, 4])      # contiguous, or runs of `run` every `stride`
        stride = rng.randrange(run, 2 * run + 2) if run else 0
        last = (length - 1) // run * stride + (length - 1) % run if run else length - 1
        addr = rng.randrange(max(0, size - last), size + 100)
        return protocol.encode_request(Opcode.WRITE, seq,
                                       protocol.write_args(target, addr, run, stride),
                                       rng.randbytes(length))
    if kind == 2:       # a write to a read-only or unknown target
        target = rng.choice([Target.OUTPUT32, Target.OUTPUT8, max(Target) + 1, 200])
        return protocol.encode_frame(Opcode.WRITE, seq, bytes([target]) + bytes(7) + b"x")
    if kind == 3:       # a RUN with an impossible shape or engine
        m, k, n = (rng.choice([0, 1, c.max_m + 1, 0xFFFF]) for _ in range(3))
        return protocol.encode_frame(Opcode.RUN, seq, bytes([rng.randrange(4), 0]) +
                                     m.to_bytes(2, "little") + k.to_bytes(2, "little") +
                                     n.to_bytes(2, "little"))
    if kind == 4:       # a wrong length for the opcode, or an unknown opcode
        return protocol.encode_frame(rng.choice([1, 2, 3, 4, 5, 6, 0, 0x7F, 0xFF]), seq,
                                     rng.randbytes(rng.randrange(1, 12)))
    if kind == 5:       # a read past the output memory
        return protocol.encode_frame(Opcode.READ, seq, bytes([Target.OUTPUT8]) +
                                     (c.out_depth - 1).to_bytes(3, "little") +
                                     (2).to_bytes(2, "little"))
    return protocol.encode_request(Opcode.STATS, seq)


def _bad_frame(rng):
    """Line noise, a bit-flipped frame, a truncated frame or an over-long length."""
    kind = rng.randrange(5)
    if kind == 0:
        return rng.randbytes(rng.randrange(1, 40))
    if kind == 4:
        return bytes([protocol.SYNC, Opcode.WRITE, 0]) + \
            rng.randrange(protocol.MAX_PAYLOAD + 1, 1 << 16).to_bytes(2, "little")
    frame = bytearray(_harmless_request(rng))
    if kind in (1, 2):
        frame[rng.randrange(len(frame))] ^= 1 << rng.randrange(8)
        return bytes(frame)
    return bytes(frame[:rng.randrange(1, len(frame))])


def _valid_write_with_flip(rng, target, image):
    """A weight write whose CRC fails because one bit flipped: it must change nothing."""
    addr = rng.randrange(len(image))
    data = bytes(b ^ 0xFF for b in image[addr:addr + 16])
    frame = bytearray(protocol.encode_request(Opcode.WRITE, rng.randrange(256),
                                              protocol.write_args(target, addr), data))
    frame[rng.randrange(1, len(frame))] ^= 1 << rng.randrange(8)
    return bytes(frame)


def test_fuzzed_link_never_hangs_or_alters_weights():
    rng = random.Random(seed())
    c = TEST_CONFIG
    np_rng = np.random.default_rng(rng.randrange(1 << 32))
    k, n = c.max_k, c.weight_depth // c.max_k
    W = np_rng.integers(-128, 128, (k, n), dtype=np.int8)
    T = np_rng.integers(-1, 2, (k, c.trit_depth // k), dtype=np.int8)
    identity = np.eye(k, dtype=np.int8)
    with Device.open("sim", config=c, timeout=2, retries=5, progress=False) as dev:
        w_handle = dev.upload_int8(W)
        t_handle = dev.upload_ternary(T, "base3")
        images = {Target.SYSTOLIC_WEIGHT: bytes(W.tobytes()),
                  Target.TERNARY_WEIGHT: bytes(T.tobytes())}
        sent = 0
        while sent < FRAMES:
            burst = []
            for _ in range(BURST):
                pick = rng.random()
                if pick < 0.5:
                    burst.append(_bad_frame(rng))
                elif pick < 0.6:
                    target = rng.choice(list(images))
                    burst.append(_valid_write_with_flip(rng, target, images[target]))
                else:
                    burst.append(_harmless_request(rng))
            dev.send_raw(b"".join(burst))
            sent += len(burst)
            assert dev.resync() < 30
            # The driver still believes the weights are resident, so nothing is re-sent:
            # these runs compute from exactly what the fuzzing left in the memories.
            np.testing.assert_array_equal(dev.gemm(identity, w_handle), W.astype(np.int32))
            np.testing.assert_array_equal(dev.ternary(identity, t_handle), T.astype(np.int32))
        counters = dev.counters()
        print(f"frames={sent} counters={counters}")
        assert counters["bad_crc"] > 0 and counters["bad_length"] > 0
