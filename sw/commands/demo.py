"""``tritile demo``: the project's main job, a real model end to end on the accelerator.

Loads a small MLP trained on the 8x8 digits (weights shipped with the package), runs the held-out split as int8 on the systolic
engine and as a ternary BitLinear MLP on the ternary engine of a device (the simulated board
by default), checks every integer against the golden model, and prints accuracy and cost.
"""

import json
import sys
import time

from ..cli import CommandError


def register(subparsers):
    parser = subparsers.add_parser(
        "demo", help="run a digits MLP int8 and ternary on the accelerator",
        description="Load a small MLP trained on scikit-learn's 8x8 handwritten digits "
                    "(weights shipped with tritile; python -m tritile.sw.digits retrains "
                    "them), run the "
                    "held-out split as int8 on the systolic engine and as a ternary BitLinear "
                    "MLP on the ternary engine, and print float/int8/ternary accuracy, "
                    "agreement with the golden model, cycles per inference, bytes streamed "
                    "and wall time. The first run builds the simulated board with Verilator.")
    parser.add_argument("--device", default="sim", metavar="URL|sim|golden",
                        help="serial port or pyserial URL of a board, 'sim' for the simulated "
                             "board (default), or 'golden' for the NumPy golden model only")
    parser.add_argument("--config", default="sim-small",
                        help="config that 'golden' models (default sim-small); a device "
                             "reports its own")
    parser.add_argument("--samples", type=int, metavar="N",
                        help="run only the first N held-out samples (default: all 450)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args):
    from ..config import load_config
    from ..device import DeviceError
    from ..digits import HIDDEN, MODELS_FILE, accuracy, load_demo_models, load_digits_split
    from ..executor import GOLDEN

    start = time.perf_counter()

    def say(message):
        print(f"[demo {time.perf_counter() - start:5.1f}s] {message}", file=sys.stderr,
              flush=True)

    config = load_config(args.config)
    say("loading the 8x8 digits (scikit-learn's bundled copy, no download)")
    split = load_digits_split()
    count = len(split.X_test) if args.samples is None else args.samples
    if not 1 <= count <= len(split.X_test):
        raise CommandError(f"--samples must be between 1 and {len(split.X_test)}, "
                           f"not {args.samples}")
    X, y = split.X_test[:count], split.y_test[:count]
    say(f"loading the trained 64-{HIDDEN}-10 MLPs (float, and fine-tuned with ternary "
        f"weights in the loop) from {MODELS_FILE.name}")
    float_model, ternary_model = load_demo_models()
    float_accuracy = accuracy(float_model.forward(X), y)
    say(f"float accuracy on {count} held-out images: {100 * float_accuracy:.2f}%")

    if args.device != GOLDEN:
        say(f"opening {args.device} (a simulated board is built by Verilator on its first "
            f"start, then cached)")
    try:
        runs, device_config = _run_on_device(args, config, float_model, ternary_model,
                                             split, X, y, say)
    except DeviceError as exc:
        raise CommandError(f"device {args.device}: {exc}") from None
    report = {"device": args.device, "config_id": device_config.config_id,
              "samples": count, "hidden": HIDDEN, "float_accuracy": float_accuracy,
              "int8": runs["int8"], "ternary": runs["ternary"],
              "wall_seconds": time.perf_counter() - start}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_table(report))
    agreed = all(runs[name]["golden_agreement"] == 1.0 for name in runs)
    return 0 if agreed else 1


def _run_on_device(args, config, float_model, ternary_model, split, X, y, say):
    """Run both programs on the device; return ``(figures per engine, device config)``."""
    from ..compiler import compile_model
    from ..digits import accuracy
    from ..executor import open_backend, backend_config, run_checked

    count = len(X)
    with open_backend(args.device, config) as backend:
        device_config = backend_config(backend)
        say(f"device config {device_config.config_id}: {device_config.systolic_rows}x"
            f"{device_config.systolic_cols} systolic array, {device_config.ternary_lanes}x"
            f"{device_config.ternary_fan_in} ternary unit")
        runs = {}
        for name, model, engine, calib in (
                ("int8", float_model, "int8", split.X_train),
                ("ternary", ternary_model, "ternary", None)):
            program = compile_model(model, device_config, engine, calib=calib)
            say(f"{name}: running {count} images as one batch per layer")
            engine_start = time.perf_counter()
            result, _, agreement = run_checked(program, backend, X,
                                               progress=lambda m: say(f"{name}: {m}"))
            measured = result.cycles is not None
            runs[name] = {
                "accuracy": accuracy(result.outputs, y),
                "golden_agreement": agreement,
                "cycles_per_inference": (result.cycles if measured
                                         else result.predicted_cycles) / count,
                "cycles_source": "device counters" if measured else "planner model",
                "predicted_cycles_per_inference": result.predicted_cycles / count,
                "bytes_streamed": (result.wire_bytes if measured
                                   else result.bytes_streamed),
                "bytes_source": "link, framing included" if measured else "payload",
                "payload_bytes": result.bytes_streamed,
                "wall_seconds": time.perf_counter() - engine_start,
                "layers": result.to_dict()["layers"],
            }
            say(f"{name}: accuracy {100 * runs[name]['accuracy']:.2f}%, golden agreement "
                f"{100 * agreement:.2f}%")
    return runs, device_config


def format_table(report):
    """Return the demo's result table as text."""
    int8, ternary = report["int8"], report["ternary"]
    rows = [
        ("", "float", "int8 (systolic)", "ternary (BitLinear)"),
        ("accuracy", f"{100 * report['float_accuracy']:.2f}%", f"{100 * int8['accuracy']:.2f}%",
         f"{100 * ternary['accuracy']:.2f}%"),
        ("golden agreement", "-", f"{100 * int8['golden_agreement']:.2f}%",
         f"{100 * ternary['golden_agreement']:.2f}%"),
        (f"cycles / inference ({int8['cycles_source']})", "-",
         f"{int8['cycles_per_inference']:.1f}", f"{ternary['cycles_per_inference']:.1f}"),
        (f"bytes streamed ({int8['bytes_source']})", "-", f"{int8['bytes_streamed']}",
         f"{ternary['bytes_streamed']}"),
        ("wall time", "-", f"{int8['wall_seconds']:.2f} s", f"{ternary['wall_seconds']:.2f} s"),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [f"tritile demo: 8x8 digits, {report['samples']} held-out images, device "
             f"{report['device']} (config {report['config_id']})"]
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(row, widths))))
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append(f"total wall time {report['wall_seconds']:.1f} s")
    return "\n".join(lines)
