"""The simulated board stops its clock while the SoC is idle, and frame timeouts still run.

A config with a 1 MHz clock makes the 10 ms frame timeout 10,000 cycles, so the test
waits well under a second of simulation for it.
"""

import time

import pytest

from tritile.sw import protocol
from tritile.sw.device import Device
from tritile.sw.protocol import Opcode, Target

from test_device import TEST_CONFIG

pytestmark = pytest.mark.slow

SLOW_CLOCK = TEST_CONFIG.replace(clock_hz=1_000_000, baud=250_000)


@pytest.fixture(scope="module")
def device():
    with Device.open("sim", config=SLOW_CLOCK, progress=False) as dev:
        yield dev


def test_idle_board_stops_the_clock(device):
    before = device.counters()["cycles"]
    time.sleep(1.0)
    # A running clock would pass 100,000s of cycles in a second; a stopped one only the
    # few the STATS requests and the board's wake-ups take.
    assert device.counters()["cycles"] - before < 20_000


def test_partial_frame_times_out_while_the_board_is_quiet(device):
    start = device.counters()
    frame = protocol.encode_request(Opcode.WRITE, 9, protocol.write_args(Target.PARAMS, 0),
                                    b"abcd")
    device.send_raw(frame[:-2])          # everything but its CRC
    assert device.receive_frame(timeout=2.0) is None      # abandoned without an answer
    counters = device.counters()
    assert counters["timeouts"] == start["timeouts"] + 1
    assert counters["bad_crc"] == start["bad_crc"]
    device.ping()
