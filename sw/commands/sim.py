"""``tritile sim ...``: run an engine on files in a cycle-accurate simulation."""

import importlib

# Modules of tritile.sw.commands that register subcommands of `tritile sim`.
SIM_COMMANDS = ("sim_engine",)


def register(subparsers):
    parser = subparsers.add_parser(
        "sim", help="run an engine on .npy files in Verilator",
        description="Run one engine of the accelerator on .npy files in a cycle-accurate "
                    "Verilator simulation and compare nothing: the output is the hardware's.")
    sim_parsers = parser.add_subparsers(dest="sim_command", metavar="ENGINE", required=True)
    for name in SIM_COMMANDS:
        importlib.import_module(f"{__package__}.{name}").register(sim_parsers)
