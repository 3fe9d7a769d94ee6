"""Build the SoC for a board and write its report (used by ``tritile build``)."""

import json
from pathlib import Path

from tritile.sw.arith import ceil_div
from tritile.sw.config import PRESETS

from .bitstream import DEVICES, NETLIST_SUFFIX, run_flow, synthesize
from .board import SOC_MODULE, BoardTop
from .engine_memory import check_ice40_memories

__all__ = ["NETLIST_INFO", "build_board", "synthesize_board", "designed_dsps"]

#: File next to a build's netlist that says what it is: board, family, config, the
#: netlist's file and the ports of the board's clock and UART (read by tritile.sim.netlist).
NETLIST_INFO = "netlist.json"

# What to change when a resource overflows.
_REMEDY = {
    "dsp": "fewer systolic_rows * systolic_cols (each DSP holds the int8 products of the "
           "array)",
    "logic": "fewer ternary_lanes * ternary_fan_in (the adder trees) or a smaller systolic "
             "array",
    "bram": "smaller act_depth, weight_depth, trit_depth or out_depth",
    "spram": "smaller memory depths",
}


def designed_dsps(config, family):
    """Return the DSP blocks the SoC for ``config`` is designed to use on ``family``.

    The int8 array's products (two per SB_MAC16 on iCE40, see hw/dsp.py; one
    MULT18X18D each on ECP5), the requantizer's 33 x 15-bit multiply (two blocks on
    either family, none when ``requant_serial`` puts it in logic) and, with program mode,
    the average pooling's 32 x 15-bit multiply (two more, hw/pooling.py). The ternary
    engine uses none.
    """
    products = config.int8_macs_per_cycle
    array = ceil_div(products, 2) if family == "ice40" else products
    requantizer = 0 if config.requant_serial else 2
    return array + requantizer + (2 if config.max_layers else 0)


def _advice(board, config):
    def advice(over):
        preset = PRESETS[board.preset]
        hint = "; ".join(f"{r}: {_REMEDY[r]}" for r in over)
        if config != preset:
            return f"The {board.preset} preset fits this board (--config {board.preset}); " \
                   f"or change the config: {hint}."
        return f"Change the config: {hint}."
    return advice


def _describe_netlist(board, config, out_dir):
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / NETLIST_INFO).write_text(json.dumps({
        "board": board.name,
        "family": board.family,
        "netlist": f"top{NETLIST_SUFFIX}",
        # Amaranth names a resource's top-level ports <resource>_<number>__<pin>__<dir>.
        "clock_port_prefix": f"{board.clock}_0__",
        "uart_port_prefix": "uart_0__",
        "config": config.to_dict(),
    }, indent=2) + "\n")


def _check_config(board, config):
    """Return ``config`` (default: the board's preset), refused if the board cannot build it."""
    config = config or PRESETS[board.preset]
    if board.family == "ice40":
        check_ice40_memories(config)
    return config


def synthesize_board(board, config, out_dir, *, progress=None):
    """Synthesize ``config`` (default: the board's preset) for ``board``, fit-check it.

    Writes what :func:`build_board` writes before place-and-route: the mapped netlist
    (``top.netlist.v``) and its description (:data:`NETLIST_INFO`). Returns the cell usage.
    """
    config = _check_config(board, config)
    out_dir = Path(out_dir)
    _describe_netlist(board, config, out_dir)
    return synthesize(board.make_platform(), BoardTop(board, config), DEVICES[board.device],
                      out_dir, advice=_advice(board, config), progress=progress)


def build_board(board, config, out_dir, *, seed=1, attempts=3, progress=None, stage="pnr",
                after_synthesis=None, components=True, fit_check=True):
    """Build ``config`` (default: the board's preset) for ``board``; return the report.

    Placement starts from ``seed`` and tries up to ``attempts`` seeds until the clock is
    met (the presets fill the iCE40UP5K to 96-99 %, where a seed moves fmax by a few
    MHz). ``after_synthesis(out_dir)`` runs on the synthesized netlist before
    place-and-route and returns entries for the report (see
    :func:`~tritile.hw.bitstream.run_flow`). ``stage="synth"`` stops after synthesis and the
    fit check. With ``components``, the report's ``components`` gives the cells of each
    SoC component (:func:`~tritile.hw.bitstream.measure_components`, a second synthesis).
    ``fit_check`` false skips the fit check (see :func:`~tritile.hw.bitstream.run_flow`).
    The report is also written to ``out_dir/report.json``.
    """
    config = _check_config(board, config)
    device = DEVICES[board.device]
    out_dir = Path(out_dir)
    _describe_netlist(board, config, out_dir)
    flow = run_flow(board.make_platform(), BoardTop(board, config), device, out_dir,
                    advice=_advice(board, config), seed=seed, attempts=attempts,
                    progress=progress, stage=stage, after_synthesis=after_synthesis,
                    component_root=SOC_MODULE if components else None,
                    fit_check=fit_check)
    fmax = min((c["fmax_mhz"] for c in flow["clocks"].values()), default=0.0)
    # Without place-and-route there is no fmax: the rates are at the target clock.
    clock_mhz = config.clock_hz / 1e6 if stage == "synth" else min(fmax, config.clock_hz / 1e6)
    report = {
        "board": board.name,
        "config_name": next((n for n, c in PRESETS.items() if c == config), "custom"),
        "config_id": config.config_id,
        "config": config.to_dict(),
        **flow,
        "dsp_designed": designed_dsps(config, device.family),
        "int8_macs_per_cycle": config.int8_macs_per_cycle,
        "ternary_macs_per_cycle": config.ternary_macs_per_cycle,
        # Peak rates at the clock the design runs at: its target when timing is met.
        "int8_gmacs": config.int8_macs_per_cycle * clock_mhz / 1e3,
        "ternary_gmacs": config.ternary_macs_per_cycle * clock_mhz / 1e3,
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
