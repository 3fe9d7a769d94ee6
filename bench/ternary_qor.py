"""Quality of results of the ternary unit alone: place and route on iCE40UP5K and ECP5.

For each (target, L, P) the script generates :class:`tritile.hw.ternary.TernaryUnit`
inside a two-pin harness (a serial shift chain drives every input, every output is XOR-
folded into one registered pin, so nothing is optimized away and the design fits the
package), synthesizes it with YoWASP yosys (``synth_ice40`` / ``synth_ecp5``), places and
routes it with YoWASP nextpnr and reads utilization and fmax from nextpnr's ``--report``.
The harness costs about one logic cell per input bit plus a small registered XOR tree; it
is counted in the figures.

Each unit is generated with memories of 256 words (32 K groups x 8 N tiles), so the
weight memory holds ``256 * L * P`` trits at 2 bits each.

Each (target, L, P) is a point of a sweep (:mod:`tritile.sw.sweep`) built by
:func:`build_qor_point`: a Dask task on a local cluster (one worker by default, so that
each row's seconds are its own; ``--workers N``). With ``--work DIR`` the finished
points are kept there and reused by the next run.

Usage: ``python bench/ternary_qor.py [--only ice40|ecp5-25k|ecp5-85k] [--quick]
[--shapes 8x16,16x8] [--workers N] [--work DIR]``; prints
one JSON object (a list of rows under ``"results"``) on stdout, progress on stderr.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from amaranth.hdl import Cat, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from tritile.hw.ternary import TernaryUnit
from tritile.sim.verilator import verilog_of
from tritile.sw import AcceleratorConfig
from tritile.sw.sweep import SweepEntry, run_sweep
from tritile.sw.sweep_store import ResultStore, SweepPoint, tool_versions
from tritile.sw.ternary_layout import ternary_geometry
from tritile.sw.toolchain import find_tool

# (name, yosys synth command, nextpnr tool, device arguments, target MHz, logic resource,
#  DSP resource, block RAM resource, ternary_read_stages, [(L, P), ...]). iCE40 reads block
#  RAM straight into the lanes (a register would cost a logic cell per bit); ECP5 has
#  flip-flops to spare and needs the register for its clock.
TARGETS = [
    ("ice40-up5k", "synth_ice40", "nextpnr-ice40", ["--up5k", "--package", "sg48"], 40,
     "ICESTORM_LC", "ICESTORM_DSP", "ICESTORM_RAM", 0, [(4, 8), (8, 8), (8, 16)]),
    ("ecp5-25k", "synth_ecp5", "nextpnr-ecp5", ["--25k", "--package", "CABGA256"], 100,
     "TRELLIS_COMB", "MULT18X18D", "DP16KD", 1, [(16, 16), (32, 16)]),
    ("ecp5-85k", "synth_ecp5", "nextpnr-ecp5", ["--85k", "--package", "CABGA381"], 100,
     "TRELLIS_COMB", "MULT18X18D", "DP16KD", 1, [(32, 16), (64, 16)]),
]
QUICK = {"ice40-up5k": [(8, 16)], "ecp5-25k": [(16, 16)], "ecp5-85k": [(64, 16)]}


def bench_config(lanes, fan_in, read_stages=0):
    """Return the config the benchmark builds: 32 K groups, 8 N tiles, 8 rows."""
    max_k, max_n, max_m = 32 * fan_in, 8 * lanes, 8
    return AcceleratorConfig(ternary_lanes=lanes, ternary_fan_in=fan_in,
                             ternary_read_stages=read_stages, max_m=max_m,
                             max_k=max_k, max_n=max_n, act_depth=max_m * max_k,
                             trit_depth=max_k * max_n, out_depth=max_m * max_n)


class QoRHarness(wiring.Component):
    """The unit behind one serial input and one output pin (see the module docstring)."""

    sin: In(1)
    sout: Out(1)

    def __init__(self, config):
        self.config = config
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = unit = TernaryUnit(self.config)
        inputs, outputs = [], []
        for path, member, value in unit.signature.flatten(unit):
            (inputs if member.flow == In else outputs).append(Value.cast(value))
        width = sum(len(v) for v in inputs)
        chain = Signal(width)
        m.d.sync += chain.eq((chain << 1) | self.sin)
        offset = 0
        for value in inputs:
            m.d.comb += value.eq(chain[offset:offset + len(value)])
            offset += len(value)
        # A registered tree of 4-input XORs, so that the harness is never the critical
        # path (a chain of XORs was, at about 41 MHz on iCE40).
        bits = [value[i] for value in outputs for i in range(len(value))]
        while len(bits) > 1:
            level = []
            for i in range(0, len(bits), 4):
                folded = Signal(name=f"fold{len(bits)}_{i // 4}")
                m.d.sync += folded.eq(Cat(*bits[i:i + 4]).xor())
                level.append(folded)
            bits = level
        m.d.comb += self.sout.eq(bits[0])
        return m


def _run(argv, log_path, cwd):
    # YoWASP tools see only the directory they run in, so paths are relative to it.
    with open(cwd / log_path, "w") as log:
        result = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
    if result.returncode:
        tail = (cwd / log_path).read_text().splitlines()[-15:]
        raise RuntimeError(f"{argv[0]} failed ({result.returncode}):\n" + "\n".join(tail))


def place_and_route(target, lanes, fan_in, read_stages, work):
    """Synthesize, place and route one unit; return its row of figures."""
    name, synth, pnr, device, mhz, lc_res, dsp_res, ram_res, _, _ = target
    config = bench_config(lanes, fan_in, read_stages)
    stem = f"{name}-L{lanes}-P{fan_in}-R{read_stages}"
    (work / f"{stem}.v").write_text(verilog_of(QoRHarness(config), "top"))
    started = time.monotonic()
    _run([find_tool("yosys").path, "-q", "-p",
          f"read_verilog {stem}.v; {synth} -top top -json {stem}.json"],
         f"{stem}.yosys.log", work)
    # --timing-allow-fail: a design that misses the target clock still gets its fmax row.
    _run([find_tool(pnr).path, *device, "--json", f"{stem}.json", "--freq", str(mhz),
          "--report", f"{stem}.report.json", "--seed", "1", "--timing-allow-fail"],
         f"{stem}.nextpnr.log", work)
    report = json.loads((work / f"{stem}.report.json").read_text())
    used = {k: v["used"] for k, v in report["utilization"].items()}
    available = {k: v["available"] for k, v in report["utilization"].items()}
    fmax = min(clock["achieved"] for clock in report["fmax"].values())
    macs = lanes * fan_in
    return {
        "target": name, "lanes": lanes, "fan_in": fan_in, "read_stages": read_stages,
        "macs_per_cycle": macs,
        "logic_cells": used.get(lc_res, 0), "logic_cells_available": available[lc_res],
        "logic_fraction": round(used.get(lc_res, 0) / available[lc_res], 4),
        "logic_cells_per_lane": round(used.get(lc_res, 0) / lanes, 1),
        "dsps": used.get(dsp_res, 0), "block_rams": used.get(ram_res, 0),
        "block_rams_available": available.get(ram_res, 0),
        "fmax_mhz": round(fmax, 2), "target_mhz": mhz,
        "gmacs_per_second": round(macs * fmax / 1000, 3),
        "weight_bits_per_trit": ternary_geometry(config).bits_per_trit,
        "seconds": round(time.monotonic() - started, 1),
    }


def build_qor_point(point, build_dir):
    """Sweep builder: place and route the point's unit on its target; return its record."""
    target = next(t for t in TARGETS if t[0] == point.board)
    config = point.config
    try:
        row = place_and_route(target, config.ternary_lanes, config.ternary_fan_in,
                              config.ternary_read_stages, Path(build_dir))
    except RuntimeError as exc:
        return point.record("failed", str(exc))
    return point.record("ok", report=row)


def qor_point(target, lanes, fan_in, read_stages):
    """Return the sweep point of one unit on ``target``."""
    return SweepPoint(bench_config(lanes, fan_in, read_stages), target[0], "pnr", 1,
                      tool_versions(("yosys", target[2])),
                      builder=f"{Path(__file__).stem}:{build_qor_point.__name__}")


def markdown_table(results):
    """Return the rows as the Markdown table of docs/ternary.md."""
    lines = ["| target | L x P | read stages | MACs/cycle | logic cells (% of device) "
             "| LCs per lane | DSPs | block RAMs | fmax MHz (target) | GMAC/s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in results:
        shape = f"{row['lanes']} x {row['fan_in']} | {row.get('read_stages', '')}"
        if "error" in row:
            errors = [line for line in row["error"].splitlines() if "ERROR" in line]
            reason = (errors or row["error"].splitlines())[-1][:90].replace("|", "/")
            lines.append(f"| {row['target']} | {shape} | {row['lanes'] * row['fan_in']} "
                         f"| failed: {reason} | | | | | |")
            continue
        lines.append(
            f"| {row['target']} | {shape} | {row['macs_per_cycle']} | {row['logic_cells']} "
            f"({row['logic_fraction']:.0%}) | {row['logic_cells_per_lane']} | {row['dsps']} "
            f"| {row['block_rams']} | {row['fmax_mhz']} ({row['target_mhz']}) "
            f"| {row['gmacs_per_second']} |")
    return "\n".join(lines)


def _shapes(text):
    """Parse ``"8x16,16x8"`` into ``[(8, 16), (16, 8)]``."""
    try:
        shapes = [tuple(int(v) for v in item.split("x")) for item in text.split(",")]
    except ValueError:
        shapes = []
    if not shapes or any(len(shape) != 2 or min(shape) < 1 for shape in shapes):
        raise argparse.ArgumentTypeError(
            f"shapes must be LxP pairs of positive integers joined by commas, not {text!r}")
    return shapes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=[t[0] for t in TARGETS])
    parser.add_argument("--quick", action="store_true",
                        help="one shape per target (the one the targets name)")
    parser.add_argument("--shapes", type=_shapes, metavar="LxP[,LxP...]",
                        help="build these (lanes, fan-in) shapes instead of the target's")
    parser.add_argument("--read-stages", type=int, choices=(0, 1, 2),
                        help="ternary_read_stages (default: 0 on iCE40, 1 on ECP5)")
    parser.add_argument("--work", type=Path,
                        help="keep the build files and records here (and reuse them)")
    parser.add_argument("--workers", type=int, default=1,
                        help="workers of the local Dask cluster (default 1)")
    parser.add_argument("--markdown", type=Path, nargs="+", metavar="JSON",
                        help="print the table of earlier runs' JSON files instead")
    args = parser.parse_args(argv)
    if args.markdown:
        rows = [row for path in args.markdown
                for row in json.loads(path.read_text())["results"]]
        print(markdown_table(rows))
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="ternary-qor-"))
    entries = []
    for target in TARGETS:
        if args.only and target[0] != args.only:
            continue
        shapes = args.shapes or (QUICK[target[0]] if args.quick else target[-1])
        stages = target[-2] if args.read_stages is None else args.read_stages
        entries += [SweepEntry({"lanes": lanes, "fan_in": fan_in, "read_stages": stages},
                               qor_point(target, lanes, fan_in, stages))
                    for lanes, fan_in in shapes]
    # The build processes import this script's module by name (the points' builder).
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))
    records = run_sweep(entries, ResultStore(work), workers=args.workers,
                        say=lambda line: print(line, file=sys.stderr, flush=True))
    results = []
    for entry in entries:
        record = records[entry.point.key]
        results.append(record["report"] if record["status"] == "ok" else
                       {"target": entry.point.board, **entry.parameters,
                        "error": record["reason"]})
    print(json.dumps({"benchmark": "ternary_qor", "results": results}, indent=2))


if __name__ == "__main__":
    main()
