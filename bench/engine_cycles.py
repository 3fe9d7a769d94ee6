"""Benchmark an engine in Verilator: measured cycles and utilization against problem size.

For each tile size of the engine (``tile_k x tile_n``: R x C for the systolic array,
P x L for the ternary unit), runs square problems (raw int32 output, random operands) in
one simulation through the one engine harness (:mod:`tritile.sim.engine_sim`) and reports
measured cycles, the planner's cycles, utilization (useful MACs / (peak MACs per cycle *
cycles)) and Verilator's speed in simulated cycles per second of the compute phase. Prints
one JSON object; ``--plot FILE`` also draws utilization against size, ``--table`` prints
the Markdown table of docs/systolic.md and docs/ternary.md. ``--conv`` measures the
convolution layers of :data:`CONV_LAYERS` instead (read in place through the engines'
implicit-im2col walk), bit-exact against ``tritile.sw.conv``. ``--requant-serial K`` builds
the engine with its requantizer's multiply in logic, K multiplier bits a cycle (the
config's ``requant_serial``): the cycle model then counts the requantizer's rate.

    .venv/bin/python bench/engine_cycles.py --engine systolic --tiles 4x4 8x8 \\
        --plot docs/systolic_utilization.png --table
    .venv/bin/python bench/engine_cycles.py --engine ternary --tiles 8x8 16x8 --table
    .venv/bin/python bench/engine_cycles.py --engine systolic --tiles 8x8 --conv --table
    .venv/bin/python bench/engine_cycles.py --engine systolic --tiles 4x4 --requant-serial 2
"""

import argparse
import json
import sys

import numpy as np

from tritile.sim.engine_sim import EngineProblem, run_engine
from tritile.sw import AcceleratorConfig, ConfigError
from tritile.sw.conv import Window
from tritile.sw.engines import ENGINES, engine

SIZES = (16, 32, 64, 128, 256)
TILES = ("4x4", "8x8")
LIMIT = 256
#: Convolution layers: (name, window, input H x W x C, output channels). The first is the
#: target layer of issue #14.
CONV_LAYERS = (
    ("3x3 pad 1, 16x16x16 -> 32", Window(3, 1, 1), (16, 16, 16), 32),
    ("1x1, 16x16x16 -> 32", Window(1), (16, 16, 16), 32),
    ("3x3 stride 2 pad 1, 16x16x12 -> 24", Window(3, 2, (1, 1, 0, 0)), (16, 16, 12), 24),
    ("5x5, 12x12x8 -> 16", Window(5), (12, 12, 8), 16),
)


def config_for(spec, tile_k, tile_n, requant_serial=0):
    """A config of ``spec`` with a ``tile_k x tile_n`` tile that holds a 256^3 problem."""
    config = AcceleratorConfig(max_m=LIMIT, max_k=LIMIT, max_n=LIMIT,
                               act_depth=LIMIT * LIMIT, weight_depth=LIMIT * LIMIT,
                               trit_depth=LIMIT * LIMIT, out_depth=LIMIT * LIMIT,
                               requant_serial=requant_serial)
    return spec.sized(config, tile_k, tile_n)


def measure(spec, tiles, sizes, seed, requant_serial=0):
    rng = np.random.default_rng(seed)
    results = []
    for tile_k, tile_n in tiles:
        low, high = spec.weight_values
        problems = [EngineProblem(rng.integers(-128, 128, (s, s)).astype(np.int8),
                                  rng.integers(low, high + 1, (s, s)).astype(np.int8))
                    for s in sizes]
        runs = run_engine(spec, config_for(spec, tile_k, tile_n, requant_serial), problems)
        for size, problem, run in zip(sizes, problems, runs):
            if not np.array_equal(run.out, problem.expected(spec)):
                raise SystemExit(f"{spec.name} {tile_k}x{tile_n}, {size}^3: result differs "
                                 f"from the golden model")
            results.append({"engine": spec.name, "tile_k": tile_k, "tile_n": tile_n,
                            "m": size, "k": size, "n": size, **run.to_dict(),
                            "model_error": run.busy_cycles / run.predicted_cycles - 1})
    return results


def measure_conv(spec, tiles, seed, requant_serial=0):
    rng = np.random.default_rng(seed)
    low, high = spec.weight_values
    results = []
    for tile_k, tile_n in tiles:
        config = config_for(spec, tile_k, tile_n, requant_serial)
        problems = [EngineProblem(rng.integers(-128, 128, (1, *shape)).astype(np.int8),
                                  rng.integers(low, high + 1, (window.kernel[0]
                                               * window.kernel[1] * shape[2], n)
                                               ).astype(np.int8), window=window)
                    for _, window, shape, n in CONV_LAYERS]
        runs = run_engine(spec, config, problems)
        for (name, *_), problem, run in zip(CONV_LAYERS, problems, runs):
            if not np.array_equal(run.out, problem.expected(spec)):
                raise SystemExit(f"{spec.name} {tile_k}x{tile_n}, {name}: result differs "
                                 f"from the golden model")
            plan = problem.plan(spec, config)
            results.append({"engine": spec.name, "tile_k": tile_k, "tile_n": tile_n,
                            "layer": name, "m": plan.m, "k": plan.k, "n": plan.n,
                            **run.to_dict(),
                            "model_error": run.busy_cycles / run.predicted_cycles - 1})
    return results


def conv_table(results):
    lines = ["| tile (K x N) | layer | M x K x N | cycles | model | utilization |",
             "|---|---|---|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['tile_k']}x{r['tile_n']} | {r['layer']} | "
                     f"{r['m']}x{r['k']}x{r['n']} | {r['cycles']} | {r['predicted_cycles']} "
                     f"| {r['utilization']:.2%} |")
    return "\n".join(lines)


def table(results):
    lines = ["| tile (K x N) | M=K=N | cycles | model | utilization | sim Mcycles/s |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['tile_k']}x{r['tile_n']} | {r['m']} | {r['cycles']} | "
                     f"{r['predicted_cycles']} | {r['utilization']:.2%} | "
                     f"{r['cycles_per_second'] / 1e6:.2f} |")
    return "\n".join(lines)


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for tile in sorted({(r["tile_k"], r["tile_n"]) for r in results}):
        points = [r for r in results if (r["tile_k"], r["tile_n"]) == tile]
        ax.plot([r["m"] for r in points], [100 * r["utilization"] for r in points],
                marker="o", label=f"{tile[0]}x{tile[1]} tile")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("M = K = N")
    ax.set_ylabel("utilization (%)")
    ax.set_ylim(0, 100)
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title(f"tritile {results[0]['engine']} engine (Verilator, cycle-accurate)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=list(ENGINES), default="systolic")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--tiles", nargs="+", default=list(TILES),
                        help="tile sizes as KxN (R x C, or P x L)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", metavar="FILE", help="write a utilization plot")
    parser.add_argument("--table", action="store_true", help="print a Markdown table")
    parser.add_argument("--conv", action="store_true",
                        help="measure the convolution layers instead of square GEMMs")
    parser.add_argument("--requant-serial", type=int, default=0, metavar="K",
                        help="the requantizer's multiply in logic, K bits a cycle "
                             "(0: on DSP blocks)")
    args = parser.parse_args(argv)
    spec = engine(args.engine)
    tiles = [tuple(int(x) for x in tile.split("x")) for tile in args.tiles]
    try:
        config_for(spec, *tiles[0], args.requant_serial)
    except ConfigError as exc:
        parser.error(str(exc))
    if args.conv:
        results = measure_conv(spec, tiles, args.seed, args.requant_serial)
    else:
        results = measure(spec, tiles, args.sizes, args.seed, args.requant_serial)
    print(json.dumps({"benchmark": "engine_cycles_conv" if args.conv else "engine_cycles",
                      "engine": spec.name, "seed": args.seed,
                      "requant_serial": args.requant_serial, "results": results}, indent=1))
    if args.table:
        print((conv_table if args.conv else table)(results), file=sys.stderr)
    if args.plot and not args.conv:
        plot(results, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
