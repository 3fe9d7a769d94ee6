"""Synthesize each preset and verify its netlist in Verilator (what ``tritile build --verify``
adds to a build); print the seconds of each step as JSON.

Usage:
    python bench/netlist.py [--builds icebreaker,icebreaker:icebreaker-ternary,...]
                            [--out build/bench-netlist]
A build is a board, optionally with ``:CONFIG`` (a preset name or JSON file). Each
result: synthesis seconds, seconds until the netlist board answered (the Verilator build
of the netlist, cached by its text, plus the simulator's start), seconds of the checks,
and the checks' names; a failed check is reported with its message.
"""

import argparse
import json
import platform
import time
from pathlib import Path

from tritile.hw.board import BOARDS
from tritile.hw.board_build import synthesize_board
from tritile.sim.netlist_check import NetlistMismatchError, verify_netlist
from tritile.sw.config import load_config


def bench(board_name, config_name, out):
    board = BOARDS[board_name]
    config = load_config(config_name or board.preset)
    out = Path(out) / f"{board_name}-{config.config_id}"
    started = time.monotonic()
    synthesize_board(board, config, out)
    result = {"board": board_name, "config": config_name or board.preset,
              "config_id": config.config_id,
              "synthesis_seconds": round(time.monotonic() - started, 1)}
    try:
        report = verify_netlist(out)
    except NetlistMismatchError as exc:
        return {**result, "netlist_verified": False, "error": str(exc)}
    checks = sum(c["seconds"] for c in report["netlist_checks"])
    return {**result, "netlist_verified": True,
            "netlist_startup_seconds": round(report["netlist_seconds"] - checks, 1),
            "netlist_check_seconds": round(checks, 1),
            "netlist_seconds": report["netlist_seconds"],
            "checks": [c["check"] for c in report["netlist_checks"]],
            "seed": report["netlist_seed"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--builds", default="icebreaker,icebreaker:icebreaker-ternary,"
                                            "orangecrab-25f,ulx3s-85f")
    parser.add_argument("--out", default="build/bench-netlist")
    args = parser.parse_args()
    results = []
    for build in args.builds.split(","):
        board_name, _, config_name = build.partition(":")
        results.append(bench(board_name, config_name or None, args.out))
        print(json.dumps(results[-1]), flush=True)
    print(json.dumps({"machine": f"{platform.machine()}, {platform.node()}",
                      "date": time.strftime("%Y-%m-%d"), "results": results}, indent=2))


if __name__ == "__main__":
    main()
