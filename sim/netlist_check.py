"""The device checks ``tritile build --verify`` runs on a build's synthesized netlist.

:func:`verify_netlist` serves the netlist as a simulated board (``tritile sim-board
--netlist``, :mod:`tritile.sim.netlist`) and drives it with the host driver as a user's
script drives a board: PING, INFO (the build's config id and engines), then for each
engine the config has a small problem, raw and requantized, compared bit-exactly with the
golden model. Shapes are a little larger than the engine's tile so that the planner
tiles them.
"""

import os
import random
import sys
import time

import numpy as np

from tritile.sw import gemm_int8, requantize, ternary_matmul
from tritile.sw.device import Device, DeviceError

__all__ = ["NetlistMismatchError", "first_difference", "device_checks", "verify_netlist"]


class NetlistMismatchError(AssertionError):
    """The netlist computed something other than the golden model (or did not answer)."""


def first_difference(name, got, expected):
    """Return None if the arrays are equal, else a sentence naming the first difference."""
    got, expected = np.asarray(got), np.asarray(expected)
    if got.shape != expected.shape:
        return f"{name}: shape {got.shape}, the golden model's is {expected.shape}"
    differ = np.argwhere(got != expected)
    if not len(differ):
        return None
    index = tuple(int(i) for i in differ[0])
    return (f"{name}: output {list(index)} is {got[index]}, the golden model says "
            f"{expected[index]} ({len(differ)} of {got.size} outputs differ)")


def _shape(config, rows, cols):
    # One full tile plus a partial one in each dimension the planner tiles, within limits.
    return (min(3, config.max_m), min(rows + 3, config.max_k), min(cols + 2, config.max_n))


def _requant_params(rng, n):
    return (rng.integers(0, 1 << 15, n).astype(np.int32),
            rng.integers(8, 24, n).astype(np.int32))


def _systolic_checks(config, rng):
    m, k, n = _shape(config, config.systolic_rows, config.systolic_cols)
    X = rng.integers(-128, 128, (m, k), dtype=np.int8)
    W = rng.integers(-128, 128, (k, n), dtype=np.int8)
    bias = rng.integers(-5000, 5000, n).astype(np.int32)
    mult, shift = _requant_params(rng, n)
    label = f"systolic int8 {m}x{k}x{n}"
    return [
        (f"{label} raw", lambda dev: first_difference(
            f"{label} raw", dev.gemm(X, W, bias=bias), gemm_int8(X, W, bias))),
        (f"{label} requantized", lambda dev: first_difference(
            f"{label} requantized",
            dev.gemm(X, W, bias=bias, mult=mult, shift=shift, relu=True),
            requantize(gemm_int8(X, W, bias), mult, shift, True))),
    ]


def _ternary_checks(config, rng):
    m, k, n = _shape(config, config.ternary_fan_in, config.ternary_lanes)
    q = rng.integers(-128, 128, (m, k), dtype=np.int8)
    T = rng.integers(-1, 2, (k, n), dtype=np.int8)
    mult, shift = _requant_params(rng, n)
    label = f"ternary {m}x{k}x{n}"
    return [
        (f"{label} base3 raw", lambda dev: first_difference(
            f"{label} base3 raw", dev.ternary(q, T, packing="base3"), ternary_matmul(q, T))),
        (f"{label} 2bit requantized", lambda dev: first_difference(
            f"{label} 2bit requantized",
            dev.ternary(q, T, mult=mult, shift=shift, relu=False, packing="2bit"),
            requantize(ternary_matmul(q, T), mult, shift, False))),
    ]


def device_checks(config, rng):
    """Return ``[(name, check)]``: each check takes a :class:`Device` and returns None or
    the sentence of :func:`first_difference`."""

    def info(dev):
        got = dev.info()
        if got["config_id"] != config.config_id:
            return f"info: config_id {got['config_id']}, built for {config.config_id}"
        if tuple(got["engines"]) != tuple(config.engines):
            return f"info: engines {got['engines']}, built with {list(config.engines)}"
        return None

    def ping(dev):
        dev.ping()
        return None

    checks = [("ping", ping), ("info", info)]
    if "systolic" in config.engines:
        checks += _systolic_checks(config, rng)
    if "ternary" in config.engines:
        checks += _ternary_checks(config, rng)
    return checks


def verify_netlist(build_dir, *, cell_models=None, seed=None, progress=None):
    """Run :func:`device_checks` on ``build_dir``'s netlist; return the report entries.

    Raises :class:`NetlistMismatchError` naming the first check that failed and its first
    differing output. ``seed`` (default: ``TRITILE_SEED`` or random, printed) draws the
    operands; ``cell_models`` is a Verilog file replacing yosys' models of its cells.
    """
    from .netlist import read_netlist_info
    from tritile.sw.config import AcceleratorConfig

    progress = progress or (lambda message: print(message, file=sys.stderr, flush=True))
    config = AcceleratorConfig.from_dict(read_netlist_info(build_dir)["config"])
    if seed is None:
        seed = int(os.environ.get("TRITILE_SEED", random.randrange(1 << 32)))
    progress(f"verifying the netlist in Verilator (seed={seed}; replay with "
             f"TRITILE_SEED={seed})")
    started = time.monotonic()
    checks = device_checks(config, np.random.default_rng(seed))
    done = []
    with Device.open("sim", netlist=build_dir, cell_models=cell_models,
                     progress=False) as dev:
        progress(f"netlist board up after {time.monotonic() - started:.0f} s")
        for name, check in checks:
            begun = time.monotonic()
            try:
                problem = check(dev)
            except DeviceError as exc:
                problem = f"{name}: {exc}"
            if problem:
                raise NetlistMismatchError(f"the synthesized netlist fails '{name}' "
                                           f"(seed {seed}): {problem}")
            done.append({"check": name, "seconds": round(time.monotonic() - begun, 1)})
            progress(f"netlist: {name} matches ({done[-1]['seconds']:.0f} s)")
    return {"netlist_verified": True, "netlist_checks": done, "netlist_seed": seed,
            "netlist_seconds": round(time.monotonic() - started, 1)}
