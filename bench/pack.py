"""Throughput of the ternary packers and unpackers, and their bits per weight.

Prints one JSON object. Usage: python bench/pack.py [--trits N] [--repeat R]
"""

import argparse
import json
import platform
import time

import numpy as np

from tritile.sw import pack_trits_2bit, unpack_trits_2bit, pack_trits_base3, unpack_trits_base3

FORMATS = {"2bit": (pack_trits_2bit, unpack_trits_2bit),
           "base3": (pack_trits_base3, unpack_trits_base3)}


def best_rate(function, count, repeat):
    """Return the best of ``repeat`` runs of ``function()`` in items per second."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return count / best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trits", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    trits = np.random.default_rng(0).integers(-1, 2, args.trits, dtype=np.int8)
    result = {"trits": args.trits, "python": platform.python_version(),
              "numpy": np.__version__, "formats": {}}
    for name, (pack, unpack) in FORMATS.items():
        data = pack(trits)
        assert np.array_equal(unpack(data, trits.size), trits)
        result["formats"][name] = {
            "pack_trits_per_s": best_rate(lambda: pack(trits), trits.size, args.repeat),
            "unpack_trits_per_s": best_rate(lambda: unpack(data, trits.size), trits.size,
                                            args.repeat),
            "bits_per_weight": len(data) * 8 / trits.size,
        }
    result["information_limit_bits"] = float(np.log2(3))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
