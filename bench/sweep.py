"""Wall time of a synthesis-only iCE40 sweep on 1 and on 2 Dask workers, and of its re-run.

The sweep is 4 points of the iCEBreaker preset (systolic_rows 2 or 4 x systolic_cols 2
or 3), each synthesized and fit-checked by ``tritile sweep --stage synth``. Each leg
starts from an empty output directory: the same 4 points on a local cluster of 1
worker, then of 2 workers, then ``tritile sweep`` again on the 2-worker directory (every
point reused, no cluster started). ``--external`` adds a leg on a separately started
``dask scheduler`` with 2 ``dask worker`` processes on 127.0.0.1 (stopped afterwards).

Prints one JSON object and writes the table into docs/sweeps.md between its markers.
Usage: ``python bench/sweep.py [--external] [--work DIR] [--docs docs/sweeps.md]``.
The machine's load average is recorded before and after each leg: the 1-vs-2-worker
ratio only means something on an otherwise idle machine.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from doc_table import write_table
from tritile.sw.sweep_cluster import dask_processes

SPEC = """base = "icebreaker"
boards = ["icebreaker"]
[grid]
systolic_rows = [2, 4]
systolic_cols = [2, 3]
"""
START, END = "<!-- table: bench/sweep.py -->", "<!-- /table -->"


def _load():
    return [round(value, 2) for value in os.getloadavg()]


def sweep_leg(name, spec, out, *args):
    """Run ``tritile sweep`` on ``spec`` into ``out``; return the leg's figures."""
    load_before = _load()
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "tritile.sw.cli", "sweep", str(spec),
                          "--stage", "synth", "--out", str(out), "--json", *args],
                         capture_output=True, text=True)
    seconds = time.monotonic() - started
    if run.returncode != 0:
        raise RuntimeError(f"{name}: tritile sweep failed ({run.returncode}):\n{run.stderr}")
    report = json.loads(run.stdout)
    print(f"{name}: {seconds:.1f} s", file=sys.stderr, flush=True)
    return {"leg": name, "wall_seconds": round(seconds, 1),
            "points": len(report["points"]),
            "built": sum(row["status"] == "ok" for row in report["points"]),
            "build_seconds": [row.get("build_seconds") for row in report["points"]],
            "reused": "building" not in run.stderr,
            "load_before": load_before, "load_after": _load()}


def external_leg(spec, out, logs):
    """Run the sweep on a dask scheduler + 2 dask workers started here, then stop them."""
    with dask_processes(2, logs) as (address, _):
        return sweep_leg("dask scheduler + 2 dask workers", spec, out,
                         "--scheduler", address)


def markdown(legs):
    lines = ["| leg | wall s | points built | build s per point | load average before "
             "-> after (1 min) |", "|---|---|---|---|---|"]
    for leg in legs:
        builds = ", ".join(f"{s:.0f}" for s in leg["build_seconds"] if s is not None)
        lines.append(f"| {leg['leg']} | {leg['wall_seconds']:.1f} | "
                     f"{0 if leg['reused'] else leg['built']} of {leg['points']} | "
                     f"{builds if not leg['reused'] else '(reused)'} | "
                     f"{leg['load_before'][0]} -> {leg['load_after'][0]} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--external", action="store_true",
                        help="also sweep on a separately started scheduler + 2 workers")
    parser.add_argument("--work", type=Path, help="keep the sweeps here")
    parser.add_argument("--docs", type=Path, default=Path("docs/sweeps.md"))
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="sweep-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    spec = work / "spec.toml"
    spec.write_text(SPEC)
    legs = [sweep_leg("local cluster, 1 worker", spec, work / "one", "--workers", "1"),
            sweep_leg("local cluster, 2 workers", spec, work / "two", "--workers", "2"),
            sweep_leg("re-run of the 2-worker sweep", spec, work / "two", "--workers", "2")]
    if args.external:
        legs.append(external_leg(spec, work / "external", work))
    ratio = legs[1]["wall_seconds"] / legs[0]["wall_seconds"]
    result = {"benchmark": "sweep", "spec": SPEC, "cpus": os.cpu_count(),
              "two_over_one_worker": round(ratio, 3), "legs": legs}
    write_table(args.docs, START, END,
                f"Measured by `python bench/sweep.py{' --external' if args.external else ''}`"
                f" on a {os.cpu_count()}-core machine ({platform.machine()}), "
                f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: the 4-point "
                f"synthesis-only iCE40 sweep on 2 workers took {ratio:.2f}x the wall time "
                f"of 1 worker.\n\n{markdown(legs)}", "Sweeps")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
