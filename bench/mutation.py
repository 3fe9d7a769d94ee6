"""Mutation score of the host-side modules: how many deliberate bugs the fast tests catch.

Runs cosmic-ray (``pip install -e '.[bench]'``) over each module of ``tritile.sw`` named
below with the pure-Python tests that cover it. cosmic-ray mutates the file in place
(``sw/X.py`` is the module ``tritile.sw.X`` in an editable install) and restores it after
each mutant, so run this on a clean checkout and do not edit the tree meanwhile.

A module has hundreds to thousands of mutants (every operator replaced by each of its
alternatives); ``--sample N`` runs a random N of them (seeded, the rest marked skipped) and
the score is reported with its 95% Wilson interval. The tests' random data come from
``TRITILE_SEED`` set to ``--seed``. Prints one JSON object: per module
killed, survived, score, interval and the surviving mutants (line, operator, diff line).

``--sessions DIR`` keeps cosmic-ray's sessions; ``--survivors-only`` then re-runs just the
mutants that survived there against today's tests (those killed stay killed, as tests are
only added), which measures new tests on the same sample in a fraction of the time.

    python bench/mutation.py [--modules numerics,packing] [--sample 80] [--seed 1]
                             [--sessions DIR [--survivors-only]]
"""

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Module -> the fast tests that exercise it (no Verilator, no yosys).
TESTS = {
    "numerics": ["tests/test_numerics.py", "tests/test_numerics_bounds.py",
                 "tests/test_dead_unit.py", "tests/test_conv.py", "tests/test_model.py"],
    "packing": ["tests/test_packing.py"],
    "protocol": ["tests/test_protocol.py", "tests/test_protocol_fields.py"],
    "planner": ["tests/test_planner.py", "tests/test_planner_cycles.py"],
    "config": ["tests/test_config.py", "tests/test_config_bounds.py"],
    "onnx_import": ["tests/test_onnx_import.py", "tests/test_onnx_import_errors.py",
                    "tests/test_onnx_import_conv.py", "tests/test_onnx_import_qdq.py",
                    "tests/test_onnx_import_tail.py", "tests/test_onnx_import_edges.py"],
}


def _config(module, timeout):
    tests = " ".join(TESTS[module])
    command = (f"{sys.executable} -m pytest -x -q -p no:cacheprovider -m 'not slow' "
               f"--hypothesis-seed=0 {tests}")
    return (f'[cosmic-ray]\nmodule-path = "sw/{module}.py"\ntimeout = {timeout}\n'
            f'excluded-modules = []\ntest-command = "{command}"\n'
            f'[cosmic-ray.distributor]\nname = "local"\n')


def _sample(session, size, seed):
    """Mark all but ``size`` randomly chosen mutants of ``session`` as skipped."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    with use_db(str(session), WorkDB.Mode.open) as db:
        jobs = sorted(item.job_id for item in db.work_items)
        keep = set(random.Random(seed).sample(jobs, min(size, len(jobs))))
        skipped = [job for job in jobs if job not in keep]
        db.set_multiple_results(skipped, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
        return len(jobs)


def _wilson(killed, total, z=1.96):
    if total == 0:
        return (0.0, 1.0)
    p = killed / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return (round(centre - half, 3), round(centre + half, 3))


def _changed_line(diff):
    added = [line[1:].strip() for line in (diff or "").splitlines()
             if line.startswith("+") and not line.startswith("+++")]
    return added[0] if added else ""


def _reset_survivors(session):
    """Make the survived mutants of ``session`` pending again; skip those that never ran.

    Returns the number of mutants of the module.
    """
    import sqlite3

    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    with sqlite3.connect(session) as db:
        jobs = {row[0] for row in db.execute("SELECT job_id FROM work_items")}
        done = {row[0] for row in db.execute("SELECT job_id FROM work_results")}
        db.execute("DELETE FROM work_results WHERE test_outcome = 'SURVIVED'")
    with use_db(str(session), WorkDB.Mode.open) as db:
        db.set_multiple_results(sorted(jobs - done),
                                WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
    return len(jobs)


def run_module(module, work, sample, seed, timeout, survivors_only=False):
    """Run cosmic-ray on one module; return its figures.

    With ``survivors_only``, the session kept in ``work`` by an earlier run is re-run for
    its surviving mutants only, against today's tests (the killed ones stay killed: tests
    are only ever added).
    """
    config = work / f"{module}.toml"
    session = work / f"{module}.sqlite"
    config.write_text(_config(module, timeout))
    cr = [sys.executable, "-m", "cosmic_ray.cli"]
    if survivors_only:
        if not session.exists():
            raise SystemExit(f"no earlier session {session} to re-test")
        mutants = _reset_survivors(session)
    else:
        subprocess.run([*cr, "init", str(config), str(session)], cwd=ROOT, check=True)
        mutants = _sample(session, sample, seed) if sample else None
    started = time.monotonic()
    # The randomized tests draw from TRITILE_SEED: the same data for every mutant, so a
    # mutant's fate does not depend on the draw.
    subprocess.run([*cr, "exec", str(config), str(session)], cwd=ROOT, check=True,
                   env={**os.environ, "TRITILE_SEED": str(seed)})
    dump = subprocess.run([*cr, "dump", str(session)], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout
    killed, survivors, incompetent = 0, [], 0
    for line in dump.splitlines():
        item, result = json.loads(line)
        if not result or result["worker_outcome"] == "skipped":
            continue
        outcome = result.get("test_outcome")
        if outcome == "killed":
            killed += 1
        elif outcome == "survived":
            spec = item["mutations"][0]
            survivors.append({"line": spec["start_pos"][0], "operator": spec["operator_name"],
                              "occurrence": spec["occurrence"],
                              "mutant": _changed_line(result.get("diff"))})
        else:
            incompetent += 1
    total = killed + len(survivors)
    return {"module": f"sw/{module}.py", "mutants": mutants, "run": total,
            "killed": killed, "survived": len(survivors), "incompetent": incompetent,
            "score": round(killed / total, 3) if total else None,
            "interval95": _wilson(killed, total),
            "seconds": round(time.monotonic() - started, 1),
            "survivors": sorted(survivors, key=lambda s: s["line"])}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", default=",".join(TESTS),
                        help=f"comma-separated, from {', '.join(TESTS)}")
    parser.add_argument("--sample", type=int, default=80,
                        help="mutants run per module, drawn at random (0: all)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the sample")
    parser.add_argument("--sessions", help="keep cosmic-ray's sessions in this directory "
                                           "(default: a temporary one)")
    parser.add_argument("--survivors-only", action="store_true",
                        help="re-run only the survivors of the sessions in --sessions "
                             "against today's tests")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds one test run may take before the mutant counts as killed")
    args = parser.parse_args(argv)
    modules = args.modules.split(",")
    unknown = [m for m in modules if m not in TESTS]
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; choose from {', '.join(TESTS)}")
    try:
        import cosmic_ray  # noqa: F401
    except ImportError:
        parser.error("cosmic-ray is not installed: pip install -e '.[bench]'")
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "sw"], cwd=ROOT,
                           capture_output=True, text=True).stdout
    if dirty.strip():
        parser.error("sw/ has uncommitted changes; cosmic-ray mutates files in place, "
                     "so run it on a clean checkout")
    if args.survivors_only and not args.sessions:
        parser.error("--survivors-only needs the --sessions of an earlier run")
    with tempfile.TemporaryDirectory(prefix="tritile-mutation-") as tmp:
        work = Path(args.sessions or tmp)
        work.mkdir(parents=True, exist_ok=True)
        results = []
        for module in modules:
            print(f"mutation: {module} ...", file=sys.stderr, flush=True)
            results.append(run_module(module, work, args.sample, args.seed, args.timeout,
                                      args.survivors_only))
            print(f"mutation: {module}: {results[-1]['score']} "
                  f"({results[-1]['seconds']} s)", file=sys.stderr, flush=True)
    print(json.dumps({"sample": args.sample, "seed": args.seed, "modules": results}, indent=1))


if __name__ == "__main__":
    main()
