"""Build one sweep point: the task a Dask worker runs, and the process it runs it in.

The task (:func:`run_point`) starts ``python -m tritile.sw.sweep_point`` in a session of
its own, hands it the point's request on stdin and returns the record the process writes.
The build runs in that process, not in the worker, so that

- a build that crashes (a tool killed, an exception) fails its point with the reason
  and leaves the worker alive;
- a worker that dies takes its build with it: the process asks the kernel for SIGTERM
  when the worker goes (``PR_SET_PDEATHSIG``, Linux) and then ends its whole process
  group, yosys and nextpnr included, so no tool keeps running for a sweep that is gone;
- a sweep that is stopped (Ctrl-C) stops its builds: the task polls a Dask ``Event``
  named by the sweep and ends the process group when it is set.

The build itself is the point's builder: :func:`build_board_point`, the code of
``tritile build``, unless the point names another (``bench/ternary_qor.py`` does).
"""

import ctypes
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["EVENT_TOPIC", "run_point", "build_point", "build_board_point"]

#: Dask event topic of the tasks' "started" messages (point key, the sweep's stop event,
#: worker address, worker and build process ids, build dir).
EVENT_TOPIC = "tritile-sweep"

# prctl(2) option: the signal the calling process gets when its parent thread exits.
_PR_SET_PDEATHSIG = 1
# Seconds between two looks at the sweep's stop event.
_POLL_SECONDS = 1.0


def _log_tail(path, lines=8):
    try:
        return " | ".join(path.read_text().strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _end_group(child):
    try:
        os.killpg(child.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    child.wait()


def run_point(request, stop_event=None):
    """Build the point of ``request`` (:meth:`SweepPoint.request`); return its record.

    ``stop_event`` names a :class:`distributed.Event`; when it is set the build is
    ended and the record says ``stopped``.
    """
    from distributed import Event, get_worker

    started = time.monotonic()
    build_dir = Path(request["build_dir"])
    build_dir.mkdir(parents=True, exist_ok=True)
    (build_dir / "record.json").unlink(missing_ok=True)
    log_path = build_dir / "point.log"
    worker = get_worker()
    with open(log_path, "w") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", __name__, str(os.getpid())], stdin=subprocess.PIPE,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, text=True)
    worker.log_event(EVENT_TOPIC, {"key": request["key"], "sweep": stop_event,
                                   "worker": worker.address,
                                   "worker_pid": os.getpid(), "build_pid": child.pid,
                                   "build_dir": str(build_dir)})
    try:
        child.stdin.write(json.dumps(request))
        child.stdin.close()
    except BrokenPipeError:
        pass
    stop = Event(stop_event) if stop_event else None
    stopped = False
    try:
        while True:
            try:
                child.wait(timeout=_POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                if stop is not None and stop.is_set():
                    stopped = True
                    _end_group(child)
                    break
    finally:
        # Also after the build process ended: a tool it started may outlive it (a build
        # process killed with SIGKILL cannot end its group itself).
        _end_group(child)
    extra = {"seconds": round(time.monotonic() - started, 1), "worker": worker.address}
    if stopped:
        return {"key": request["key"], "status": "stopped", "reason": "sweep stopped",
                **extra}
    try:
        record = json.loads((build_dir / "record.json").read_text())
    except (OSError, json.JSONDecodeError):
        code = child.returncode
        how = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
        return {"key": request["key"], "status": "failed",
                "reason": f"build process {how}: {_log_tail(log_path)}", **extra}
    return {**record, **extra}


def build_point(request):
    """Build the point of ``request`` in this process with its builder; return its record.

    The tools are checked first: a worker whose tools differ from those the point was
    planned with would build another point than its key says.
    """
    from .sweep_store import BASE_TOOLS, SweepPoint, tool_versions
    from .toolchain import ToolError

    point = SweepPoint.from_request(request)
    try:
        here = tool_versions(name for name in point.tools if name not in BASE_TOOLS)
    except ToolError as exc:
        return point.record("failed", str(exc))
    if here != point.tools:
        differ = ", ".join(f"{name} {here.get(name)} here, {point.tools.get(name)} asked"
                           for name in {**point.tools, **here}
                           if here.get(name) != point.tools.get(name))
        return point.record("failed", f"the worker's tools differ: {differ}")
    module, _, function = point.builder.partition(":")
    return getattr(importlib.import_module(module), function)(point, request["build_dir"])


def build_board_point(point, build_dir):
    """Build ``point`` for its board with ``tritile build``'s code; return its record."""
    from tritile.hw.bitstream import BuildError, FitError
    from tritile.hw.board import get_board
    from tritile.hw.board_build import build_board

    from .toolchain import ToolError

    try:
        report = build_board(get_board(point.board), point.config, build_dir,
                             seed=point.seed or 1, attempts=point.attempts,
                             stage=point.stage,
                             # The cells per component cost a second synthesis: worth it
                             # next to a place and route, not for every synthesized point.
                             components=point.stage == "pnr")
    except FitError as exc:
        return point.record("unfit", str(exc))
    except (BuildError, ToolError) as exc:
        return point.record("failed", " | ".join(str(exc).splitlines()))
    return point.record("ok", report=report)


def _die_with_parent(parent_pid):
    """Have the kernel send SIGTERM when the worker goes; end the process group then."""
    def end_group(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.killpg(0, signal.SIGTERM)

    signal.signal(signal.SIGTERM, end_group)
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    # The worker may have gone before the request above was in place.
    if os.getppid() != parent_pid:
        end_group(signal.SIGTERM, None)


def main():
    _die_with_parent(int(sys.argv[1]))
    request = json.loads(sys.stdin.read())
    record = build_point(request)
    path = Path(request["build_dir"]) / "record.json"
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(partial, path)


if __name__ == "__main__":
    main()
