"""Tiling: a problem larger than one call, split and put back together, equals the golden
model; every call fits the engine."""

import numpy as np
import pytest

from tritile.sw.config import AcceleratorConfig
from tritile.sw.engines import ENGINES, engine
from tritile.sw.numerics import requantize
from tritile.sw.tiling import tile_problem

CONFIG = AcceleratorConfig(max_m=6, max_k=20, max_n=9, act_depth=60, weight_depth=120,
                           trit_depth=150, out_depth=40)


def _engine_call(spec, X, W, bias, mult, shift, raw, relu):
    """What one engine call returns: the golden model of the numerics contract."""
    acc = spec.golden(X, W, bias)
    return acc if raw else requantize(acc, mult, shift, relu)


@pytest.mark.parametrize("name", list(ENGINES))
@pytest.mark.parametrize("shape", [(3, 10, 4), (17, 45, 23), (1, 21, 1), (14, 7, 40)])
@pytest.mark.parametrize("raw", [True, False])
def test_tiled_problem_equals_the_golden_model(name, shape, raw, rng):
    spec = engine(name)
    m, k, n = shape
    X = rng.integers(-128, 128, (m, k), dtype=np.int8)
    W = rng.integers(-1, 2, (k, n), dtype=np.int8)
    bias = rng.integers(-5000, 5000, n).astype(np.int32)
    mult = None if raw else rng.integers(1, 1 << 15, n).astype(np.int32)
    shift = None if raw else rng.integers(14, 20, n).astype(np.int32)
    tiling = tile_problem(spec, CONFIG, m, k, n)
    calls = tiling.calls(raw, relu=not raw)
    outputs = []
    for call in calls:
        spec.plan(CONFIG, *call.shape)              # every call fits the engine
        b, mu, sh = tiling.params(call, bias, mult, shift)
        outputs.append(_engine_call(spec, X[slice(*call.rows), slice(*call.depth)],
                                    W[slice(*call.depth), slice(*call.cols)],
                                    b.astype(np.int32), mu.astype(np.int32),
                                    sh.astype(np.int32), call.raw, call.relu))
    got = tiling.assemble(calls, outputs, bias, mult, shift, relu=not raw)
    want = _engine_call(spec, X, W, bias, mult, shift, raw, not raw)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == want.dtype
    assert (len(tiling.k_ranges) > 1) == tiling.split_k == (k > CONFIG.max_k)


def test_calls_load_each_weight_tile_once():
    tiling = tile_problem(engine("systolic"), CONFIG, 13, 45, 23)
    tiles = [(call.depth, call.cols) for call in tiling.calls()]
    changes = sum(1 for a, b in zip(tiles, tiles[1:]) if a != b) + 1
    assert changes == len(set(tiles)) == len(tiling.k_ranges) * len(tiling.n_ranges)


def test_non_positive_sizes_are_refused():
    with pytest.raises(ValueError, match="K must be a positive integer"):
        tile_problem(engine("ternary"), CONFIG, 3, 0, 4)
