"""Ternary weight uploads on the simulated board for a config whose L*P is no multiple of 5.

icebreaker-ternary holds 8 x 8 = 64 trits a word, so the base-3 stream crosses word ends at
every phase of its bytes; the results of both packings are bit-exact against the golden
model, and the base-3 upload is the stream of the whole image at 1.6 bits per trit.
"""

import numpy as np
import pytest

from tritile.sw import PRESETS, ternary_matmul
from tritile.sw.arith import ceil_div
from tritile.sw.device import Device, weight_requests

pytestmark = pytest.mark.slow

CONFIG = PRESETS["icebreaker-ternary"]


@pytest.fixture(scope="module")
def device():
    with Device.open("sim", config=CONFIG, progress=False) as dev:
        yield dev


# The whole weight memory; a ragged problem; 3 words, whose stream's last byte completes
# the first byte of the word after them.
@pytest.mark.parametrize("shape", [(3, 112, 32), (5, 37, 13), (2, 24, 4)])
@pytest.mark.parametrize("packing", ["base3", "2bit"])
def test_uploads_are_bit_exact(device, packing, shape, rng):
    m, k, n = shape
    q = rng.integers(-128, 128, (m, k), dtype=np.int8)
    T = rng.integers(-1, 2, (k, n), dtype=np.int8)
    assert np.array_equal(device.ternary(q, T, packing=packing), ternary_matmul(q, T))


def test_the_base3_upload_is_one_stream_of_1_6_bits_per_trit():
    words = ceil_div(112, CONFIG.ternary_fan_in) * ceil_div(32, CONFIG.ternary_lanes)
    T = np.ones((112, 32), np.int8)
    payload = sum(len(data) for _, _, data in weight_requests(CONFIG, "ternary", T, "base3"))
    assert payload == ceil_div(words * CONFIG.ternary_lanes * CONFIG.ternary_fan_in, 5)
