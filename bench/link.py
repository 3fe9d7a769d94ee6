"""Host-link figures: wire cost per weight, link efficiency, simulated-board speed, call cost.

Prints one JSON object. Usage::

    python bench/link.py [--config sim-small] [--weights 65536] [--fuzz 100000]
    python bench/link.py --wire-only          # the wire figures alone (no simulation)

- ``wire``: bits per weight of an upload of ``--weights`` weights (payload plus framing,
  8 bits per byte; an 8N1 line adds 2 more bits per byte), counted on the exact frames the
  driver sends, for each preset and a ternary shape whose L*P is a multiple of 5;
- ``link``: share of the line's byte rate carried by weight bytes during a pipelined
  upload to the simulated board in ``bit`` mode (real UART pins at the configured baud),
  measured with the device's cycle counter;
- ``sim``: simulated cycles per second of the board (byte mode), idle and while working;
  ping round trips, and host->device WRITE payload bytes per second (wall clock) and
  cycles per payload byte of a pipelined upload in byte mode, of int8 weights and of a
  base-3 ternary weight stream (which crosses memory words);
- ``calls``: cycles (measured and predicted) and wall time of gemm/ternary calls;
- ``fuzz``: bad frames sent, hangs and altered weights (run tests/test_fuzz_link.py's
  procedure with ``--fuzz`` frames).
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from tritile.sw import PRESETS, load_config, protocol
from tritile.sw.device import Device, weight_requests
from tritile.sw.engines import engine, engine_for_numerics


def wire_cost(config, weights):
    """Return bits per weight on the wire for int8 and both ternary packings.

    K is the largest multiple of the engine's tile height within ``max_k`` and N tiles
    are whole engine tiles where the memory allows, so the figures show the protocol's
    and packing's cost, not the padding of ragged tiles.
    """
    result = {"config_id": config.config_id}
    rng = np.random.default_rng(0)
    for kind, packing in (("int8", None), ("ternary", "base3"), ("ternary", "2bit")):
        spec = engine_for_numerics(kind)
        if not spec.present(config):
            continue        # the config leaves this engine out
        (tile_k, tile_n), limit = spec.tile_size(config), spec.weight_capacity(config)
        lo, hi = spec.weight_values
        k = config.max_k // tile_k * tile_k
        n = -(-weights // (k * tile_n)) * tile_n
        cols_per_upload = min(config.max_n, limit // k)
        cols_per_upload = max(1, cols_per_upload // tile_n * tile_n or cols_per_upload)
        total = payload = 0
        for n0 in range(0, n, cols_per_upload):
            cols = min(cols_per_upload, n - n0)
            W = rng.integers(lo, hi + 1, (k, cols), dtype=np.int8)
            for opcode, args, data in weight_requests(config, spec, W, packing):
                total += len(protocol.encode_request(opcode, 0, args, data))
                payload += len(data)
        name = "int8" if kind == "int8" else f"ternary_{packing}"
        result[name] = {"k": k, "n": n, "weights": k * n,
                        "bits_per_weight": 8 * total / (k * n),
                        "line_bits_per_weight_8n1": 10 * total / (k * n),
                        "payload_share": payload / total}
    return result


def link_efficiency(config, nbytes):
    """Send ``nbytes`` of WRITE data in full frames, pipelined, to the board in bit mode;
    return the share of the line's byte slots that carried data, from the cycle counter.
    """
    targets = [t for t in protocol.WRITABLE_TARGETS if t != protocol.Target.PARAMS]
    target = max(targets, key=lambda t: protocol.target_size(config, t))
    chunk = min(protocol.MAX_DATA, protocol.target_size(config, target))
    frames = max(3, nbytes // chunk)
    requests = [(protocol.Opcode.WRITE, protocol.write_args(target, 0), bytes(chunk))] * frames
    with Device.open("sim", config=config, mode="bit", progress=False) as dev:
        before = dev.counters()["cycles"]
        sent = dev.stats["bytes_sent"]
        start = time.monotonic()
        # The driver's own pipelined sender (two frames in flight), as uploads use it.
        dev._pipeline(requests)
        wall = time.monotonic() - start
        cycles = (dev.counters()["cycles"] - before) % (1 << 32)
        wire_bytes = dev.stats["bytes_sent"] - sent
    slots = cycles / (10 * config.clock_hz / config.baud)
    return {"baud": config.baud, "frame_data_bytes": chunk, "frames": frames,
            "data_bytes": chunk * frames, "wire_bytes": wire_bytes, "cycles": cycles,
            "line_byte_slots": slots, "data_share_of_line": chunk * frames / slots,
            "wall_seconds": wall}


def _int8_upload(config, nbytes):
    """Return WRITE requests of ``nbytes`` of int8 weights in full frames."""
    target = protocol.Target.SYSTOLIC_WEIGHT
    chunk = min(protocol.MAX_DATA, protocol.target_size(config, target))
    frames = max(2, nbytes // chunk)
    return [(protocol.Opcode.WRITE, protocol.write_args(target, 0), bytes(chunk))] * frames


def _ternary_base3_upload(config, rng):
    """Return the WRITE requests of as many K = ``max_k`` columns of trits as the ternary
    weight memory holds, packed base-3 (one stream across the memory's words)."""
    spec = engine("ternary")
    k = config.max_k
    T = rng.integers(-1, 2, (k, min(config.max_n, spec.weight_capacity(config) // k)),
                     dtype=np.int8)
    return weight_requests(config, spec, T, "base3")


def _upload_rate(dev, requests):
    """Send WRITE ``requests`` through the driver's pipeline; return their payload rate."""
    data_bytes = sum(len(data) for _, _, data in requests)
    c0, start = dev.counters()["cycles"], time.monotonic()
    dev._pipeline(requests)
    wall = time.monotonic() - start
    cycles = (dev.counters()["cycles"] - c0) % (1 << 32)
    return {"data_bytes": data_bytes, "wall_seconds": wall,
            "payload_bytes_per_second": data_bytes / wall,
            "cycles_per_data_byte": cycles / data_bytes}


def board_speed_and_calls(config, repeat, upload_bytes):
    rng = np.random.default_rng(1)
    out = {}
    with Device.open("sim", config=config, progress=False) as dev:
        c0, t0 = dev.counters()["cycles"], time.monotonic()
        time.sleep(2)
        c1, t1 = dev.counters()["cycles"], time.monotonic()
        out["sim_idle_cycles_per_second"] = ((c1 - c0) % (1 << 32)) / (t1 - t0)
        pings = sorted(dev.ping() for _ in range(20))
        out["ping_ms"] = {"median": 1000 * pings[10], "max": 1000 * pings[-1]}
        out["byte_mode_upload"] = _upload_rate(dev, _int8_upload(config, upload_bytes))
        if engine("ternary").present(config):
            out["byte_mode_ternary_base3_upload"] = _upload_rate(
                dev, _ternary_base3_upload(config, np.random.default_rng(2)))
        calls = []
        m, k, n = config.max_m, min(config.max_k, config.act_depth // config.max_m), \
            min(config.max_n, config.out_depth // config.max_m)
        X = rng.integers(-128, 128, (m, k), dtype=np.int8)
        W = rng.integers(-128, 128, (k, n), dtype=np.int8)
        T = rng.integers(-1, 2, (k, n), dtype=np.int8)
        handles = {"gemm": dev.upload_int8(W), "ternary": dev.upload_ternary(T)}
        for name in ("gemm", "ternary"):
            for _ in range(repeat):
                c0, t0 = dev.counters()["cycles"], time.monotonic()
                getattr(dev, name)(X, handles[name])
                wall = time.monotonic() - t0
                c1 = dev.counters()["cycles"]
                calls.append({"call": name, "m": m, "k": k, "n": n, **dev.last_run,
                              "wall_seconds": wall,
                              "sim_cycles_per_second": ((c1 - c0) % (1 << 32)) / wall})
        out["calls"] = calls
    return out


def fuzz(frames):
    env = {**os.environ, "TRITILE_FUZZ_FRAMES": str(frames)}
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
         os.path.join(os.path.dirname(__file__), "..", "tests", "test_fuzz_link.py")],
        env=env, capture_output=True, text=True)
    line = next((l for l in result.stdout.splitlines() if l.startswith("frames=")), "")
    return {"frames": frames, "passed": result.returncode == 0,
            "hangs": 0 if result.returncode == 0 else None,
            "altered_weights": 0 if result.returncode == 0 else None,
            "summary": line, "wall_seconds": time.monotonic() - start}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="sim-small")
    parser.add_argument("--weights", type=int, default=65536)
    parser.add_argument("--link-bytes", type=int, default=8192)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--upload-bytes", type=int, default=65536,
                        help="WRITE data bytes of the byte-mode upload rate figure")
    parser.add_argument("--fuzz", type=int, default=0,
                        help="bad frames for the robustness run (0 skips it)")
    parser.add_argument("--wire-only", action="store_true",
                        help="print the wire figures alone")
    args = parser.parse_args()
    config = load_config(args.config)
    five = PRESETS["sim-small"].replace(ternary_lanes=8, ternary_fan_in=10, max_k=512,
                                        trit_depth=65536)
    report = {"wire": {name: wire_cost(preset, args.weights) for name, preset in
                       [*PRESETS.items(), ("sim-small with L*P=80", five)]}}
    if args.wire_only:
        print(json.dumps(report, indent=2))
        return
    report["link"] = link_efficiency(config, args.link_bytes)
    report.update(board_speed_and_calls(config, args.repeat, args.upload_bytes))
    if args.fuzz:
        report["fuzz"] = fuzz(args.fuzz)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
