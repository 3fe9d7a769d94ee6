"""Cells of the link and the request path of a board's SoC, from the component table.

Builds the board's SoC as ``tritile build`` does up to synthesis (no place-and-route), with
its component table (:func:`tritile.hw.bitstream.measure_components`), and prints one JSON
object: the logic cells of each component of the link and the request path (``link.*``,
``requests.*``, ``responder``, ``writer``), their sums per group and in all, and the
preset. Usage:
    python bench/link_cells.py [--board icebreaker] [--config PRESET|FILE] [--out DIR]
                               [--no-fit-check]
It also gives every component's logic cells (``all_components``) and the design's
resources (``design``: the components' sum and the flat build's, logic cells, block RAMs
and the rest). With ``--no-fit-check`` a config that does not fit the board is measured
all the same (the fit check does not stop the synthesis), to show where its cells go.
"""

import argparse
import json
import sys
import time
from pathlib import Path

from tritile.hw.board import BOARDS
from tritile.hw.board_build import build_board
from tritile.sw.config import PRESETS, load_config

# The components of the link and the request path, by their path below the SoC.
GROUPS = ("link", "requests", "responder", "writer")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--board", default="icebreaker", choices=sorted(BOARDS))
    parser.add_argument("--config", help="a preset name or a JSON file (default: the "
                                         "board's preset)")
    parser.add_argument("--out", type=Path, default=Path("build/link_cells"))
    parser.add_argument("--no-fit-check", action="store_true",
                        help="measure a config that does not fit the board")
    args = parser.parse_args(argv)
    board = BOARDS[args.board]
    config = load_config(args.config) if args.config else PRESETS[board.preset]
    start = time.monotonic()
    report = build_board(board, config, args.out / args.board, stage="synth",
                         fit_check=not args.no_fit_check)
    if "components" not in report:
        sys.exit(f"link_cells: no component table: {report['components_error']}")
    cells = {name: costs["logic"] for name, costs in report["components"]["modules"].items()
             if name.split(".")[0] in GROUPS}
    groups = {group: sum(c for name, c in cells.items() if name.split(".")[0] == group)
              for group in GROUPS}
    json.dump({"board": board.name, "config_id": config.config_id, "unit": "logic cells",
               "components": cells, "groups": groups, "total": sum(cells.values()),
               "all_components": {name: costs["logic"] for name, costs
                                  in report["components"]["modules"].items()},
               "design": {key: report["components"][key] for key in ("total", "flat")},
               "seconds": round(time.monotonic() - start, 1)}, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
