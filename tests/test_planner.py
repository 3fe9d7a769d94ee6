"""Tiling planner and analytic cycle model (held against measured cycles by the engine tests)."""

import pytest

from tritile.sw import AcceleratorConfig, plan_gemm, plan_ternary


def test_gemm_plan_tiles_and_utilization():
    config = AcceleratorConfig(systolic_rows=8, systolic_cols=8, max_m=256, max_k=256,
                               max_n=256, act_depth=65536, weight_depth=65536,
                               out_depth=65536)
    plan = plan_gemm(config, 256, 256, 256)
    assert (plan.k_tiles, plan.n_tiles, plan.tiles) == (32, 32, 1024)
    assert plan.macs == 256 ** 3
    assert plan.cycles >= plan.macs // 64
    assert 0 < plan.utilization <= 1
    small = plan_gemm(config, 1, 1, 1)
    assert small.tiles == 1 and small.utilization < 0.1


def test_ragged_shapes_round_up_tiles():
    config = AcceleratorConfig(systolic_rows=4, systolic_cols=8)
    plan = plan_gemm(config, 5, 9, 17)
    assert (plan.k_tiles, plan.n_tiles) == (3, 3)
    tplan = plan_ternary(config, 3, 17, 9)
    assert (tplan.k_tiles, tplan.n_tiles) == (3, 2)       # P = 8 inputs, L = 8 lanes
    assert tplan.peak_macs_per_cycle == 64


@pytest.mark.parametrize("m, k, n, message", [
    (0, 4, 4, "M must be an integer between 1 and 64"),
    (4, 257, 4, "K must be an integer between 1 and 256"),
    (4, 4, 65, "N must be an integer between 1 and 64"),
    (64, 256, 4, r"M\*K = 16384 activations exceed act_depth = 4096"),
])
def test_plans_reject_problems_beyond_the_config(m, k, n, message):
    config = AcceleratorConfig()
    with pytest.raises(ValueError, match=message):
        plan_gemm(config, m, k, n)
    with pytest.raises(ValueError, match=message):
        plan_ternary(config, m, k, n)


def test_plan_to_dict_has_derived_figures():
    d = plan_gemm(AcceleratorConfig(), 4, 4, 4).to_dict()
    assert {"cycles", "utilization", "tiles", "macs"} <= set(d)


def test_plans_need_their_engine():
    int8_only = AcceleratorConfig(ternary_lanes=0, ternary_fan_in=0)
    with pytest.raises(ValueError, match="has no ternary engine .it has systolic."):
        plan_ternary(int8_only, 4, 4, 4)
    assert plan_gemm(int8_only, 4, 4, 4).macs == 64
