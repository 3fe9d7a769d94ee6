"""Wire fields of the protocol as fixed bytes and numbers (docs/protocol.md), not as the
module recomputes them: the codes, a WRITE frame, READ's argument block, the frame timeout
in cycles, the sizes of STATS and of the capability, its version."""

import binascii
import dataclasses

import pytest

from tritile.sw.config import AcceleratorConfig
from tritile.sw.protocol import (STATS_FIELDS, Engine, Frame, Opcode, ProtocolError, RunFlag,
                                 Status, Target, capability_bytes, encode_frame,
                                 encode_request, frame_timeout_cycles, param_records,
                                 parse_capability, parse_stats, read_args, write_args)


def test_read_args_are_target_24_bit_address_16_bit_count_little_endian():
    assert read_args(Target.OUTPUT32, 0x123456, 0x0102) == \
        bytes([int(Target.OUTPUT32), 0x56, 0x34, 0x12, 0x02, 0x01])


def test_frame_timeout_is_10_ms_of_whole_kilohertz():
    # 12.345678 MHz: 12345 cycles a millisecond (the kHz rounded down), 10 ms.
    assert frame_timeout_cycles(AcceleratorConfig(clock_hz=12_345_678)) == 123_450


@pytest.mark.parametrize("size", [4 * len(STATS_FIELDS) - 4, 4 * len(STATS_FIELDS) + 4])
def test_stats_of_the_wrong_size_are_refused(size):
    with pytest.raises(ProtocolError, match=f"STATS response data has {size} bytes, not 28"):
        parse_stats(bytes(size))
    assert parse_stats(bytes(range(28)))["frames"] == 0x03020100


def test_wire_codes_are_those_of_docs_protocol_md():
    # The gateware of a device built earlier holds these numbers: they never move.
    assert {o.name: o.value for o in Opcode} == {
        "PING": 1, "INFO": 2, "WRITE": 3, "READ": 4, "RUN": 5, "STATS": 6, "RUN_PROGRAM": 7}
    assert {s.name: s.value for s in Status} == {
        "OK": 0, "BAD_CRC": 1, "BAD_LENGTH": 2, "UNKNOWN_OPCODE": 3, "BAD_TARGET": 4,
        "BAD_ADDRESS": 5, "BAD_SHAPE": 6, "UNAVAILABLE": 7, "BUSY": 8}
    assert {t.name: t.value for t in Target} == {
        "SYSTOLIC_ACT": 0, "SYSTOLIC_WEIGHT": 1, "TERNARY_ACT": 2, "TERNARY_WEIGHT": 3,
        "PARAMS": 4, "OUTPUT32": 5, "OUTPUT8": 6, "TERNARY_WEIGHT_BASE3": 7, "PROGRAM": 8}
    assert {e.name: e.value for e in Engine} == {"SYSTOLIC": 0, "TERNARY": 1}
    assert (int(RunFlag.RAW), int(RunFlag.RELU)) == (1, 2)


def test_write_request_is_header_arguments_data_and_crc():
    args, data = bytes(range(8)), b"\xaa\xbb"
    body = bytes([0x03, 0x07, 0x0A, 0x00]) + args + data
    # binascii's CRC-CCITT from 0xFFFF is CRC-16/CCITT-FALSE, computed apart from crc16.
    crc = binascii.crc_hqx(body, 0xFFFF)
    assert encode_request(Opcode.WRITE, 7, args, data) == \
        b"\xa5" + body + bytes([crc & 0xFF, crc >> 8])
    with pytest.raises(ValueError, match="WRITE carries 1 to 2048 data bytes, not 0"):
        encode_request(Opcode.WRITE, 7, args)


def test_response_data_follows_the_status_byte():
    assert Frame(0x84, 1, b"\x00\x01\x02").data == b"\x01\x02"


@pytest.mark.parametrize("version", [2, 4])
def test_capability_of_another_protocol_version_is_refused(version):
    image = bytearray(capability_bytes(AcceleratorConfig(), [Engine.SYSTOLIC]))
    image[0] = version
    with pytest.raises(ProtocolError, match=f"device speaks protocol version {version}; "
                                            f"this driver speaks 3"):
        parse_capability(bytes(image))


@pytest.mark.parametrize("extra", [-1, 1])
def test_capability_with_another_parameter_count_is_refused(extra):
    image = bytearray(capability_bytes(AcceleratorConfig(), [Engine.SYSTOLIC]))
    count = image[8] + extra
    image[8] = count
    image = bytes(image[:9 + 4 * count]).ljust(9 + 4 * count, b"\0")   # sized for count
    with pytest.raises(ProtocolError, match=f"capability lists {count} parameters"):
        parse_capability(image)


def test_requests_without_data_and_their_argument_ranges():
    body = bytes([0x01, 0x09, 0x00, 0x00])          # PING, seq 9, no payload
    crc = binascii.crc_hqx(body, 0xFFFF)
    assert encode_request(Opcode.PING, 9) == b"\xa5" + body + bytes([crc & 0xFF, crc >> 8])
    assert encode_frame(0, 0)[:2] == b"\xa5\x00"    # any opcode byte, 0 included
    assert write_args(Target.PARAMS, 0x10, 2, 3) == bytes([4, 0x10, 0, 0, 2, 0, 3, 0])
    with pytest.raises(ValueError, match="run and stride must both be 0 or satisfy"):
        write_args(Target.PARAMS, 0, 70000, 70000)
    with pytest.raises(ValueError, match=r"addr must be in \[0, 2\*\*24\), not -1"):
        read_args(Target.OUTPUT8, -1, 1)
    with pytest.raises(ValueError, match="bias, mult and shift differ in length: 2, 2, 1"):
        param_records([1, 2], [1, 2], [1])


def test_frames_are_immutable_and_keep_an_unknown_status_byte():
    frame = Frame(0x81, 0, b"\xee\x05")
    assert frame.status == 0xEE and frame.data == b"\x05"
    with pytest.raises(dataclasses.FrozenInstanceError):
        frame.seq = 1
