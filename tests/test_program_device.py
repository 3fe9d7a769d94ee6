"""Program mode on the simulated board (Verilator, real socket, the public driver API).

The CNN of tests/program_chain.py runs as one program across both engines. Weights and
parameters are uploaded once; each inference writes its input map, runs the program and
reads the logits, bit-exact against the golden functions of ``tritile.sw.conv`` /
``tritile.sw.numerics``.
"""

import numpy as np
import pytest

from tritile.sw import protocol
from tritile.sw.conv import Im2colWalk, Window
from tritile.sw.device import Device, DeviceStatusError
from tritile.sw.engines import engine
from tritile.sw.protocol import Engine, LayerFlag, Opcode, Status

from program_chain import C_IN, CLASSES, CONFIG, SYSTOLIC, SYSTOLIC_INPUT, H, W, Cnn, \
    layer_fields

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def board():
    with Device.open("sim", config=CONFIG, progress=False) as dev:
        yield dev


def test_cnn_program_matches_golden_with_weights_resident(board, rng):
    cnn = Cnn(rng)
    cnn.load(board)
    for _ in range(2):      # a new input, nothing else sent again
        x = rng.integers(-128, 128, (1, H, W, C_IN), dtype=np.int8)
        before = board.stats["bytes_sent"] + board.stats["bytes_received"]
        board.write_input_map("systolic", x, base=SYSTOLIC_INPUT)
        layers = board.run_program()
        logits = board.read_output(1, CLASSES, raw=True)
        np.testing.assert_array_equal(logits, cnn.golden(x))
        # Issue #14's bound on the link bytes of an inference with resident weights.
        link = board.stats["bytes_sent"] + board.stats["bytes_received"] - before
        assert link <= (x.size + logits.nbytes) * 1.1 + 128
        for descriptor, counters in zip(cnn.descriptors(), layers):
            plan = engine(Engine(descriptor["engine"])).plan(
                CONFIG, descriptor["m"], descriptor["k"], descriptor["n"])
            assert counters["busy_cycles"] == plan.cycles, descriptor
            assert counters["mac_cycles"] > 0


def test_bad_shape_ends_the_program_and_writes_nothing_of_that_layer(board, rng):
    walk = Im2colWalk.of(Window(1), 1, 1, 2, 1)
    good = layer_fields(SYSTOLIC, walk, 0, 4, LayerFlag.RAW | LayerFlag.TO_OUTPUT, out_base=200)
    bad = dict(good, k=CONFIG.max_k + 4, out_base=300)
    board.write_input_map("systolic", rng.integers(-128, 128, (2, 4), dtype=np.int8))
    sent = board.stats["bytes_sent"]
    with pytest.raises(ValueError, match="layer 1 of the program does not fit") as info:
        board.load_program([good, bad, good])
    assert "\n" not in str(info.value) and board.stats["bytes_sent"] == sent
    board.load_program([good, bad, good], check=False)      # the device's own refusal
    before = board.read_output(2, 4, raw=True, out_base=300)
    with pytest.raises(DeviceStatusError) as info:
        board.run_program()
    assert info.value.status == Status.BAD_SHAPE
    np.testing.assert_array_equal(board.read_output(2, 4, raw=True, out_base=300), before)
    # The layer before the bad one ran: running it alone gives the same results.
    ran = board.read_output(2, 4, raw=True, out_base=200)
    board.run_program(0, 1)
    np.testing.assert_array_equal(board.read_output(2, 4, raw=True, out_base=200), ran)


def test_descriptors_outside_the_memories_are_refused_before_sending(board):
    """The device checks shapes only; the driver refuses what would reach past a memory."""
    walk = Im2colWalk.of(Window(1), 1, 1, 2, 1)
    good = layer_fields(SYSTOLIC, walk, 0, 4, LayerFlag.RAW | LayerFlag.TO_OUTPUT, out_base=200)
    sent = board.stats["bytes_sent"]
    for bad in (dict(good, out_base=CONFIG.out_depth), dict(good, weight_base=1 << 20),
                dict(good, param_base=CONFIG.param_entries)):
        with pytest.raises(ValueError, match="layer 0 of the program does not fit"):
            board.load_program([bad])
    assert board.stats["bytes_sent"] == sent


def test_layers_past_max_layers_are_unavailable(board):
    for first, count in ((CONFIG.max_layers - 1, 2), (0, 0), (CONFIG.max_layers, 1)):
        with pytest.raises(DeviceStatusError) as info:
            board.request(Opcode.RUN_PROGRAM, protocol.run_program_args(first, count))
        assert info.value.status == Status.UNAVAILABLE


def test_requests_during_a_program_are_answered_busy(board, rng):
    cnn = Cnn(rng)
    cnn.load(board)
    board.write_input_map("systolic", rng.integers(-128, 128, (1, H, W, C_IN),
                                                   dtype=np.int8))
    run = protocol.encode_request(Opcode.RUN_PROGRAM, 1, protocol.run_program_args(0, 3))
    pings = [protocol.encode_request(Opcode.PING, seq) for seq in (2, 3)]
    board.send_raw(run + b"".join(pings))
    answers = [board.receive_frame() for _ in range(3)]
    assert [(a.opcode, a.seq, a.status) for a in answers] == [
        (Opcode.PING | protocol.RESPONSE_BIT, 2, Status.BUSY),
        (Opcode.PING | protocol.RESPONSE_BIT, 3, Status.BUSY),
        (Opcode.RUN_PROGRAM | protocol.RESPONSE_BIT, 1, Status.OK)]
    assert len(answers[2].data) == 3 * 8
    assert board.ping() < 5
