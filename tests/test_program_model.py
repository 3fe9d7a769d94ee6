"""The program model (golden model of program mode): its walk against the im2col reference,
random conv/pool/dense chains lowered and run by descriptors against the layer-by-layer
numerics of sw/conv.py on both engines, and the statuses of what the device refuses."""

import numpy as np
import pytest

from tritile.sw.compiler import CompileError, compile_model
from tritile.sw.config import AcceleratorConfig
from tritile.sw.conv import Im2colWalk, Window, im2col_word_addresses
from tritile.sw.executor import GoldenBackend, agreement, execute
from tritile.sw.model import AvgPool2d, Conv2d, Dense, GlobalAvgPool, MaxPool2d, Model
from tritile.sw.program_lowering import lower_program
from tritile.sw.program_model import ProgramMachine, ProgramModelError, walk_addresses
from tritile.sw.protocol import LAYER_SIZE, Engine, LayerFlag, Status, Target, encode_layer

CONFIG = AcceleratorConfig(max_layers=8)


def _walk_fields(walk, base):
    fields = {name: getattr(walk, name) for name in (
        "in_h", "in_w", "chunks", "out_h", "out_w", "kernel_w", "stride_y", "stride_x",
        "pad_top", "pad_left", "x_step", "row_step", "image_step", "tap_row_step")}
    return {**fields, "base0": walk.base0 + base}


def test_walk_reads_the_im2col_words(rng):
    for _ in range(40):
        kh, kw = (int(v) for v in rng.integers(1, 4, 2))
        window = Window((kh, kw), tuple(int(v) for v in rng.integers(1, 3, 2)),
                        (int(rng.integers(kh)), int(rng.integers(kw)),
                         int(rng.integers(kh)), int(rng.integers(kw))))
        images, chunks = int(rng.integers(1, 3)), int(rng.integers(1, 3))
        height, width = int(rng.integers(kh, 7)), int(rng.integers(kw, 7))
        base = int(rng.integers(0, 50))
        walk = Im2colWalk.of(window, images, height, width, chunks)
        expected = im2col_word_addresses(window, images, height, width, chunks)
        got = walk_addresses(_walk_fields(walk, base), kh, images)
        np.testing.assert_array_equal(got, np.where(expected >= 0, expected + base, -1))


def _random_chain(rng):
    """A small CNN: one or two conv blocks with random geometry and pooling, a dense head."""
    h, w = int(rng.integers(5, 9)), int(rng.integers(5, 9))
    c = int(rng.integers(1, 6))
    layers, shape, pooled = [], (h, w, c), False
    for _ in range(int(rng.integers(1, 3))):
        n = int(rng.integers(2, 11))
        kh, kw = (int(rng.integers(1, min(3, side) + 1)) for side in shape[:2])
        pads = (int(rng.integers(kh)), int(rng.integers(kw)), int(rng.integers(kh)),
                int(rng.integers(kw)))
        conv = Conv2d(rng.standard_normal((n, shape[2], kh, kw)) * 0.4,
                      rng.standard_normal(n) * 0.1, int(rng.integers(1, 3)), pads,
                      activation=["relu", None][int(rng.integers(2))])
        layers.append(conv)
        shape = (*conv.window.output_size(*shape[:2]), n)
        kind = int(rng.integers(3))
        pooled = bool(kind) and min(shape[:2]) >= 2
        if pooled:
            pool = (MaxPool2d if kind == 1 else AvgPool2d)(2)
            layers.append(pool)
            shape = (shape[0] // 2, shape[1] // 2, n)
    if not pooled and shape[0] == shape[1] > 1:     # a descriptor pools once
        layers.append(GlobalAvgPool())
        shape = (1, 1, shape[2])
    layers.append(Dense(rng.standard_normal((int(np.prod(shape)), 5)) * 0.3,
                        rng.standard_normal(5) * 0.1))
    return Model(layers, input_shape=(h, w, c))


@pytest.mark.parametrize("engine", ["int8", "ternary", "mixed"])
def test_random_chains_by_descriptors_are_the_layer_numerics(rng, engine):
    """"mixed" alternates the engines, so outputs cross from one engine's activation
    memory to the other's."""
    ran, crossings = 0, 0
    while ran < 6:
        model = _random_chain(rng)
        X = rng.standard_normal((12, *model.input_shape)).astype(np.float32)
        gemms = sum(isinstance(layer, (Conv2d, Dense)) for layer in model.layers)
        engines = (["int8", "ternary"] * gemms)[:gemms] if engine == "mixed" else engine
        try:
            program = compile_model(model, CONFIG, engines, calib=X)
            lower_program(program)
        except CompileError:    # K padded past max_k: not this test's subject
            continue
        ran += 1
        crossings += sum(not d["flags"] & LayerFlag.TO_OUTPUT and d["dest_engine"] != d["engine"]
                         for d in lower_program(program).descriptors)
        by_layers = execute(program, GoldenBackend(CONFIG), X, mode="layers")
        by_program = execute(program, GoldenBackend(CONFIG), X, mode="program")
        assert by_program.mode == "program"
        assert agreement(by_program, by_layers) == 1.0
        np.testing.assert_array_equal(by_program.integers[-1], by_layers.integers[-1])
        np.testing.assert_array_equal(by_program.outputs, by_layers.outputs)
    assert (crossings > 0) == (engine == "mixed")


def _loaded_machine(config=CONFIG):
    model = Model([Dense(np.eye(6, 4, dtype=np.float32), np.zeros(4, np.float32))])
    program = compile_model(model, config, "int8", calib=np.ones((2, 6), np.float32))
    machine = ProgramMachine(config)
    machine.load_program(lower_program(program).descriptors)
    return machine, lower_program(program).descriptors[0]


def test_refusals_have_the_devices_statuses():
    machine, fields = _loaded_machine()
    with pytest.raises(ProgramModelError) as info:
        machine.run_program(0, CONFIG.max_layers + 1)
    assert info.value.status is Status.UNAVAILABLE
    with pytest.raises(ProgramModelError) as info:
        machine.write(Target.OUTPUT8, b"\0")
    assert info.value.status is Status.BAD_TARGET
    with pytest.raises(ProgramModelError) as info:
        machine.write(Target.PARAMS, b"\0" * 9, addr=len(machine.memory[Target.PARAMS]) - 8)
    assert info.value.status is Status.BAD_ADDRESS
    for change in ({"m": CONFIG.max_m + 1}, {"n": 0}, {"weight_base": 1 << 20},
                   {"param_base": CONFIG.max_n}, {"out_base": CONFIG.out_depth}):
        machine.write(Target.PROGRAM, encode_layer(**{**fields, **change}), addr=LAYER_SIZE)
        with pytest.raises(ProgramModelError) as info:
            machine.run_program(1, 1)
        assert info.value.status is Status.BAD_SHAPE, change
    machine.write(Target.PROGRAM, encode_layer(**fields), addr=LAYER_SIZE)
    machine.run_program(1, 1)
    # A build without the ternary unit refuses a ternary layer as the device does.
    systolic_only = CONFIG.replace(ternary_lanes=0, ternary_fan_in=0)
    machine, fields = _loaded_machine(systolic_only)
    machine.load_program([{**fields, "engine": Engine.TERNARY}])
    with pytest.raises(ProgramModelError) as info:
        machine.run_program(0, 1)
    assert info.value.status is Status.UNAVAILABLE


def test_a_layer_writes_only_its_channels():
    """Bytes of channels at or past N in the destination words keep what they held."""
    machine, _ = _loaded_machine()
    model = Model([Dense(np.eye(6, 3, dtype=np.float32), np.zeros(3, np.float32),
                         activation="relu"),
                   Dense(np.eye(3, 2, dtype=np.float32), np.zeros(2, np.float32))])
    program = compile_model(model, CONFIG, "int8", calib=np.ones((2, 6), np.float32))
    device = lower_program(program)
    dest = device.descriptors[0]
    words = machine.memory[Target.SYSTOLIC_ACT].view(np.int8).reshape(-1, 4)
    words[dest["dest_base"], 3] = 77
    backend = GoldenBackend(CONFIG)
    backend._machine = machine
    execute(program, backend, np.ones((1, 6), np.float32), mode="program")
    assert words[dest["dest_base"], 3] == 77


@pytest.mark.parametrize("lanes, fan_in", [(4, 8), (8, 8), (5, 4)])
def test_base3_streams_store_the_trits_of_the_2bit_image(rng, lanes, fan_in):
    """The model's base-3 transcoding (sw/ternary_layout.base3_write, the rule
    tests/test_ternary_memories.py checks on the gateware): the whole stream stores what
    the 2-bit image stores; a stream started mid-word zeroes the trits before it in its
    2-bit byte and leaves earlier bytes alone."""
    from tritile.sw.ternary_layout import base3_stream, ternary_weight_image

    config = AcceleratorConfig(ternary_lanes=lanes, ternary_fan_in=fan_in, max_layers=4)
    T = rng.integers(-1, 2, (3 * fan_in, 2 * lanes)).astype(np.int8)
    two_bit = ternary_weight_image(config, T, "2bit")
    a, b = ProgramMachine(config), ProgramMachine(config)
    a.write(Target.TERNARY_WEIGHT, two_bit)
    b.write(Target.TERNARY_WEIGHT_BASE3, base3_stream(config, two_bit))
    np.testing.assert_array_equal(a.trits, b.trits)
    assert np.any(a.trits)

    stream = base3_stream(config, two_bit)
    c = ProgramMachine(config)
    c.write(Target.TERNARY_WEIGHT, two_bit)
    c.write(Target.TERNARY_WEIGHT_BASE3, stream[3:], addr=3)   # position 15: byte 3, trit 3
    flat_a = a.trits.reshape(-1)
    flat_c = c.trits.reshape(-1)
    per_word = lanes * fan_in
    if per_word % 4 == 0:       # positions are trits of the memory in order
        np.testing.assert_array_equal(flat_c[:12], flat_a[:12])
        assert not np.any(flat_c[12:15])
        np.testing.assert_array_equal(flat_c[15:], flat_a[15:])
