"""Random convolution problems for the engine tests: geometry that fits one engine call.

Kernels of 1 to 3, strides of 1 or 2, asymmetric pads, 1 or 2 images and channel counts
that are mostly not a multiple of the engine's chunk, drawn until the planner accepts the
layer on the test's config (``plan_conv`` is the judge of what fits).
"""

import numpy as np

from tritile.sim.engine_sim import EngineProblem
from tritile.sw.conv import Window
from tritile.sw.engines import engine
from tritile.sw.planner import plan_conv

__all__ = ["random_conv_problems"]


def _window(rng):
    kernel = tuple(int(v) for v in rng.integers(1, 4, 2))
    pads = tuple(int(rng.integers(0, k)) for k in kernel + kernel)
    return Window(kernel, tuple(int(v) for v in rng.integers(1, 3, 2)), pads)


def _geometry(rng, spec, config):
    chunk = spec.chunk(config)
    while True:
        window = _window(rng)
        images = int(rng.integers(1, 3))
        height, width = (int(v) for v in rng.integers(1, 7, 2))
        channels = int(rng.integers(1, 2 * chunk + 2))
        n = int(rng.integers(1, config.max_n + 1))
        try:
            plan_conv(config, spec.name, window, images, height, width, channels, n)
        except ValueError:
            continue
        return window, (images, height, width, channels), n


def random_conv_problems(rng, spec, config, count):
    """Return ``count`` convolution :class:`EngineProblem`s for engine ``spec``, raw and
    requantized (with ReLU), one with backpressure."""
    spec = engine(spec)
    lo, hi = spec.weight_values
    problems = []
    for index in range(count):
        window, shape, n = _geometry(rng, spec, config)
        k = window.kernel[0] * window.kernel[1] * shape[3]
        x = rng.integers(-128, 128, shape).astype(np.int8)
        w = rng.integers(lo, hi + 1, (k, n)).astype(np.int8)
        requant = {}
        if index % 2:
            requant = {"bias": rng.integers(-5000, 5000, n).astype(np.int32),
                       "mult": rng.integers(0, 1 << 15, n).astype(np.int32),
                       "shift": rng.integers(14, 22, n).astype(np.int32), "relu": True}
        problems.append(EngineProblem(x, w, window=window, throttle=index == count - 1,
                                      **requant))
    return problems
