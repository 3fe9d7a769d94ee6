"""``tritile sweep``: build a grid of configs on boards on a Dask cluster; Pareto report."""

import json
import sys
import time
from pathlib import Path

from ..cli import CommandError


def register(subparsers):
    parser = subparsers.add_parser(
        "sweep", help="synthesize (and place and route) many configs on a Dask cluster",
        description="Build every point of a sweep SPEC (a TOML or JSON file: base config, "
                    "grid and/or points, optional boards and ONNX model) with the code of "
                    "tritile build, one Dask task per point, on an embedded local cluster "
                    "or on the cluster of --scheduler. Finished points are kept in "
                    "OUT/points and reused; OUT/report.json, report.md and pareto.png "
                    "tabulate every point with the Pareto front of throughput against "
                    "logic per board.")
    parser.add_argument("spec", metavar="SPEC", help="the sweep spec (.toml or .json)")
    parser.add_argument("--board", action="append", default=[], metavar="NAME",
                        help="board to build on (repeatable; default: the spec's boards)")
    parser.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                        help="address of a running Dask scheduler (default: a local "
                             "cluster of process workers)")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="workers of the local cluster (default: one per core)")
    parser.add_argument("--stage", default="pnr", metavar="synth|pnr",
                        help="synth: synthesis and fit check only; pnr: also place and "
                             "route (default)")
    parser.add_argument("--seeds", type=int, default=1, metavar="K",
                        help="placement seeds 1..K, each its own point (pnr only)")
    parser.add_argument("--out", metavar="DIR",
                        help="output directory (default: build/sweep/SPEC's name)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=run)


def run(args):
    from ..sweep import plan_sweep, run_sweep
    from ..sweep_report import sweep_rows, write_report
    from ..sweep_spec import SweepError, load_spec
    from ..sweep_store import ResultStore
    from ..toolchain import ToolError

    def say(message):
        print(f"[sweep] {message}", file=sys.stderr, flush=True)

    if args.workers is not None and args.workers < 1:
        raise CommandError(f"--workers must be at least 1, not {args.workers}")
    if args.workers is not None and args.scheduler:
        raise CommandError("--workers sizes the local cluster; it cannot be given with "
                           "--scheduler")
    started = time.monotonic()
    out = Path(args.out or Path("build") / "sweep" / Path(args.spec).stem)
    store = ResultStore(out)
    try:
        spec = load_spec(args.spec)
        entries, invalid = plan_sweep(spec, args.board, args.stage, args.seeds)
    except (SweepError, ToolError) as exc:
        raise CommandError(str(exc)) from None
    for parameters, reason in invalid:
        say(f"invalid point {parameters}: {reason}")
    say(f"{len(entries)} point(s) to build or reuse, {len(invalid)} invalid, "
        f"stage {args.stage}; records in {out}")
    records, interrupted = {}, False
    try:
        records = run_sweep(entries, store, scheduler=args.scheduler,
                            workers=args.workers, say=say)
    except SweepError as exc:
        raise CommandError(str(exc)) from None
    except KeyboardInterrupt:
        interrupted = True
        records = {entry.point.key: store.get(entry.point) for entry in entries}
        records = {key: record for key, record in records.items() if record is not None}
    rows = sweep_rows(entries, records)
    summary = {"spec": str(spec.path), "base": spec.base_name, "stage": args.stage,
               "scheduler": args.scheduler or "local",
               "model": None if spec.model is None else str(spec.model),
               "complete": not interrupted,
               "wall_seconds": round(time.monotonic() - started, 1)}
    report = write_report(out, rows, invalid, summary)
    if interrupted:
        say(f"stopped; the report in {out} has the {len(records)} point(s) finished so far")
        raise KeyboardInterrupt
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print((out / "report.md").read_text(), end="")
    failed = [row for row in rows if row["status"] == "failed"]
    say(f"{len(rows)} point(s): {sum(r['status'] == 'ok' for r in rows)} built, "
        f"{sum(r['status'] == 'unfit' for r in rows)} unfit, {len(failed)} failed; "
        f"report {out / 'report.md'}, plot {out / 'pareto.png'} "
        f"({report['wall_seconds']:.1f} s)")
    return 1 if failed else 0
