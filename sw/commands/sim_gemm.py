"""``tritile sim gemm``: run an int8 gemm on the systolic engine in Verilator."""

import json
import sys
from pathlib import Path

import numpy as np

from ..cli import CommandError, load_npy
from ..config import load_config


def register(subparsers):
    parser = subparsers.add_parser(
        "gemm", help="int8 A @ W (+ bias, requantize) on the systolic engine",
        description="Run Y = A @ W (+ bias) on the systolic engine, cycle-accurately in "
                    "Verilator. With --mult and --shift, Y is requantized to int8 "
                    "(DESIGN.md), else it is the raw int32 accumulator.")
    parser.add_argument("--a", required=True, metavar="A.npy", help="int8 M x K activations")
    parser.add_argument("--w", required=True, metavar="W.npy", help="int8 K x N weights")
    parser.add_argument("--bias", metavar="B.npy", help="int32 bias, N values")
    parser.add_argument("--mult", metavar="M.npy", help="int32 requant multipliers, N values")
    parser.add_argument("--shift", metavar="S.npy", help="int32 requant shifts, N values")
    parser.add_argument("--relu", action="store_true", help="clamp requantized values at 0")
    parser.add_argument("--out", required=True, metavar="Y.npy", help="where to write Y")
    parser.add_argument("--rows", type=int, help="array rows R (default: the config's)")
    parser.add_argument("--cols", type=int, help="array columns C (default: the config's)")
    parser.add_argument("--config", default="sim-small",
                        help="preset name or JSON file (default: sim-small)")
    parser.add_argument("--waves", metavar="FILE", help="write a VCD of the simulation")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def _load(path, what, dtype, ndim):
    if path is None:
        return None
    array = load_npy(path, what)
    if array.dtype != np.dtype(dtype) or array.ndim != ndim:
        raise CommandError(f"{what} in {path} must be a {ndim}-D {np.dtype(dtype).name} "
                           f"array, not {array.ndim}-D {array.dtype} of shape {array.shape}")
    return array


def _problem(args):
    from ..planner import plan_gemm

    a = _load(args.a, "A", np.int8, 2)
    w = _load(args.w, "W", np.int8, 2)
    if a.shape[1] != w.shape[0]:
        raise CommandError(f"A is {a.shape[0]}x{a.shape[1]} but W is "
                           f"{w.shape[0]}x{w.shape[1]}: K differs")
    n = w.shape[1]
    vectors = {name: _load(getattr(args, name), name, np.int32, 1)
               for name in ("bias", "mult", "shift")}
    for name, vector in vectors.items():
        if vector is not None and vector.shape != (n,):
            raise CommandError(f"{name} must have N = {n} values, not {vector.shape[0]}")
    if (vectors["mult"] is None) != (vectors["shift"] is None):
        raise CommandError("give both --mult and --shift (int8 output) or neither (int32)")
    if args.relu and vectors["mult"] is None:
        raise CommandError("--relu needs --mult and --shift (it applies to int8 output)")
    config = load_config(args.config)
    sizes = {}
    if args.rows is not None:
        sizes["systolic_rows"] = args.rows
    if args.cols is not None:
        sizes["systolic_cols"] = args.cols
    if sizes:
        config = config.replace(**sizes)
    try:
        plan_gemm(config, a.shape[0], a.shape[1], n)
    except ValueError as exc:
        raise CommandError(f"the problem does not fit config {args.config}: {exc}") from None
    return config, a, w, vectors


def run(args):
    config, a, w, vectors = _problem(args)
    from tritile.sim.gemm_sim import GemmProblem, run_gemm

    problem = GemmProblem(a, w, relu=args.relu, **vectors)
    try:
        problem.expected()
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    work = None
    if args.waves:
        work = Path(args.waves).resolve().parent / (Path(args.waves).stem + ".sim")
    (result,) = run_gemm(config, [problem], work_dir=work, waves=bool(args.waves))
    np.save(args.out, result.result)
    if args.waves:
        (work / "dump.vcd").replace(args.waves)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        figures = result.to_dict()
        print(f"wrote {args.out}: {result.result.shape[0]}x{result.result.shape[1]} "
              f"{result.result.dtype}", file=sys.stderr)
        print(f"cycles {figures['cycles']} (model {figures['predicted_cycles']}), "
              f"utilization {figures['utilization']:.1%}, "
              f"{figures['cycles_per_second'] / 1e6:.2f} M cycles/s")
    return 0
