"""Tiling planner and analytic cycle model (held against measured cycles by the engine tests)."""

import pytest

from tritile.sw import AcceleratorConfig, plan_gemm, plan_ternary
from tritile.sw.conv import Window
from tritile.sw.planner import plan_conv


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


@pytest.mark.parametrize("engine", ["systolic", "ternary"])
def test_a_convolution_costs_its_gemm(engine):
    # M = images * OH * OW, K = kh * kw * CT * chunk (5 channels pad to 2 chunks of 4).
    config = AcceleratorConfig(systolic_rows=4, systolic_cols=4, ternary_lanes=4,
                               ternary_fan_in=4, max_m=64, max_k=128, max_n=16,
                               act_depth=2048, weight_depth=2048, trit_depth=2048,
                               out_depth=1024)
    plan = plan_conv(config, engine, Window(3, 2, (1, 1, 0, 0)), 2, 7, 6, 5, 9)
    gemm = (plan_gemm if engine == "systolic" else plan_ternary)(config, 2 * 3 * 3, 72, 9)
    assert plan == gemm


def test_a_convolution_map_must_fit_the_activation_memory():
    # 16 x 16 x 16 = 4096 bytes of map, though its 256 x 144 im2col rows would not fit.
    config = AcceleratorConfig(systolic_rows=8, systolic_cols=8, ternary_lanes=0,
                               ternary_fan_in=0, max_m=512, max_k=144, max_n=32,
                               act_depth=4096, weight_depth=4608, out_depth=16384)
    assert plan_conv(config, "systolic", Window(3, 1, 1), 1, 16, 16, 16, 32).m == 256
    with pytest.raises(ValueError, match="takes 4352 bytes; act_depth = 4096"):
        plan_conv(config, "systolic", Window(3, 1, 1), 1, 16, 17, 16, 32)
