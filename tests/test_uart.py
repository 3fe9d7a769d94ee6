"""The 8N1 UART in Amaranth's simulator: waveforms, loopback, glitches and framing errors."""

import random

import pytest
from amaranth.hdl import Module

from tritile.hw.uart import UARTReceiver, UARTTransmitter, uart_divisor
from tritile.sw import AcceleratorConfig

from helpers import seed as _seed, simulate, watch_stream


def _line_bits(byte, stop=1):
    return [0] + [(byte >> i) & 1 for i in range(8)] + [stop]


def _receive(divisor, waveform):
    """Drive ``waveform`` (one level per cycle) into a receiver; return its events."""
    dut = UARTReceiver(divisor)
    events = []

    async def tb(ctx):
        ctx.set(dut.bytes.ready, 1)
        for level in waveform + [1] * (4 * divisor):
            ctx.set(dut.rx, level)
            await ctx.tick()
            if ctx.get(dut.bytes.valid):
                events.append(ctx.get(dut.bytes.payload))
            if ctx.get(dut.framing_error):
                events.append("framing")

    simulate(dut, tb, name="uart_receiver")
    return events


def test_divisor_rounds_clock_over_baud():
    assert uart_divisor(AcceleratorConfig(clock_hz=24_000_000, baud=1_000_000)) == 24
    assert uart_divisor(AcceleratorConfig(clock_hz=25_000_000, baud=115_200)) == 217


def test_divisor_below_four_is_rejected():
    with pytest.raises(ValueError, match="at least 4"):
        UARTReceiver(3)
    with pytest.raises(ValueError, match="at least 4"):
        UARTTransmitter(2.5)


@pytest.mark.parametrize("divisor,skew", [(4, 1.0), (13, 0.97), (13, 1.03), (24, 1.0)])
def test_receiver_decodes_bytes_at_skewed_baud(divisor, skew):
    rng = random.Random(_seed())
    data = [0x00, 0xFF, 0x55, 0xAA] + [rng.randrange(256) for _ in range(12)]
    waveform = [1] * 7
    period = divisor * skew
    for byte in data:
        bits = _line_bits(byte)
        waveform += [bits[int(i / period)] for i in range(int(10 * period))]
        waveform += [1] * rng.randrange(0, 3)
    assert _receive(divisor, waveform) == data


def test_receiver_ignores_glitch_and_reports_framing_error():
    divisor = 16
    glitch = [1] * 5 + [0] * 3 + [1] * 40
    broken = [level for bit in _line_bits(0x3C, stop=0) for level in [bit] * divisor]
    good = [level for bit in _line_bits(0xC3) for level in [bit] * divisor]
    # After a framing error the line must return high before the next start bit counts.
    assert _receive(divisor, glitch + broken + [0] * 20 + [1] * 20 + good) == \
        ["framing", 0xC3]


def test_transmitter_loops_back_into_receiver_with_backpressure():
    rng = random.Random(_seed())
    divisor = 6
    data = [rng.randrange(256) for _ in range(20)]
    m = Module()
    m.submodules.tx = tx = UARTTransmitter(divisor)
    m.submodules.rx = rx = UARTReceiver(divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    received = []

    async def send(ctx):
        for byte in data:
            ctx.set(tx.bytes.payload, byte)
            ctx.set(tx.bytes.valid, 1)
            await ctx.tick().until(tx.bytes.ready)
            ctx.set(tx.bytes.valid, 0)
            for _ in range(rng.randrange(3)):
                await ctx.tick()

    async def collect(ctx):
        ctx.set(rx.bytes.ready, 1)
        for _ in range(len(data) * 12 * divisor + 100):
            await ctx.tick()
            if ctx.get(rx.bytes.valid):
                received.append(ctx.get(rx.bytes.payload))

    simulate(m, send, collect, name="uart_loopback")
    assert received == data


def test_transmitter_takes_the_next_byte_while_sending_and_sends_frames_back_to_back():
    rng = random.Random(_seed())
    divisor = 4
    data = [rng.randrange(256) for _ in range(3)]
    dut = UARTTransmitter(divisor)
    line, taken = [], []

    async def send(ctx):
        for byte in data:
            ctx.set(dut.bytes.payload, byte)
            ctx.set(dut.bytes.valid, 1)
            await ctx.tick().until(dut.bytes.ready)
            taken.append(len(line))
        ctx.set(dut.bytes.valid, 0)

    async def watch(ctx):
        async for _, _, level in ctx.tick().sample(dut.tx):
            line.append(level)
            if len(line) == 40 * divisor:
                break

    simulate(dut, send, watch, name="uart_transmitter")
    # Each frame is 10 bits and the cycle its stop bit ends in: 10 * divisor + 1 cycles.
    start, frame = line.index(0), 10 * divisor + 1
    expected = [level for byte in data
                for level in [bit for bit in _line_bits(byte) for _ in range(divisor)] + [1]]
    assert line[start:start + len(expected)] == expected
    assert all(line[start + len(expected):])
    # The second and third bytes were taken while the one before was on the line, before
    # its stop bit.
    assert taken[1] < start + 9 * divisor and taken[2] < start + frame + 9 * divisor


def test_receiver_holds_a_byte_until_taken_and_drops_the_next_on_overrun():
    divisor = 4
    data = [0x5A, 0xC3, 0x0F]
    waveform = [1] * 6 + [level for byte in data for bit in _line_bits(byte)
                          for level in [bit] * divisor] + [1] * (4 * divisor)
    dut = UARTReceiver(divisor)
    violations, taken, overruns = [], [], []

    async def tb(ctx):
        # Not ready until the second byte has completed: it is dropped, the first held.
        for cycle, level in enumerate(waveform):
            ctx.set(dut.rx, level)
            ctx.set(dut.bytes.ready, cycle > 6 + 22 * divisor)
            _, _, valid, ready, payload, overrun = await ctx.tick().sample(
                dut.bytes.valid, dut.bytes.ready, dut.bytes.payload, dut.overrun)
            if valid and ready:
                taken.append(payload)
            if overrun:
                overruns.append(cycle)

    simulate(dut, tb, processes=[watch_stream(dut.bytes, "bytes", violations)])
    assert not violations, violations
    assert taken == [0x5A, 0x0F] and len(overruns) == 1
