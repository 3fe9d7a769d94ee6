"""The dispatcher alone in Amaranth's simulator: when it releases a request.

The testbench offers checked requests (the checker's side), takes each response after a
random number of cycles (the responder's backpressure) and plays the shape check and the
engine; a watcher records every cycle's handshakes.
"""

import random

from tritile.hw.dispatcher import Dispatcher
from tritile.sw import protocol
from tritile.sw.protocol import Engine, Opcode, Status

from helpers import seed, simulate, stream_put

ADDR_BITS = 16


def _checked(opcode, seq, status=Status.OK, args=b""):
    # The parser shifts the argument block in from the top (request_args).
    shift = 8 * (protocol.MAX_ARGS - len(args))
    return {"request": {"opcode": opcode, "seq": seq,
                        "args": int.from_bytes(args, "little") << shift},
            "status": status}


def _serve(requests, rng, run_cycles=0):
    """Offer ``requests`` (checked payloads) one after another, each as soon as the last
    was released; return each cycle's (checked valid, checked ready, response valid,
    response ready, response seq, response status)."""
    dut = Dispatcher(capability_size=4, addr_bits=ADDR_BITS)
    cycles = []

    async def checker(ctx):
        for payload in requests:
            await stream_put(ctx, dut.checked, payload)
        await ctx.tick().repeat(run_cycles + 40)

    async def responder(ctx):
        while True:
            ready = rng.random() < 0.3
            ctx.set(dut.response.ready, ready)
            await ctx.tick()

    async def shape_and_engine(ctx):
        ctx.set(dut.shape.ready, 1)
        ctx.set(dut.start.ready, 1)
        busy_left = 0
        while True:
            ctx.set(dut.engine_busy, busy_left > 0)
            _, _, started = await ctx.tick().sample(dut.start.valid)
            busy_left = run_cycles if started else max(0, busy_left - 1)

    async def watch(ctx):
        async for _, _, *sample in ctx.tick().sample(
                dut.checked.valid, dut.checked.ready, dut.response.valid,
                dut.response.ready, dut.response.payload.seq,
                dut.response.payload.status):
            cycles.append(tuple(sample))

    simulate(dut, checker, processes=[responder, shape_and_engine, watch],
             name="dispatcher")
    return cycles


def _releases_and_answers(cycles):
    released = [t for t, (valid, ready, *_) in enumerate(cycles) if valid and ready]
    answered = [t for t, (_, _, valid, ready, *_) in enumerate(cycles) if valid and ready]
    return released, answered


def test_a_request_is_released_the_cycle_after_its_response_was_taken():
    rng = random.Random(seed())
    requests = [_checked(Opcode.PING, 1), _checked(Opcode.INFO, 2),
                _checked(Opcode.READ, 3, Status.BAD_ADDRESS), _checked(Opcode.STATS, 4)]
    cycles = _serve(requests, rng)
    released, answered = _releases_and_answers(cycles)
    assert [cycles[t][4:] for t in answered] == [
        (1, Status.OK), (2, Status.OK), (3, Status.BAD_ADDRESS), (4, Status.OK)]
    # From a register: never in the cycle the responder takes the response.
    assert released == [t + 1 for t in answered]


def test_a_request_answered_busy_during_a_run_is_released_a_cycle_after_its_response():
    rng = random.Random(seed())
    run = _checked(Opcode.RUN, 5, args=protocol.run_args(Engine.SYSTOLIC, 0, 2, 3, 4))
    cycles = _serve([run, _checked(Opcode.PING, 6), _checked(Opcode.PING, 7)], rng,
                    run_cycles=60)
    released, answered = _releases_and_answers(cycles)
    # The RUN's request goes when it has started; the pings are answered BUSY while it
    # runs, then the RUN itself.
    assert [cycles[t][4:] for t in answered] == [
        (6, Status.BUSY), (7, Status.BUSY), (5, Status.OK)]
    assert released[1:] == [answered[0] + 1, answered[1] + 1]
    assert released[0] < answered[0]
