"""Where a build's cells go: logic, flip-flops, block RAMs and DSPs per SoC component.

The real build flattens the design before mapping (cross-module optimization is part of
its QoR), after which a LUT no longer says which component it came from. So the costs
come from a second synthesis of the same RTLIL with the same ``synth_<family>`` command,
in which the component modules carry ``keep_hierarchy``: the root (the SoC) and its
submodules down to ``depth`` levels stay modules, everything below a kept module is
flattened into it, and everything outside the root (PLL, I/O buffers) into the top. The
real build's netlist and QoR are untouched. Before the mapping, ``opt_hier`` carries
constants and unused outputs across the kept boundaries, as flattening does; what the
boundaries still cost (logic shared or simplified across them) puts the sum of the
components above the flat build's (docs/boards.md gives the measured gap), which the
report gives next to it.

Logic on iCE40 is an estimate of packed logic cells, by nextpnr's packing rules: one cell
per LUT4, a flip-flop shares its driver's cell when that LUT4 drives nothing else, a carry
shares the cell of the LUT4 that adds the same bits, and every other flip-flop and carry
takes a cell of its own. On ECP5 it is LUT4s plus two per CCU2C, as in the fit check.
"""

import json
import re
from collections import Counter, defaultdict
from pathlib import Path

__all__ = ["METHOD", "COLUMNS", "costs_script", "module_costs", "component_costs",
           "component_rows", "totals"]

#: How the table is made, as the report says it.
METHOD = ("yosys synthesis of the build's RTLIL with the build's synth command and the "
          "components kept as modules (keep_hierarchy, opt_hier across them); logic on "
          "iCE40 is estimated packed logic cells, on ECP5 LUT4 + 2 per CCU2C")

#: Resources each component is given, in table order, per family.
COLUMNS = {
    "ice40": ("logic", "lut4", "ff", "carry", "bram", "spram", "dsp"),
    "ecp5": ("logic", "lut4", "ff", "ccu2c", "lutram", "bram", "dsp"),
}

# Cell types (or prefixes ending in "*") -> resource, per family.
_TYPES = {
    "ice40": {"SB_LUT4": "lut4", "SB_DFF*": "ff", "SB_CARRY": "carry",
              "SB_RAM40_4K*": "bram", "SB_SPRAM256KA": "spram", "SB_MAC16": "dsp"},
    "ecp5": {"LUT4": "lut4", "TRELLIS_FF": "ff", "CCU2C": "ccu2c",
             "TRELLIS_DPR16X4": "lutram", "DP16KD": "bram", "MULT18X18D": "dsp"},
}


def _resource(cell_type, family):
    for pattern, resource in _TYPES[family].items():
        if cell_type == pattern or (pattern.endswith("*") and
                                    cell_type.startswith(pattern[:-1])):
            return resource
    return None


def costs_script(synth_script, rtlil, root, netlist, depth=2, keep=None):
    """Return the yosys script of the statistics run, from the real build's script.

    ``synth_script`` is the build's yosys script (Amaranth's ``<name>.ys``) and ``rtlil``
    the text of the design it reads: the script is kept up to its ``synth_<family>``
    command, before which ``keep_hierarchy`` is set on ``<top>.<root>`` and its
    submodules down to ``depth`` levels; the command runs in two parts, with yosys'
    ``opt_hier`` (constants and unused signals across module boundaries) between its
    ``begin`` and ``coarse`` steps; ``write_json netlist`` follows. ``keep``, when
    given, chooses among those submodules: it is called with each one's path below the
    root (``engines.ternary_core``) and those for which it is false are flattened into
    their parents (:func:`tritile.hw.bitstream.measure_components` measures a module
    yosys fails on apart).
    """
    lines = synth_script.splitlines()
    synth = next((i for i, line in enumerate(lines) if line.strip().startswith("synth_")),
                 None)
    if synth is None:
        raise ValueError("the build's yosys script has no synth_<family> command")
    top = re.search(r"-top\s+(\S+)", lines[synth])[1]
    prefix = f"{top}.{root}"
    kept = [name for name in re.findall(r"^module \\(\S+)", rtlil, re.MULTILINE)
            if name == prefix or (name.startswith(prefix + ".") and
                                  name.count(".") - prefix.count(".") <= depth)]
    if prefix not in kept:
        raise ValueError(f"the design has no module {prefix}")
    if keep is not None:
        kept = [name for name in kept if name == prefix or keep(name[len(prefix) + 1:])]
    command = lines[synth].strip()
    return "\n".join([*lines[:synth],
                       "setattr -mod -set keep_hierarchy 1 " + " ".join(kept),
                       f"{command} -run :coarse",
                       # What flattening would give the flat build across the kept
                       # boundaries: constants driven into a component, outputs nobody
                       # reads. Two rounds, as a removed output may leave another unused.
                       "proc", "flatten", "opt_expr", "opt_clean",
                       "opt_hier", "opt_clean", "opt_hier", "opt_clean",
                       f"{command} -run coarse:", f"write_json {netlist}", ""])


def module_costs(module, family):
    """Return resource -> count of the cells of one module of a yosys JSON netlist.

    Instances of other modules of the design are not counted (they are components of
    their own); ``logic`` is the packed estimate of the module docstring.
    """
    cells = module.get("cells", {}).values()
    counts = Counter()
    for cell in cells:
        resource = _resource(cell["type"], family)
        if resource is not None:
            counts[resource] += 1
    if family == "ice40":
        counts["logic"] = _ice40_logic_cells(module)
    else:
        counts["logic"] = counts["lut4"] + 2 * counts["ccu2c"]
    return {resource: counts[resource] for resource in COLUMNS[family]}


def _ice40_logic_cells(module):
    cells = module.get("cells", {}).values()
    sinks = defaultdict(list)
    for cell in cells:
        directions = cell.get("port_directions", {})
        for port, bits in cell["connections"].items():
            if directions.get(port, "input") == "input":
                for bit in bits:
                    sinks[bit].append((cell["type"], port))
    for port in module.get("ports", {}).values():
        if port["direction"] != "input":
            for bit in port["bits"]:
                sinks[bit].append(("port", None))
    luts = [c["connections"] for c in cells if c["type"] == "SB_LUT4"]
    ffs = sum(1 for c in cells if c["type"].startswith("SB_DFF"))
    carries = [c["connections"] for c in cells if c["type"] == "SB_CARRY"]
    # A flip-flop joins the LUT4 whose output drives its D input and nothing else.
    ffs -= sum(1 for lut in luts
               if [(t.startswith("SB_DFF"), p) for t, p in sinks[lut["O"][0]]] == [(True, "D")])
    # A carry joins the LUT4 that sums its inputs: I1, I2 and I3 on its I0, I1 and CI
    # (nextpnr's rule; a carry whose CI is a constant always takes a cell of its own).
    sum_luts = Counter((lut["I1"][0], lut["I2"][0], lut["I3"][0]) for lut in luts)
    lone_carries = 0
    for carry in carries:
        key = (carry["I0"][0], carry["I1"][0], carry["CI"][0])
        if isinstance(key[2], int) and sum_luts[key] > 0:
            sum_luts[key] -= 1
        else:
            lone_carries += 1
    return len(luts) + ffs + lone_carries


def component_costs(netlist, family, top, root):
    """Return the component table of a statistics netlist (yosys ``write_json`` output).

    ``modules`` maps each kept module, named by its path below ``root`` (``link``,
    ``link.receiver``, ...; ``root`` itself for its own cells and ``board`` for the
    top's, PLL and I/O buffers included), to :func:`module_costs`; each counts its own
    cells only. ``total`` is their sum, ``root`` the root's name and ``method`` a sentence
    saying how the table was made.
    """
    netlist = json.loads(Path(netlist).read_text()) if isinstance(netlist, (str, Path)) \
        else netlist
    prefix = f"{top}.{root}"
    modules = {}
    for name, module in netlist["modules"].items():
        if module.get("attributes", {}).get("blackbox") or "cells" not in module:
            continue
        if name == top:
            label = "board"
        elif name == prefix:
            label = root
        elif name.startswith(prefix + "."):
            label = name[len(prefix) + 1:]
        else:
            continue
        modules[label] = module_costs(module, family)
    return {"method": METHOD, "root": root, "modules": modules,
            "total": totals(modules.values(), COLUMNS[family])}


def totals(costs, columns):
    """Return the sum of ``costs`` (rows of :func:`module_costs`) in each of ``columns``."""
    return {column: sum(row[column] for row in costs) for column in columns}


def component_rows(modules, root):
    """Return ``(label, costs)`` rows in table order: each component with its parts'
    costs included, followed by its own cells (when it has any) and its parts, indented;
    then ``root``'s own cells and the board's."""
    tops = [name for name in modules if "." not in name and name not in (root, "board")]
    rows = []
    for name in tops:
        parts = [p for p in modules if p.startswith(name + ".")]
        if not parts:
            rows.append((name, modules[name]))
            continue
        rows.append((name, totals([modules[name], *(modules[p] for p in parts)],
                                  modules[name])))
        if any(modules[name].values()):
            rows.append((f"  {name} (own)", modules[name]))
        rows += [(f"  {p}", modules[p]) for p in parts]
    rows.append((f"{root} (own)", modules[root]))
    rows.append(("board (PLL, I/O)", modules["board"]))
    return rows
