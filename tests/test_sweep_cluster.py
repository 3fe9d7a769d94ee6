"""Sweeps that really synthesize, on Dask clusters: a local cluster of 2 process workers
(stopped with Ctrl-C, resumed, re-run), a worker and a build process killed mid-build,
and a separately started ``dask scheduler`` with 2 ``dask worker`` processes (stopped
with Ctrl-C, which ends the builds on its workers, then run to the end).

Each point is the whole SoC of a tiny config (a 1 x C int8 array, small memories)
synthesized for the iCEBreaker with YoWASP yosys: about 20 s of one core each.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from tritile.sw.config import AcceleratorConfig
from tritile.sw.sweep import plan_sweep, run_sweep
from tritile.sw.sweep_cluster import dask_processes
from tritile.sw.sweep_spec import load_spec
from tritile.sw.sweep_store import ResultStore

pytestmark = pytest.mark.slow

TINY = AcceleratorConfig(systolic_rows=1, systolic_cols=1, ternary_lanes=0, ternary_fan_in=0,
                         max_m=2, max_k=4, max_n=4, act_depth=8, weight_depth=16,
                         trit_depth=16, out_depth=8, acc_width=18)


def tiny_spec(tmp_path, cols):
    """Write a SPEC sweeping ``systolic_cols`` over ``cols`` from the tiny base."""
    (tmp_path / "tiny.json").write_text(TINY.to_json())
    path = tmp_path / "spec.toml"
    path.write_text(f'base = "tiny.json"\nboards = ["icebreaker"]\n'
                    f'[grid]\nsystolic_cols = {json.dumps(list(cols))}\n')
    return path


def interruptible():
    """For Popen's ``preexec_fn``: Ctrl-C's default action in the sweep, as in a terminal.

    A test runner started in the background of a non-interactive shell (``cmd &``, as
    some CI scripts do) ignores SIGINT, its children inherit that, and Python then
    installs no KeyboardInterrupt handler: the tests' Ctrl-C would be ignored.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def sweep_command(spec, out, *args):
    return [sys.executable, "-m", "tritile.sw.cli", "sweep", str(spec), "--stage", "synth",
            "--out", str(out), *args]


def records(out):
    return {path.stem: json.loads(path.read_text())
            for path in sorted((out / "points").glob("*.json"))}


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.5)


def descendants(process):
    """Every process below ``process`` (Popen), builds in their own sessions included."""
    return psutil.Process(process.pid).children(recursive=True)


def command_line(process):
    """``process``'s command line, or "" once it has ended (a zombie has none)."""
    try:
        return " ".join(process.cmdline())
    except (psutil.ZombieProcess, psutil.NoSuchProcess):
        return ""


def assert_gone(processes, timeout=30):
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    assert not alive, f"left running: {[(p.pid, command_line(p)) for p in alive]}"


def test_local_cluster_sweep_stops_on_ctrl_c_resumes_and_reuses(tmp_path):
    spec, out = tiny_spec(tmp_path, [1, 2, 3, 99]), tmp_path / "out"
    err = tmp_path / "first.err"
    with open(err, "w") as stderr:
        first = subprocess.Popen(sweep_command(spec, out, "--workers", "2"),
                                 stdout=subprocess.DEVNULL, stderr=stderr,
                                 start_new_session=True, preexec_fn=interruptible)
    try:
        wait_for(lambda: (out / "points").exists() and any((out / "points").iterdir()),
                 300, "the first finished point")
        below = descendants(first)
        assert sum("tritile.sw.sweep_point" in command_line(p) for p in below) >= 1
        os.killpg(first.pid, signal.SIGINT)      # Ctrl-C in a terminal
        assert first.wait(timeout=60) == 130
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert_gone(below)
    text = err.read_text()
    assert "invalid point {'systolic_cols': 99}: systolic_cols must be between 0 and 64" in text
    assert "building 3 point(s) on a local cluster of 2 worker(s)" in text
    assert text.rstrip().endswith("tritile sweep: interrupted")
    kept = records(out)
    assert kept and all(record["status"] == "ok" for record in kept.values())
    assert json.loads((out / "report.json").read_text())["complete"] is False

    second = subprocess.run(sweep_command(spec, out, "--workers", "2", "--json"),
                            capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr
    assert f"3/3 done ({len(kept)} reused)" in second.stderr
    report = json.loads(second.stdout)
    assert report["complete"] is True
    assert [(row["parameters"], row["status"]) for row in report["points"]] == [
        ({"systolic_cols": c}, "ok") for c in (1, 2, 3)]
    assert report["invalid"] == [{"parameters": {"systolic_cols": 99},
                                  "reason": "systolic_cols must be between 0 and 64, not 99"}]
    for key, record in kept.items():       # finished points are not built again
        assert records(out)[key] == record
    # More columns, more MACs and more logic: the front is every point whose throughput
    # no smaller point matches.
    for row in report["points"]:
        assert row["logic"] > 0 and row["logic_available"] == 5280
        assert row["gmacs"] == pytest.approx(row["parameters"]["systolic_cols"] * 24e6 / 1e9)
    assert any(row["pareto"] for row in report["points"])
    assert (out / "pareto.png").stat().st_size > 0

    third = subprocess.run(sweep_command(spec, out), capture_output=True, text=True,
                           timeout=120)
    assert third.returncode == 0, third.stderr
    assert "3/3 done (3 reused)" in third.stderr
    assert "building" not in third.stderr
    assert (out / "report.md").read_text() == third.stdout


def test_killed_worker_is_retried_and_killed_build_fails_its_point_only(tmp_path):
    spec = load_spec(tiny_spec(tmp_path, [1, 2]))
    entries, _ = plan_sweep(spec, stage="synth")
    store = ResultStore(tmp_path / "out")
    # The first point to start loses its worker, the second its build process, each
    # two seconds into synthesis.
    victims = []

    def kill_when_synthesizing(message):
        if len(victims) == 2 or any(v["key"] == message["key"] for v in victims):
            return
        victims.append(dict(message))
        victim = victims[-1]
        pid = message["worker_pid"] if len(victims) == 1 else message["build_pid"]

        def kill():
            wait_for((Path(message["build_dir"]) / "yosys.log").exists, 120, "yosys")
            time.sleep(2)
            os.kill(pid, signal.SIGKILL)
            victim["killed"] = pid

        threading.Thread(target=kill, daemon=True).start()

    lines = []
    result = run_sweep(entries, store, workers=2, say=lines.append,
                       on_start=kill_when_synthesizing)
    worker, build = victims
    assert "killed" in worker and "killed" in build
    assert not psutil.pid_exists(worker["worker_pid"])
    # Each killed build's process group, yosys included, is gone.
    for victim in victims:
        with pytest.raises(ProcessLookupError):
            os.killpg(victim["build_pid"], 0)
    assert set(result) == {entry.point.key for entry in entries}
    assert result[worker["key"]]["status"] == "ok"
    assert result[worker["key"]]["starts"] == 2
    failed = result[build["key"]]
    assert failed["status"] == "failed" and failed["starts"] == 1
    assert failed["reason"].startswith("build process killed by signal 9: ")
    assert records(store.root) == result
    assert lines[-1].startswith("2/2 done (0 reused), 0 running, 1 failed")


@pytest.fixture
def dask_cluster(tmp_path):
    """A ``dask scheduler`` and 2 ``dask worker`` processes on 127.0.0.1; all stopped after.

    Yields the address and a function that lists the build processes below them.
    """
    with dask_processes(2, tmp_path) as (address, processes):
        below = [p for process in processes for p in descendants(process)]

        def builds():
            return [p for process in processes for p in descendants(process)
                    if "tritile.sw.sweep_point" in command_line(p)]

        yield address, builds
    assert_gone(below)


def test_sweep_on_a_separately_started_scheduler_and_two_workers(tmp_path, dask_cluster):
    address, builds = dask_cluster
    spec, out = tiny_spec(tmp_path, [1, 2]), tmp_path / "out"
    # Ctrl-C ends the builds on the cluster's workers, not only the sweep.
    with open(tmp_path / "first.err", "w") as stderr:
        first = subprocess.Popen(sweep_command(spec, out, "--scheduler", address),
                                 stdout=subprocess.DEVNULL, stderr=stderr,
                                 start_new_session=True, preexec_fn=interruptible)
    try:
        wait_for(lambda: len(builds()) == 2, 120, "both points to build")
        running = [p for build in builds() for p in [build, *build.children(recursive=True)]]
        os.killpg(first.pid, signal.SIGINT)
        assert first.wait(timeout=60) == 130
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert_gone(running)
    assert not (out / "points").exists()

    run = subprocess.run(sweep_command(spec, out, "--scheduler", address, "--json"),
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert f"building 2 point(s) on {address}" in run.stderr
    report = json.loads(run.stdout)
    assert report["scheduler"] == address
    assert [row["status"] for row in report["points"]] == ["ok", "ok"]
    workers = {record["worker"] for record in records(out).values()}
    assert len(workers) == 2 and all(w.startswith("tcp://127.0.0.1:") for w in workers)
