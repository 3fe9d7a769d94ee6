"""A Dask cluster of separate processes on this machine: ``dask scheduler`` + ``dask worker``s.

What ``docs/sweeps.md`` tells a user to start by hand, started and stopped by the
benchmark and the tests that sweep on a cluster the sweep did not start itself.
"""

import contextlib
import socket
import subprocess
import sys
from pathlib import Path

__all__ = ["dask_processes"]

# Seconds for the scheduler and workers to come up, and for each to stop.
_START_TIMEOUT = 120
_STOP_TIMEOUT = 30


def _free_port(host):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def dask_processes(workers, logs, host="127.0.0.1"):
    """Start a scheduler and ``workers`` one-thread workers; yield ``(address, processes)``.

    The processes are those of this environment's ``dask`` command, their output in
    ``logs/dask-N.log``; the block is entered once every worker has joined, and every
    process is stopped (SIGTERM, SIGKILL after 30 s) when it is left.
    """
    from distributed import Client

    dask = Path(sys.executable).parent / "dask"
    port = _free_port(host)
    address = f"tcp://{host}:{port}"
    argvs = [["scheduler", "--host", host, "--port", str(port), "--no-dashboard"]]
    argvs += [["worker", address, "--nthreads", "1", "--name", f"w{i}", "--host", host,
               "--no-dashboard"] for i in range(workers)]
    processes = []
    try:
        for index, argv in enumerate(argvs):
            with open(Path(logs) / f"dask-{index}.log", "w") as log:
                processes.append(subprocess.Popen([str(dask), *argv], stdout=log,
                                                  stderr=subprocess.STDOUT))
        with Client(address, timeout=_START_TIMEOUT) as client:
            client.wait_for_workers(workers, timeout=_START_TIMEOUT)
        yield address, processes
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in reversed(processes):
            try:
                process.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
