"""Frame parser and response writer in Amaranth's simulator, against sw/protocol.py."""

import pytest

from tritile.hw.frame import FrameError, FrameParser, ResponseWriter
from tritile.sw import protocol
from tritile.sw.protocol import (ARGS_SIZE, MAX_DATA, MAX_PAYLOAD, FrameDecoder, Opcode,
                                 encode_frame, encode_request)

from helpers import simulate

TIMEOUT = 40


def _parse(chunks, rng, gap_prob=0.3, ordered=None, tick_period=1, phase=0):
    """Feed ``chunks`` (bytes, or an int = that many idle cycles) to a parser; return the
    requests [(opcode, seq, args_missing, args, error, buffered data)] and the pulse
    counts; ``ordered``, a list, gets each request's ``ordered`` bit. A ``tick_period``
    above 1 pulses ``tick`` every that many cycles, ``phase`` cycles early."""
    dut = FrameParser(TIMEOUT, tick_period=tick_period)

    async def pace(ctx):
        cycle = 0
        async for _ in ctx.tick():
            cycle += 1
            ctx.set(dut.tick, (cycle + phase) % tick_period == 0)
    requests = []
    pulses = {"bad_crc": 0, "bad_length": 0, "timed_out": 0}
    done = {}

    async def feed(ctx):
        for chunk in chunks:
            if isinstance(chunk, int):
                ctx.set(dut.bytes.valid, 0)
                for _ in range(chunk):
                    await ctx.tick()
                continue
            for byte in chunk:
                while rng.random() < gap_prob:
                    ctx.set(dut.bytes.valid, 0)
                    await ctx.tick()
                ctx.set(dut.bytes.payload, byte)
                ctx.set(dut.bytes.valid, 1)
                await ctx.tick().until(dut.bytes.ready)
        ctx.set(dut.bytes.valid, 0)
        for _ in range(10):
            await ctx.tick()
        done["feed"] = True

    async def dispatch(ctx):
        while "feed" not in done:
            await ctx.tick()
            for name in pulses:
                pulses[name] += ctx.get(getattr(dut, name))
            if not ctx.get(dut.request.valid):
                continue
            req = ctx.get(dut.request.payload)
            # The argument block is shifted in: it ends at the field's top byte.
            args = req.args.to_bytes(8, "little")[8 - ARGS_SIZE.get(req.opcode, 0):]
            buffered = bytearray()
            for addr in range(req.data_length if req.error == FrameError.NONE else 0):
                ctx.set(dut.read_addr, addr)
                await ctx.tick().repeat(2)      # the buffer's read is registered twice
                buffered.append(ctx.get(dut.read_data))
            requests.append((req.opcode, req.seq, req.args_missing, bytes(args), req.error,
                             bytes(buffered)))
            if ordered is not None:
                ordered.append(req.ordered)
            ctx.set(dut.request.ready, 1)
            await ctx.tick()
            ctx.set(dut.request.ready, 0)

    simulate(dut, feed, dispatch, processes=[pace] if tick_period > 1 else [],
             name="frame_parser")
    return requests, pulses


def test_parser_delivers_requests_with_args_and_data(py_rng):
    sent, chunks = [], []
    for seq in range(12):
        opcode = py_rng.choice(list(Opcode))
        args = py_rng.randbytes(ARGS_SIZE[opcode])
        data = py_rng.randbytes(py_rng.randrange(1, 40)) if opcode == Opcode.WRITE else b""
        chunks.append(bytes(py_rng.randrange(256) for _ in range(3)).replace(b"\xa5", b""))
        chunks.append(encode_request(opcode, seq, args, data))
        sent.append((opcode, seq, 0, args, FrameError.NONE, data))
    requests, pulses = _parse(chunks, py_rng)
    assert requests == sent
    assert pulses == {"bad_crc": 0, "bad_length": 0, "timed_out": 0}


def test_parser_fills_the_whole_frame_buffer(py_rng):
    data = py_rng.randbytes(MAX_DATA)
    args = protocol.write_args(protocol.Target.SYSTOLIC_WEIGHT, 5)
    requests, _ = _parse([encode_request(Opcode.WRITE, 9, args, data)], py_rng, gap_prob=0)
    assert requests == [(Opcode.WRITE, 9, 0, args, FrameError.NONE, data)]


def test_parser_reports_bad_crc_and_bad_length(py_rng):
    good = encode_request(Opcode.PING, 1)
    bad_crc = bytearray(encode_request(Opcode.READ, 2, bytes(6)))
    bad_crc[-1] ^= 0x40
    too_long = bytes([protocol.SYNC, Opcode.WRITE, 3]) + (MAX_PAYLOAD + 1).to_bytes(2, "little")
    requests, pulses = _parse([bytes(bad_crc), too_long, good], py_rng)
    assert [(r[0], r[1], r[4]) for r in requests] == [
        (Opcode.READ, 2, FrameError.BAD_CRC), (Opcode.WRITE, 3, FrameError.BAD_LENGTH),
        (Opcode.PING, 1, FrameError.NONE)]
    assert pulses == {"bad_crc": 1, "bad_length": 1, "timed_out": 0}


def test_parser_abandons_truncated_frame_after_timeout(py_rng):
    truncated = encode_request(Opcode.WRITE, 4, bytes(8), b"abcdef")[:-3]
    # A gap just below the timeout keeps the frame alive; one above abandons it.
    alive = encode_request(Opcode.STATS, 5)
    requests, pulses = _parse([alive[:4], TIMEOUT - 2, alive[4:], truncated, TIMEOUT + 5,
                               encode_request(Opcode.PING, 6)], py_rng, gap_prob=0)
    assert [(r[0], r[1], r[4]) for r in requests] == [
        (Opcode.STATS, 5, FrameError.NONE), (Opcode.PING, 6, FrameError.NONE)]
    assert pulses["timed_out"] == 1


def test_parser_paced_by_a_tick_abandons_a_frame_within_two_periods_past_the_timeout(
        py_rng):
    # Whatever the tick's phase: a gap of the timeout keeps the frame alive, one of two
    # periods more abandons it.
    period = 8
    alive = encode_request(Opcode.STATS, 5)
    truncated = encode_request(Opcode.WRITE, 4, bytes(8), b"abcdef")[:-3]
    for phase in range(period):
        requests, pulses = _parse([alive[:4], TIMEOUT, alive[4:], truncated,
                                   TIMEOUT + 2 * period + 1, encode_request(Opcode.PING, 6)],
                                  py_rng, gap_prob=0, tick_period=period, phase=phase)
        assert [(r[0], r[1], r[4]) for r in requests] == [
            (Opcode.STATS, 5, FrameError.NONE), (Opcode.PING, 6, FrameError.NONE)], phase
        assert pulses["timed_out"] == 1, phase


def test_unknown_opcode_is_delivered_for_the_dispatcher_to_answer(py_rng):
    requests, _ = _parse([encode_frame(0x7E, 8, b"xyz")], py_rng)
    assert requests == [(0x7E, 8, 0, b"", FrameError.NONE, b"xyz")]


def test_parser_compares_a_writes_stride_with_its_run_as_the_bytes_arrive(py_rng):
    pairs = [(4, 2), (2, 4), (7, 7), (0x100, 0xFF), (0x1FF, 0x200), (0x1234, 0x1234),
             (0x1235, 0x1234), (0, 0), (0xFFFF, 0xFFFF)]
    pairs += [(py_rng.randrange(1 << 16), py_rng.randrange(1 << 16)) for _ in range(8)]
    # Raw argument blocks: protocol.write_args refuses stride < run.
    frames = [encode_request(Opcode.WRITE, seq, bytes(4) + run.to_bytes(2, "little")
                             + stride.to_bytes(2, "little"), b"x")
              for seq, (run, stride) in enumerate(pairs)]
    ordered = []
    _parse(frames, py_rng, ordered=ordered)
    assert ordered == [stride >= run for run, stride in pairs]


def test_parser_counts_a_payload_into_its_argument_block_and_data(py_rng):
    # A READ short of two argument bytes, a RUN with two bytes too many, and a STATS whose
    # payload is all data: the checker refuses each for its length from these counts.
    requests, _ = _parse([encode_frame(Opcode.READ, 1, b"abcd"),
                          encode_frame(Opcode.RUN, 2, bytes(range(10))),
                          encode_frame(Opcode.STATS, 3, b"z")], py_rng)
    assert [(r[0], r[2], r[5]) for r in requests] == [
        (Opcode.READ, 2, b""), (Opcode.RUN, 0, bytes([8, 9])), (Opcode.STATS, 0, b"z")]


@pytest.mark.parametrize("ready_share", [0.6, 1.0])
def test_response_writer_frames_status_and_data(ready_share, py_rng):
    # Always ready: the CRC's first byte is asked for right after the last body byte.
    responses = [(Opcode.READ, 1, 0, py_rng.randbytes(30)), (Opcode.PING, 2, 0, b""),
                 (Opcode.WRITE, 3, protocol.Status.BAD_ADDRESS, b""),
                 (Opcode.READ, 4, 0, py_rng.randbytes(5))]
    dut = ResponseWriter()
    out = bytearray()
    finished = {}

    async def produce(ctx):
        for opcode, seq, status, data in responses:
            ctx.set(dut.header.payload, {"opcode": opcode, "seq": seq, "status": status,
                                         "length": len(data)})
            ctx.set(dut.header.valid, 1)
            for i, byte in enumerate(data):
                ctx.set(dut.data.payload, {"byte": byte, "last": i == len(data) - 1})
                ctx.set(dut.data.valid, 1)
                await ctx.tick().until(dut.data.ready)
                ctx.set(dut.data.valid, 0)
            # The header is read while the frame goes out and taken after its CRC.
            await ctx.tick().until(dut.header.ready)
            ctx.set(dut.header.valid, 0)
        for _ in range(40):
            await ctx.tick()
        finished["produce"] = True

    async def consume(ctx):
        while "produce" not in finished:
            ready = py_rng.random() < ready_share
            ctx.set(dut.bytes.ready, ready)
            _, _, valid, byte = await ctx.tick().sample(dut.bytes.valid, dut.bytes.payload)
            if ready and valid:
                out.append(byte)

    simulate(dut, produce, consume, name="response_writer")
    expected = b"".join(protocol.encode_response(op, seq, status, data)
                        for op, seq, status, data in responses)
    assert bytes(out) == expected
    assert len(FrameDecoder().feed(bytes(out))) == 4
