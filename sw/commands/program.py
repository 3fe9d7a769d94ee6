"""``tritile program``: load a bitstream onto a board with its usual programmer."""

import shutil
import subprocess
from pathlib import Path

from ..cli import CommandError

_DEBIAN_PACKAGES = {"iceprog": "fpga-icestorm", "openFPGALoader": "openfpgaloader"}


def register(subparsers):
    parser = subparsers.add_parser(
        "program", help="load a bitstream onto a board (iceprog, openFPGALoader, dfu-util)",
        description="Load a bitstream with the board's programmer, which must be on PATH; "
                    "it is not installed by pip.")
    parser.add_argument("--board", required=True)
    parser.add_argument("file", help="bitstream written by `tritile build`")
    parser.set_defaults(func=run)


def run(args):
    from tritile.hw.board import get_board

    try:
        board = get_board(args.board)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if not Path(args.file).is_file():
        raise CommandError(f"bitstream {args.file} does not exist")
    tool = board.programmer[0]
    if shutil.which(tool) is None:
        raise CommandError(f"{tool} is needed to program the {board.name} but is not on "
                           f"PATH; install it with your system's package manager (Debian: "
                           f"apt-get install {_DEBIAN_PACKAGES.get(tool, tool)})")
    argv = [arg.replace("{file}", args.file) for arg in board.programmer]
    result = subprocess.run(argv)
    if result.returncode != 0:
        raise CommandError(f"{' '.join(argv)} failed with exit code {result.returncode}")
    return 0
