"""The driver's error paths against the simulated board: each status a device answers
reaches the caller as a :class:`DeviceStatusError` with its one-line message and nothing
written; a frame the wire corrupts is answered BAD_CRC and sent again.

The driver reaches the board through a :class:`FaultyWire`, a TCP relay that can flip a
bit of the next frames the host sends, as a noisy cable would. After each error the
device's memories are checked: a RUN from the weights and activations loaded at the start
gives the golden result.
"""

import socket
import threading

import numpy as np
import pytest

from tritile.sw import gemm_int8, protocol
from tritile.sw.device import Device, DeviceStatusError, LinkProtocolError, _SimulatedBoard
from tritile.sw.protocol import Engine, Opcode, RunFlag, Status, Target

from helpers import TEST_CONFIG as C, seed

pytestmark = pytest.mark.slow

M, K, N = C.max_m, C.max_k, C.max_n


class FaultyWire:
    """A TCP relay from the host to ``board_url`` that corrupts or bunches frames on request.

    :meth:`corrupt_next` flips a bit in the first payload (or CRC) byte of the next
    ``count`` chunks the host sends; the driver writes each frame in one call, so each
    corrupted chunk starts with a frame whose length is intact and whose CRC fails.
    :meth:`hold` keeps the host's bytes until ``count`` of them arrived and passes them on
    at once, so the board receives frames sent apart back to back.
    """

    def __init__(self, board_url):
        host, port = board_url.removeprefix("socket://").rsplit(":", 1)
        self._board = (host, int(port))
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"socket://127.0.0.1:{self._server.getsockname()[1]}"
        self._to_corrupt = 0
        self._held, self._hold_until = b"", 0
        self._lock = threading.Lock()
        self._sockets = [self._server]
        threading.Thread(target=self._accept, daemon=True).start()

    def corrupt_next(self, count):
        """Corrupt the next ``count`` chunks from the host."""
        with self._lock:
            self._to_corrupt = count

    def hold(self, count):
        """Pass on the host's next bytes only once ``count`` of them arrived."""
        with self._lock:
            self._hold_until = count

    def _accept(self):
        while True:
            try:
                host, _ = self._server.accept()
            except OSError:
                return                    # closed
            board = socket.create_connection(self._board)
            for conn in (host, board):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sockets += [host, board]
            threading.Thread(target=self._pump, args=(host, board, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(board, host, False),
                             daemon=True).start()

    def _pump(self, source, sink, from_host):
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                for conn in (source, sink):
                    conn.close()
                return
            with self._lock:
                if from_host and self._to_corrupt and len(data) > 5:
                    self._to_corrupt -= 1
                    data = data[:5] + bytes([data[5] ^ 0x10]) + data[6:]
                if from_host and self._hold_until:
                    self._held += data
                    if len(self._held) < self._hold_until:
                        continue
                    data, self._held, self._hold_until = self._held, b"", 0
            sink.sendall(data)

    def close(self):
        for conn in self._sockets:
            conn.close()


@pytest.fixture(scope="module")
def wire():
    board = _SimulatedBoard(C, "byte", startup_timeout=900)
    relay = FaultyWire(board.url)
    try:
        yield relay
    finally:
        relay.close()
        board.close()


@pytest.fixture(scope="module")
def loaded(wire):
    """A device behind the wire holding a systolic problem X @ W, and its raw result."""
    rng = np.random.default_rng(seed())
    X = rng.integers(-128, 128, (M, K), dtype=np.int8)
    W = rng.integers(-128, 128, (K, N), dtype=np.int8)
    with Device.open(wire.url, baudrate=C.baud, timeout=10, progress=False) as dev:
        np.testing.assert_array_equal(dev.gemm(X, W), gemm_int8(X, W))
        yield dev, X, W


def _assert_memories_unchanged(dev, X, W):
    dev.request(Opcode.RUN, protocol.run_args(Engine.SYSTOLIC, RunFlag.RAW, M, K, N))
    output = np.frombuffer(dev.read(Target.OUTPUT32, 0, 4 * M * N), "<i4").reshape(M, N)
    np.testing.assert_array_equal(output, gemm_int8(X, W))


_WEIGHTS = protocol.target_size(C, Target.SYSTOLIC_WEIGHT)

#: A public call that the device refuses, its status, and the opcode the message names.
REFUSED = {
    "write_past_the_end": (lambda dev: dev.write(Target.SYSTOLIC_WEIGHT, bytes(4),
                                                 addr=_WEIGHTS - 3),
                           Status.BAD_ADDRESS, "WRITE"),
    "read_past_the_end": (lambda dev: dev.read(Target.OUTPUT8, C.out_depth - 1, 2),
                          Status.BAD_ADDRESS, "READ"),
    "read_of_weights": (lambda dev: dev.read(Target.SYSTOLIC_WEIGHT, 0, 1),
                        Status.BAD_TARGET, "READ"),
    "run_above_max_k": (lambda dev: dev.request(Opcode.RUN, protocol.run_args(
        Engine.SYSTOLIC, RunFlag.RAW, 1, C.max_k + 1, 1)), Status.BAD_SHAPE, "RUN"),
    "run_of_unknown_engine": (lambda dev: dev.request(Opcode.RUN, bytes([3, 0, 1, 0, 1, 0, 1,
                                                                         0])),
                              Status.UNAVAILABLE, "RUN"),
}


@pytest.mark.parametrize("name", REFUSED)
def test_refusal_is_a_typed_one_line_error_and_writes_nothing(loaded, name):
    dev, X, W = loaded
    call, status, opcode = REFUSED[name]
    with pytest.raises(DeviceStatusError) as error:
        call(dev)
    assert error.value.status == status
    assert str(error.value) == f"device at {dev.url} answered {status.name} to {opcode}"
    _assert_memories_unchanged(dev, X, W)


def test_write_during_a_run_is_busy_and_writes_nothing(loaded, wire):
    dev, X, W = loaded
    run = protocol.encode_request(Opcode.RUN, 0xEE, protocol.run_args(
        Engine.SYSTOLIC, RunFlag.RAW, M, K, N))
    data = bytes(range(16))
    write = protocol.encode_request(Opcode.WRITE, 0, protocol.write_args(
        Target.SYSTOLIC_WEIGHT, 0), data)
    # The raw RUN and the driver's WRITE reach the board together: the WRITE arrives a
    # few cycles into the run.
    wire.hold(len(run) + len(write))
    dev.send_raw(run)
    with pytest.raises(DeviceStatusError) as error:
        dev.write(Target.SYSTOLIC_WEIGHT, data)
    assert error.value.status == Status.BUSY
    assert str(error.value) == f"device at {dev.url} answered BUSY to WRITE"
    answer = dev.receive_frame()
    assert (answer.opcode, answer.seq, answer.status) == (
        Opcode.RUN | protocol.RESPONSE_BIT, 0xEE, Status.OK)
    _assert_memories_unchanged(dev, X, W)


def test_corrupted_frame_is_answered_bad_crc_and_sent_again(loaded, wire):
    dev, X, _ = loaded
    W2 = np.arange(K * N, dtype=np.int64).reshape(K, N).astype(np.int8)
    bad_crc, retries = dev.counters()["bad_crc"], dev.stats["retries"]
    wire.corrupt_next(1)
    # The upload's first WRITE is corrupted once: the device refuses it and the driver
    # sends it again, so the result is right and one retry is counted on both sides.
    np.testing.assert_array_equal(dev.gemm(X, W2), gemm_int8(X, W2))
    assert dev.stats["retries"] == retries + 1
    assert dev.counters()["bad_crc"] == bad_crc + 1


def test_persistent_crc_errors_end_in_one_error_and_leave_the_link_usable(loaded, wire):
    dev, X, W = loaded
    bad_crc = dev.counters()["bad_crc"]
    wire.corrupt_next(dev.retries + 1)
    with pytest.raises(LinkProtocolError) as error:
        dev.ping()
    assert str(error.value) == (f"PING to {dev.url} failed {dev.retries + 1} times with "
                                f"CRC errors")
    assert dev.counters()["bad_crc"] == bad_crc + dev.retries + 1
    dev.gemm(X, W)
    _assert_memories_unchanged(dev, X, W)
