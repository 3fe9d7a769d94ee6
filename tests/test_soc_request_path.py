"""The request path (parser, checker, dispatcher, walker, shape check) in Amaranth's simulator.

Frames go in as bytes; the testbench plays the engines (takes writes and starts, holds
``engine_busy`` during a RUN) and the responder (takes each response some cycles after it
is offered). Every response status is checked here, and that a refused request writes
nothing and starts nothing; tests/test_soc_status.py checks the same on the whole device.
"""

import pytest

from tritile.hw.engine_bank import target_sizes, weight_limits
from tritile.hw.request_checker import args_layout
from tritile.hw.request_path import RequestPath
from tritile.hw.responder import Source
from tritile.sw import protocol
from tritile.sw.protocol import Engine, Opcode, Status, Target

from helpers import simulate, stream_put, watch_stream
from test_device import TEST_CONFIG

C = TEST_CONFIG
SIZES = target_sizes(C, C.engines)


def _path(engines=(Engine.SYSTOLIC, Engine.TERNARY), config=C):
    sizes = target_sizes(config, [engine.name.lower() for engine in engines])
    return RequestPath(config, sizes, engines, weight_limits(config), capability_size=10,
                       timeout=300)


def drive(frames, *, path=None, cycles=800, ready_after=3, run_cycles=40):
    """Feed ``frames``; return (responses, writes, starts, events) as seen on the ports."""
    dut = path or _path()
    responses, writes, starts, events, violations = [], [], [], [], []

    async def feed(ctx):
        for frame in frames:
            for byte in frame:
                await stream_put(ctx, dut.bytes, byte)

    async def engines(ctx):
        ctx.set(dut.write.ready, 1)
        ctx.set(dut.start.ready, 1)
        busy_left = 0
        for _ in range(cycles):
            ctx.set(dut.engine_busy, busy_left > 0)
            _, _, write_valid, write, start_valid, start, pulses = await ctx.tick().sample(
                dut.write.valid, dut.write.payload, dut.start.valid, dut.start.payload,
                dut.events)
            if write_valid:
                writes.append((write.target, write.addr, write.data))
            if start_valid:
                starts.append((start.engine, start.m, start.k, start.n, start.raw, start.relu))
                busy_left = run_cycles
            busy_left = max(0, busy_left - 1)
            events.extend(name for name in ("frames", "bad_crc", "bad_length",
                                            "length_error", "timeouts", "runs")
                          if pulses[name])

    async def respond(ctx):
        while True:
            _, _, valid, resp = await ctx.tick().sample(dut.response.valid,
                                                         dut.response.payload)
            if valid:
                responses.append({"opcode": resp.opcode, "seq": resp.seq,
                                  "status": Status(resp.status), "length": resp.length,
                                  "source": resp.source, "base": resp.base})
                if ready_after:
                    await ctx.tick().repeat(ready_after)
                ctx.set(dut.response.ready, 1)
                await ctx.tick()
                ctx.set(dut.response.ready, 0)

    watchers = [watch_stream(dut.write, "write", violations),
                watch_stream(dut.start, "start", violations),
                watch_stream(dut.response, "response", violations)]
    simulate(dut, engines, feed, processes=[respond, *watchers], name="request_path")
    assert not violations, violations[:3]
    return responses, writes, starts, events


def request(opcode, seq=7, args=b"", data=b""):
    return protocol.encode_request(opcode, seq, args, data)


def test_ping_info_stats_and_read_are_answered_from_their_sources():
    frames = [request(Opcode.PING, 1), request(Opcode.INFO, 2), request(Opcode.STATS, 3),
              request(Opcode.READ, 4, protocol.read_args(Target.OUTPUT32, 8, 12))]
    responses, writes, starts, events = drive(frames)
    assert [(r["seq"], r["status"], r["length"]) for r in responses] == [
        (1, Status.OK, 0), (2, Status.OK, 10), (3, Status.OK, 4 * len(protocol.STATS_FIELDS)),
        (4, Status.OK, 12)]
    assert [r["source"] for r in responses[1:]] == [Source.CAPABILITY, Source.STATS,
                                                    Source.OUTPUT]
    assert responses[3]["base"] == 8 and not writes and not starts
    assert events.count("frames") == 4


def test_write_walks_contiguous_and_strided_addresses():
    data = bytes(range(10, 20))
    frames = [request(Opcode.WRITE, 1, protocol.write_args(Target.SYSTOLIC_WEIGHT, 5), data),
              request(Opcode.WRITE, 2, protocol.write_args(Target.TERNARY_ACT, 3, 3, 8), data)]
    responses, writes, starts, _ = drive(frames)
    assert [r["status"] for r in responses] == [Status.OK, Status.OK]
    strided = [3 + 8 * (i // 3) + i % 3 for i in range(10)]
    assert writes == ([(Target.SYSTOLIC_WEIGHT, 5 + i, b) for i, b in enumerate(data)] +
                      [(Target.TERNARY_ACT, a, b) for a, b in zip(strided, data)])


def test_run_starts_its_engine_and_is_answered_when_the_engine_is_done():
    responses, writes, starts, events = drive(
        [request(Opcode.RUN, 9, protocol.run_args(Engine.TERNARY, 3, 2, 16, 4))])
    assert starts == [(Engine.TERNARY, 2, 16, 4, 1, 1)]
    assert [(r["opcode"], r["seq"], r["status"], r["length"], r["source"])
            for r in responses] == [(Opcode.RUN, 9, Status.OK, 8, Source.CYCLES)]
    assert "runs" in events


def _frame(opcode, payload):
    return protocol.encode_frame(opcode, 5, payload)


def _corrupt(frame):
    return frame[:-1] + bytes([frame[-1] ^ 0x10])


_SIZE = SIZES[Target.SYSTOLIC_WEIGHT]
#: (request, status): every refusal, each of which must write and start nothing.
REFUSALS = {
    "bad_crc": (_corrupt(request(Opcode.WRITE, 5, protocol.write_args(
        Target.SYSTOLIC_WEIGHT, 0), b"\x01\x02")), Status.BAD_CRC),
    "length_above_max": (bytes([protocol.SYNC, Opcode.WRITE, 5]) +
                         (protocol.MAX_PAYLOAD + 1).to_bytes(2, "little"), Status.BAD_LENGTH),
    "length_wrong_for_opcode": (_frame(Opcode.READ, bytes(5)), Status.BAD_LENGTH),
    "write_without_data": (_frame(Opcode.WRITE, protocol.write_args(Target.PARAMS, 0)),
                           Status.BAD_LENGTH),
    "unknown_opcode": (_frame(0x7F, b""), Status.UNKNOWN_OPCODE),
    "write_to_output": (_frame(Opcode.WRITE, bytes([Target.OUTPUT32]) + bytes(7) + b"x"),
                        Status.BAD_TARGET),
    "write_to_unknown_target": (_frame(Opcode.WRITE, bytes([200]) + bytes(7) + b"x"),
                                Status.BAD_TARGET),
    "read_of_weights": (request(Opcode.READ, 5, protocol.read_args(
        Target.SYSTOLIC_WEIGHT, 0, 1)), Status.BAD_TARGET),
    "write_past_the_end": (request(Opcode.WRITE, 5, protocol.write_args(
        Target.SYSTOLIC_WEIGHT, _SIZE - 3), bytes(4)), Status.BAD_ADDRESS),
    # The first address out of range is not the last one (the walk stops at it).
    "write_running_past_the_end": (request(Opcode.WRITE, 5, protocol.write_args(
        Target.SYSTOLIC_WEIGHT, _SIZE - 1), bytes(3)), Status.BAD_ADDRESS),
    "strided_write_past_the_end": (request(Opcode.WRITE, 5, protocol.write_args(
        Target.SYSTOLIC_WEIGHT, 0, 2, _SIZE // 2), bytes(5)), Status.BAD_ADDRESS),
    "write_far_out": (request(Opcode.WRITE, 5, protocol.write_args(
        Target.SYSTOLIC_WEIGHT, 1 << 23), bytes(1)), Status.BAD_ADDRESS),
    "stride_below_run": (_frame(Opcode.WRITE, bytes([Target.SYSTOLIC_WEIGHT, 0, 0, 0, 4, 0,
                                                     2, 0]) + bytes(4)), Status.BAD_ADDRESS),
    # Low bytes in order, high bytes not: stride 0x00FF < run 0x0100.
    "stride_below_run_by_its_high_byte": (_frame(Opcode.WRITE, bytes(
        [Target.SYSTOLIC_WEIGHT, 0, 0, 0, 0, 1, 0xFF, 0]) + bytes(1)), Status.BAD_ADDRESS),
    "read_past_the_end": (request(Opcode.READ, 5, protocol.read_args(
        Target.OUTPUT8, C.out_depth - 1, 2)), Status.BAD_ADDRESS),
    "read_of_nothing": (_frame(Opcode.READ, bytes([Target.OUTPUT8]) + bytes(5)),
                        Status.BAD_ADDRESS),
    "run_of_no_rows": (request(Opcode.RUN, 5, protocol.run_args(Engine.SYSTOLIC, 0, 0, 4, 4)),
                       Status.BAD_SHAPE),
    "run_above_max_k": (request(Opcode.RUN, 5, protocol.run_args(
        Engine.SYSTOLIC, 0, 1, C.max_k + 1, 1)), Status.BAD_SHAPE),
    "run_of_unknown_engine": (_frame(Opcode.RUN, bytes([3, 0, 1, 0, 1, 0, 1, 0])),
                              Status.UNAVAILABLE),
    # A device without program mode (max_layers 0) refuses its opcode and its memory.
    "run_program_without_program_mode": (request(Opcode.RUN_PROGRAM, 5,
                                                 protocol.run_program_args(0, 1)),
                                         Status.UNAVAILABLE),
    "write_of_the_absent_program_memory": (request(Opcode.WRITE, 5, protocol.write_args(
        Target.PROGRAM, 0), bytes(protocol.LAYER_SIZE)), Status.BAD_TARGET),
}


@pytest.mark.parametrize("name", REFUSALS)
def test_refused_request_is_answered_and_changes_nothing(name):
    frame, status = REFUSALS[name]
    responses, writes, starts, events = drive([frame, request(Opcode.PING, 6)])
    assert [(r["seq"], r["status"], r["length"]) for r in responses] == [
        (5, status, 0), (6, Status.OK, 0)]
    assert not writes and not starts


@pytest.mark.parametrize("engine,m,k,n", [
    (Engine.SYSTOLIC, 8, 16, 1),     # M*K beyond the activation memory
    (Engine.SYSTOLIC, 8, 1, 8),      # M*N beyond the output memory
    (Engine.TERNARY, 1, 16, 8),      # K*N beyond the ternary weight memory
])
def test_run_whose_products_exceed_a_memory_is_bad_shape(engine, m, k, n):
    # Memories smaller than the dimension limits allow, so each product can exceed one.
    path = _path(config=C.replace(act_depth=64, out_depth=32, trit_depth=64))
    frames = [request(Opcode.RUN, 5, protocol.run_args(engine, 0, m, k, n))]
    responses, writes, starts, _ = drive(frames, path=path)
    assert [r["status"] for r in responses] == [Status.BAD_SHAPE] and not starts


def test_engine_missing_from_this_device_is_unavailable():
    path = _path(engines=(Engine.SYSTOLIC,))
    frames = [request(Opcode.RUN, 5, protocol.run_args(Engine.TERNARY, 0, 1, 1, 1)),
              request(Opcode.WRITE, 6, protocol.write_args(Target.TERNARY_ACT, 0), b"x")]
    responses, writes, starts, _ = drive(frames, path=path)
    assert [r["status"] for r in responses] == [Status.UNAVAILABLE, Status.BAD_TARGET]
    assert not writes and not starts


def test_requests_during_a_run_are_answered_busy_and_change_nothing():
    frames = [request(Opcode.RUN, 1, protocol.run_args(Engine.SYSTOLIC, 0, 2, 2, 2)),
              request(Opcode.PING, 2),
              request(Opcode.WRITE, 3, protocol.write_args(Target.SYSTOLIC_WEIGHT, 0), b"ab"),
              _frame(0x7F, b"")]
    responses, writes, starts, _ = drive(frames, ready_after=0, run_cycles=300)
    assert [(r["opcode"], r["seq"], r["status"]) for r in responses] == [
        (Opcode.PING, 2, Status.BUSY), (Opcode.WRITE, 3, Status.BUSY),
        (0x7F, 5, Status.UNKNOWN_OPCODE), (Opcode.RUN, 1, Status.OK)]
    assert len(starts) == 1 and not writes


def test_truncated_frame_times_out_unanswered():
    frame = request(Opcode.WRITE, 1, protocol.write_args(Target.PARAMS, 0), b"abcd")
    responses, writes, _, events = drive([frame[:-3]], cycles=1000)
    assert not responses and not writes and events == ["timeouts"]


@pytest.mark.parametrize("opcode,args,fields", [
    (Opcode.WRITE, protocol.write_args(Target.PARAMS, 0x123456, 3, 9),
     {"target": Target.PARAMS, "addr": 0x123456, "run": 3, "stride": 9}),
    (Opcode.READ, protocol.read_args(Target.OUTPUT8, 77, 2048),
     {"target": Target.OUTPUT8, "addr": 77, "count": 2048}),
    (Opcode.RUN, protocol.run_args(Engine.TERNARY, 3, 1, 513, 65535),
     {"engine": Engine.TERNARY, "flags": 3, "m": 1, "k": 513, "n": 65535}),
    (Opcode.RUN_PROGRAM, protocol.run_program_args(7, 200), {"first": 7, "count": 200}),
])
def test_argument_layouts_decode_what_the_driver_encodes(opcode, args, fields):
    layout = args_layout(opcode)
    assert layout.size == 8 * len(args) == 8 * protocol.ARGS_SIZE[opcode]
    decoded = layout.from_bits(int.from_bytes(args, "little"))
    assert {name: getattr(decoded, name) for name in fields} == fields


PROGRAM_CONFIG = C.replace(max_layers=3)


def _program_path():
    return _path(config=PROGRAM_CONFIG)


def _load_program(*layers, seq=1):
    image = b"".join(protocol.encode_layer(**layer) for layer in layers)
    return request(Opcode.WRITE, seq, protocol.write_args(Target.PROGRAM, 0), image)


def _run_program(first, count, seq=2):
    return request(Opcode.RUN_PROGRAM, seq, protocol.run_program_args(first, count))


LAYERS = [dict(engine=Engine.SYSTOLIC, flags=protocol.LayerFlag.RELU, m=2, k=4, n=3),
          dict(engine=Engine.TERNARY, flags=protocol.LayerFlag.TO_OUTPUT | 1, m=1, k=8, n=2)]


def test_program_runs_its_layers_and_answers_with_their_counters():
    responses, writes, starts, _ = drive([_load_program(*LAYERS), _run_program(0, 2)],
                                         path=_program_path(), cycles=1500)
    # Descriptor bytes go to the sequencer's memory, not to the engines.
    assert not writes
    assert starts == [(Engine.SYSTOLIC, 2, 4, 3, 0, 1), (Engine.TERNARY, 1, 8, 2, 1, 0)]
    assert [(r["opcode"], r["seq"], r["status"], r["length"], r["source"])
            for r in responses] == [(Opcode.WRITE, 1, Status.OK, 0, Source.CAPABILITY),
                                    (Opcode.RUN_PROGRAM, 2, Status.OK, 16, Source.PROGRAM)]


def test_program_past_max_layers_is_unavailable():
    frames = [_run_program(2, 2, seq=3), _run_program(0, 0, seq=4),
              _run_program(3, 1, seq=5), request(Opcode.PING, 6)]
    responses, _, starts, _ = drive(frames, path=_program_path())
    assert [(r["seq"], r["status"]) for r in responses] == [
        (3, Status.UNAVAILABLE), (4, Status.UNAVAILABLE), (5, Status.UNAVAILABLE),
        (6, Status.OK)]
    assert not starts


def test_bad_shape_ends_a_program_before_its_layer_starts():
    bad = dict(LAYERS[0], k=PROGRAM_CONFIG.max_k + 1)
    responses, _, starts, _ = drive([_load_program(LAYERS[0], bad, LAYERS[1]),
                                     _run_program(0, 3)], path=_program_path(), cycles=1500)
    assert starts == [(Engine.SYSTOLIC, 2, 4, 3, 0, 1)]
    assert [(r["seq"], r["status"], r["length"]) for r in responses] == [
        (1, Status.OK, 0), (2, Status.BAD_SHAPE, 0)]


def test_requests_during_a_program_are_answered_busy():
    frames = [_load_program(*LAYERS), _run_program(0, 2), request(Opcode.PING, 3),
              request(Opcode.WRITE, 4, protocol.write_args(Target.PROGRAM, 0), b"ab")]
    responses, writes, starts, _ = drive(frames, path=_program_path(), ready_after=0,
                                         run_cycles=400, cycles=2500)
    assert [(r["opcode"], r["seq"], r["status"]) for r in responses] == [
        (Opcode.WRITE, 1, Status.OK), (Opcode.PING, 3, Status.BUSY),
        (Opcode.WRITE, 4, Status.BUSY), (Opcode.RUN_PROGRAM, 2, Status.OK)]
    assert len(starts) == 2 and not writes


def test_a_program_layer_reads_its_map_in_place_so_m_times_k_may_exceed_act_depth():
    config = PROGRAM_CONFIG.replace(act_depth=64)
    layer = dict(engine=Engine.SYSTOLIC, m=8, k=16, n=1)    # M*K = 128 > 64
    responses, _, starts, _ = drive([_load_program(layer), _run_program(0, 1)],
                                    path=_path(config=config), cycles=1500)
    assert [(r["seq"], r["status"]) for r in responses] == [(1, Status.OK), (2, Status.OK)]
    assert starts == [(Engine.SYSTOLIC, 8, 16, 1, 0, 0)]
    # A RUN of the same shape reads M x K rows: refused.
    responses, _, starts, _ = drive([request(Opcode.RUN, 3, protocol.run_args(
        Engine.SYSTOLIC, 0, 8, 16, 1))], path=_path(config=config))
    assert [r["status"] for r in responses] == [Status.BAD_SHAPE] and not starts
