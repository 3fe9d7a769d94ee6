"""Build every board's preset and tabulate the reports next to the reference figures.

The builds are the points of a sweep (:mod:`tritile.sw.sweep`): each runs the code of
``tritile build`` (up to 3 placement seeds until the clock is met) as a Dask task, on a
local cluster (one worker by default, so that each build's seconds are its own) or on
the cluster of ``--scheduler``; finished builds are kept in ``--out`` and reused by the
next run. Each report is stamped with the date and the commit it was measured on and
saved as ``--reports-dir``/CONFIG_NAME.json. Prints one JSON object and writes two tables
into docs/boards.md (between their markers; the prose around them is kept): the builds
against the reference, and the cells per SoC component of each build whose report has
them. Usage:
    python bench/boards.py [--builds icebreaker,icebreaker:icebreaker-ternary,...]
                           [--out build/bench] [--workers N | --scheduler ADDR]
                           [--reports REPORT.json ...]
A build is a board, optionally with ``:CONFIG`` (a preset name or JSON file).
"""

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

from doc_table import write_table
from tritile.hw.bitstream import flow_tools
from tritile.hw.board import BOARDS
from tritile.hw.component_costs import component_rows
from tritile.sw.config import PRESETS, load_config
from tritile.sw.sweep import SweepEntry, run_sweep
from tritile.sw.sweep_store import ResultStore, SweepPoint, tool_versions

# Placement seeds a build tries until its clock is met, as `tritile build` does.
ATTEMPTS = 3

START, END = "<!-- table: bench/boards.py -->", "<!-- /table -->"
COSTS_START = "<!-- table: bench/boards.py components -->"

# MARLANN on iCE40UP5K with the same yowasp flow (measured 2026-11-26; docs/boards.md).
REFERENCE = {"name": "MARLANN (iCE40UP5K)", "logic": "4093/5280", "dsp": "8/8",
             "bram": "25/30", "fmax_mhz": 29.4, "int8_macs_per_cycle": 16, "gmacs": 0.47}


def row(report):
    used = lambda r: (f"{report['resources'][r]['used']}/{report['resources'][r]['available']}"  # noqa: E731
                      if r in report["resources"] else "-")
    fmax = min(c["fmax_mhz"] for c in report["clocks"].values())
    target = min(c["target_mhz"] for c in report["clocks"].values())
    config = f"{report.get('config_name', '')} ({report['config_id']})"
    measured = report.get("measured", {})
    measured = f"{measured['date']} ({measured['commit']})" if measured else "-"
    return (f"| {report['board']} | {config} | {measured} | {used('logic')} | {used('dsp')} | "
            f"{used('bram')} | {used('spram')} | {fmax:.1f} / {target:.1f} | "
            f"{'yes' if report['timing_met'] else 'NO'} | {report['int8_macs_per_cycle']} | "
            f"{report['int8_gmacs']:.2f} | {report['ternary_macs_per_cycle']} | "
            f"{report['ternary_gmacs']:.2f} | {report['build_seconds']:.0f} |")


def markdown(reports):
    head = ("| board | config | measured (commit) | logic | DSP | BRAM | SPRAM "
            "| fmax / target (MHz) | timing met | int8 MAC/cycle | int8 GMAC/s "
            "| ternary MAC/cycle | ternary GMAC/s | build s |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    ref = REFERENCE
    reference = (f"| {ref['name']} (reference) | - | 2026-11-26 | {ref['logic']} | {ref['dsp']} | "
                 f"{ref['bram']} | 4/4 | {ref['fmax_mhz']} | - | "
                 f"{ref['int8_macs_per_cycle']} | {ref['gmacs']} | - | - | - |")
    return "\n".join([head, *(row(r) for r in reports), reference])


def components_markdown(reports):
    """Return a table of cells per SoC component for each report that has them."""
    tables = []
    for report in reports:
        components = report.get("components")
        if components is None:
            continue
        columns = list(components["total"])
        head = (f"**{report['board']}, {report.get('config_name', '')} "
                f"({report['config_id']})**\n\n| component | " + " | ".join(columns) + " |\n"
                + "|---" * (len(columns) + 1) + "|")
        rows = [(label.replace("  ", "&nbsp;&nbsp;"), costs) for label, costs in
                component_rows(components["modules"], components["root"])]
        rows += [("sum of the components", components["total"]),
                 ("flat build (same counts)", components["flat"]),
                 ("nextpnr (packed, placed)",
                  {r: report["resources"][r]["used"] if r in report["resources"] else "-"
                   for r in columns})]
        tables.append("\n".join([head, *(f"| {label} | " + " | ".join(
            str(costs.get(c, "-")) for c in columns) + " |" for label, costs in rows)]))
    return "\n\n".join(tables)


def _measured():
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=Path(__file__).parent).stdout.strip()
    return {"date": time.strftime("%Y-%m-%d"), "commit": commit or "unknown"}


def build(builds, args):
    """Build ``builds`` (``BOARD[:CONFIG]``) as one sweep; return their reports."""
    entries = []
    for build in builds:
        name, _, config = build.partition(":")
        board = BOARDS[name]
        config = load_config(config) if config else PRESETS[board.preset]
        point = SweepPoint(config, board.name, "pnr", 1,
                           tool_versions(flow_tools(board.family)), attempts=args.attempts)
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
    parser.add_argument("--attempts", type=int, default=ATTEMPTS,
                        help=f"placement seeds a build tries until its clock is met "
                             f"(default {ATTEMPTS})")
    parser.add_argument("--docs", default="docs/boards.md")
    parser.add_argument("--reports", nargs="+", metavar="REPORT",
                        help="tabulate these report.json files instead of building")
    parser.add_argument("--reports-dir", default="docs/boards",
                        help="where the reports of the builds are saved (default docs/boards)")
    args = parser.parse_args()
    if args.reports:
        reports = [json.loads(Path(path).read_text()) for path in args.reports]
    else:
        measured = _measured()      # the commit whose code is built
        reports = build(args.builds.split(","), args)
        for report in reports:
            report["measured"] = measured
            path = Path(args.reports_dir) / f"{report.get('config_name', report['board'])}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(report, indent=2) + "\n")
    write_table(args.docs, START, END,
                f"Built with `tritile build` (bench/boards.py) on a 2-core machine "
                f"({platform.machine()}), YoWASP yosys + nextpnr from PyPI, on the date "
                f"and commit of each row. Logic is iCE40 logic cells or ECP5 LUT4s "
                f"(TRELLIS_COMB); GMAC/s is the peak rate of each engine at the achieved "
                f"clock (the target when timing is met).\n\n{markdown(reports)}", "Boards")
    write_table(args.docs, COSTS_START, END,
                f"Cells per SoC component (`report.json`'s `components`, made as described above), "
                f"from the reports above that have them.\n\n{components_markdown(reports)}",
                "Boards")
    print(json.dumps({"boards": reports}, indent=2))


if __name__ == "__main__":
    main()
