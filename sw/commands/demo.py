"""``tritile demo``: the project's main job, real models end to end on the accelerator.

Loads a small MLP and a small CNN trained on the 8x8 digits (weights shipped with the
package), runs the held-out split through each as int8 on the systolic engine and as
ternary on the ternary engine of a device (the simulated board by default), checks every
integer against the golden model, and prints accuracy and cost.
"""

import json
import sys
import time

from ..cli import CommandError


def register(subparsers):
    parser = subparsers.add_parser(
        "demo", help="run a digits MLP and CNN int8 and ternary on the accelerator",
        description="Load a small MLP and a small CNN trained on scikit-learn's 8x8 "
                    "handwritten digits (weights shipped with tritile; python -m "
                    "tritile.sw.digits retrains them), run the held-out split through each "
                    "as int8 on the systolic engine and as ternary on the ternary engine, and "
                    "print float/int8/ternary accuracy, agreement with the golden model, "
                    "cycles and link bytes per inference and wall time. The first run builds "
                    "the simulated board with Verilator.")
    parser.add_argument("--device", default="sim", metavar="URL|sim|golden",
                        help="serial port or pyserial URL of a board, 'sim' for the simulated "
                             "board (default), or 'golden' for the NumPy golden model only")
    parser.add_argument("--config", default="sim-small",
                        help="config that 'golden' models (default sim-small); a device "
                             "reports its own")
    parser.add_argument("--samples", type=int, metavar="N",
                        help="run only the first N held-out samples (default: all 450)")
    parser.add_argument("--cnn-samples", type=int, metavar="N",
                        help="held-out samples the CNNs run on the device (default: all on "
                             "a device with program mode and on 'golden', 100 on a device "
                             "without, where each convolution's im2col rows cross the link); "
                             "their accuracy is the golden model's on all the samples, whose "
                             "integers the device's must equal")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


#: CNN samples a device without program mode runs by default: each convolution's im2col
#: rows cross the link, about 2.6 KB per image.
CNN_DEVICE_SAMPLES = 100


def run(args):
    from ..config import load_config
    from ..device import DeviceError
    from ..digits import (CNN_CHANNELS, HIDDEN, MODELS_FILE, accuracy, load_demo_cnns,
                          load_demo_models, load_digits_split)
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
    if args.cnn_samples is not None and not 1 <= args.cnn_samples <= count:
        raise CommandError(f"--cnn-samples must be between 1 and {count}, not "
                           f"{args.cnn_samples}")
    X, y = split.X_test[:count], split.y_test[:count]
    say(f"loading the trained 64-{HIDDEN}-10 MLPs and the {'-'.join(map(str, CNN_CHANNELS))} "
        f"CNNs (float, and fine-tuned with ternary weights in the loop) from "
        f"{MODELS_FILE.name}")
    float_model, ternary_model = load_demo_models()
    float_cnn, ternary_cnn = load_demo_cnns()
    float_accuracy = accuracy(float_model.forward(X), y)
    cnn_float_accuracy = accuracy(float_cnn.forward(X), y)
    say(f"float accuracy on {count} held-out images: MLP {100 * float_accuracy:.2f}%, "
        f"CNN {100 * cnn_float_accuracy:.2f}%")

    if args.device != GOLDEN:
        say(f"opening {args.device} (a simulated board is built by Verilator on its first "
            f"start, then cached)")
    jobs = [("int8", float_model, "int8", split.X_train, False),
            ("ternary", ternary_model, "ternary", None, False),
            ("cnn_int8", float_cnn, "int8", split.X_train, True),
            ("cnn_ternary", ternary_cnn, "ternary", split.X_train, True)]
    try:
        runs, device_config = _run_on_device(args, config, jobs, X, y, say)
    except DeviceError as exc:
        raise CommandError(f"device {args.device}: {exc}") from None
    cnn_count = runs["cnn_int8"]["device_samples"]
    report = {"device": args.device, "config_id": device_config.config_id,
              "samples": count, "hidden": HIDDEN, "float_accuracy": float_accuracy,
              "int8": runs["int8"], "ternary": runs["ternary"],
              "cnn": {"channels": list(CNN_CHANNELS), "float_accuracy": cnn_float_accuracy,
                      "device_samples": cnn_count, "int8": runs["cnn_int8"],
                      "ternary": runs["cnn_ternary"]},
              "wall_seconds": time.perf_counter() - start}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_table(report))
    agreed = all(runs[name]["golden_agreement"] == 1.0 for name in runs)
    return 0 if agreed else 1


def _run_on_device(args, config, jobs, X, y, say):
    """Run every program on the device; return ``(figures per job, device config)``.

    A job whose device runs take fewer samples than ``X`` has its accuracy from the golden
    model on all of them (the device's integers equal the golden model's on those it ran).
    """
    from ..compiler import compile_model
    from ..digits import accuracy
    from ..executor import (GOLDEN, GoldenBackend, backend_config, execute, open_backend,
                            run_checked)

    with open_backend(args.device, config) as backend:
        device_config = backend_config(backend)
        say(f"device config {device_config.config_id}: {device_config.systolic_rows}x"
            f"{device_config.systolic_cols} systolic array, {device_config.ternary_lanes}x"
            f"{device_config.ternary_fan_in} ternary unit")
        programs = device_config.max_layers > 0
        runs = {}
        for name, model, engine, calib, cnn in jobs:
            count = len(X)
            if cnn:
                count = args.cnn_samples or (count if programs or args.device == GOLDEN
                                             else min(count, CNN_DEVICE_SAMPLES))
            program = compile_model(model, device_config, engine, calib=calib)
            say(f"{name}: running {count} images " + ("as a program, one image per run"
                                                      if programs else "as one batch per layer"))
            engine_start = time.perf_counter()
            result, _, agreement = run_checked(program, backend, X[:count],
                                               progress=lambda m: say(f"{name}: {m}"))
            seconds = time.perf_counter() - engine_start
            outputs = result.outputs if count == len(X) else \
                execute(program, GoldenBackend(device_config), X).outputs
            measured = result.cycles is not None
            link_bytes, bytes_source = _link_bytes(result, measured)
            runs[name] = {
                "accuracy": accuracy(outputs, y),
                "accuracy_source": "device" if count == len(X) else
                f"golden model on {len(X)} images",
                "device_samples": count,
                "golden_agreement": agreement,
                "cycles_per_inference": (result.cycles if measured
                                         else result.predicted_cycles) / count,
                "cycles_source": "device counters" if measured else "planner model",
                "predicted_cycles_per_inference": result.predicted_cycles / count,
                "mode": result.mode,
                "bytes_streamed": (result.wire_bytes if measured
                                   else result.bytes_streamed),
                "bytes_source": bytes_source,
                "link_bytes_per_inference": link_bytes,
                "payload_bytes": result.bytes_streamed,
                "wall_seconds": seconds,
                "layers": result.to_dict()["layers"],
            }
            say(f"{name}: accuracy {100 * runs[name]['accuracy']:.2f}%, golden agreement "
                f"{100 * agreement:.2f}% on {count} images")
    return runs, device_config


def _link_bytes(result, measured):
    """Return ``(bytes per inference, what they are)`` of a run.

    Program mode: each image's traffic with the program resident, measured on a link, else
    from the protocol's framing. Layer by layer: every byte of the run (measured), or the
    payload on the golden model.
    """
    count = len(result.outputs)
    if result.mode == "program":
        if measured:
            return result.link_bytes_per_inference, "link, framing included"
        return result.link["model_bytes_per_inference"], "protocol model, framing included"
    if measured:
        return result.wire_bytes / count, "link, framing included"
    return result.bytes_streamed / count, "payload"


def format_table(report):
    """Return the demo's result table as text: one row per model and engine."""
    cnn = report["cnn"]
    runs = [("MLP", "int8 (systolic)", report["int8"]),
            ("MLP", "ternary (BitLinear)", report["ternary"]),
            ("CNN", "int8 (systolic)", cnn["int8"]),
            ("CNN", "ternary (static)", cnn["ternary"])]
    source = report["int8"]
    rows = [("model", "engine", "accuracy", "golden agreement",
             f"cycles / inference ({source['cycles_source']})",
             f"bytes streamed / inference ({source['bytes_source']})", "mode", "wall time")]
    rows.append((f"MLP 64-{report['hidden']}-10", "float",
                 f"{100 * report['float_accuracy']:.2f}%", "-", "-", "-", "-", "-"))
    rows.append((f"CNN {'-'.join(map(str, cnn['channels']))}", "float",
                 f"{100 * cnn['float_accuracy']:.2f}%", "-", "-", "-", "-", "-"))
    for model, engine, run in runs:
        rows.append((model, engine, f"{100 * run['accuracy']:.2f}%",
                     f"{100 * run['golden_agreement']:.2f}% of {run['device_samples']}",
                     f"{run['cycles_per_inference']:.1f}",
                     f"{run['link_bytes_per_inference']:.0f}", run["mode"],
                     f"{run['wall_seconds']:.2f} s"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [f"tritile demo: 8x8 digits, {report['samples']} held-out images, device "
             f"{report['device']} (config {report['config_id']})"]
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(row, widths))))
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    if cnn["device_samples"] < report["samples"]:
        lines.append(f"The CNNs ran {cnn['device_samples']} images on the device; their "
                     f"accuracy is the golden model's on all {report['samples']}.")
    lines.append(f"total wall time {report['wall_seconds']:.1f} s")
    return "\n".join(lines)
