"""Wire fields of the protocol as fixed bytes and numbers (docs/protocol.md), not as the
module recomputes them: READ's argument block, the frame timeout in cycles, STATS' size."""

import pytest

from tritile.sw.config import AcceleratorConfig
from tritile.sw.protocol import (STATS_FIELDS, ProtocolError, Target, frame_timeout_cycles,
                                 parse_stats, read_args)


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
