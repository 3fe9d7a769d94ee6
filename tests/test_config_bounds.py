"""AcceleratorConfig at the edges of each range: the bound itself is accepted, one past it
is refused with its message; preset figures and ids as fixed numbers."""

import re

import pytest

from tritile.sw.config import PRESETS, AcceleratorConfig, ConfigError, ternary_accumulator_bits


@pytest.mark.parametrize("field, good, bad, message", [
    ("systolic_cols", 64, 65, "systolic_cols must be between 0 and 64, not 65"),
    ("max_m", 1, 0, "max_m must be between 1 and 65536, not 0"),
    ("max_m", 1 << 16, (1 << 16) + 1, "max_m must be between 1 and 65536, not 65537"),
    ("max_n", 1 << 16, (1 << 16) + 1, "max_n must be between 1 and 65536, not 65537"),
    ("acc_width", 32, 33, "acc_width must be between 24 (enough for max_k=256 products of "
                           "-128 x -128) and 32, not 33"),
    ("baud", 6_000_000, 6_000_001, "baud must be at most clock_hz / 4 = 6000000"),
    ("requant_serial", 15, 16, "requant_serial must be between 0 and 15, not 16"),
    ("requant_serial", 0, -1, "requant_serial must be between 0 and 15, not -1"),
])
def test_range_bound_is_accepted_and_one_past_it_refused(field, good, bad, message):
    limits = {"act_depth": 1 << 24, "out_depth": 1 << 24} if field in ("max_m", "max_n") \
        else {}
    assert getattr(AcceleratorConfig(**limits, **{field: good}), field) == good
    with pytest.raises(ConfigError, match=re.escape(message)):
        AcceleratorConfig(**limits, **{field: bad})


def test_ternary_accumulator_is_8_plus_ceil_log2_k_plus_1_bits():
    # docs/numerics.md: 8 + ceil(log2 K) + 1.
    assert [ternary_accumulator_bits(k) for k in (1, 2, 3, 128, 129)] == [9, 10, 11, 16, 17]


def test_preset_figures_are_fixed():
    assert {name: (config.config_id, config.int8_macs_per_cycle,
                   config.ternary_macs_per_cycle) for name, config in PRESETS.items()} == {
        "sim-small": ("84708a86", 16, 64),
        "icebreaker": ("c0b249a2", 12, 0),
        "icebreaker-int8": ("94cdd712", 16, 0),
        "icebreaker-ternary": ("ca8f3a22", 0, 64),
        "ulx3s-85f": ("4954e5d0", 144, 512),
        "orangecrab-25f": ("8aca008b", 16, 128),
    }
