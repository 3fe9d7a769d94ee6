"""``tritile sim-board``: the whole SoC in Verilator, reachable on a TCP socket."""

from ..cli import CommandError


def register(subparsers):
    parser = subparsers.add_parser(
        "sim-board", help="run the simulated board (SoC in Verilator) behind a TCP socket",
        description="Build the SoC for a config (cached), simulate it in Verilator and "
                    "bridge its host link to a TCP socket. Prints the URL to connect to "
                    "(e.g. Device.open('socket://127.0.0.1:PORT')); serves one client at a "
                    "time; stops on Ctrl-C or SIGTERM. With --netlist, serves a build's "
                    "synthesized netlist instead of the RTL: what the bitstream holds, "
                    "through its UART pins (slow: bit timing on a gate-level model).")
    parser.add_argument("--port", type=int, default=0,
                        help="TCP port to listen on (default: a free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--config", help="preset name or JSON file (default: sim-small; "
                                         "with --netlist, the build's)")
    parser.add_argument("--uart", choices=("byte", "bit"),
                        help="byte: skip bit timing (fast, the default); bit: drive the "
                             "UART pins at the configured baud (the only mode of --netlist)")
    parser.add_argument("--netlist", metavar="BUILD_DIR",
                        help="serve the synthesized netlist of this 'tritile build' output "
                             "directory (vendor cell models, PLL bypassed)")
    parser.add_argument("--cell-models", metavar="FILE.v",
                        help="with --netlist: Verilog modules that replace yosys' models of "
                             "the cells of the same name")
    parser.set_defaults(func=run)


def run(args):
    from ..config import AcceleratorConfig, load_config
    from tritile.sim.board import serve

    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port must be between 0 and 65535, not {args.port}")
    if args.netlist is None:
        if args.cell_models:
            raise CommandError("--cell-models needs --netlist")
        config = load_config(args.config or "sim-small")
        serve(config, port=args.port, host=args.host, mode=args.uart or "byte")
        return 0
    from tritile.sim.netlist import NetlistError, read_netlist_info

    if args.uart == "byte":
        raise CommandError("--netlist serves the UART pins (--uart bit): the bitstream has "
                           "no byte port")
    try:
        built = AcceleratorConfig.from_dict(read_netlist_info(args.netlist)["config"])
    except NetlistError as exc:
        raise CommandError(str(exc)) from None
    if args.config and load_config(args.config) != built:
        raise CommandError(f"--config {args.config} is not the config {args.netlist} was "
                           f"built for ({built.config_id}); leave --config out")
    models = ""
    if args.cell_models:
        try:
            with open(args.cell_models) as file:
                models = file.read()
        except OSError as exc:
            raise CommandError(f"cannot read --cell-models {args.cell_models}: "
                               f"{exc.strerror}") from None
    try:
        serve(built, port=args.port, host=args.host, mode="bit", netlist=args.netlist,
              cell_models=models)
    except NetlistError as exc:
        raise CommandError(str(exc)) from None
    return 0
