"""Benchmark the systolic engine in Verilator: utilization and cycles against problem size.

For each array size, runs square int8 problems (raw int32 output) in one Verilator
simulation and reports measured cycles, the analytic model's cycles, utilization
(useful MACs / (R * C * cycles)) and Verilator's speed in simulated cycles per second of
the compute phase. Prints one JSON object; ``--plot FILE`` also draws utilization
against size, ``--table`` prints the Markdown table for docs/systolic.md.

    .venv/bin/python bench/systolic.py --plot docs/systolic_utilization.png --table
"""

import argparse
import json
import sys

import numpy as np

from tritile.sim.gemm_sim import GemmProblem, run_gemm
from tritile.sw import AcceleratorConfig

SIZES = (16, 32, 64, 128, 256)
ARRAYS = ((4, 4), (8, 8))
LIMIT = 256


def config_for(rows, cols):
    """A config that holds a 256 x 256 x 256 problem."""
    return AcceleratorConfig(systolic_rows=rows, systolic_cols=cols, max_m=LIMIT,
                             max_k=LIMIT, max_n=LIMIT, act_depth=LIMIT * LIMIT,
                             weight_depth=LIMIT * LIMIT, out_depth=LIMIT * LIMIT)


def measure(arrays, sizes, seed):
    rng = np.random.default_rng(seed)
    rows_out = []
    for rows, cols in arrays:
        problems = [GemmProblem(rng.integers(-128, 128, (s, s)).astype(np.int8),
                                rng.integers(-128, 128, (s, s)).astype(np.int8))
                    for s in sizes]
        runs = run_gemm(config_for(rows, cols), problems)
        for size, problem, run in zip(sizes, problems, runs):
            if not np.array_equal(run.result, problem.expected()):
                raise SystemExit(f"{rows}x{cols} array, {size}^3: result differs from "
                                 f"gemm_int8")
            rows_out.append({"rows": rows, "cols": cols, "m": size, "k": size, "n": size,
                             **run.to_dict(),
                             "model_error": run.cycles / run.predicted_cycles - 1})
    return rows_out


def table(results):
    lines = ["| array | M=K=N | cycles | model | utilization | sim Mcycles/s |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['rows']}x{r['cols']} | {r['m']} | {r['cycles']} | "
                     f"{r['predicted_cycles']} | {r['utilization']:.2%} | "
                     f"{r['cycles_per_second'] / 1e6:.2f} |")
    return "\n".join(lines)


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for rows, cols in sorted({(r["rows"], r["cols"]) for r in results}):
        points = [r for r in results if (r["rows"], r["cols"]) == (rows, cols)]
        ax.plot([r["m"] for r in points], [100 * r["utilization"] for r in points],
                marker="o", label=f"{rows}x{cols} array")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("M = K = N")
    ax.set_ylabel("utilization (%)")
    ax.set_ylim(0, 100)
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title("tritile systolic engine (Verilator, cycle-accurate)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--arrays", nargs="+", default=[f"{r}x{c}" for r, c in ARRAYS],
                        help="array sizes as RxC")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", metavar="FILE", help="write a utilization plot")
    parser.add_argument("--table", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)
    arrays = [tuple(int(x) for x in a.split("x")) for a in args.arrays]
    results = measure(arrays, args.sizes, args.seed)
    print(json.dumps({"benchmark": "systolic", "seed": args.seed, "results": results},
                     indent=1))
    if args.table:
        print(table(results), file=sys.stderr)
    if args.plot:
        plot(results, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
