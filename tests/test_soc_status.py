"""Every response status of the whole device, through the simulated board's socket.

Raw frames go in through :meth:`Device.send_raw`. After each refused request the device
must have changed no memory: the output memory reads back as it was, and RUNs from the
activations, weights and parameters already there give the same results as before.
"""

import numpy as np
import pytest

from tritile.sw import gemm_int8, protocol, ternary_matmul
from tritile.sw.device import Device
from tritile.sw.protocol import Engine, Opcode, RunFlag, Status, Target

from helpers import seed
from test_device import TEST_CONFIG
from test_soc_request_path import REFUSALS

pytestmark = pytest.mark.slow

C = TEST_CONFIG
M, K, N = C.max_m, C.max_k, C.max_n


@pytest.fixture(scope="module")
def loaded():
    """A device whose memories hold one systolic and one ternary problem (raw results)."""
    rng = np.random.default_rng(seed())
    X = rng.integers(-128, 128, (M, K), dtype=np.int8)
    W = rng.integers(-128, 128, (K, N), dtype=np.int8)
    T = rng.integers(-1, 2, (K, N), dtype=np.int8)
    expected = {Engine.SYSTOLIC: gemm_int8(X, W), Engine.TERNARY: ternary_matmul(X, T)}
    with Device.open("sim", config=C, progress=False) as dev:
        np.testing.assert_array_equal(dev.gemm(X, W), expected[Engine.SYSTOLIC])
        # The ternary problem runs last: its result is in the output memory.
        np.testing.assert_array_equal(dev.ternary(X, T), expected[Engine.TERNARY])
        yield dev, expected


def _output(dev):
    return np.frombuffer(dev.read(Target.OUTPUT32, 0, 4 * M * N), "<i4").reshape(M, N)


def _assert_nothing_changed(dev, expected, last_run=Engine.TERNARY):
    np.testing.assert_array_equal(_output(dev), expected[last_run])
    for engine in (Engine.SYSTOLIC, Engine.TERNARY):
        dev.request(Opcode.RUN, protocol.run_args(engine, RunFlag.RAW, M, K, N))
        np.testing.assert_array_equal(_output(dev), expected[engine])


@pytest.mark.parametrize("name", REFUSALS)
def test_refused_request_changes_no_memory(loaded, name):
    dev, expected = loaded
    frame, status = REFUSALS[name]
    dev.send_raw(frame)
    answer = dev.receive_frame()
    assert answer is not None and (answer.opcode & 0x7F, answer.seq, answer.status) == \
        (frame[1], 5, status)
    _assert_nothing_changed(dev, expected)


def test_requests_during_a_long_run_are_answered_busy(loaded):
    dev, expected = loaded
    run = protocol.encode_request(Opcode.RUN, 1, protocol.run_args(
        Engine.SYSTOLIC, RunFlag.RAW, M, K, N))
    pings = [protocol.encode_request(Opcode.PING, seq) for seq in (2, 3, 4)]
    write = protocol.encode_request(Opcode.WRITE, 5, protocol.write_args(
        Target.SYSTOLIC_WEIGHT, 0), bytes(16))
    # Back to back: they arrive a few cycles apart, while the RUN computes.
    dev.send_raw(run + b"".join(pings) + write)
    answers = [dev.receive_frame() for _ in range(5)]
    assert [(a.opcode, a.seq, a.status) for a in answers] == [
        (Opcode.PING | protocol.RESPONSE_BIT, 2, Status.BUSY),
        (Opcode.PING | protocol.RESPONSE_BIT, 3, Status.BUSY),
        (Opcode.PING | protocol.RESPONSE_BIT, 4, Status.BUSY),
        (Opcode.WRITE | protocol.RESPONSE_BIT, 5, Status.BUSY),
        (Opcode.RUN | protocol.RESPONSE_BIT, 1, Status.OK)]
    dev.ping()
    _assert_nothing_changed(dev, expected, last_run=Engine.SYSTOLIC)
