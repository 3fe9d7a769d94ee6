"""The whole ternary engine in Verilator (the one engine harness, tritile.sim.engine_sim)
against tritile.sw.ternary_matmul and requantize, on three (L, P) shapes, one with a read
stage."""

import numpy as np
import pytest
from conv_problems import random_conv_problems

from tritile.sim.engine_sim import EngineProblem, run_engine
from tritile.sw import AcceleratorConfig, requant_params


def config_for(lanes, fan_in, read_stages):
    """A small config of the ternary unit with L lanes of P inputs."""
    return AcceleratorConfig(ternary_lanes=lanes, ternary_fan_in=fan_in,
                             ternary_read_stages=read_stages, max_m=6, max_k=40, max_n=20,
                             act_depth=240, trit_depth=800, out_depth=120)


def _problems(config, rng):
    """The issue's cases: ragged random shapes, M = 1, K = 1, K at the limit with the
    largest sums, all-zero weights; both packings, raw and requantized, with backpressure."""
    max_k, max_n = config.max_k, config.max_n
    lanes, fan_in = config.ternary_lanes, config.ternary_fan_in

    def ragged(limit, block):
        value = int(rng.integers(1, limit + 1))
        return value + 1 if value % block == 0 and value < limit else value

    def trits(k, n):
        return rng.integers(-1, 2, size=(k, n), dtype=np.int8)

    def acts(m, k):
        return rng.integers(-128, 128, size=(m, k), dtype=np.int8)

    problems = []
    for packing in ("2bit", "base3"):
        m, k, n = int(rng.integers(2, config.max_m + 1)), ragged(max_k, fan_in), \
            ragged(max_n, lanes)
        problems.append(EngineProblem(acts(m, k), trits(k, n), packing=packing))
        problems.append(EngineProblem(acts(1, k), trits(k, n), packing=packing, throttle=True))
        problems.append(EngineProblem(acts(3, 1), trits(1, n), packing=packing))
        problems.append(EngineProblem(np.full((2, max_k), -128, np.int8),
                                      np.full((max_k, 3), -1, np.int8), packing=packing))
        problems.append(EngineProblem(acts(2, k), np.zeros((k, n), np.int8), packing=packing))
        # Requantized, scales chosen so that results spread over the int8 range.
        q, T = acts(m, k), trits(k, n)
        mult, shift = requant_params(np.full(n, 1.0 / max(8, 4 * k), np.float64))
        problems.append(EngineProblem(q, T, packing=packing, mult=mult, shift=shift,
                                      relu=packing == "base3", throttle=True))
    return problems


@pytest.mark.slow
@pytest.mark.parametrize("lanes, fan_in, read_stages", [(3, 5, 0), (4, 8, 1), (8, 2, 0)])
def test_engine_matches_golden_model(lanes, fan_in, read_stages, tmp_path, seed):
    rng = np.random.default_rng(seed)
    config = config_for(lanes, fan_in, read_stages)
    problems = _problems(config, rng)
    runs = run_engine("ternary", config, problems, work_dir=tmp_path, seed=seed)
    for index, (problem, run) in enumerate(zip(problems, runs)):
        shape = problem.shape
        label = f"problem {index}: MxKxN={shape} {problem.packing} raw={problem.raw}"
        np.testing.assert_array_equal(run.out, problem.expected("ternary"), err_msg=label)
        if not problem.throttle:
            # Without backpressure the cycle model is exact.
            assert run.busy_cycles == run.predicted_cycles, label
        assert run.mac_cycles == -(-shape[1] // fan_in) * shape[0] * -(-shape[2] // lanes)


@pytest.mark.slow
def test_engine_runs_convolutions_through_its_walk(seed, tmp_path):
    # The (4, 8, 1) build of the test above: convolutions cost no build of their own.
    config = config_for(4, 8, 1)
    problems = random_conv_problems(np.random.default_rng(seed), "ternary", config, 6)
    runs = run_engine("ternary", config, problems, work_dir=tmp_path, seed=seed)
    for index, (problem, run) in enumerate(zip(problems, runs)):
        plan = problem.plan("ternary", config)
        label = f"problem {index}: {problem.window}, map {problem.x.shape}, seed {seed}"
        np.testing.assert_array_equal(run.out, problem.expected("ternary"), err_msg=label)
        if not problem.throttle:
            assert run.busy_cycles == plan.cycles, label
