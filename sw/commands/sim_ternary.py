"""``tritile sim ternary``: run ``q @ T`` on the ternary engine in Verilator."""

import json
import os
import sys
from pathlib import Path

import numpy as np

from ..cli import CommandError, load_npy
from ..config import load_config
from ..ternary_layout import PACKINGS


def register(subparsers):
    parser = subparsers.add_parser(
        "ternary", help="int8 activations x ternary weights on the ternary unit",
        description="Run X (int8, M x K) times T (int8 in {-1, 0, 1}, K x N) on the "
                    "MatMul-free ternary engine in Verilator and save the int32 "
                    "accumulators, or int8 results when --mult and --shift are given.")
    parser.add_argument("--x", required=True, type=Path, help="X.npy, int8 M x K")
    parser.add_argument("--t", required=True, type=Path, help="T.npy, int8 K x N in {-1,0,1}")
    parser.add_argument("--out", required=True, type=Path, help="where to save the result")
    parser.add_argument("--packing", choices=PACKINGS, default="base3",
                        help="on-chip trit packing (default base3)")
    shape = parser.add_argument_group("engine shape (default: the sim-small preset)")
    shape.add_argument("--lanes", type=int, help="L, output channels per cycle")
    shape.add_argument("--fan-in", type=int, help="P, inputs each lane adds per cycle")
    shape.add_argument("--config", help="preset name or config JSON file")
    parser.add_argument("--mult", type=Path, help="M.npy, int32 requant multipliers (N)")
    parser.add_argument("--shift", type=Path, help="S.npy, int32 requant shifts (N)")
    parser.add_argument("--relu", action="store_true", help="clamp requantized results at 0")
    parser.add_argument("--json", action="store_true", help="print the run's figures as JSON")
    parser.set_defaults(func=run)


def _config(args):
    if args.config and (args.lanes is not None or args.fan_in is not None):
        raise CommandError("give --config or --lanes/--fan-in, not both")
    config = load_config(args.config or "sim-small")
    if args.lanes is not None or args.fan_in is not None:
        changes = {}
        if args.lanes is not None:
            changes["ternary_lanes"] = args.lanes
        if args.fan_in is not None:
            changes["ternary_fan_in"] = args.fan_in
        config = config.replace(**changes)
    return config


def run(args):
    config = _config(args)
    q = load_npy(args.x, "X")
    T = load_npy(args.t, "T")
    if (args.mult is None) != (args.shift is None):
        raise CommandError("give both --mult and --shift, or neither (raw int32 output)")
    mult = load_npy(args.mult, "mult") if args.mult else None
    shift = load_npy(args.shift, "shift") if args.shift else None
    if args.relu and mult is None:
        raise CommandError("--relu needs --mult and --shift (raw int32 has no ReLU)")

    from tritile.sim.ternary_sim import TernaryProblem, run_ternary

    problem = TernaryProblem(q, T, args.packing, mult=mult, shift=shift, relu=args.relu)
    # The simulator process writes its log to file descriptor 1; keep stdout for results.
    sys.stdout.flush()
    saved_stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        (result,) = run_ternary(config, [problem])
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    finally:
        os.dup2(saved_stdout, 1)
        os.close(saved_stdout)
    np.save(args.out, result.out)
    figures = {**result.figures(), "packing": args.packing,
               "lanes": config.ternary_lanes, "fan_in": config.ternary_fan_in,
               "out": str(args.out)}
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(f"{q.shape[0]}x{q.shape[1]} @ {T.shape[0]}x{T.shape[1]} on "
              f"L={config.ternary_lanes} P={config.ternary_fan_in} ({args.packing}): "
              f"{result.busy_cycles} cycles (predicted {result.predicted_cycles}), "
              f"utilization {result.utilization:.1%}; saved {args.out}", file=sys.stderr)
    return 0

