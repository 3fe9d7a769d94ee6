"""The framed protocol's host side: CRC, frame encoding, decoding and capability."""

import re

import pytest

from tritile.sw import PRESETS, AcceleratorConfig
from tritile.sw.protocol import (
    FRAMING_SIZE, LAYER_FIELDS, LAYER_SIGNED, LAYER_SIZE, MAX_DATA, SYNC, Engine,
    FrameDecoder, LayerFlag, LayerPool, Opcode, ProtocolError, Status, Target,
    capability_bytes, crc16, decode_layer, encode_frame, encode_layer, encode_request,
    encode_response, param_records, parse_capability, parse_program_run, read_args,
    run_args, run_program_args, target_size, write_args)


def test_crc16_is_ccitt_false():
    # The catalogue check value of CRC-16/CCITT-FALSE.
    assert crc16(b"123456789") == 0x29B1
    assert crc16(b"") == 0xFFFF
    assert crc16(b"56789", crc16(b"1234")) == 0x29B1


def test_frame_layout_is_little_endian_with_crc_over_body():
    frame = encode_frame(0x03, 7, b"\x01\x02\x03")
    assert frame[:5] == bytes([SYNC, 0x03, 7, 3, 0])
    assert frame[5:8] == b"\x01\x02\x03"
    assert int.from_bytes(frame[8:], "little") == crc16(frame[1:8])
    assert len(frame) == 3 + FRAMING_SIZE


def test_request_checks_arguments_and_data():
    with pytest.raises(ValueError, match="WRITE takes 8 argument bytes"):
        encode_request(Opcode.WRITE, 0, b"\x00", b"x")
    with pytest.raises(ValueError, match=f"1 to {MAX_DATA} data bytes"):
        encode_request(Opcode.WRITE, 0, write_args(Target.PARAMS, 0), b"x" * (MAX_DATA + 1))
    with pytest.raises(ValueError, match="PING carries no data"):
        encode_request(Opcode.PING, 0, b"", b"x")
    with pytest.raises(ValueError, match="count must be"):
        read_args(Target.OUTPUT8, 0, 0)
    with pytest.raises(ValueError, match="n must fit in 16 bits"):
        run_args(Engine.SYSTOLIC, 0, 1, 1, 1 << 16)
    with pytest.raises(ValueError, match="1 <= run <= stride"):
        write_args(Target.PARAMS, 0, 5, 4)
    with pytest.raises(ValueError, match="is not a valid Target"):
        write_args(9, 0)


def test_decoder_recovers_frames_from_noise_and_corruption(py_rng):
    sent, stream = [], bytearray()
    for seq in range(200):
        frame = encode_response(Opcode.READ, seq, Status.OK, py_rng.randbytes(py_rng.randrange(40)))
        kind = py_rng.randrange(4)
        if kind == 0:      # line noise between frames (never a SYNC byte, which could
            stream += bytes(b for b in py_rng.randbytes(5) if b != SYNC)  # start a fake frame)
        if kind == 1:      # one flipped bit: the CRC must reject it
            bad = bytearray(frame)
            bad[py_rng.randrange(1, len(bad))] ^= 1 << py_rng.randrange(8)
            stream += bad
            continue
        sent.append(seq)
        stream += frame
    decoder = FrameDecoder()
    got = []
    position = 0
    while position < len(stream):   # arbitrary chunking must not matter
        step = py_rng.randrange(1, 64)
        got += [f.seq for f in decoder.feed(stream[position:position + step])]
        position += step
    # A corrupted frame may swallow the start of the next one, but never yield a wrong one.
    assert set(got) <= set(sent) and len(got) >= len(sent) * 0.8
    assert got == sorted(got)


def test_response_status_and_data():
    frame = FrameDecoder().feed(encode_response(Opcode.PING, 3, Status.BAD_SHAPE, b"xy"))[0]
    assert (frame.opcode, frame.seq, frame.status, frame.data) == \
        (Opcode.PING | 0x80, 3, Status.BAD_SHAPE, b"xy")


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_capability_round_trips_every_preset(name):
    config = PRESETS[name]
    info, parsed = parse_capability(capability_bytes(config, [Engine.TERNARY]))
    assert parsed == config
    assert info["config_id"] == config.config_id
    assert info["engines"] == ["ternary"]
    assert info["max_data"] == MAX_DATA


def test_capability_rejects_foreign_images():
    image = bytearray(capability_bytes(AcceleratorConfig(), []))
    with pytest.raises(ProtocolError, match="fewer than"):
        parse_capability(image[:5])
    image[0] = 99
    with pytest.raises(ProtocolError, match="protocol version 99"):
        parse_capability(bytes(image))
    image = bytearray(capability_bytes(AcceleratorConfig(), []))
    image[4] ^= 1    # config_id no longer matches the parameters
    with pytest.raises(ProtocolError, match="hash to"):
        parse_capability(bytes(image))


def test_target_sizes_and_param_records():
    config = AcceleratorConfig()
    assert target_size(config, Target.SYSTOLIC_ACT) >= config.act_depth
    assert target_size(config, Target.PARAMS) == config.max_n * 8
    assert param_records([-1], [3], [62]) == b"\xff\xff\xff\xff\x03\x00\x3e\x00"
    with pytest.raises(ValueError, match="differ in length"):
        param_records([1], [1, 2], [1])


def test_engine_targets_follow_the_cores_numbering():
    # The SoC hands a WRITE to a core as the index of its target in ENGINE_TARGETS.
    from tritile.sw import systolic_layout, ternary_layout
    from tritile.sw.protocol import ENGINE_TARGETS
    assert ENGINE_TARGETS[Engine.SYSTOLIC][systolic_layout.ACT_TARGET] == Target.SYSTOLIC_ACT
    assert ENGINE_TARGETS[Engine.SYSTOLIC][systolic_layout.WEIGHT_TARGET] == \
        Target.SYSTOLIC_WEIGHT
    ternary = ENGINE_TARGETS[Engine.TERNARY]
    assert ternary[ternary_layout.TARGET_ACTIVATIONS] == Target.TERNARY_ACT
    assert ternary[ternary_layout.weight_target("2bit")] == Target.TERNARY_WEIGHT
    assert ternary[ternary_layout.weight_target("base3")] == Target.TERNARY_WEIGHT_BASE3
    # Both weight targets address the same memory.
    config = AcceleratorConfig()
    assert target_size(config, Target.TERNARY_WEIGHT_BASE3) == \
        target_size(config, Target.TERNARY_WEIGHT)


def _random_layer(py_rng):
    fields = {}
    for name, bits in LAYER_FIELDS:
        lo, hi = ((-(1 << bits - 1), (1 << bits - 1) - 1) if name in LAYER_SIGNED
                  else (0, (1 << bits) - 1))
        fields[name] = py_rng.choice([lo, hi, py_rng.randint(lo, hi)])
    return fields


def test_layer_descriptor_round_trips_at_every_field_extreme(py_rng):
    for _ in range(200):
        fields = _random_layer(py_rng)
        data = encode_layer(**fields)
        assert len(data) == LAYER_SIZE and decode_layer(data) == fields


def test_layer_descriptor_places_fields_in_wire_order():
    # The contract's order: engine and flags first, then m, k, n as u16 little-endian.
    data = encode_layer(engine=Engine.TERNARY, flags=LayerFlag.RELU | LayerFlag.MAX_POOL,
                        m=0x0102, k=0x0304, n=0x0506, base0=-2)
    assert data[:8] == bytes([1, 0x12, 2, 1, 4, 3, 6, 5])
    assert data[8 + 10 + 5:8 + 10 + 5 + 4] == (-2).to_bytes(4, "little", signed=True)
    assert decode_layer(data)["pool_k"] == 1            # the default: no pooling
    assert sum(bits for _, bits in LAYER_FIELDS) == 520  # 65 bytes, then reserved zeros
    assert data[65:] == bytes(LAYER_SIZE - 65)
    assert LayerFlag.AVERAGE_POOL >> 4 == LayerPool.AVERAGE


@pytest.mark.parametrize("fields, message", [
    ({"m": 1 << 16}, "layer field m must be in [0, 65535], not 65536"),
    ({"x_step": 1 << 31}, "layer field x_step must be in [-2147483648, 2147483647]"),
    ({"dest_base": -1}, "layer field dest_base must be in [0, 16777215], not -1"),
    ({"stride": 2}, "unknown layer field(s) stride"),
])
def test_layer_fields_out_of_range_are_named(fields, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        encode_layer(**fields)


def test_decode_layer_refuses_wrong_size_and_reserved_bits():
    with pytest.raises(ProtocolError, match="80 bytes, not 79"):
        decode_layer(bytes(79))
    with pytest.raises(ProtocolError, match="reserved bytes must be zero"):
        decode_layer(bytes(79) + b"\x01")


def test_run_program_arguments_and_response():
    assert run_program_args(3, 2) == bytes([3, 2])
    assert len(encode_request(Opcode.RUN_PROGRAM, 0, run_program_args(0, 1))) == \
        FRAMING_SIZE + 2
    with pytest.raises(ValueError, match="count must fit in 8 bits, not 256"):
        run_program_args(0, 256)
    data = (5).to_bytes(4, "little") + (3).to_bytes(4, "little") + bytes(8)
    assert parse_program_run(data, 2) == [(5, 3), (0, 0)]
    with pytest.raises(ProtocolError, match="16 bytes, not 8 x 3 layers"):
        parse_program_run(data, 3)


def test_program_memory_is_max_layers_descriptors():
    assert target_size(AcceleratorConfig(), Target.PROGRAM) == 0
    assert target_size(AcceleratorConfig(max_layers=12), Target.PROGRAM) == 12 * LAYER_SIZE
    info, config = parse_capability(capability_bytes(AcceleratorConfig(max_layers=12),
                                                     [Engine.SYSTOLIC]))
    assert info["max_layers"] == 12 and info["version"] == 3
