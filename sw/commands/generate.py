"""``tritile generate``: write the RTL of the SoC or of one engine, plus a JSON sidecar."""

import json
from pathlib import Path

from ..cli import CommandError
from ..engines import ENGINES

TOPS = ("soc", *ENGINES)
FORMATS = {"verilog": ".v", "rtlil": ".il"}


def register(subparsers):
    parser = subparsers.add_parser(
        "generate", help="write Verilog or RTLIL of the SoC or an engine for any flow",
        description="Elaborate a top-level design for a config and write its RTL "
                    "(tritile_<top>.v or .il) and tritile_<top>.json: the config, its "
                    "config_id and the top-level ports (name, direction, width). Clock "
                    "and reset are the ports clk and rst.")
    parser.add_argument("--top", choices=TOPS, default="soc", help="design (default: soc)")
    parser.add_argument("--config", default="sim-small",
                        help="preset name or JSON file (default: sim-small)")
    parser.add_argument("--format", choices=tuple(FORMATS), default="verilog",
                        help="output format (default: verilog)")
    parser.add_argument("--out", required=True, help="output directory (created)")
    parser.set_defaults(func=run)


def top_component(top, config):
    """Return the Amaranth component of ``top`` for ``config``."""
    if top == "soc":
        from tritile.hw.soc import SoC
        return SoC(config)
    if top in ENGINES:
        return ENGINES[top].make_engine(config)
    raise CommandError(f"--top must be one of {', '.join(TOPS)}, not {top!r}")


def component_ports(component):
    """Return ``[{"name", "direction", "width"}]`` of a component's top-level ports."""
    from amaranth.hdl import Shape
    from amaranth.lib.wiring import Flow

    ports = [{"name": "clk", "direction": "input", "width": 1},
             {"name": "rst", "direction": "input", "width": 1}]
    for path, member in component.signature.members.flatten():
        if member.is_port:
            ports.append({"name": "__".join(str(p) for p in path),
                          "direction": "input" if member.flow == Flow.In else "output",
                          "width": Shape.cast(member.shape).width})
    return ports


def run(args):
    from ..config import load_config

    config = load_config(args.config)
    component = top_component(args.top, config)
    name = f"tritile_{args.top}"
    if args.format == "verilog":
        from amaranth.back import verilog
        text = verilog.convert(component, name=name, emit_src=False)
    else:
        from amaranth.back import rtlil
        text = rtlil.convert(component, name=name, emit_src=False)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        rtl = out / f"{name}{FORMATS[args.format]}"
        rtl.write_text(text)
        sidecar = out / f"{name}.json"
        sidecar.write_text(json.dumps({
            "top": name, "format": args.format, "file": rtl.name,
            "config_id": config.config_id, "config": config.to_dict(),
            "clock_hz": config.clock_hz, "ports": component_ports(component),
        }, indent=2) + "\n")
    except OSError as exc:
        raise CommandError(f"cannot write to {out}: {exc.strerror}") from None
    print(f"wrote {rtl} and {sidecar}")
    return 0
