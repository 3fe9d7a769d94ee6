"""Lowering compiled programs to device programs: the demo's models run as programs equal
their layer-by-layer runs bit for bit, the link bytes per inference meet the issue's target,
buffers never overlap what a layer reads, and models that miss a memory are one-line
errors naming it."""

import numpy as np
import pytest

from tritile.sw.compiler import CompileError, compile_model
from tritile.sw.config import AcceleratorConfig
from tritile.sw.digits import load_demo_cnns, load_demo_models, load_digits_split
from tritile.sw.engines import engine
from tritile.sw.executor import GoldenBackend, agreement, execute, run_checked
from tritile.sw.model import Conv2d, Dense, MaxPool2d, Model
from tritile.sw.program_lowering import lower_program, lowered
from tritile.sw.program_model import act_words, layer_weight_words
from tritile.sw.protocol import Engine, LayerFlag

CONFIG = AcceleratorConfig(max_layers=16)


@pytest.fixture(scope="module")
def digits():
    return load_digits_split()


def _demo_programs(digits):
    float_mlp, ternary_mlp = load_demo_models()
    float_cnn, ternary_cnn = load_demo_cnns()
    return {"mlp int8": compile_model(float_mlp, CONFIG, "int8", calib=digits.X_train),
            "mlp ternary": compile_model(ternary_mlp, CONFIG, "ternary"),
            "cnn int8": compile_model(float_cnn, CONFIG, "int8", calib=digits.X_train),
            "cnn ternary": compile_model(ternary_cnn, CONFIG, "ternary",
                                         calib=digits.X_train)}


def test_demo_programs_equal_their_layer_by_layer_runs(digits):
    X = digits.X_test[:120]
    for name, program in _demo_programs(digits).items():
        backend = GoldenBackend(CONFIG)
        by_program = execute(program, backend, X)
        by_layers = execute(program, GoldenBackend(CONFIG), X, mode="layers")
        assert by_program.mode == "program", name
        assert agreement(by_program, by_layers) == 1.0, name
        np.testing.assert_array_equal(by_program.outputs, by_layers.outputs)
        # Run again on the same backend: the program stays resident, nothing is re-sent.
        again = execute(program, backend, X[:5])
        np.testing.assert_array_equal(again.outputs, by_layers.outputs[:5])


def test_link_bytes_per_inference_meet_the_target(digits):
    """<= (input bytes + output bytes) * 1.1 + 128 for the programs that chain on chip."""
    programs = _demo_programs(digits)
    for name in ("mlp int8", "cnn int8", "cnn ternary"):
        program = programs[name]
        device_program = lowered(program)
        assert len(device_program.segments) == 1
        out = program.layers[-1].shape[1] * 4          # raw int32 logits
        target = (64 + out) * 1.1 + 128
        assert device_program.link_bytes_per_inference(CONFIG) <= target, name
    # BitLinear layers keep their float step on the host: one segment per layer.
    assert len(lowered(programs["mlp ternary"]).segments) == 2


def test_buffers_never_overlap_what_a_layer_reads(digits):
    for program in _demo_programs(digits).values():
        device_program = lower_program(program)
        reads = {}
        for segment in device_program.segments:
            reads[segment.first] = (segment.input_engine, segment.input_base)
        for index, fields in enumerate(device_program.descriptors):
            spec = engine(Engine(fields["engine"]))
            if fields["flags"] & LayerFlag.TO_OUTPUT:
                continue
            source = fields["base0"] - (-(fields["pad_top"] * fields["in_w"]
                                          + fields["pad_left"]) * fields["chunks"])
            src_words = fields["in_h"] * fields["in_w"] * fields["chunks"]
            dest = engine(Engine(fields["dest_engine"]))
            pixels = fields["m"] if not fields["flags"] & 0x30 else \
                fields["pool_out_h"] * fields["pool_out_w"]
            dest_range = (fields["dest_base"], fields["dest_base"] + pixels
                          * fields["dest_chunks"])
            assert dest_range[1] <= act_words(CONFIG, dest)
            if dest is spec:
                assert dest_range[1] <= source or dest_range[0] >= source + src_words
        # Weights side by side: each layer's words after the previous layer's.
        ends = {}
        for fields in device_program.descriptors:
            spec = engine(Engine(fields["engine"]))
            assert fields["weight_base"] == ends.get(spec.name, 0)
            ends[spec.name] = fields["weight_base"] + layer_weight_words(
                CONFIG, spec, fields["k"], fields["n"])


def _cnn(channels):
    rng = np.random.default_rng(3)
    return Model([Conv2d(rng.standard_normal((channels, 4, 3, 3)), None, 1, 1, "relu"),
                  MaxPool2d(2),
                  Dense(rng.standard_normal((4 * 4 * channels, 10)))], input_shape=(8, 8, 4))


def test_programs_that_miss_a_memory_are_one_line_errors():
    X = np.random.default_rng(4).standard_normal((4, 8, 8, 4)).astype(np.float32)
    small = CONFIG.replace(weight_depth=1280, max_k=128)    # each layer fits, not both
    with pytest.raises(CompileError) as info:
        lower_program(compile_model(_cnn(8), small, "int8", calib=X))
    message = str(info.value)
    assert "\n" not in message and "systolic engine" in message and "too many" in message
    few = CONFIG.replace(max_layers=1)
    with pytest.raises(CompileError, match="descriptor memory"):
        lower_program(compile_model(_cnn(8), few, "int8", calib=X))
    # 80 words: the 64-word input map fits, not with the 32-word output beside it
    tight = CONFIG.replace(max_k=128, act_depth=128, max_m=48)
    with pytest.raises(CompileError, match="activation memory") as info:
        lower_program(compile_model(_cnn(8), tight, "int8", calib=X))
    assert "\n" not in str(info.value)
    # Without program mode the executor runs layer by layer; asked for a program, it says why.
    program = compile_model(_cnn(8), CONFIG.replace(max_layers=0), "int8", calib=X)
    assert execute(program, GoldenBackend(program.config), X).mode == "layers"
    with pytest.raises(CompileError, match="no program mode"):
        execute(program, GoldenBackend(program.config), X, mode="program")


def test_auto_mode_falls_back_to_layers_and_says_why():
    rng = np.random.default_rng(5)
    # Pooling with a stride other than its window has no descriptor form.
    model = Model([Conv2d(rng.standard_normal((4, 2, 3, 3)), None, 1, 1, "relu"),
                   MaxPool2d(2, stride=1), Dense(rng.standard_normal((7 * 7 * 4, 3)))],
                  input_shape=(8, 8, 2))
    X = rng.standard_normal((3, 8, 8, 2)).astype(np.float32)
    program = compile_model(model, CONFIG, "int8", calib=X)
    said = []
    result, _, agree = run_checked(program, GoldenBackend(CONFIG), X, said.append,
                                   mode="auto")
    assert result.mode == "layers" and agree == 1.0
    assert any("pooling" in line for line in said)
    rows = program.summary()
    assert all(not row["output_stays_on_chip"] and "no program mode" in row["weights"]
               for row in rows)


def test_summary_says_where_weights_live_and_outputs_go(digits):
    rows = _demo_programs(digits)["cnn int8"].summary()
    assert [row["output_stays_on_chip"] for row in rows] == [True, True, False]
    assert all(row["weights"].startswith("resident in the systolic weight memory")
               for row in rows)
    assert rows[0]["placement"].startswith("stays on chip: systolic activation memory")
    assert rows[-1]["placement"] == "to the host (output memory)"
