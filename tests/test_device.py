"""The host driver end to end through the simulated board's socket, against the golden model.

One simulated board (byte mode) serves the module; the SoC is built once for a small
config whose memories are small enough that moderate problems need tiling.
"""

import socket
import threading

import numpy as np
import pytest

from tritile.sw import gemm_int8, requantize, ternary_matmul
from tritile.sw import protocol
from tritile.sw.device import (ConfigMismatchError, Device, DeviceBusyError, DeviceError,
                               DeviceStatusError, DeviceTimeout, WeightHandle)
from tritile.sw.protocol import Engine, Opcode, RunFlag, Status, Target

from helpers import TEST_CONFIG

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def device():
    with Device.open("sim", config=TEST_CONFIG, progress=False) as dev:
        yield dev


def _requant_params(rng, n):
    return (rng.integers(0, 1 << 15, n).astype(np.int32),
            rng.integers(8, 24, n).astype(np.int32))


def test_info_reports_the_config(device):
    info = device.info()
    assert info["config_id"] == TEST_CONFIG.config_id
    assert info["engines"] == ["systolic", "ternary"]
    assert {k: info[k] for k in TEST_CONFIG.to_dict()} == TEST_CONFIG.to_dict()
    assert device.ping() < 5


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 5, 7), (8, 16, 8), (13, 40, 11)])
def test_gemm_matches_golden(device, shape, rng):
    m, k, n = shape
    X = rng.integers(-128, 128, (m, k), dtype=np.int8)
    W = rng.integers(-128, 128, (k, n), dtype=np.int8)
    bias = rng.integers(-5000, 5000, n).astype(np.int32)
    np.testing.assert_array_equal(device.gemm(X, W, bias=bias), gemm_int8(X, W, bias))
    mult, shift = _requant_params(rng, n)
    handle = device.upload_int8(W)
    for relu in (False, True):
        np.testing.assert_array_equal(
            device.gemm(X, handle, bias=bias, mult=mult, shift=shift, relu=relu),
            requantize(gemm_int8(X, W, bias), mult, shift, relu))


@pytest.mark.parametrize("packing", ["base3", "2bit"])
@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 9, 6), (8, 16, 8), (12, 37, 10)])
def test_ternary_matches_golden(device, packing, shape, rng):
    m, k, n = shape
    q = rng.integers(-128, 128, (m, k), dtype=np.int8)
    T = rng.integers(-1, 2, (k, n), dtype=np.int8)
    handle = device.upload_ternary(T, packing)
    np.testing.assert_array_equal(device.ternary(q, handle), ternary_matmul(q, T))
    mult, shift = _requant_params(rng, n)
    np.testing.assert_array_equal(device.ternary(q, T, mult=mult, shift=shift, relu=True,
                                                 packing=packing),
                                  requantize(ternary_matmul(q, T), mult, shift, True))


def test_extreme_operands_at_the_k_limit(device):
    k = TEST_CONFIG.max_k
    X = np.full((2, k), -128, np.int8)
    np.testing.assert_array_equal(device.gemm(X, np.full((k, 3), -128, np.int8)),
                                  gemm_int8(X, np.full((k, 3), -128, np.int8)))
    T = np.full((k, 3), -1, np.int8)
    np.testing.assert_array_equal(device.ternary(X, T), ternary_matmul(X, T))


def test_bad_arguments_are_rejected_before_sending(device):
    sent = device.stats["bytes_sent"]
    X = np.zeros((2, 3), np.int8)
    with pytest.raises(ValueError, match="inner dimensions differ"):
        device.gemm(X, np.zeros((4, 2), np.int8))
    with pytest.raises(ValueError, match="shift and relu need mult"):
        device.gemm(X, np.zeros((3, 2), np.int8), relu=True)
    with pytest.raises(ValueError, match=r"values must be in \{-1, 0, 1\}"):
        device.upload_ternary(np.full((3, 2), 2, np.int8))
    with pytest.raises(ValueError, match="packing must be one of"):
        device.upload_ternary(np.zeros((3, 2), np.int8), packing="1bit")
    assert device.stats["bytes_sent"] == sent


def test_handle_of_another_config_is_refused(device):
    foreign = WeightHandle("int8", np.zeros((2, 2), np.int8), None, "deadbeef")
    with pytest.raises(ConfigMismatchError, match="deadbeef"):
        device.gemm(np.zeros((1, 2), np.int8), foreign)


def test_second_client_is_refused_clearly(device):
    with pytest.raises(DeviceBusyError, match="already serves another client"):
        Device.open(device.url, timeout=2, retries=0)
    assert device.ping() < 5


def test_expected_config_id_mismatch(device):
    with pytest.raises(ConfigMismatchError, match="00000000 was expected"):
        # The first client must let go of the board for this one to be served.
        device._port.close()
        try:
            Device.open(device.url, expect_config_id="00000000", timeout=5)
        finally:
            device._port.open()
    assert device.ping() < 5


def test_closed_port_raises_device_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DeviceError, match="cannot open"):
        Device.open(f"socket://127.0.0.1:{port}")


def test_silent_port_times_out():
    server = socket.create_server(("127.0.0.1", 0))
    accepted = []
    thread = threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True)
    thread.start()
    try:
        with pytest.raises(DeviceTimeout, match="no response .* to INFO after 2 attempts"):
            Device.open(f"socket://127.0.0.1:{server.getsockname()[1]}", timeout=0.3,
                        retries=1)
    finally:
        for conn, _ in accepted:
            conn.close()
        server.close()


def test_program_mode_absent_is_refused_before_sending(device):
    assert device.info()["version"] == 3 and device.config.max_layers == 0
    sent = device.stats["bytes_sent"]
    with pytest.raises(DeviceError, match="has no program mode: its max_layers is 0"):
        device.load_program([protocol.encode_layer(m=1, k=1, n=1)])
    with pytest.raises(DeviceError, match="has no program mode"):
        device.run_program(0, 1)
    assert device.stats["bytes_sent"] == sent
    # The device itself refuses the opcode and its memory.
    for opcode, args, data, status in (
            (Opcode.RUN_PROGRAM, protocol.run_program_args(0, 1), b"", Status.UNAVAILABLE),
            (Opcode.WRITE, protocol.write_args(Target.PROGRAM, 0), bytes(80),
             Status.BAD_TARGET)):
        with pytest.raises(DeviceStatusError) as info:
            device.request(opcode, args, data)
        assert info.value.status == status
    assert device.ping() < 5


def test_input_map_written_in_place_is_what_a_run_reads(device, rng):
    # The ternary unit already reads the contract's layout (row m's K group g at word
    # m*CT + g): a map written with write_input_map replaces the one a RUN left there.
    m, k, n = 3, 10, 4
    T = rng.integers(-1, 2, (k, n)).astype(np.int8)
    device.ternary(rng.integers(-128, 128, (m, k)).astype(np.int8), T)
    q = rng.integers(-128, 128, (m, k)).astype(np.int8)
    device.write_input_map("ternary", q)
    device.request(Opcode.RUN, protocol.run_args(Engine.TERNARY, RunFlag.RAW, m, k, n))
    assert np.array_equal(device.read_output(m, n, raw=True), ternary_matmul(q, T))
