"""Build every board's preset and tabulate the reports next to the reference figures.

The builds are the points of a sweep (:mod:`tritile.sw.sweep`): each runs the code of
``tritile build`` (up to 3 placement seeds until the clock is met) as a Dask task, on a
local cluster (one worker by default, so that each build's seconds are its own) or on
the cluster of ``--scheduler``; finished builds are kept in ``--out`` and reused by the
next run. Prints one JSON object and writes the table into docs/boards.md (between its
table markers; the prose around it is kept). Usage:
    python bench/boards.py [--builds icebreaker,icebreaker:icebreaker-ternary,...]
                           [--out build/bench] [--workers N | --scheduler ADDR]
                           [--reports REPORT.json ...]
A build is a board, optionally with ``:CONFIG`` (a preset name or JSON file).
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from doc_table import write_table
from tritile.hw.bitstream import flow_tools
from tritile.hw.board import BOARDS
from tritile.sw.config import PRESETS, load_config
from tritile.sw.sweep import SweepEntry, run_sweep
from tritile.sw.sweep_store import ResultStore, SweepPoint, tool_versions

# Placement seeds a build tries until its clock is met, as `tritile build` does.
ATTEMPTS = 3

START, END = "<!-- table: bench/boards.py -->", "<!-- /table -->"

# MARLANN on iCE40UP5K with the same yowasp flow (measured 2026-11-26; docs/boards.md).
REFERENCE = {"name": "MARLANN (iCE40UP5K)", "logic": "4093/5280", "dsp": "8/8",
             "bram": "25/30", "fmax_mhz": 29.4, "int8_macs_per_cycle": 16, "gmacs": 0.47}


def row(report):
    used = lambda r: (f"{report['resources'][r]['used']}/{report['resources'][r]['available']}"  # noqa: E731
                      if r in report["resources"] else "-")
    fmax = min(c["fmax_mhz"] for c in report["clocks"].values())
    target = min(c["target_mhz"] for c in report["clocks"].values())
    config = f"{report.get('config_name', '')} ({report['config_id']})"
    return (f"| {report['board']} | {config} | {used('logic')} | {used('dsp')} | "
            f"{used('bram')} | {used('spram')} | {fmax:.1f} / {target:.1f} | "
            f"{'yes' if report['timing_met'] else 'NO'} | {report['int8_macs_per_cycle']} | "
            f"{report['int8_gmacs']:.2f} | {report['ternary_macs_per_cycle']} | "
            f"{report['ternary_gmacs']:.2f} | {report['build_seconds']:.0f} |")


def markdown(reports):
    head = ("| board | config | logic | DSP | BRAM | SPRAM | fmax / target (MHz) | timing met "
            "| int8 MAC/cycle | int8 GMAC/s | ternary MAC/cycle | ternary GMAC/s | build s |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    ref = REFERENCE
    reference = (f"| {ref['name']} (reference) | - | {ref['logic']} | {ref['dsp']} | "
                 f"{ref['bram']} | 4/4 | {ref['fmax_mhz']} | - | "
                 f"{ref['int8_macs_per_cycle']} | {ref['gmacs']} | - | - | - |")
    return "\n".join([head, *(row(r) for r in reports), reference])


def build(builds, args):
    """Build ``builds`` (``BOARD[:CONFIG]``) as one sweep; return their reports."""
    entries = []
    for build in builds:
        name, _, config = build.partition(":")
        board = BOARDS[name]
        config = load_config(config) if config else PRESETS[board.preset]
        point = SweepPoint(config, board.name, "pnr", 1,
                           tool_versions(flow_tools(board.family)), attempts=ATTEMPTS)
        entries.append(SweepEntry({"build": build}, point))
    records = run_sweep(entries, ResultStore(args.out), scheduler=args.scheduler,
                        workers=args.workers,
                        say=lambda line: print(f"[boards] {line}", file=sys.stderr))
    failed = [f"{entry.parameters['build']}: {records[entry.point.key]['status']}: "
              f"{records[entry.point.key]['reason']}" for entry in entries
              if records[entry.point.key]["status"] != "ok"]
    if failed:
        sys.exit("bench/boards.py: builds failed:\n  " + "\n  ".join(failed))
    return [records[entry.point.key]["report"] for entry in entries]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builds", default=",".join(BOARDS),
                        help="comma-separated BOARD or BOARD:CONFIG (default: every preset)")
    parser.add_argument("--out", default="build/bench",
                        help="sweep directory: records of finished builds and build files")
    parser.add_argument("--workers", type=int, default=1,
                        help="workers of the local cluster (default 1)")
    parser.add_argument("--scheduler", help="address of a Dask scheduler to build on")
    parser.add_argument("--docs", default="docs/boards.md")
    parser.add_argument("--reports", nargs="+", metavar="REPORT",
                        help="tabulate these report.json files instead of building")
    args = parser.parse_args()
    if args.reports:
        reports = [json.loads(Path(path).read_text()) for path in args.reports]
    else:
        reports = build(args.builds.split(","), args)
    write_table(args.docs, START, END,
                f"Built with `tritile build` (bench/boards.py) on a 2-core machine "
                f"({platform.machine()}), YoWASP yosys + nextpnr from PyPI, "
                f"{time.strftime('%Y-%m-%d')}. Logic is iCE40 logic cells or ECP5 LUT4s "
                f"(TRELLIS_COMB); GMAC/s is the peak rate of each engine at the achieved "
                f"clock (the target when timing is met).\n\n{markdown(reports)}", "Boards")
    print(json.dumps({"boards": reports}, indent=2))


if __name__ == "__main__":
    main()
