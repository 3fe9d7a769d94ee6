"""``tritile build``: synthesize, fit-check, place and route the SoC for a board."""

import json
import sys
from pathlib import Path

from ..cli import CommandError
from ..config import load_config


def register(subparsers):
    parser = subparsers.add_parser(
        "build", help="build a bitstream for a board (yosys + nextpnr from pip)",
        description="Build the accelerator SoC for an open FPGA board with yosys and "
                    "nextpnr (YoWASP from pip unless YOSYS, NEXTPNR_ICE40, ... are set). "
                    "Writes the bitstream and report.json to the output directory.")
    parser.add_argument("--board", required=True,
                        help="icebreaker, ulx3s-85f or orangecrab-25f")
    parser.add_argument("--config", help="preset name or JSON file (default: the board's "
                                         "preset)")
    parser.add_argument("--out", help="output directory (default: build/BOARD)")
    parser.add_argument("--seed", type=int, default=1, help="first nextpnr placement seed")
    parser.add_argument("--attempts", type=int, default=3,
                        help="seeds to try until the clock is met (default 3); if none "
                             "meets it, the one with the highest fmax is kept")
    parser.add_argument("--verify", action="store_true",
                        help="after synthesis, run the device checks on the synthesized "
                             "netlist in Verilator (vendor cell models, PLL bypassed) and "
                             "fail the build on any difference from the golden model")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=run)


def _unverified(out_dir):
    """The report's entry of a build without ``--verify``."""
    return {"netlist_verified": False}


def run(args):
    from tritile.hw.bitstream import BuildError, FitError
    from tritile.hw.board_build import build_board
    from tritile.hw.board import get_board

    try:
        board = get_board(args.board)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    config = load_config(args.config) if args.config else None
    out = Path(args.out or Path("build") / board.name)
    if args.attempts < 1:
        raise CommandError(f"--attempts must be at least 1, not {args.attempts}")

    verify, mismatch = _unverified, ()
    if args.verify:
        from tritile.sim.netlist import NetlistError
        from tritile.sim.netlist_check import NetlistMismatchError, verify_netlist

        verify, mismatch = verify_netlist, (NetlistMismatchError, NetlistError)
    try:
        report = build_board(board, config, out, seed=args.seed, attempts=args.attempts,
                             after_synthesis=verify)
    except (FitError, BuildError) as exc:
        raise CommandError(str(exc)) from None
    except mismatch as exc:
        raise CommandError(f"{exc}; no bitstream was built") from None
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    if not report["timing_met"]:
        print(f"tritile build: timing not met (see the clocks above); the bitstream is "
              f"written but may not work at {report['config']['clock_hz'] / 1e6:g} MHz: "
              f"lower clock_hz in the config", file=sys.stderr)
        return 1
    return 0


def format_report(report):
    """Return a short human-readable summary of a build report."""
    lines = [f"{report['board']} ({report['device']}), config {report['config_id']}: "
             f"{report['bitstream']}"]
    for name, r in report["resources"].items():
        lines.append(f"  {name:<6} {r['used']:>6} / {r['available']:<6} "
                     f"({100 * r['used'] / r['available']:.0f}%)")
    for name, c in report["clocks"].items():
        lines.append(f"  clock {name}: fmax {c['fmax_mhz']:.1f} MHz, target "
                     f"{c['target_mhz']:.1f} MHz, {'met' if c['met'] else 'NOT MET'}")
    lines.append(f"  int8 {report['int8_macs_per_cycle']} MAC/cycle = "
                 f"{report['int8_gmacs']:.2f} GMAC/s; ternary "
                 f"{report['ternary_macs_per_cycle']} MAC/cycle = "
                 f"{report['ternary_gmacs']:.2f} GMAC/s at the achieved clock")
    if report.get("netlist_verified"):
        lines.append(f"  netlist verified in Verilator: "
                     f"{len(report['netlist_checks'])} checks match the golden model "
                     f"({report['netlist_seconds']:.0f} s)")
    if "components" in report:
        lines += format_components(report["components"])
    elif "components_error" in report:
        lines.append(f"  cells per component unavailable: {report['components_error']}")
    seeds = report.get("seeds_tried", [])
    placed = f" (placement seed {report['seed']}, {len(seeds)} tried)" if seeds else ""
    lines.append(f"  built in {report['build_seconds']:.0f} s{placed}")
    return "\n".join(lines)


def format_components(components):
    """Return the lines of a build report's table of cells per SoC component."""
    from tritile.hw.component_costs import component_rows

    columns = list(components["total"])
    total, flat = components["total"], components["flat"]
    lines = [f"  cells per component (second synthesis, hierarchy kept; its sum has "
             f"{total['logic']} logic, the flat build {flat['logic']}):",
             f"    {'component':<28}" + "".join(f"{c:>7}" for c in columns)]
    for label, costs in component_rows(components["modules"], components["root"]):
        lines.append(f"    {label:<28}" + "".join(f"{costs[c]:>7}" for c in columns))
    for label, costs in (("sum", total), ("flat build", flat)):
        lines.append(f"    {label:<28}" + "".join(f"{costs[c]:>7}" for c in columns))
    for module in components.get("apart", ()):
        lines.append(f"    ({module}: measured in a synthesis of its own, yosys failed on "
                     f"it beside the others)")
    return lines
