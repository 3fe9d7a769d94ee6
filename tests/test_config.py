"""AcceleratorConfig: validation messages, JSON round trip, stable config_id, presets."""

import json

import pytest
from hypothesis import given, strategies as st

from tritile.sw import AcceleratorConfig, ConfigError, PRESETS, load_config


def test_default_is_valid_and_round_trips():
    config = AcceleratorConfig()
    again = AcceleratorConfig.from_json(config.to_json())
    assert again == config and again.config_id == config.config_id


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_valid_and_distinct(name):
    config = PRESETS[name]
    assert load_config(name) is config
    assert AcceleratorConfig.from_dict(json.loads(config.to_json())) == config
    ids = {c.config_id for c in PRESETS.values()}
    assert len(ids) == len(PRESETS)


def test_config_id_is_stable():
    # The id hashes canonical JSON; it must not change between runs or Python versions, or
    # a device built yesterday would refuse today's programs. The values are pinned: a
    # change here is a protocol-visible change and needs a deliberate update.
    # (every preset's id is pinned in tests/test_config_bounds.py)
    assert AcceleratorConfig().config_id == "a9f016f8"
    assert AcceleratorConfig(baud=115200).config_id != AcceleratorConfig().config_id
    # Program mode, added later, changes the id only where it is present.
    assert AcceleratorConfig(max_layers=4).config_id != AcceleratorConfig().config_id
    assert AcceleratorConfig.from_json(AcceleratorConfig(max_layers=4).to_json()) \
        == AcceleratorConfig(max_layers=4)
    # So does a parameter memory deeper than max_n (0 = max_n keeps the id).
    assert AcceleratorConfig(param_depth=128).config_id != AcceleratorConfig().config_id
    assert AcceleratorConfig(param_depth=128).param_entries == 128
    assert AcceleratorConfig().param_entries == AcceleratorConfig().max_n
    # And the requantizer's multiply in logic (0, on DSP blocks, keeps the id).
    assert AcceleratorConfig(requant_serial=2).config_id != AcceleratorConfig().config_id
    assert "requant_serial" not in AcceleratorConfig().to_json()


@given(st.integers(1, 64), st.integers(1, 64))
def test_any_array_size_in_range_is_accepted(rows, cols):
    config = AcceleratorConfig(systolic_rows=rows, systolic_cols=cols,
                               weight_depth=max(4096, rows * cols), out_depth=4096)
    assert config.int8_macs_per_cycle == rows * cols


@pytest.mark.parametrize("changes, message", [
    ({"systolic_rows": 0}, "systolic_rows and systolic_cols must both be 0 (no int8 "
                           "(systolic) engine) or both at least 1, not 0 and 4"),
    ({"systolic_rows": 65}, "systolic_rows must be between 0 and 64, not 65"),
    ({"ternary_lanes": 1000}, "ternary_lanes must be between 0 and 256, not 1000"),
    ({"ternary_read_stages": 3}, "ternary_read_stages must be between 0 and 2, not 3"),
    ({"systolic_rows": 0, "systolic_cols": 0, "ternary_lanes": 0, "ternary_fan_in": 0},
     "a config needs at least one engine"),
    ({"data_width": 16}, "data_width must be 8"),
    ({"acc_width": 20}, "acc_width must be between 24"),
    ({"max_k": 100_000}, "max_k must be between 1 and 65536"),
    ({"act_depth": 100}, "act_depth must be at least 256"),
    ({"weight_depth": 8, "systolic_rows": 4}, "weight_depth must be at least 16"),
    ({"baud": 10_000_000}, "baud must be at most clock_hz / 4"),
    ({"baud": 1199}, "baud must be between 1200 and 100000000, not 1199"),
    ({"clock_hz": 999_999}, "clock_hz must be between 1000000 and 1000000000, not 999999"),
    ({"clock_hz": 1_000_000_001}, "clock_hz must be between 1000000 and 1000000000"),
    ({"trit_depth": 63}, "trit_depth must be at least 64 = ternary_lanes * ternary_fan_in"),
    ({"out_depth": 7}, "out_depth must be at least 8 = max(systolic_cols, ternary_lanes)"),
    ({"out_depth": (1 << 24) + 1}, "out_depth must be between 1 and 16777216"),
    ({"act_depth": 0}, "act_depth must be between 1 and 16777216, not 0"),
    ({"systolic_cols": 2.5}, "systolic_cols must be an integer, not 2.5"),
    ({"max_m": True}, "max_m must be an integer"),
    ({"max_layers": 256}, "max_layers must be between 0 and 255, not 256"),
    ({"max_layers": -1}, "max_layers must be between 0 and 255, not -1"),
    ({"param_depth": 63}, "param_depth must be between 64 and 65536, not 63"),
])
def test_invalid_parameters_are_named(changes, message):
    with pytest.raises(ConfigError) as info:
        AcceleratorConfig(**changes)
    assert message in str(info.value)


def test_an_engine_can_be_left_out():
    int8_only = AcceleratorConfig(ternary_lanes=0, ternary_fan_in=0)
    ternary_only = AcceleratorConfig(systolic_rows=0, systolic_cols=0)
    assert int8_only.engines == ("systolic",) and ternary_only.engines == ("ternary",)
    assert AcceleratorConfig().engines == ("systolic", "ternary")
    assert int8_only.ternary_macs_per_cycle == 0 == ternary_only.int8_macs_per_cycle


def test_from_dict_rejects_unknown_keys_and_bad_json(tmp_path):
    with pytest.raises(ConfigError, match="unknown config parameter.*rowz"):
        AcceleratorConfig.from_dict({"rowz": 3})
    with pytest.raises(ConfigError, match="not valid JSON"):
        AcceleratorConfig.from_json("{")
    with pytest.raises(ConfigError, match="JSON object"):
        AcceleratorConfig.from_json("[1]")


def test_load_config_from_file_and_errors(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(AcceleratorConfig(systolic_rows=2).to_json())
    assert load_config(str(path)).systolic_rows == 2
    with pytest.raises(ConfigError, match="unknown config 'nope'"):
        load_config("nope")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(str(tmp_path / "missing.json"))


def test_program_mode_needs_the_window_walk():
    with pytest.raises(ConfigError, match="max_layers must be 0 with conv_walk 0"):
        AcceleratorConfig(conv_walk=0, max_layers=4)
