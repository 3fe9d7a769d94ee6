"""The activation-memory layout of feature maps (docs/protocol.md), on the host side."""

import numpy as np
import pytest

from tritile.sw.config import AcceleratorConfig
from tritile.sw.device import feature_map_words
from tritile.sw.engines import engine


@pytest.mark.parametrize("shape, chunk", [((2, 3, 5, 7), 4), ((1, 1, 6, 8), 8),
                                          ((1, 2, 2, 1), 3)])
def test_pixel_and_channel_sit_where_the_contract_says(rng, shape, chunk):
    x = rng.integers(-128, 128, shape).astype(np.int8)
    words = feature_map_words(x, chunk)
    images, height, width, channels = shape
    ct = -(-channels // chunk)
    assert words.shape == (images * height * width * ct, chunk)
    for b, y, col, c in np.ndindex(shape):
        assert words[((b * height + y) * width + col) * ct + c // chunk, c % chunk] \
            == x[b, y, col, c]
    # Channels past C are zero.
    assert not words.reshape(-1, ct * chunk)[:, channels:].any()


def test_dense_input_is_the_ternary_units_activation_image(rng):
    config = AcceleratorConfig(ternary_lanes=4, ternary_fan_in=4)
    spec = engine("ternary")
    q = rng.integers(-128, 128, (5, 11)).astype(np.int8)
    image = spec.memory_image(config, q, np.zeros((11, 4), np.int8))[0]
    run, stride = spec.act_runs(config)
    used = np.frombuffer(image, np.int8).reshape(-1, stride)[:, :run]
    assert np.array_equal(used, feature_map_words(q, run))


def test_a_map_of_another_rank_is_refused():
    with pytest.raises(ValueError, match=r"NHWC or M x K, not of shape \(3, 4, 5\)"):
        feature_map_words(np.zeros((3, 4, 5), np.int8), 4)
