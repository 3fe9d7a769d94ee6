"""The SoC's link components around the request path, in Amaranth's simulator: the host
link (UART pins and byte port), the result placer and the responder."""

import random

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory

from tritile.hw.host_link import HostLink, ReceiveFIFO
from tritile.hw.responder import Responder, Source
from tritile.hw.result_placer import ResultPlacer
from tritile.sw import protocol
from tritile.sw.engines import ENGINES

from helpers import seed, simulate, stream_get, stream_get_many, stream_put, watch_stream
from test_device import TEST_CONFIG


def test_host_link_carries_bytes_both_ways_over_uart_and_byte_port():
    divisor = 4
    dut = HostLink(divisor, byte_port=True)
    data = [0x00, 0xA5, 0xFF, 0x3C]
    received, violations = [], []

    async def loopback(ctx):
        # UART: what goes out on uart_tx comes back on uart_rx.
        for _ in range(14 * divisor * len(data) + 50):
            ctx.set(dut.uart_rx, ctx.get(dut.uart_tx))
            await ctx.tick()

    async def bench(ctx):
        for byte in data:
            await stream_put(ctx, dut.tx, byte)
        # The bytes wait in the FIFO until they are taken.
        await ctx.tick().repeat(12 * divisor * len(data))
        for _ in data:
            received.append(await stream_get(ctx, dut.rx))
        # The byte port passes bytes straight through, both ways.
        ctx.set(dut.use_byte_port, 1)
        ctx.set(dut.host_rx.payload, 0x42)
        ctx.set(dut.host_rx.valid, 1)
        ctx.set(dut.tx.payload, 0x24)
        ctx.set(dut.tx.valid, 1)
        assert not ctx.get(dut.host_rx.ready) and not ctx.get(dut.tx.ready)
        ctx.set(dut.rx.ready, 1)
        ctx.set(dut.host_tx.ready, 1)
        assert ctx.get(dut.host_rx.ready) and ctx.get(dut.tx.ready)
        received.extend([ctx.get(dut.rx.payload), ctx.get(dut.host_tx.payload)])

    simulate(dut, bench, loopback, processes=[watch_stream(dut.rx, "rx", violations)])
    assert received == data + [0x42, 0x24] and not violations


def test_receive_fifo_keeps_order_through_full_and_empty():
    rng = random.Random(seed())
    dut = ReceiveFIFO(8)
    data = [rng.randrange(256) for _ in range(60)]
    received, violations = [], []

    async def produce(ctx):
        for byte in data:
            await stream_put(ctx, dut.w_stream, byte)

    async def consume(ctx):
        # Nothing taken: full after 9 bytes (8 in the RAM, 1 on offer).
        await ctx.tick().repeat(40)
        assert ctx.get(dut.r_stream.valid) and not ctx.get(dut.w_stream.ready)
        # Slow (the FIFO stays full), then fast (it runs empty).
        received.extend(await stream_get_many(ctx, dut.r_stream, 30, rng, ready_share=0.1))
        received.extend(await stream_get_many(ctx, dut.r_stream, 30, rng, ready_share=0.9))

    simulate(dut, produce, consume, processes=[watch_stream(dut.r_stream, "r", violations)])
    assert received == data and not violations
    with pytest.raises(ValueError, match="depth must be a power of 2"):
        ReceiveFIFO(6)


def test_receive_fifo_runs_empty_at_every_pointer_value():
    # A reader always ready and a writer with gaps: the FIFO runs empty after each byte,
    # so its empty flag is set again at every value of the pointers, their wrap included.
    rng = random.Random(seed())
    dut = ReceiveFIFO(4)
    data = [rng.randrange(256) for _ in range(20)]
    received = []

    async def produce(ctx):
        for byte in data:
            await stream_put(ctx, dut.w_stream, byte)
            await ctx.tick().repeat(rng.randrange(1, 4))

    async def consume(ctx):
        ctx.set(dut.r_stream.ready, 1)
        for _ in range(100):
            _, _, valid, payload = await ctx.tick().sample(dut.r_stream.valid,
                                                           dut.r_stream.payload)
            if valid:
                received.append(payload)

    simulate(dut, produce, consume)
    assert received == data


def _placer_layer(ctx, placer, **fields):
    for name, value in fields.items():
        ctx.set(getattr(placer.layer, name), value)


def test_result_placer_writes_row_major_and_drops_results_outside_the_problem():
    m = Module()
    m.submodules.placer = placer = ResultPlacer(TEST_CONFIG, TEST_CONFIG.engines)
    m.submodules.memory = memory = Memory(shape=32, depth=TEST_CONFIG.out_depth, init=[])
    wiring.connect(m, placer.write, memory.write_port())
    read = memory.read_port(domain="comb")
    rows, cols, base = 3, 5, 7
    results = [(r, c, 1000 * r + c) for r in range(rows + 1) for c in range(cols + 2)]

    async def bench(ctx):
        _placer_layer(ctx, placer, to_output=1, out_base=base, m=rows, n=cols)
        for row, col, value in results:
            await stream_put(ctx, placer.results, {"row": row, "col": col, "value": value})
            assert not ctx.get(placer.act.valid)
        while ctx.get(placer.pending):
            await ctx.tick()
        await ctx.tick()
        for address in range(TEST_CONFIG.out_depth):
            ctx.set(read.addr, address)
            index = address - base
            expected = (1000 * (index // cols) + index % cols
                        if 0 <= index < rows * cols else 0)
            assert ctx.get(read.data) == expected, address

    simulate(m, bench)


@pytest.mark.parametrize("dest", TEST_CONFIG.engines)
def test_result_placer_writes_feature_maps_in_the_destination_engines_chunks(dest, py_rng):
    spec = ENGINES[dest]
    chunk = spec.chunk(TEST_CONFIG)
    placer = ResultPlacer(TEST_CONFIG, TEST_CONFIG.engines)
    rows, cols, base = 5, 2 * chunk + 3, 40
    dest_chunks = -(-cols // chunk)
    results = [(r, c, py_rng.randrange(-128, 128)) for r in range(rows) for c in range(cols)]
    written = []

    async def bench(ctx):
        _placer_layer(ctx, placer, to_output=0, m=rows, n=cols, dest_engine=spec.protocol_id,
                      dest_base=base, dest_chunks=dest_chunks)
        for row, col, value in results:
            await stream_put(ctx, placer.results, {"row": row, "col": col, "value": value})
        while ctx.get(placer.pending):
            await ctx.tick()
        await ctx.tick()

    async def collect(ctx):
        async for _, _, valid, payload, write_en in ctx.tick().sample(
                placer.act.valid, placer.act.payload, placer.write.en):
            assert not write_en
            if valid:
                written.append((payload.engine, payload.word, payload.byte, payload.data))

    simulate(placer, bench, processes=[collect])
    # The contract (docs/protocol.md): word dest_base + m * dest_chunks + n // chunk,
    # byte n % chunk, the int8 as a byte.
    assert written == [(spec.protocol_id, base + r * dest_chunks + c // chunk, c % chunk,
                        v & 0xFF) for r, c, v in results]


def test_responder_sends_each_source():
    capability = bytes(range(7, 17))
    m = Module()
    m.submodules.responder = dut = Responder(capability, 16, TEST_CONFIG.out_depth)
    m.submodules.memory = memory = Memory(shape=32, depth=TEST_CONFIG.out_depth,
                                          init=[0x44332211 * (i + 1) & 0xFFFFFFFF
                                                for i in range(TEST_CONFIG.out_depth)])
    wiring.connect(m, dut.output, memory.read_port(transparent_for=()))
    violations, frames = [], []

    async def produce(ctx):
        ctx.set(dut.busy_cycles, 0x01020304)
        ctx.set(dut.mac_cycles, 0x0A0B0C0D)
        for i in range(3):              # three frames and two overruns before STATS
            ctx.set(dut.events.frames, 1)
            ctx.set(dut.overrun, i < 2)
            await ctx.tick()
            ctx.set(dut.events.frames, 0)
            ctx.set(dut.overrun, 0)
            await ctx.tick().repeat(8)
        # Past the cycle counter's low byte: its carries count in the RAM.
        await ctx.tick().repeat(1000)
        for source, length, base, output8 in ((Source.CAPABILITY, 10, 0, 0),
                                              (Source.CYCLES, 8, 0, 0),
                                              (Source.CYCLES, 0, 0, 0),
                                              (Source.OUTPUT, 6, 5, 0),
                                              (Source.OUTPUT, 3, 2, 1),
                                              (Source.STATS, 28, 0, 0)):
            # A cycle apart, the last one's fields still on the wires (not valid): the
            # empty response must not fetch a byte on the length before it.
            await ctx.tick()
            await stream_put(ctx, dut.response, {
                "opcode": 2, "seq": 9, "status": 0, "length": length, "source": source,
                "base": base, "output8": output8})

    async def consume(ctx):
        # As the writer does: data bytes while the header is offered, then the header.
        for length in (10, 8, 0, 6, 3, 28):
            sent = [await stream_get(ctx, dut.data) for _ in range(length)]
            assert [byte.last for byte in sent] == ([0] * (length - 1) + [1])[:length]
            frames.append(bytes(byte.byte for byte in sent))
            header = await stream_get(ctx, dut.header)
            assert header.length == length

    simulate(m, produce, consume, processes=[watch_stream(dut.data, "data", violations),
                                             watch_stream(dut.header, "header", violations)])
    words = b"".join((0x44332211 * (i + 1) & 0xFFFFFFFF).to_bytes(4, "little")
                     for i in range(8))
    assert frames[:5] == [capability, bytes.fromhex("040302010d0c0b0a"), b"", words[5:11],
                          bytes(words[i * 4] for i in range(2, 5))]
    stats = protocol.parse_stats(frames[5])
    assert (stats["frames"], stats["overruns"], stats["bad_crc"]) == (3, 2, 0)
    # The STATS bytes are read over a few dozen cycles after about 1100 cycles.
    assert 1000 < stats["cycles"] < 2000
    assert not violations, violations[:3]


def test_responder_sends_a_programs_counter_words():
    m = Module()
    m.submodules.responder = dut = Responder(bytes(4), 16, TEST_CONFIG.out_depth,
                                             program_mode=True)
    # The sequencer's counter memory: word w one cycle after its address.
    words = [0x11111111 * (w + 1) for w in range(6)]
    m.submodules.counters = counters = Memory(shape=32, depth=8, init=words)
    read = counters.read_port(transparent_for=())
    m.d.comb += [read.addr.eq(dut.counter_addr), dut.counter_data.eq(read.data)]
    sent = []

    async def produce(ctx):
        await stream_put(ctx, dut.response, {"opcode": 7, "seq": 1, "status": 0,
                                             "length": 24, "source": Source.PROGRAM})

    async def consume(ctx):
        for _ in range(24):
            sent.append((await stream_get(ctx, dut.data)).byte)
        header = await stream_get(ctx, dut.header)
        assert header.length == 24

    simulate(m, produce, consume)
    assert protocol.parse_program_run(bytes(sent), 3) == [
        (words[0], words[1]), (words[2], words[3]), (words[4], words[5])]
