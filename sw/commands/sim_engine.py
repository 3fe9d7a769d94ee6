"""``tritile sim gemm`` and ``tritile sim ternary``: one engine on .npy files in Verilator.

Both subcommands take the same flags; what differs between the engines comes from the
registry (:mod:`tritile.sw.engines`). A problem larger than one engine call is split
into calls exactly as the host driver splits it (:mod:`tritile.sw.tiling`), all calls run
in one simulation, and the cycle figures of every call are reported.
"""

import json
import sys
from pathlib import Path

import numpy as np

from ..cli import CommandError, load_npy
from ..config import PRESETS, int8_accumulator_bits, load_config
from ..engines import ENGINES, engine
from ..tiling import tile_problem

#: ``tritile sim`` subcommands: engine, help, and the old spellings of the flags.
SUBCOMMANDS = {
    "gemm": ("systolic", "int8 X @ W (+ bias, requantize) on the systolic engine",
             {"x": "--a", "w": "--w", "tile_k": "--rows", "tile_n": "--cols"}),
    "ternary": ("ternary", "int8 X times ternary W on the MatMul-free ternary unit",
                {"x": "--x", "w": "--t", "tile_k": "--fan-in", "tile_n": "--lanes"}),
}

#: Largest problem a config sized to the problem holds in one call; beyond it, tiles.
SIZED_LIMITS = {"max_m": 256, "max_k": 512, "max_n": 256}


def register(subparsers):
    for command, (name, help_text, old) in SUBCOMMANDS.items():
        spec = engine(name)
        k_field, n_field = spec.size_fields
        parser = subparsers.add_parser(
            command, help=help_text, aliases=[spec.name] if spec.name != command else [],
            description=f"Run Y = X @ W (+ bias) on the {spec.name} engine, cycle-accurately "
                        f"in Verilator. With --mult and --shift, Y is requantized to int8 "
                        f"(docs/numerics.md), else it is the raw int32 accumulator. A "
                        f"problem larger than one engine call is tiled as the host driver "
                        f"tiles it.")
        parser.set_defaults(func=run, engine=spec.name)
        parser.add_argument(*dict.fromkeys(("--x", old["x"])), dest="x", required=True,
                            metavar="X.npy", help="int8 M x K activations")
        parser.add_argument(*dict.fromkeys(("--w", old["w"])), dest="w", required=True,
                            metavar="W.npy", help="int8 K x N weights")
        parser.add_argument("--bias", metavar="B.npy", help="int32 bias, N values")
        parser.add_argument("--mult", metavar="M.npy", help="int32 requant multipliers, N values")
        parser.add_argument("--shift", metavar="S.npy", help="int32 requant shifts, N values")
        parser.add_argument("--relu", action="store_true", help="clamp requantized values at 0")
        parser.add_argument("--packing", choices=spec.packings, default=spec.packings[0],
                            help=f"weight packing (default {spec.packings[0]})")
        parser.add_argument("--out", required=True, metavar="Y.npy", help="where to write Y")
        size = parser.add_argument_group(
            "engine (default: the sim-small preset)",
            "--config gives a design; the tile flags resize its engine, or, without "
            "--config, give a design sized to the problem")
        size.add_argument("--config", help="preset name or JSON file")
        size.add_argument("--tile-k", old["tile_k"], dest="tile_k", type=int,
                          help=f"K extent of one tile ({k_field})")
        size.add_argument("--tile-n", old["tile_n"], dest="tile_n", type=int,
                          help=f"N extent of one tile ({n_field})")
        parser.add_argument("--waves", metavar="FILE", help="write a VCD of the simulation")
        parser.add_argument("--json", action="store_true", help="print one JSON object")


def _load(path, what, dtype, ndim):
    if path is None:
        return None
    array = load_npy(path, what)
    if array.dtype != np.dtype(dtype) or array.ndim != ndim:
        raise CommandError(f"{what} in {path} must be a {ndim}-D {np.dtype(dtype).name} "
                           f"array, not {array.ndim}-D {array.dtype} of shape {array.shape}")
    return array


def _sized_config(spec, tile_k, tile_n, m, k, n):
    """Return a config of ``spec`` alone, sized to an M x K x N problem (up to SIZED_LIMITS)."""
    config = PRESETS["sim-small"]
    for other in ENGINES.values():
        if other is not spec:
            config = other.sized(config, 0, 0)
    tile_k, tile_n = (size if size is not None else default
                      for size, default in zip((tile_k, tile_n), spec.tile_size(config)))
    max_m, max_k, max_n = (min(size, SIZED_LIMITS[name])
                           for size, name in zip((m, k, n), ("max_m", "max_k", "max_n")))
    return spec.sized(config.replace(
        max_m=max_m, max_k=max_k, max_n=max_n, acc_width=int8_accumulator_bits(max_k),
        act_depth=max_m * max_k, out_depth=max(max_m * max_n, tile_n),
        **{spec.weight_depth_field: max(max_k * max_n, tile_k * tile_n)}), tile_k, tile_n)


def _problem(args):
    spec = engine(args.engine)
    x = _load(args.x, "X", np.int8, 2)
    w = _load(args.w, "W", np.int8, 2)
    if x.shape[1] != w.shape[0]:
        raise CommandError(f"X is {x.shape[0]}x{x.shape[1]} but W is "
                           f"{w.shape[0]}x{w.shape[1]}: K differs")
    m, k = x.shape
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
    if args.config is None and (args.tile_k is not None or args.tile_n is not None):
        config = _sized_config(spec, args.tile_k, args.tile_n, m, k, n)
    else:
        config = spec.sized(load_config(args.config or "sim-small"), args.tile_k, args.tile_n)
    config.check_engines(spec.name)
    try:
        spec.check_weights("W", w)
        tiling = tile_problem(spec, config, m, k, n)
    except ValueError as exc:
        raise CommandError(f"the problem cannot run on this config: {exc}") from None
    return spec, config, tiling, x, w, vectors


def run(args):
    spec, config, tiling, x, w, vectors = _problem(args)
    from tritile.sim.engine_sim import EngineProblem, run_engine

    calls = tiling.calls(raw=vectors["mult"] is None, relu=args.relu)
    problems = []
    for call in calls:
        bias, mult, shift = tiling.params(call, **vectors)
        problems.append(EngineProblem(
            x[slice(*call.rows), slice(*call.depth)], w[slice(*call.depth), slice(*call.cols)],
            bias=bias.astype(np.int32), mult=None if call.raw else mult.astype(np.int32),
            shift=None if call.raw else shift.astype(np.int32), relu=call.relu,
            packing=args.packing))
    work = None
    if args.waves:
        work = Path(args.waves).resolve().parent / (Path(args.waves).stem + ".sim")
    try:
        runs = run_engine(spec, config, problems, work_dir=work, waves=bool(args.waves))
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    result = tiling.assemble(calls, [r.out for r in runs], relu=args.relu, **vectors)
    np.save(args.out, result)
    if args.waves:
        (work / "dump.vcd").replace(args.waves)
    figures = _figures(spec, config, tiling, calls, runs)
    if args.json:
        print(json.dumps(figures, indent=1))
        return 0
    print(f"wrote {args.out}: {result.shape[0]}x{result.shape[1]} {result.dtype}",
          file=sys.stderr)
    if len(calls) > 1:
        for call, tile in zip(calls, figures["tiles"]):
            print(f"  tile rows {call.rows[0]}:{call.rows[1]} k {call.depth[0]}:"
                  f"{call.depth[1]} cols {call.cols[0]}:{call.cols[1]}: {tile['cycles']} "
                  f"cycles (model {tile['predicted_cycles']})")
    print(f"{figures['calls']} call(s) on {spec.name} {config.config_id}: "
          f"cycles {figures['cycles']} (model {figures['predicted_cycles']}), "
          f"utilization {figures['utilization']:.1%}, "
          f"{figures['cycles_per_second'] / 1e6:.2f} M cycles/s")
    return 0


def _figures(spec, config, tiling, calls, runs):
    """Return the whole problem's figures and each call's, for output."""
    cycles = sum(run.busy_cycles for run in runs)
    wall = sum(run.wall_seconds for run in runs)
    macs = tiling.m * tiling.k * tiling.n
    return {
        "engine": spec.name, "config_id": config.config_id,
        "tile": spec.tile_size(config), "m": tiling.m, "k": tiling.k, "n": tiling.n,
        "calls": len(calls), "cycles": cycles,
        "predicted_cycles": sum(run.predicted_cycles for run in runs),
        "mac_cycles": sum(run.mac_cycles for run in runs), "macs": macs,
        "utilization": macs / (spec.peak_macs_per_cycle(config) * cycles),
        "wall_seconds": wall, "cycles_per_second": cycles / wall if wall > 0 else 0.0,
        "tiles": [{"rows": call.rows, "depth": call.depth, "cols": call.cols,
                   **run.to_dict()} for call, run in zip(calls, runs)],
    }
