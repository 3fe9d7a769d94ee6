"""Wall time of `tritile demo`, with an empty build cache (fresh install) and a warm one.

Runs the demo twice as a user would, in subprocesses: first with TRITILE_CACHE pointing at a
new empty directory, so the Verilator build of the simulated board is included, then again
with the same (now warm) cache. Prints one JSON object with both wall times and the demo's
own report of the cached run.

Usage: python bench/demo.py [--device sim|golden|URL] [--samples N] [--cached-only]
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time


def run_demo(device, samples, cache):
    """Run `tritile demo --json` with ``cache`` as TRITILE_CACHE; return (seconds, report)."""
    argv = [sys.executable, "-c", "import sys; from tritile.sw.cli import main; "
                                  "sys.exit(main(sys.argv[1:]))",
            "demo", "--device", device, "--json"]
    if samples:
        argv += ["--samples", str(samples)]
    env = dict(os.environ)
    if cache:
        env["TRITILE_CACHE"] = cache
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, stdout=subprocess.PIPE, check=True, text=True)
    return time.perf_counter() - start, json.loads(done.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="sim")
    parser.add_argument("--samples", type=int)
    parser.add_argument("--cached-only", action="store_true",
                        help="skip the cold run; use the current cache")
    args = parser.parse_args()
    result = {"device": args.device, "python": platform.python_version(),
              "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="tritile-cache-") as fresh:
        cache = None if args.cached_only else fresh
        if not args.cached_only:
            result["cold_seconds"], _ = run_demo(args.device, args.samples, cache)
        result["cached_seconds"], result["report"] = run_demo(args.device, args.samples, cache)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
