"""Synthesis, fit check, place-and-route and packing for the supported boards.

The flow is Amaranth's (its platform writes the RTLIL, the yosys script and the pin and
clock constraints), run step by step so that a fit check sits between synthesis and
place-and-route and nextpnr writes a machine-readable report. Tools come from
:mod:`tritile.sw.toolchain` (YoWASP by default, system tools where the user says so).
"""

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tritile.sw.toolchain import ToolError, find_tool

from .component_costs import component_costs, costs_script, module_costs, totals
from .dsp import ice40_dual_mul8_restore

__all__ = ["Device", "DEVICES", "STAGES", "FitError", "BuildError", "NETLIST_SUFFIX",
           "flow_tools", "synthesize", "measure_components", "run_flow", "cell_usage",
           "check_fit"]

#: Where a flow can stop: after synthesis and the fit check, or after place-and-route.
STAGES = ("synth", "pnr")


class FitError(RuntimeError):
    """The synthesized design needs more of a resource than the device has."""


class BuildError(RuntimeError):
    """A tool of the flow failed; the message ends with the tail of its log.

    ``summary`` says the same in one line: the tool, its exit status, its log and the
    log's last line (for a report's field).
    """

    def __init__(self, tool, returncode, log, tail):
        head = f"{tool} failed (exit {returncode}); log {log}"
        self.summary = f"{head}: {tail[-1]}" if tail else head
        super().__init__("\n".join([f"{head}:", *tail]))


@dataclasses.dataclass(frozen=True)
class Device:
    """An FPGA as the flow sees it.

    Members
    -------
    name : str
        Vendor part name (``iCE40UP5K``, ``LFE5U-85F``, ...).
    family : str
        ``"ice40"`` or ``"ecp5"``.
    nextpnr_args : tuple of str
        Device and package options of nextpnr.
    capacity : dict
        Resource name -> available count; names are those of the report
        (``logic``, ``dsp``, ``bram``, ``spram``).
    """

    name: str
    family: str
    nextpnr_args: tuple
    capacity: dict


DEVICES = {
    "iCE40UP5K-SG48": Device("iCE40UP5K", "ice40", ("--up5k", "--package", "sg48"),
                             {"logic": 5280, "dsp": 8, "bram": 30, "spram": 4}),
    "LFE5U-85F-BG381": Device("LFE5U-85F", "ecp5",
                              ("--85k", "--package", "CABGA381", "--speed", "6"),
                              {"logic": 83640, "dsp": 156, "bram": 208}),
    "LFE5U-25F-MG285": Device("LFE5U-25F", "ecp5",
                              ("--25k", "--package", "CSFBGA285", "--speed", "8"),
                              {"logic": 24288, "dsp": 28, "bram": 56}),
}

# yosys cell types -> report resource, per family. Logic is a lower bound before packing:
# on iCE40 a logic cell holds one LUT4, one flip-flop and one carry, so it needs at least
# as many cells as the largest of the three counts; on ECP5, LUT4s plus two per CCU2C.
_CELLS = {
    "ice40": {"dsp": ("SB_MAC16",), "bram": ("SB_RAM40_4K",), "spram": ("SB_SPRAM256KA",)},
    "ecp5": {"dsp": ("MULT18X18D",), "bram": ("DP16KD",)},
}

# nextpnr report utilization names -> report resource.
_NEXTPNR = {
    "ice40": {"ICESTORM_LC": "logic", "ICESTORM_DSP": "dsp", "ICESTORM_RAM": "bram",
              "ICESTORM_SPRAM": "spram"},
    "ecp5": {"TRELLIS_COMB": "logic", "MULT18X18D": "dsp", "DP16KD": "bram"},
}


def cell_usage(stat, family):
    """Return resource -> estimated count from yosys ``stat -json`` output."""
    cells = stat["design"].get("num_cells_by_type", {})
    count = lambda *types: sum(v for k, v in cells.items() if k in types)  # noqa: E731
    if family == "ice40":
        dffs = sum(v for k, v in cells.items() if k.startswith("SB_DFF"))
        logic = max(count("SB_LUT4"), dffs, count("SB_CARRY"))
    else:
        logic = count("LUT4") + 2 * count("CCU2C")
    usage = {"logic": logic}
    for resource, types in _CELLS[family].items():
        usage[resource] = count(*types)
    return usage


def check_fit(usage, device, advice):
    """Raise :class:`FitError` naming each resource whose need exceeds the device.

    ``advice`` maps the list of overflowing resource names to a sentence saying what
    would fit.
    """
    over = [resource for resource, available in device.capacity.items()
            if usage.get(resource, 0) > available]
    if over:
        needs = "; ".join(f"{r}: needs {usage[r]}, {device.name} has {device.capacity[r]}"
                          for r in over)
        raise FitError(f"design does not fit {device.name} ({needs}). {advice(over)}")


def _over_capacity(line):
    # nextpnr's utilization lines read "ICESTORM_LC:  7479/  5280   141%".
    try:
        used, available = line.split(":")[-1].split("%")[0].split()[:2]
        return int(used.rstrip("/")) > int(available)
    except ValueError:
        return False


def _run(argv, cwd, log_name, env=None, progress=None, tail_log=None):
    """Run ``argv`` in ``cwd`` with its output in ``log_name``; raise :class:`BuildError`
    quoting the end of ``tail_log`` (a log the tool writes itself), or of its output,
    if it fails."""
    if progress:
        progress(f"{Path(argv[0]).name} ...")
    start = time.monotonic()
    with open(cwd / log_name, "w") as log:
        result = subprocess.run(argv, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})})
    if result.returncode != 0:
        log = cwd / (tail_log or log_name)
        tail = log.read_text(errors="replace").strip().splitlines()[-15:] \
            if log.exists() else []
        raise BuildError(Path(argv[0]).name, result.returncode, log, tail)
    if progress:
        progress(f"{Path(argv[0]).name} done in {time.monotonic() - start:.0f} s")


def _tool(name):
    tool = find_tool(name)
    if not tool.found:
        raise ToolError(f"{name} not found: {tool.fix}")
    return tool


def _place_and_route(argv, out_dir, device, advice, progress):
    """Run nextpnr (``argv``) in ``out_dir``; return its JSON report."""
    try:
        _run(argv, out_dir, "nextpnr.log", progress=progress)
    except BuildError:
        # The synthesis estimate is a lower bound: packing may still need more cells
        # than the device has, which nextpnr reports as an overfull utilization line.
        over = [line.split("Info:")[-1].strip()
                for line in (out_dir / "nextpnr.log").read_text().splitlines()
                if "%" in line and "/" in line and _over_capacity(line)]
        if over:
            raise FitError(f"design does not fit {device.name} after packing "
                           f"({'; '.join(over)}). {advice(['logic'])}") from None
        raise
    return json.loads((out_dir / "nextpnr-report.json").read_text())


def _place_seeds(pnr, out_dir, device, advice, progress, seeds, placed):
    """Place and route with each of ``seeds`` until one meets every clock.

    Return the kept seed, its nextpnr report, its clocks and the list of seeds tried.
    The kept seed is the first that meets timing, or else the one with the highest fmax,
    whose ``placed`` files (the placed design, nextpnr's report and log) are put back in
    ``out_dir``.
    """
    best = out_dir / "best-seed"
    tried, kept = [], None
    for seed in seeds:
        nextpnr = _place_and_route(pnr + ["--seed", str(seed)], out_dir, device, advice,
                                   progress)
        clocks = {}
        for clock, entry in nextpnr.get("fmax", {}).items():
            clocks[clock.removeprefix("$glbnet$")] = {
                "fmax_mhz": entry["achieved"], "target_mhz": entry["constraint"],
                "met": entry["achieved"] >= entry["constraint"]}
        fmax = min((c["fmax_mhz"] for c in clocks.values()), default=0.0)
        tried.append({"seed": seed, "fmax_mhz": fmax, "timing_met": _all_met(clocks)})
        if tried[-1]["timing_met"]:
            return seed, nextpnr, clocks, tried
        if kept is None or fmax > kept[1]:
            kept = (seed, fmax, nextpnr, clocks)
            if seed != seeds[-1]:
                best.mkdir(exist_ok=True)
                for name in placed:
                    shutil.copy2(out_dir / name, best / name)
        if seed != seeds[-1]:
            progress(f"timing not met with seed {seed} (fmax {fmax:.1f} MHz); "
                     f"placing again with seed {seed + 1}")
    seed, fmax, nextpnr, clocks = kept
    if seed != seeds[-1]:
        progress(f"timing not met with any seed: keeping seed {seed} (fmax {fmax:.1f} MHz)")
        for name in placed:
            shutil.copy2(best / name, out_dir / name)
    shutil.rmtree(best, ignore_errors=True)
    return seed, nextpnr, clocks, tried


def _all_met(clocks):
    return bool(clocks) and all(c["met"] for c in clocks.values())


def flow_tools(family, stage="pnr"):
    """Return the names of the tools the flow runs for ``family`` up to ``stage``."""
    if stage == "synth":
        return ("yosys",)
    return ("yosys", f"nextpnr-{family}", "icepack" if family == "ice40" else "ecppack")


#: File the synthesis step writes the mapped netlist to (yosys ``write_verilog``), next to
#: the JSON netlist that nextpnr places: the same design, for simulation.
NETLIST_SUFFIX = ".netlist.v"


def synthesize(platform, top, device, out_dir, *, name="top", advice=lambda over: "",
               progress=None, fit_check=True):
    """Synthesize ``top`` for ``platform`` into ``out_dir``; return the cell usage.

    Amaranth writes the RTLIL, yosys script and constraints; yosys synthesizes, writes
    cell statistics, the Verilog of the mapped netlist (``<name>.netlist.v``) and the
    JSON netlist nextpnr reads; the fit check compares the statistics with ``device``
    (raising :class:`FitError` with ``advice``) unless ``fit_check`` is false (to measure a
    design that does not fit).
    """
    progress = progress or _stderr
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    after_synth = [f"tee -q -o {name}.stat.json stat -json",
                   f"write_verilog -noattr {name}{NETLIST_SUFFIX}"]
    synth_opts = []
    if device.family == "ice40":
        # synth_ice40 leaves multiplies in logic unless told to use the SB_MAC16s; its DSP
        # mapping then reconfigures the SB_MAC16s DualMul8 instantiates, which get their
        # own configuration back.
        synth_opts = ["-dsp"]
        after_synth.insert(0, ice40_dual_mul8_restore())
    plan = platform.prepare(top, name, emit_src=False, synth_opts=synth_opts,
                            script_after_synth="\n".join(after_synth))
    plan.extract(str(out_dir))
    _run([_tool("yosys").path, "-q", "-l", f"{name}.rpt", f"{name}.ys"], out_dir,
         "yosys.log", progress=progress, tail_log=f"{name}.rpt")
    usage = cell_usage(json.loads((out_dir / f"{name}.stat.json").read_text()),
                       device.family)
    progress(f"synthesized: {', '.join(f'{k} {v}' for k, v in usage.items())}")
    if fit_check:
        check_fit(usage, device, advice)
    return usage


def measure_components(out_dir, family, root, *, name="top", progress=None):
    """Return the cells per component of the design :func:`synthesize` built in ``out_dir``.

    A second yosys run synthesizes the same RTLIL with the components of ``root`` kept
    as modules (:mod:`tritile.hw.component_costs`); the build's own netlist is not
    touched. The result has ``modules`` (costs per component), ``total`` (their sum) and
    ``flat`` (the same counts on the build's flat netlist), so the table says how far its
    sum is from what was built.

    When yosys fails on one kept module (YoWASP yosys 0.70 fails an assertion in ABC9 on
    the ulx3s-85f's ternary core, kept beside the other components, not alone), that
    module is measured apart: a run without it kept (its cells then count in its
    parent's) gives every other row; a run keeping only it, its parts and its ancestors
    gives its row, which is taken out of its parent's own cells. ``apart`` names it.
    """
    progress = progress or _stderr
    out_dir = Path(out_dir)
    progress("cells per component: a second synthesis, with the hierarchy kept")
    try:
        costs = _component_run(out_dir, family, root, name, "components", progress)
    except BuildError:
        failed = _failed_module(out_dir / "yosys-components.log", f"{name}.{root}")
        if failed is None:
            raise
        progress(f"yosys failed on {failed} among the kept components: measuring it apart")
        costs = _component_run(out_dir, family, root, name, "components-without", progress,
                               keep=lambda path: path != failed)
        alone = _component_run(out_dir, family, root, name, "components-alone", progress,
                               keep=lambda path: _related(path, failed))
        modules, row = costs["modules"], alone["modules"][failed]
        parent = failed.rpartition(".")[0] or root
        modules[parent] = {r: max(0, count - row[r]) for r, count in modules[parent].items()}
        modules[failed] = row
        costs["total"] = totals(modules.values(), row)
        costs["apart"] = [failed]
    flat = json.loads((out_dir / f"{name}.json").read_text())["modules"][name]
    return {**costs, "flat": module_costs(flat, family)}


def _component_run(out_dir, family, root, name, stem, progress, keep=None):
    """Run one statistics synthesis (``<name>.<stem>.ys``); return its component table."""
    script = costs_script((out_dir / f"{name}.ys").read_text(),
                          (out_dir / f"{name}.il").read_text(), root,
                          f"{name}.{stem}.json", keep=keep)
    (out_dir / f"{name}.{stem}.ys").write_text(script)
    # yosys' own log (-l) is written line by line; what the WebAssembly build prints on
    # its standard output is lost when it aborts. The log names the module yosys was
    # working on and the error.
    log = f"yosys-{stem}.log"
    _run([_tool("yosys").path, "-q", "-l", log, f"{name}.{stem}.ys"], out_dir,
         f"yosys-{stem}.out", progress=progress, tail_log=log)
    return component_costs(out_dir / f"{name}.{stem}.json", family, name, root)


def _failed_module(log, prefix):
    """Return the path below ``prefix`` of the module a failed yosys log worked on last."""
    if not Path(log).exists():
        return None
    modules = re.findall(r"from module `([^']+)'", Path(log).read_text(errors="replace"))
    if not modules or not modules[-1].startswith(prefix + "."):
        return None
    return modules[-1][len(prefix) + 1:]


def _related(path, module):
    """Whether ``path`` is ``module``, one of its parts or one of its ancestors."""
    return path == module or module.startswith(path + ".") or path.startswith(module + ".")


def _stderr(message):
    print(message, file=sys.stderr, flush=True)


def run_flow(platform, top, device, out_dir, *, name="top", advice=lambda over: "",
             seed=1, attempts=1, progress=None, stage="pnr", after_synthesis=None,
             component_root=None, fit_check=True):
    """Build ``top`` for ``platform`` into ``out_dir``; return the report dict.

    Steps: :func:`synthesize` (with its fit check); with ``component_root`` (the name of
    a submodule of ``top``), :func:`measure_components` of it, the report's
    ``components`` (or, if that synthesis fails, ``components_error`` and the build goes
    on); ``after_synthesis(out_dir)``, when given, whose dict joins the report
    (``tritile build --verify`` simulates the netlist there, before place-and-route is
    spent on it); nextpnr places and routes against the clock constraints and writes its
    JSON report, with placement seeds ``seed``, ``seed + 1``, ... until timing is met or
    ``attempts`` seeds are tried (the first that meets it is kept, else the one with the
    highest fmax: the report's ``seed``); icepack/ecppack write
    the bitstream. With ``stage="synth"`` the flow
    stops after the fit check (and ``after_synthesis``): its resources are the synthesis
    estimate, and it has no clocks and no bitstream. ``fit_check`` false skips the fit
    check (for ``stage="synth"``: measuring a design that does not fit).
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {', '.join(STAGES)}, not {stage!r}")
    progress = progress or _stderr
    out_dir = Path(out_dir)
    started = time.monotonic()
    tools = {n: _tool(n) for n in flow_tools(device.family, stage)}
    usage = synthesize(platform, top, device, out_dir, name=name, advice=advice,
                       progress=progress, fit_check=fit_check)
    components = {}
    if component_root is not None:
        try:
            components = {"components": measure_components(
                out_dir, device.family, component_root, name=name, progress=progress)}
        except BuildError as exc:
            # The table comes from a second synthesis beside the build's: when yosys fails
            # there (an internal error on one kept module), the build goes on without it.
            progress(f"cells per component unavailable: {exc.summary}")
            components = {"components_error": exc.summary}
    checked = after_synthesis(out_dir) if after_synthesis is not None else {}
    if stage == "synth":
        resources = {r: {"used": usage.get(r, 0), "available": available}
                     for r, available in device.capacity.items()}
        return {"device": device.name, "stage": stage, "bitstream": None,
                "resources": resources, "synthesis_estimate": usage, "clocks": {},
                "timing_met": None, "seeds_tried": [],
                "tools": {n: t.source for n, t in tools.items()},
                "build_seconds": round(time.monotonic() - started, 1), **components,
                **checked}
    pnr = [tools[f"nextpnr-{device.family}"].path, *device.nextpnr_args,
           "--json", f"{name}.json", "--report", "nextpnr-report.json",
           # A missed clock target is a finding of the report (timing_met), not a crash:
           # the user sees the achieved fmax and decides.
           "--timing-allow-fail"]
    if device.family == "ice40":
        placed, bitstream = f"{name}.asc", f"{name}.bin"
        pnr += ["--pcf", f"{name}.pcf", "--asc", placed]
        pack = [tools["icepack"].path, placed, bitstream]
    else:
        placed, bitstream = f"{name}.config", f"{name}.bit"
        pnr += ["--lpf", f"{name}.lpf", "--textcfg", placed]
        pack = [tools["ecppack"].path, "--compress", placed, bitstream]
    kept, nextpnr, clocks, tried = _place_seeds(pnr, out_dir, device, advice, progress,
                                       range(seed, seed + attempts),
                                       [placed, "nextpnr-report.json", "nextpnr.log"])
    timing_met = _all_met(clocks)
    _run(pack, out_dir, "pack.log", progress=progress)
    resources = {}
    for key, resource in _NEXTPNR[device.family].items():
        entry = nextpnr.get("utilization", {}).get(key)
        if entry is not None:
            resources[resource] = {"used": entry["used"], "available": entry["available"]}
    return {
        "device": device.name,
        "stage": stage,
        "bitstream": str(out_dir / bitstream),
        "resources": resources,
        "synthesis_estimate": usage,
        "clocks": clocks,
        "timing_met": timing_met,
        "seed": kept,
        "seeds_tried": tried,
        "tools": {n: t.source for n, t in tools.items()},
        **components,
        **checked,
        "build_seconds": round(time.monotonic() - started, 1),
    }
