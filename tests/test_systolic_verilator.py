"""The whole systolic engine in Verilator under cocotb, against tritile.sw's golden model.

The harness is tritile.sim.engine_sim, the one of both engines (shared with ``tritile sim``
and the benchmark); each array size is one build that runs a list of problems back to back.
"""

import numpy as np
import pytest
from conv_problems import random_conv_problems

from tritile.sim.engine_sim import EngineProblem, run_engine
from tritile.sw import AcceleratorConfig
from tritile.sw.config import int8_accumulator_bits

MAX_M, MAX_K, MAX_N = 16, 64, 16


def config_for(rows, cols):
    """A small config whose accumulators are exactly as wide as K_max needs."""
    return AcceleratorConfig(
        systolic_rows=rows, systolic_cols=cols, max_m=MAX_M, max_k=MAX_K, max_n=MAX_N,
        act_depth=MAX_M * MAX_K, weight_depth=MAX_K * MAX_N, out_depth=MAX_M * MAX_N,
        acc_width=int8_accumulator_bits(MAX_K))


def _problems(rng):
    def ints(shape, lo=-128, hi=128, dtype=np.int8):
        return rng.integers(lo, hi, shape).astype(dtype)

    def requant(n):
        return {"mult": ints(n, 0, 1 << 15, np.int32), "shift": ints(n, 14, 22, np.int32)}

    problems = []
    for relu in (False, True):
        m, k, n = (int(rng.integers(1, limit + 1)) for limit in (MAX_M, MAX_K, MAX_N))
        problems.append(EngineProblem(ints((m, k)), ints((k, n)),
                                    bias=ints(n, -20000, 20000, np.int32), relu=relu,
                                    **requant(n)))
    problems.append(EngineProblem(ints((1, 37)), ints((37, 11)),
                                bias=ints(11, -(1 << 20), 1 << 20, np.int32)))
    problems.append(EngineProblem(ints((9, 1)), ints((1, 5)), **requant(5)))
    extreme = np.full((MAX_M, MAX_K), -128, np.int8), np.full((MAX_K, MAX_N), -128, np.int8)
    problems.append(EngineProblem(*extreme))
    problems.append(EngineProblem(*extreme, bias=np.full(MAX_N, -(1 << 20), np.int32),
                                mult=np.full(MAX_N, (1 << 15) - 1, np.int32),
                                shift=np.full(MAX_N, 36, np.int32)))
    problems.append(EngineProblem(ints((MAX_M, MAX_K)), ints((MAX_K, MAX_N))))
    return problems


@pytest.mark.slow
@pytest.mark.parametrize("rows,cols", [(2, 2), (4, 4), (8, 8), (4, 8)])
def test_engine_matches_the_golden_model(rows, cols, tmp_path, seed):
    problems = _problems(np.random.default_rng(seed))
    runs = run_engine("systolic", config_for(rows, cols), problems, work_dir=tmp_path,
                      seed=seed % (1 << 31))
    for index, (problem, run) in enumerate(zip(problems, runs)):
        m, k, n = problem.shape
        where = f"problem {index} ({m}x{k}x{n}, seed {seed})"
        np.testing.assert_array_equal(run.out, problem.expected("systolic"), err_msg=where)
        assert run.mac_cycles == m * k * n, where
        # The cycle model is exact for this engine.
        assert run.busy_cycles == run.predicted_cycles, where


@pytest.mark.slow
def test_engine_runs_convolutions_through_its_walk(rng, seed, tmp_path):
    # The (4, 4) build of the test above: convolutions cost no build of their own.
    config = config_for(4, 4)
    problems = random_conv_problems(rng, "systolic", config, 6)
    runs = run_engine("systolic", config, problems, work_dir=tmp_path, seed=seed % (1 << 31))
    for index, (problem, run) in enumerate(zip(problems, runs)):
        plan = problem.plan("systolic", config)
        where = f"problem {index} ({problem.window}, map {problem.x.shape}, seed {seed})"
        np.testing.assert_array_equal(run.out, problem.expected("systolic"), err_msg=where)
        assert run.mac_cycles == plan.m * plan.k * plan.n, where
        if not problem.throttle:
            # The walk costs no cycle: the GEMM's cycle model is exact.
            assert run.busy_cycles == plan.cycles, where
