"""Where the ternary unit's cells go on iCE40: logic cells per part of the unit alone.

Generates :class:`tritile.hw.ternary.TernaryUnit` for a preset or config file with the
iCEBreaker platform (so its memories are what the board build makes of them), and
synthesizes it with yosys' ``synth_ice40`` twice: once flat (the unit's total) and once
with its parts kept as modules (``keep_hierarchy``, ``opt_hier`` across them, as the
SoC's component table does: :mod:`tritile.hw.component_costs`). Logic is the packed
estimate of :func:`tritile.hw.component_costs.module_costs`. Usage:
    python bench/ternary_cells.py [--config icebreaker-ternary]
prints one JSON object: ``parts`` (each part's resources, the unit's own cells as
``unit``), their ``total`` and the ``flat`` synthesis.
"""

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from amaranth.back import rtlil
from amaranth_boards.icebreaker import ICEBreakerPlatform

from tritile.hw.component_costs import COLUMNS, module_costs
from tritile.hw.ternary import TernaryUnit
from tritile.sw.config import load_config
from tritile.sw.toolchain import find_tool

def _kept(text, flat):
    """Return the modules to keep: the unit, and unless ``flat`` its submodules and the
    memories' (the memories themselves, the base-3 decoder and transcoder)."""
    if flat:
        return ["unit"]
    names = re.findall(r"^module \\(\S+)", text, re.MULTILINE)
    return [name for name in names
            if name.count(".") <= 1 or re.fullmatch(r"unit\.memories\.[^.]+", name)]


def _synthesize(text, work, flat):
    (work / "unit.il").write_text(text)
    script = "\n".join([
        "read_rtlil unit.il",
        "setattr -mod -set keep_hierarchy 1 " + " ".join(_kept(text, flat)),
        "synth_ice40 -top unit -run :coarse",
        "proc", "flatten", "opt_expr", "opt_clean",
        "opt_hier", "opt_clean", "opt_hier", "opt_clean",
        "synth_ice40 -top unit -run coarse:", "write_json unit.json", ""])
    (work / "unit.ys").write_text(script)
    subprocess.run([find_tool("yosys").path, "-q", "-l", "yosys.log", "unit.ys"],
                   cwd=work, check=True)
    netlist = json.loads((work / "unit.json").read_text())
    return {name: module_costs(module, "ice40")
            for name, module in netlist["modules"].items()
            if "cells" in module and not module.get("attributes", {}).get("blackbox")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="icebreaker-ternary",
                        help="a preset name or a JSON file")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    start = time.monotonic()
    text = rtlil.convert(TernaryUnit(config), name="unit", platform=ICEBreakerPlatform())
    with tempfile.TemporaryDirectory() as tmp:
        parts = _synthesize(text, Path(tmp), flat=False)
        flat = _synthesize(text, Path(tmp), flat=True)["unit"]
    total = {r: sum(p[r] for p in parts.values()) for r in COLUMNS["ice40"]}
    json.dump({"config_id": config.config_id,
               "lanes": config.ternary_lanes, "fan_in": config.ternary_fan_in,
               "unit": "iCE40 logic cells (packed estimate) and cells",
               "parts": parts, "total": total, "flat": flat,
               "seconds": round(time.monotonic() - start, 1)}, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
