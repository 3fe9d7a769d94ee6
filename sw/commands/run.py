"""``tritile run``: run an ONNX model or a compiled ``.tritile`` program on a device (or the
simulated board) and check it against the golden model."""

import json
import os
import sys
import time

from ..cli import CommandError, load_npy


def register(subparsers):
    parser = subparsers.add_parser(
        "run", help="run an ONNX model on the accelerator",
        description="Import an ONNX model, quantize it (int8 on the systolic engine or "
                    "ternary BitLinear on the ternary engine) or take a pre-quantized (QDQ) "
                    "model's own scales, run it on a device and on the "
                    "golden model, and write the model's outputs: the float (dequantized) "
                    "output of its last layer, and what the model computes from it on the "
                    "host (a classifier's probabilities and label).")
    parser.add_argument("model", metavar="MODEL.onnx|MODEL.tritile",
                        help="the ONNX model, or a program file from tritile compile")
    parser.add_argument("--input", required=True, metavar="X.npy",
                        help="inputs, one sample per row (trailing axes are flattened)")
    parser.add_argument("--calib", metavar="C.npy",
                        help="calibration inputs for int8 activation scales (default: the "
                             "inputs themselves; a pre-quantized QDQ model brings its own; "
                             "not for a .tritile file, compiled with its scales)")
    parser.add_argument("--engine", choices=("int8", "ternary"),
                        help="int8 (systolic engine) or ternary (BitLinear); default int8; "
                             "not for a .tritile file, compiled for its engine")
    parser.add_argument("--device", default="sim", metavar="URL|sim|golden",
                        help="serial port or pyserial URL of a board, 'sim' for the simulated "
                             "board (default), or 'golden' for the NumPy golden model only")
    parser.add_argument("--config",
                        help="preset or JSON config the model is checked against before the "
                             "device is opened, and that 'golden' models (default sim-small, "
                             "or the config a .tritile file was compiled for)")
    parser.add_argument("--out", metavar="Y.npy|Y.npz",
                        help="write the outputs here: a .npz holds every output under the "
                             "model's name for it; a .npy the output of a one-output model")
    parser.add_argument("--mode", choices=("program", "layers", "auto"),
                        help="program: run the model as a device program (weights resident, "
                             "one image per RUN_PROGRAM; an error if it does not fit the "
                             "device); layers: one engine call per layer and batch; auto: a "
                             "program if the model fits, else layer by layer, saying why. "
                             "Default: auto on a device with program mode (max_layers > 0), "
                             "else layers")
    parser.add_argument("--json", action="store_true",
                        help="print per-layer cycles, totals (cycles_per_inference, "
                             "link_bytes_per_inference) and agreement as one JSON object")
    parser.set_defaults(func=run)


def run(args):
    from ..compiler import CompileError, compile_model
    from ..config import load_config
    from ..device import DeviceError
    from ..executor import (GOLDEN, ProgramMismatchError, backend_config, open_backend,
                            run_checked)
    from ..model import ModelError, input_batch
    from ..onnx_import import OnnxImportError, import_onnx

    def say(message):
        print(f"[run] {message}", file=sys.stderr, flush=True)

    start = time.perf_counter()
    program = _compiled_program(args)
    config = program.config if program is not None and args.config is None else \
        load_config(args.config or "sim-small")
    if program is not None and config.config_id != program.config_id:
        raise CommandError(f"{args.model} was compiled for config {program.config_id}, not "
                           f"for --config {args.config} ({config.config_id}); compile the "
                           f"model again with --config {args.config}")
    X = load_npy(args.input, "input")
    calib = load_npy(args.calib, "calibration data") if args.calib else X
    if X.ndim < 2 or X.shape[0] == 0:
        raise CommandError(f"input {args.input} must hold at least one sample (rows) of "
                           f"features, not shape {X.shape}")
    if args.out and not args.out.endswith((".npy", ".npz")):
        raise CommandError(f"--out {args.out} must end in .npy (one output) or .npz (every "
                           f"output by name)")
    if args.out and not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
        raise CommandError(f"--out {args.out}: directory "
                           f"{os.path.dirname(os.path.abspath(args.out))} does not exist")
    engine = args.engine or "int8"
    try:
        # Every problem of the model, including the device's limits, before anything runs.
        if program is None:
            model = import_onnx(args.model, config=config, engine=engine)
            model.prepare_input(X)
            model.prepare_input(calib)
            names, layers = model.output_names, len(model.layers)
            shapes = model.input_shape, model.shapes[-1]
        else:
            input_batch(X, program.input_shape, program.channels_first)
            names, layers = program.output_names, len(program.layers)
            shapes = program.input_shape, program.output_shape
            engine = "+".join(sorted({layer.engine for layer in program.layers}))
    except (OnnxImportError, ModelError) as exc:
        raise CommandError(str(exc)) from None
    if args.out and args.out.endswith(".npy") and len(names) > 1:
        raise CommandError(f"{args.model} has {len(names)} outputs ({', '.join(names)}); "
                           f"give --out a .npz path to write each under its name")
    say(f"{args.model}: {layers} layer(s), {'x'.join(map(str, shapes[0]))} -> "
        f"{'x'.join(map(str, shapes[1]))}; {X.shape[0]} sample(s)")
    if args.device != GOLDEN:
        say(f"opening {args.device} (the simulated board builds once, then is cached)")
    try:
        with open_backend(args.device, config) as backend:
            device_config = backend_config(backend)
            if program is None:
                try:
                    program = compile_model(model, device_config, engine, calib=calib)
                except CompileError as exc:
                    raise CommandError(str(exc)) from None
            try:
                result, _, agreement = run_checked(program, backend, X, progress=say,
                                                   mode=args.mode)
            except CompileError as exc:
                raise CommandError(f"{args.model}: {exc} (--mode layers runs it layer by "
                                   f"layer)") from None
    except ProgramMismatchError as exc:
        raise CommandError(f"{args.model}: {exc}") from None
    except DeviceError as exc:
        raise CommandError(f"device {args.device}: {exc}") from None
    outputs = program.named_outputs(result.outputs)
    if args.out:
        _write(args.out, outputs)
        say(f"wrote {args.out}: " + ", ".join(f"{name} {'x'.join(map(str, a.shape))} {a.dtype}"
                                               for name, a in outputs.items()))
    report = {"model": str(args.model), "engine": engine, "device": args.device,
              "config_id": program.config_id, **result.to_dict(),
              "outputs": {name: list(array.shape) for name, array in outputs.items()},
              "golden_agreement": agreement,
              "wall_seconds": time.perf_counter() - start, "out": args.out}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(_format(report))
    return 0 if agreement == 1.0 else 1


def _compiled_program(args):
    """Return the Program of a .tritile ``args.model`` (None for an ONNX model)."""
    from ..program_file import MAGIC, ProgramFileError, load_program

    try:
        with open(args.model, "rb") as file:
            compiled = file.read(len(MAGIC)) == MAGIC or args.model.endswith(".tritile")
    except OSError:
        compiled = args.model.endswith(".tritile")
    if not compiled:
        return None
    for flag, value in (("--engine", args.engine), ("--calib", args.calib)):
        if value is not None:
            raise CommandError(f"{flag} applies to ONNX models; {args.model} was compiled "
                               f"with its engine and scales (tritile compile)")
    try:
        return load_program(args.model)
    except ProgramFileError as exc:
        raise CommandError(str(exc)) from None


def _write(path, outputs):
    import numpy as np

    try:
        if path.endswith(".npz"):
            np.savez(path, **outputs)
        else:
            np.save(path, next(iter(outputs.values())))
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror}") from None


def _format(report):
    lines = [f"{report['model']}: {report['samples']} sample(s) on {report['device']} "
             f"({report['engine']}, config {report['config_id']}, "
             f"{'as a device program' if report['mode'] == 'program' else 'layer by layer'})"]
    for index, layer in enumerate(report["layers"]):
        cycles = "" if layer["cycles"] is None else f"{layer['cycles']} cycles measured, "
        lines.append(f"  layer {index}: {layer['engine']:<7} {layer['m']}x{layer['k']}x"
                     f"{layer['n']}  {cycles}{layer['predicted_cycles']} cycles predicted, "
                     f"{layer['weight_bytes'] + layer['stream_bytes']} payload bytes")
    wire = "" if report["wire_bytes"] is None else f", {report['wire_bytes']} bytes on the link"
    lines.append(f"  total: {report['predicted_cycles']} cycles predicted, "
                 f"{report['bytes_streamed']} payload bytes{wire}, "
                 f"{report['wall_seconds']:.2f} s wall")
    if report["mode"] == "program":
        measured = report["link_bytes_per_inference"]
        lines.append(f"  per inference: {report['predicted_cycles_per_inference']:.0f} cycles "
                     f"predicted, {report['model_bytes_per_inference']} link bytes by the "
                     f"protocol" + ("" if measured is None else f", {measured:.0f} measured"))
    lines.append(f"  agreement with the golden model: {100 * report['golden_agreement']:.2f}% "
                 f"of samples")
    return "\n".join(lines)
