"""Supported boards: their amaranth-boards platform, PLL, UART pins, preset and programmer."""

import dataclasses
import importlib

from amaranth import ClockDomain, Elaboratable, Module
from amaranth.build import Attrs
from amaranth_boards.resources import UARTResource

from tritile.sw.config import PRESETS

from .bitstream import DEVICES
from .pll import PLLClockDomain

__all__ = ["Board", "BOARDS", "get_board", "BoardTop", "SOC_MODULE"]

#: Submodule name of the SoC in :class:`BoardTop`: the root of a build's component table.
SOC_MODULE = "soc"


@dataclasses.dataclass(frozen=True)
class Board:
    """One supported board.

    Members
    -------
    name : str
        Name used on the command line (``icebreaker``, ``ulx3s-85f``, ...).
    platform : str
        ``module:Class`` of its amaranth-boards platform.
    device : str
        Key of :data:`tritile.hw.bitstream.DEVICES`.
    preset : str
        Name of its default :data:`tritile.sw.config.PRESETS` entry.
    clock : str
        Name of the board's oscillator resource, and ``clock_hz`` its frequency.
    programmer : tuple of str
        Command that loads a bitstream; ``{file}`` stands for the bitstream.
    uart_pins : tuple or None
        ``(rx, tx, connector)`` when the platform has no UART resource of its own.
    """

    name: str
    platform: str
    device: str
    preset: str
    clock: str
    clock_hz: float
    programmer: tuple
    uart_pins: tuple | None = None

    @property
    def family(self):
        return DEVICES[self.device].family

    def make_platform(self):
        """Return a fresh amaranth-boards platform with tritile's UART added if needed."""
        module, cls = self.platform.split(":")
        platform = getattr(importlib.import_module(module), cls)()
        if self.uart_pins is not None:
            rx, tx, conn = self.uart_pins
            platform.add_resources([UARTResource(0, rx=rx, tx=tx, conn=conn,
                                                 attrs=Attrs(IO_TYPE="LVCMOS33"))])
        return platform


BOARDS = {board.name: board for board in (
    Board("icebreaker", "amaranth_boards.icebreaker:ICEBreakerPlatform", "iCE40UP5K-SG48",
          "icebreaker", "clk12", 12e6, ("iceprog", "{file}")),
    Board("ulx3s-85f", "amaranth_boards.ulx3s:ULX3S_85F_Platform", "LFE5U-85F-BG381",
          "ulx3s-85f", "clk25", 25e6, ("openFPGALoader", "--board", "ulx3s", "{file}")),
    # The OrangeCrab has no USB-serial bridge: the link is a 3.3 V USB-serial adapter on
    # the Feather header, RX on pin 0 and TX on pin 1, as on every Feather board.
    Board("orangecrab-25f", "amaranth_boards.orangecrab_r0_2:OrangeCrabR0_2_25FPlatform",
          "LFE5U-25F-MG285", "orangecrab-25f", "clk", 48e6,
          ("dfu-util", "--alt", "0", "--download", "{file}"), ("0", "1", ("io", 0))),
)}


def get_board(name):
    """Return the :class:`Board` called ``name`` or raise ValueError listing the choices."""
    try:
        return BOARDS[name]
    except KeyError:
        raise ValueError(f"unknown board {name!r}; supported boards: "
                         f"{', '.join(BOARDS)}") from None


class BoardTop(Elaboratable):
    """The SoC on a board: PLL to the config's clock, SoC UART on the board's UART pins."""

    def __init__(self, board, config):
        from .soc import SoC

        self.board = board
        self.config = config
        self.soc = SoC(config)

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = sync = ClockDomain("sync")
        if self.board.family == "ice40":
            pad = platform.request(self.board.clock, dir="-").io
        else:
            pad = platform.request(self.board.clock, dir="i").i
        m.submodules.pll = PLLClockDomain(self.board.family, pad, self.board.clock_hz,
                                          self.config.clock_hz, sync)
        m.submodules[SOC_MODULE] = self.soc
        uart = platform.request("uart", 0)
        m.d.comb += [self.soc.uart_rx.eq(uart.rx.i), uart.tx.o.eq(self.soc.uart_tx)]
        return m


def default_preset(board):
    """Return the preset config of ``board``."""
    return PRESETS[board.preset]
