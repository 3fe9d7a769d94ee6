"""Measure the CPU an idle simulated board uses: share of one core while nobody talks to it.

Starts ``tritile sim-board`` (byte mode) for a config, connects, pings, then measures the
CPU time of the board's whole process tree over ``--seconds`` of silence. Prints one JSON
object (``cpu_share`` is CPU seconds per wall-clock second; 1.0 is a whole core).

    .venv/bin/python bench/idle_board.py --config sim-small --seconds 10
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time

from tritile.sw.config import load_config
from tritile.sw.device import Device


def _tree_cpu_seconds(root):
    """Return the CPU seconds used so far by process ``root`` and its descendants."""
    children = {}
    stats = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        stats[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += stats.get(pid, 0.0)
        todo += children.get(pid, [])
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="sim-small")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    board = subprocess.Popen([sys.executable, "-m", "tritile.sw.cli", "sim-board", "--port",
                              "0", "--config", args.config], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        for line in board.stdout:
            url = re.search(r"serving on (socket://\S+)", line)
            if url:
                break
        else:
            raise SystemExit("the simulated board did not start")
        with Device.open(url[1], config=args.config, progress=False) as dev:
            dev.ping()
            before, start = _tree_cpu_seconds(board.pid), time.monotonic()
            time.sleep(args.seconds)
            used, elapsed = _tree_cpu_seconds(board.pid) - before, time.monotonic() - start
            dev.ping()
    finally:
        board.terminate()
        board.wait(30)
    print(json.dumps({"config": load_config(args.config).config_id, "mode": "byte",
                      "idle_seconds": round(elapsed, 2), "cpu_seconds": round(used, 3),
                      "cpu_share": round(used / elapsed, 4)}))


if __name__ == "__main__":
    main()
