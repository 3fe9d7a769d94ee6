"""The ``tritile`` command line.

Each command lives in its own module of :mod:`tritile.sw.commands` with a ``register``
function that adds its parser. Commands that generate, simulate or build import
``tritile.hw`` and ``tritile.sim`` inside their ``run`` function only, so that the host
side (``tritile.sw``) needs neither Amaranth nor Verilator.
"""

import argparse
import importlib
import sys

from .config import ConfigError
from .toolchain import ToolError

__all__ = ["main", "CommandError", "load_npy"]

# Modules of tritile.sw.commands, in the order their commands appear in --help.
COMMANDS = ("doctor", "sim", "compile", "run", "demo", "sim_board", "generate", "build",
            "sweep", "program")


class CommandError(Exception):
    """A user error a command reports in one line before exiting with status 2."""


def load_npy(path, what):
    """Load the array ``what`` from the .npy file ``path`` or raise a one-line CommandError."""
    import numpy as np

    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise CommandError(f"cannot read {what}: {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise CommandError(f"cannot read {what}: {path} is not a .npy array ({exc})") from None


def build_parser():
    """Return the argument parser with every command registered."""
    parser = argparse.ArgumentParser(
        prog="tritile",
        description="Generate, verify, build and drive FPGA accelerators for quantized "
                    "neural networks.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"{__package__}.commands.{name}").register(subparsers)
    return parser


def main(argv=None):
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # A missing or unusable tool (yosys, nextpnr, Verilator) is the user's to install: its
    # message says how, so it gets the same one line as a bad argument.
    try:
        return args.func(args) or 0
    except (CommandError, ConfigError, ToolError) as exc:
        print(f"tritile {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tritile {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # Run the package's own module, not this __main__ copy: the commands import their
    # CommandError from tritile.sw.cli, and only that class is caught as a one-line error.
    from tritile.sw.cli import main as package_main

    sys.exit(package_main())
