"""``tritile compile``: compile an ONNX model for one config into a ``.tritile`` file."""

import os
import sys

from ..cli import CommandError, load_npy


def register(subparsers):
    parser = subparsers.add_parser(
        "compile", help="compile an ONNX model into a .tritile program file",
        description="Import an ONNX model, quantize it for one accelerator config (int8 on "
                    "the systolic engine or ternary on the ternary engine, activation scales "
                    "calibrated on --calib) and write the compiled program (config, layers, "
                    "quantized weights, scales) to a .tritile file that tritile run takes "
                    "in place of the model (docs/models.md).")
    parser.add_argument("model", metavar="MODEL.onnx", help="the ONNX model")
    parser.add_argument("-o", "--out", required=True, metavar="MODEL.tritile",
                        help="the program file to write")
    parser.add_argument("--config", default="sim-small", metavar="NAME|FILE",
                        help="preset or JSON config to compile for (default sim-small)")
    parser.add_argument("--engine", choices=("int8", "ternary"), default="int8",
                        help="int8 (systolic engine) or ternary; default int8")
    parser.add_argument("--calib", metavar="C.npy",
                        help="calibration inputs, one sample per row (needed by int8 layers "
                             "and by convolutional models)")
    parser.set_defaults(func=run)


def run(args):
    from ..compiler import CompileError, compile_model
    from ..config import load_config
    from ..model import ModelError
    from ..onnx_import import OnnxImportError, import_onnx
    from ..program_file import save_program

    config = load_config(args.config)
    directory = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(directory):
        raise CommandError(f"-o {args.out}: directory {directory} does not exist")
    calib = load_npy(args.calib, "calibration data") if args.calib else None
    try:
        model = import_onnx(args.model, config=config, engine=args.engine)
        program = compile_model(model, config, args.engine, calib=calib)
    except (OnnxImportError, ModelError, CompileError) as exc:
        raise CommandError(str(exc)) from None
    try:
        save_program(program, args.out)
    except OSError as exc:
        raise CommandError(f"cannot write {args.out}: {exc.strerror}") from None
    print(f"{args.out}: {len(program.layers)} layer(s) for config {program.config_id} "
          f"({args.engine}), {os.path.getsize(args.out)} bytes", file=sys.stderr)
    for row in program.summary():
        conv = f" conv {row['conv']}" if "conv" in row else ""
        print(f"  layer {row['layer']}: {row['engine']:<7} K={row['k']} N={row['n']}{conv}; "
              f"weights {row['weights']}; output "
              + row.get("placement", "stays on chip" if row["output_stays_on_chip"]
                        else "to the host"))
    return 0
