"""The planner's cycle counts against busy cycles measured in Amaranth's simulator of the
engines (the harnesses of tests/test_systolic_array.py and tests/test_ternary_unit.py,
random data, every result read as soon as it is offered), pinned here as fixed numbers so
that the fast tests hold the model to the hardware; the engine tests re-measure them."""

import pytest

from tritile.sw import AcceleratorConfig, plan_gemm, plan_ternary

SYSTOLIC_3X2 = AcceleratorConfig(systolic_rows=3, systolic_cols=2, max_m=12, max_k=20,
                                 max_n=12, act_depth=240, weight_depth=240, out_depth=144)


@pytest.mark.parametrize("m, k, n, cycles", [
    (5, 7, 3, 56), (1, 1, 1, 22), (12, 20, 12, 528), (4, 6, 5, 58), (7, 2, 5, 67),
    (2, 9, 7, 56)])
def test_systolic_cycles_are_the_measured_ones(m, k, n, cycles):
    plan = plan_gemm(SYSTOLIC_3X2, m, k, n)
    assert plan.cycles == cycles
    assert (plan.macs, plan.peak_macs_per_cycle) == (m * k * n, 6)


@pytest.mark.parametrize("lanes, fan_in, read_stages, measured", [
    (4, 8, 0, [45, 7, 30, 33]),
    (2, 3, 1, [96, 7, 37, 77]),
    (4, 8, 2, [47, 9, 32, 35])])
def test_ternary_cycles_are_the_measured_ones(lanes, fan_in, read_stages, measured):
    config = AcceleratorConfig(ternary_lanes=lanes, ternary_fan_in=fan_in,
                               ternary_read_stages=read_stages, max_n=64)
    shapes = [(3, 17, 9), (1, 1, 1), (5, 8, 4), (2, 20, 10)]
    plans = [plan_ternary(config, m, k, n) for m, k, n in shapes]
    assert [plan.cycles for plan in plans] == measured
    assert [plan.macs for plan in plans] == [m * k * n for m, k, n in shapes]


def test_memory_limits_are_named_with_the_product():
    config = AcceleratorConfig(out_depth=16, weight_depth=24, trit_depth=64)
    with pytest.raises(ValueError, match=r"M\*N = 18 results exceed out_depth = 16"):
        plan_gemm(config, 3, 2, 6)
    with pytest.raises(ValueError, match=r"K\*N = 25 weights exceed weight_depth = 24"):
        plan_gemm(config, 1, 5, 5)
    with pytest.raises(ValueError, match=r"K\*N = 65 trits exceed trit_depth = 64"):
        plan_ternary(config, 1, 13, 5)
    assert plan_gemm(config, 2, 4, 6).macs == 48      # 8 activations, 24 weights, 12 results
    assert plan_ternary(config, 1, 16, 4).macs == 64
