"""The results of a sweep on disk: one JSON record per built point.

A point is keyed by what decides its result: the config (its canonical JSON, so its
``config_id``), the board, the stage, the placement seed and the versions of what builds
it (tritile's own sources, Amaranth, yosys and, for place-and-route, nextpnr and the
packer). A
record whose status is ``ok`` (built) or ``unfit`` (the fit check refused it) is final
and is reused by every later sweep with the same key; a ``failed`` record (a tool
crashed, the worker died) is built again. Records are written atomically, each as soon
as its point finishes, so a sweep that is stopped keeps everything it finished.

Layout of the output directory::

    points/KEY.json     one record per point
    builds/KEY/         the build files of the point (on the machine that built it)
"""

import dataclasses
import hashlib
import importlib.metadata
import json
import os
from pathlib import Path

from .config import AcceleratorConfig
from .toolchain import ToolError, find_tool

__all__ = ["SweepPoint", "ResultStore", "FINAL", "BOARD_BUILDER", "tool_versions",
           "source_version"]

#: The function that builds a point unless the point names another: ``tritile build``'s.
BOARD_BUILDER = "tritile.sw.sweep_point:build_board_point"

#: Record statuses that are final: a later sweep reuses them instead of building again.
FINAL = ("ok", "unfit")

#: tritile's packages: their sources generate the design a point builds.
PACKAGE_DIRS = tuple(Path(__file__).resolve().parent.parent / name
                     for name in ("hw", "sw", "sim"))

#: The entries of :func:`tool_versions` that every point has, beside its flow's tools.
BASE_TOOLS = ("tritile", "amaranth")


def source_version(directories=PACKAGE_DIRS):
    """Return a hash of the Python sources under ``directories`` (tritile's by default).

    Any change to the code that generates the gateware gives points a new key, so a
    sweep never reuses a build of other code.
    """
    digest = hashlib.sha256()
    for directory in directories:
        for path in sorted(Path(directory).rglob("*.py")):
            digest.update(f"{path.relative_to(directory.parent)}\0".encode())
            digest.update(path.read_bytes())
    return f"sources {digest.hexdigest()[:16]}"


def _version(name):
    if name == "tritile":
        return source_version()
    if name == "amaranth":
        return importlib.metadata.version("amaranth")
    tool = find_tool(name)
    if not tool.found:
        raise ToolError(f"{name} not found: {tool.fix}")
    if tool.source.startswith("pip:"):
        return tool.source.removeprefix("pip: ")
    tool = find_tool(name, run_version=True)
    return f"{tool.path} {tool.version}"


def tool_versions(names):
    """Return name -> version for tritile's sources, Amaranth and the tools ``names``.

    tritile is named by :func:`source_version`; YoWASP tools by their wheel's version; a
    system tool (``$YOSYS``, ...) by the path and the version it prints.
    """
    return {name: _version(name) for name in (*BASE_TOOLS, *names)}


@dataclasses.dataclass(frozen=True)
class SweepPoint:
    """One build of a sweep.

    Members
    -------
    config : AcceleratorConfig
    board : str
        Board name (:data:`tritile.hw.board.BOARDS`), or the target another builder
        knows.
    stage : str
        ``synth`` (synthesis and fit check) or ``pnr`` (place-and-route and bitstream).
    seed : int or None
        First placement seed; None for ``synth``, which places nothing.
    tools : dict
        Tool name -> version the point is built with (:func:`tool_versions`).
    attempts : int
        Seeds tried until the clock is met (``tritile build --attempts``).
    builder : str
        ``module:function`` that builds the point in the build process, called with the
        point and its build directory and returning its record (default
        :data:`BOARD_BUILDER`); its module must be importable there.
    """

    config: AcceleratorConfig
    board: str
    stage: str
    seed: int | None
    tools: dict
    attempts: int = 1
    builder: str = BOARD_BUILDER

    @classmethod
    def from_request(cls, request):
        """Return the point of a :meth:`request`."""
        return cls(AcceleratorConfig.from_dict(request["config"]), request["board"],
                   request["stage"], request["seed"], request["tools"], request["attempts"],
                   request["builder"])

    @property
    def key(self):
        """A 16-hex-digit hash of everything that decides the point's result."""
        identity = {"config": self.config.to_dict(), "board": self.board,
                    "stage": self.stage, "seed": self.seed, "attempts": self.attempts,
                    "tools": self.tools, "builder": self.builder}
        text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def request(self, build_dir):
        """Return the JSON-able request a worker builds the point from."""
        return {"key": self.key, "config": self.config.to_dict(), "board": self.board,
                "stage": self.stage, "seed": self.seed, "attempts": self.attempts,
                "tools": self.tools, "builder": self.builder, "build_dir": str(build_dir)}

    def record(self, status, reason=None, report=None, **extra):
        """Return a record of this point with ``status`` (``ok``, ``unfit``, ``failed``)."""
        return {"key": self.key, "config_id": self.config.config_id,
                "config": self.config.to_dict(), "board": self.board, "stage": self.stage,
                "seed": self.seed, "attempts": self.attempts, "tools": self.tools,
                "builder": self.builder, "status": status, "reason": reason,
                "report": report, **extra}


class ResultStore:
    """The records of a sweep's output directory (see the module docstring).

    Parameters
    ----------
    root : path
        The output directory; created when the first record is written.
    """

    def __init__(self, root):
        self.root = Path(root)

    def build_dir(self, point):
        """Return the directory ``point`` is built in."""
        return (self.root / "builds" / point.key).absolute()

    def _path(self, key):
        return self.root / "points" / f"{key}.json"

    def get(self, point):
        """Return the record of ``point``, or None if it has none."""
        try:
            return json.loads(self._path(point.key).read_text())
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError):
            # A record cut short (a full disk) is as good as none: build the point again.
            return None

    def finished(self, point):
        """Return the final record of ``point`` (status in :data:`FINAL`), or None."""
        record = self.get(point)
        return record if record is not None and record["status"] in FINAL else None

    def put(self, record):
        """Write ``record`` (replacing an earlier one of its key) atomically."""
        path = self._path(record["key"])
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial")
        partial.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(partial, path)
