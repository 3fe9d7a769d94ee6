"""``tritile sim-board``: the whole SoC in Verilator, reachable on a TCP socket."""

from ..cli import CommandError


def register(subparsers):
    parser = subparsers.add_parser(
        "sim-board", help="run the simulated board (SoC in Verilator) behind a TCP socket",
        description="Build the SoC for a config (cached), simulate it in Verilator and "
                    "bridge its host link to a TCP socket. Prints the URL to connect to "
                    "(e.g. Device.open('socket://127.0.0.1:PORT')); serves one client at a "
                    "time; stops on Ctrl-C or SIGTERM.")
    parser.add_argument("--port", type=int, default=0,
                        help="TCP port to listen on (default: a free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--config", default="sim-small",
                        help="preset name or JSON file (default: sim-small)")
    parser.add_argument("--uart", choices=("byte", "bit"), default="byte",
                        help="byte: skip bit timing (fast); bit: drive the UART pins at "
                             "the configured baud")
    parser.set_defaults(func=run)


def run(args):
    from ..config import load_config
    from tritile.sim.board import serve

    config = load_config(args.config)
    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port must be between 0 and 65535, not {args.port}")
    serve(config, port=args.port, host=args.host, mode=args.uart)
    return 0
