"""Convolutions on both engines by the planner, and the demo models' cost per inference.

Prints one JSON object with three parts:

- ``layers``: conv layer shapes as the program mode will run them, one GEMM over the
  implicit im2col rows (M = output pixels, K = kh*kw*C padded to the engine's chunk,
  N = C_out), planned by ``plan_gemm`` on an 8x8 systolic array and ``plan_ternary`` on an
  8 lanes x 8 inputs ternary unit: cycles and utilization (of the padded GEMM, and of the
  useful MACs, unpadded K).
- ``demo``: the demo CNN and MLP on ``--device`` per inference, layer by layer (a
  convolution as one GEMM over host-built im2col rows, one batch per layer) and, on a
  device with program mode, as device programs (weights resident, one image per
  RUN_PROGRAM): cycles (the device's counters, or the planner on ``golden``) and link bytes
  (measured on a link, framing included; on ``golden`` the payload layer by layer and the
  protocol's exact framing count in program mode), next to the program-mode target
  ``(input bytes + output bytes) * 1.1 + 128``. On ``golden`` a config without program mode
  gets its program rows from the same config with ``max_layers`` = 16.
- ``presets``: per board preset, the demo models' inferences per second at the preset's
  clock and baud rate, compute time and link time shown separately, layer by layer (the
  batch's planner cycles, and payload bytes of a 450-image batch per image, framing not
  counted) and as device programs (the cycle model of each descriptor, and the protocol's
  bytes per inference, framing included; a preset without program mode is lowered with
  ``max_layers`` = 16 to show what program mode gives it).

One command measures the program mode on a running simulated board (``tritile sim-board``)
or a board: ``python bench/conv.py --device socket://HOST:PORT`` (its ``demo`` part).

With ``--docs docs/conv.md`` the tables go into that document between their markers (the
prose around them is kept): the layers and the presets always, the demo table only from a
run on a device (``--device sim`` or a board), whose counters it shows.

Usage: python bench/conv.py [--device golden|sim|URL] [--config NAME|FILE] [--samples N]
                            [--docs docs/conv.md]
"""

import argparse
import json

import numpy as np
from doc_table import write_table

from tritile.sw.compiler import CompileError, compile_model
from tritile.sw.config import PRESETS, AcceleratorConfig, load_config
from tritile.sw.conv import Window
from tritile.sw.digits import load_demo_cnns, load_demo_models, load_digits_split
from tritile.sw.engines import engine, engine_for_numerics
from tritile.sw.executor import GOLDEN, GoldenBackend, execute, open_backend, backend_config
from tritile.sw.planner import plan_gemm, plan_ternary
from tritile.sw.program_lowering import lower_program
from tritile.sw.program_model import layer_cycles
from tritile.sw.protocol import Engine

#: Descriptors given to a config without program mode to show what program mode does.
PROGRAM_LAYERS = 16

#: An 8x8 systolic array and an 8x8 ternary unit, with memories large enough that each
#: layer below is one engine call (the program mode walks the whole map in one call).
BENCH_CONFIG = AcceleratorConfig(
    systolic_rows=8, systolic_cols=8, ternary_lanes=8, ternary_fan_in=8, max_m=4096,
    max_k=1024, max_n=128, act_depth=1 << 22, weight_depth=1 << 16, trit_depth=1 << 16,
    out_depth=1 << 20)

#: (name, H, W, C, N, kernel, stride, pad)
LAYERS = [
    ("3x3 16x16x16->32 pad 1 (target)", 16, 16, 16, 32, 3, 1, 1),
    ("3x3 8x8x1->8 pad 1 (demo conv1)", 8, 8, 1, 8, 3, 1, 1),
    ("3x3 4x4x8->16 pad 1 (demo conv2)", 4, 4, 8, 16, 3, 1, 1),
    ("3x3 32x32x8->16 stride 2 pad 1", 32, 32, 8, 16, 3, 2, 1),
    ("1x1 16x16x32->32 (pointwise)", 16, 16, 32, 32, 1, 1, 0),
    ("5x5 12x12x4->8", 12, 12, 4, 8, 5, 1, 0),
    ("3x3 8x8x64->64 pad 1", 8, 8, 64, 64, 3, 1, 1),
]


def layer_figures(config=BENCH_CONFIG):
    rows = []
    for name, h, w, c, n, kernel, stride, pad in LAYERS:
        window = Window(kernel, stride, pad)
        oh, ow = window.output_size(h, w)
        m, k = oh * ow, kernel * kernel * c
        row = {"layer": name, "m": m, "k": k, "n": n}
        for engine_name, plan, chunk in (("systolic", plan_gemm, config.systolic_rows),
                                         ("ternary", plan_ternary, config.ternary_fan_in)):
            k_padded = kernel * kernel * -(-c // chunk) * chunk
            result = plan(config, m, k_padded, n)
            row[engine_name] = {"k_padded": k_padded, "cycles": result.cycles,
                                "utilization": result.utilization,
                                "useful_utilization": m * k * n / (result.peak_macs_per_cycle
                                                                   * result.cycles)}
        rows.append(row)
    return rows


def _demo_jobs(split):
    float_mlp, ternary_mlp = load_demo_models()
    float_cnn, ternary_cnn = load_demo_cnns()
    return [("mlp", "int8", float_mlp, split.X_train), ("mlp", "ternary", ternary_mlp, None),
            ("cnn", "int8", float_cnn, split.X_train),
            ("cnn", "ternary", ternary_cnn, split.X_train)]


def _target_bytes(program):
    """The issue's link target per inference: (input + output bytes) * 1.1 + 128."""
    out = program.out_features * (4 if program.layers[-1].raw_output else 1)
    return (program.in_features + out) * 1.1 + 128


def _program_config(config):
    # Program mode walks conv layers in place, so it comes with the im2col walk.
    return (config if config.max_layers
            else config.replace(max_layers=PROGRAM_LAYERS, conv_walk=1))


def demo_figures(device, samples, split, config):
    rows = []
    X = split.X_test[:samples]
    with open_backend(device, config) as backend:
        config = backend_config(backend)
        runs = [(backend, config, "layers")]
        if device == GOLDEN:
            program_config = _program_config(config)
            runs.append((GoldenBackend(program_config), program_config, "program"))
        elif config.max_layers:
            runs.append((backend, config, "program"))
        for model_name, engine_name, model, calib in _demo_jobs(split):
            for run_backend, run_config, mode in runs:
                program = compile_model(model, run_config, engine_name, calib=calib)
                result = execute(program, run_backend, X, mode=mode)
                measured = result.cycles is not None
                if mode == "program":
                    link = result.link_bytes_per_inference if measured else \
                        result.link["model_bytes_per_inference"]
                    source = "link, framing included" if measured else \
                        "protocol model, framing included"
                else:
                    link = (result.wire_bytes if measured else result.bytes_streamed) / samples
                    source = "link, framing included" if measured else "payload"
                rows.append({
                    "model": model_name, "engine": engine_name, "mode": mode,
                    "config_id": run_config.config_id, "samples": samples,
                    "cycles_per_inference": (result.cycles if measured
                                             else result.predicted_cycles) / samples,
                    "predicted_cycles_per_inference": result.predicted_cycles / samples,
                    "link_bytes_per_inference": link, "bytes_source": source,
                    "program_link_bytes_per_inference": result.link and
                    result.link["model_bytes_per_inference"],
                    "upload_wire_bytes": result.link and result.link["upload_wire_bytes"],
                    "target_bytes": _target_bytes(program)})
    return rows


def _program_figures(model, engine_name, calib, config):
    """Cycles and link bytes of one inference as a device program, or why it has none."""
    config = _program_config(config)
    try:
        device_program = lower_program(compile_model(model, config, engine_name, calib=calib))
    except CompileError as exc:
        return {"program": " ".join(str(exc).split())}
    cycles = sum(layer_cycles(config, engine(Engine(d["engine"])), d["m"], d["k"], d["n"])
                 for d in device_program.descriptors)
    return {"program_compute_cycles": cycles,
            "program_segments": len(device_program.segments),
            "program_link_bytes": device_program.link_bytes_per_inference(config)}


def preset_figures(split):
    batch, rows = len(split.X_test), []
    for preset, config in PRESETS.items():
        for model_name, engine_name, model, calib in _demo_jobs(split):
            row = {"preset": preset, "model": model_name, "engine": engine_name,
                   "clock_hz": config.clock_hz, "baud": config.baud}
            if not engine_for_numerics(engine_name).present(config):
                rows.append({**row, "skipped": f"{preset} has no {engine_name} engine"})
                continue
            try:
                program = compile_model(model, config, engine_name, calib=calib)
            except CompileError as exc:
                rows.append({**row, "skipped": " ".join(str(exc).split())})
                continue
            result = execute(program, GoldenBackend(config), split.X_test, mode="layers")
            batch_compute = result.predicted_cycles / batch / config.clock_hz
            layered = result.bytes_streamed / batch * 10 / config.baud
            row.update(layer_by_layer_compute_seconds=batch_compute,
                       layer_by_layer_bytes=result.bytes_streamed / batch,
                       layer_by_layer_link_seconds=layered,
                       inferences_per_second_layer_by_layer=1 / max(batch_compute, layered))
            figures = _program_figures(model, engine_name, calib, config)
            row.update(figures)
            if "program_link_bytes" in figures:
                compute = figures["program_compute_cycles"] / config.clock_hz
                program_link = figures["program_link_bytes"] * 10 / config.baud
                row.update(program_compute_seconds=compute, program_link_seconds=program_link,
                           inferences_per_second_program=1 / max(compute, program_link))
            rows.append(row)
    return rows


TABLES = {part: (f"<!-- table: bench/conv.py {part} -->", "<!-- /table -->")
          for part in ("layers", "demo", "presets")}


def _percent(value):
    return f"{100 * value:.1f} %"


def _head(*columns):
    """The header and separator lines of a Markdown table."""
    return ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def layers_markdown(rows):
    lines = _head("layer", "M", "K", "N", "systolic K padded", "systolic cycles",
                  "systolic utilization (useful)", "ternary K padded", "ternary cycles",
                  "ternary utilization (useful)")
    for row in rows:
        cells = [row["layer"], row["m"], row["k"], row["n"]]
        for engine_name in ("systolic", "ternary"):
            e = row[engine_name]
            cells += [e["k_padded"], e["cycles"], f"{_percent(e['utilization'])} "
                      f"({_percent(e['useful_utilization'])})"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def demo_markdown(rows):
    lines = _head("model", "engine", "mode", "cycles / inference", "link bytes / inference",
                  "one-time upload (bytes)", "target (in + out) x 1.1 + 128")
    for row in rows:
        link = f"{row['link_bytes_per_inference']:.0f}"
        if row["mode"] == "program" and row["link_bytes_per_inference"] <= row["target_bytes"]:
            link = f"**{link}**"
        upload = row["upload_wire_bytes"] if row["mode"] == "program" else "-"
        lines.append(f"| {row['model'].upper()} | {row['engine']} | {row['mode']} | "
                     f"{row['cycles_per_inference']:.1f} | {link} | {upload} | "
                     f"{row['target_bytes']:.0f} |")
    return "\n".join(lines)


def presets_markdown(rows):
    lines = _head("preset", "clock, baud", "model", "engine",
                  "layer by layer: compute / link (µs)", "inferences/s",
                  "program: compute cycles, µs / link bytes, µs", "inferences/s")
    for row in rows:
        head = (f"| {row['preset']} | {row['clock_hz'] / 1e6:g} MHz, {row['baud'] / 1e6:g} Mbaud"
                f" | {row['model'].upper()} | {row['engine']} |")
        if "skipped" in row:
            lines.append(f"{head} {row['skipped']} | | | |")
            continue
        layered = (f" {1e6 * row['layer_by_layer_compute_seconds']:.1f} / "
                   f"{1e6 * row['layer_by_layer_link_seconds']:.0f} | "
                   f"{row['inferences_per_second_layer_by_layer']:.0f} |")
        if "program" in row:
            lines.append(f"{head}{layered} {row['program']} | |")
            continue
        segments = (f" ({row['program_segments']} segments)"
                    if row["program_segments"] > 1 else "")
        lines.append(f"{head}{layered} {row['program_compute_cycles']}, "
                     f"{1e6 * row['program_compute_seconds']:.1f} / "
                     f"{row['program_link_bytes']}{segments}, "
                     f"{1e6 * row['program_link_seconds']:.0f} | "
                     f"{row['inferences_per_second_program']:.0f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="golden",
                        help="golden (planner and payload), sim, or a board URL")
    parser.add_argument("--config", default="sim-small",
                        help="config the golden model runs (a device reports its own)")
    parser.add_argument("--samples", type=int, default=50,
                        help="held-out images the demo models run on --device (default 50)")
    parser.add_argument("--docs", help="write the tables into this Markdown document")
    args = parser.parse_args()
    split = load_digits_split()
    report = {"bench_config": {"config_id": BENCH_CONFIG.config_id,
                               **{key: value for key, value in BENCH_CONFIG.to_dict().items()
                                  if key.startswith(("systolic", "ternary_l", "ternary_f"))}},
              "layers": layer_figures(),
              "demo": demo_figures(args.device, args.samples, split,
                                   load_config(args.config)),
              "presets": preset_figures(split)}
    print(json.dumps(report, indent=2, default=lambda value: np.asarray(value).tolist()))
    if args.docs:
        tables = {"layers": layers_markdown(report["layers"]),
                  "presets": presets_markdown(report["presets"])}
        if args.device != GOLDEN:
            tables["demo"] = demo_markdown(report["demo"])
        for part, table in tables.items():
            write_table(args.docs, *TABLES[part], table, "Convolutions")


if __name__ == "__main__":
    main()
