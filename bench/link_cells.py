"""Cells of the link and the request path of a board's SoC, from the statistics synthesis.

Runs only the second synthesis of ``tritile build`` (the components kept as modules,
:func:`tritile.hw.component_costs.costs_script`) on the board's SoC, without the flat
build or place-and-route, and prints one JSON object: the cells of each component of
the link and the request path (``link.*``, ``requests.*``, ``responder``, ``writer``),
their sum and the preset. Usage:
    python bench/link_cells.py [--board icebreaker] [--config PRESET|FILE] [--out DIR]
"""

import argparse
import json
import sys
import time
from pathlib import Path

from tritile.hw.bitstream import DEVICES, _run, _tool
from tritile.hw.dsp import ice40_dual_mul8_restore
from tritile.hw.board import BOARDS, SOC_MODULE, BoardTop
from tritile.hw.component_costs import component_costs, costs_script
from tritile.sw.config import PRESETS, load_config

# The components of the link and the request path, by their path below the SoC.
PREFIXES = ("link", "requests", "responder", "writer")


def measure(board, config, out_dir):
    """Return the component table of ``board``'s SoC built for ``config`` into ``out_dir``."""
    device = DEVICES[board.device]
    synth_opts = ["-dsp"] if device.family == "ice40" else []
    after = [ice40_dual_mul8_restore()] if device.family == "ice40" else []
    plan = board.make_platform().prepare(BoardTop(board, config), "top", emit_src=False,
                                         synth_opts=synth_opts,
                                         script_after_synth="\n".join(after))
    plan.extract(str(out_dir))
    script = costs_script((out_dir / "top.ys").read_text(), (out_dir / "top.il").read_text(),
                          SOC_MODULE, "top.components.json")
    (out_dir / "top.components.ys").write_text(script)
    _run([_tool("yosys").path, "-q", "top.components.ys"], out_dir, "yosys-components.log")
    return component_costs(out_dir / "top.components.json", device.family, "top", SOC_MODULE)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--board", default="icebreaker", choices=sorted(BOARDS))
    parser.add_argument("--config", help="a preset name or a JSON file (default: the "
                                         "board's preset)")
    parser.add_argument("--out", type=Path, default=Path("build/link_cells"))
    args = parser.parse_args(argv)
    board = BOARDS[args.board]
    config = load_config(args.config) if args.config else PRESETS[board.preset]
    out_dir = args.out / args.board
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    table = measure(board, config, out_dir)
    parts = {name: costs["logic"] for name, costs in table["modules"].items()
             if name.split(".")[0] in PREFIXES}
    groups = {prefix: sum(c for n, c in parts.items() if n.split(".")[0] == prefix)
              for prefix in PREFIXES}
    json.dump({"board": board.name, "config_id": config.config_id, "unit": "logic cells",
               "components": parts, "groups": groups, "total": sum(parts.values()),
               "seconds": round(time.monotonic() - start, 1)}, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
