"""Link bytes of one inference in program mode, weights resident (issue #14's target).

Prints one JSON object. Usage::

    python bench/program_link.py [--inferences 3]

Runs the CNN of tests/program_chain.py (conv + ReLU + max pool on the systolic engine,
ternary conv + ReLU + global average pool, dense to raw int32 logits) as a program on the
simulated board (sim-small). Weights, parameters and descriptors are uploaded once; each
inference is the input map's WRITE, RUN_PROGRAM and the logits' READ. The bytes are
counted on the socket in both directions, framing included, and compared with the bound
``(input bytes + output bytes) * 1.1 + 128``; each inference's logits are checked against
the golden model.
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

from program_chain import C_IN, CLASSES, CONFIG, SYSTOLIC_INPUT, H, W, Cnn  # noqa: E402

from tritile.sw.device import Device  # noqa: E402


def _link_bytes(dev):
    return dev.stats["bytes_sent"] + dev.stats["bytes_received"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inferences", type=int, default=3)
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    cnn = Cnn(rng)
    with Device.open("sim", config=CONFIG, progress=False) as dev:
        before = _link_bytes(dev)
        cnn.load(dev)
        setup = _link_bytes(dev) - before
        per_inference, cycles, exact = [], [], True
        for _ in range(args.inferences):
            x = rng.integers(-128, 128, (1, H, W, C_IN), dtype=np.int8)
            before = _link_bytes(dev)
            dev.write_input_map("systolic", x, base=SYSTOLIC_INPUT)
            layers = dev.run_program()
            logits = dev.read_output(1, CLASSES, raw=True)
            per_inference.append(_link_bytes(dev) - before)
            cycles.append(sum(layer["busy_cycles"] for layer in layers))
            exact &= bool(np.array_equal(logits, cnn.golden(x)))
    in_bytes, out_bytes = H * W * C_IN, CLASSES * 4
    print(json.dumps({
        "config": CONFIG.config_id,
        "network": f"{H}x{W}x{C_IN} -> conv3x3({cnn.W0.shape[1]}) relu maxpool2 [systolic]"
                   f" -> ternary conv3x3({cnn.T1.shape[1]}) relu global-avgpool -> dense"
                   f"({CLASSES}) raw int32",
        "setup_link_bytes": setup,
        "input_bytes": in_bytes, "output_bytes": out_bytes,
        "link_bytes_per_inference": per_inference,
        "bound": (in_bytes + out_bytes) * 1.1 + 128,
        "cycles_per_inference": cycles,
        "golden_agreement": exact,
    }, indent=1))


if __name__ == "__main__":
    main()
