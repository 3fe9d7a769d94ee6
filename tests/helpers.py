"""Shared helpers of the tests: seeds, the small device config, the Amaranth simulator, and
stream drivers.

Stream helpers follow Amaranth's stream rules from the testbench side: :func:`stream_put`
holds ``valid`` and ``payload`` until ``ready``; :func:`stream_get` takes one beat;
:func:`watch_stream` fails a simulation in which a component drops ``valid`` or changes
``payload`` before the beat was taken. Set ``TRITILE_VCD=1`` to write a waveform of each
simulation into the current directory.
"""

import os
import random

from amaranth.sim import Simulator

from tritile.sw import AcceleratorConfig

__all__ = ["TEST_CONFIG", "seed", "simulate", "stream_put", "stream_get",
           "stream_get_many", "watch_stream"]

#: The device of the end-to-end tests: small enough to build quickly and to make tiling
#: happen on small problems.
TEST_CONFIG = AcceleratorConfig(
    systolic_rows=2, systolic_cols=2, ternary_lanes=4, ternary_fan_in=4,
    max_m=8, max_k=16, max_n=8, act_depth=128, weight_depth=128, trit_depth=128,
    out_depth=64)


def seed():
    """Return the test's random seed (``TRITILE_SEED`` or a fresh one), printed for replay."""
    value = int(os.environ.get("TRITILE_SEED", random.randrange(1 << 32)))
    print(f"seed={value} (replay with TRITILE_SEED={value})")
    return value


def simulate(dut, *testbenches, processes=(), name="sim"):
    """Run ``testbenches`` (and background ``processes``) against ``dut`` at 1 MHz."""
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for testbench in testbenches:
        sim.add_testbench(testbench)
    for process in processes:
        sim.add_process(process)
    if os.environ.get("TRITILE_VCD"):
        with sim.write_vcd(f"{name}.vcd"):
            sim.run()
    else:
        sim.run()


async def stream_put(ctx, stream, payload):
    """Offer ``payload`` on ``stream`` until it is taken."""
    ctx.set(stream.payload, payload)
    ctx.set(stream.valid, 1)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream):
    """Take the next beat of ``stream``; return its payload."""
    ctx.set(stream.ready, 1)
    payload, = await ctx.tick().sample(stream.payload).until(stream.valid)
    ctx.set(stream.ready, 0)
    return payload


async def stream_get_many(ctx, stream, count, rng, ready_share=0.5):
    """Take ``count`` beats of ``stream``, ``ready`` high on a random ``ready_share`` of the
    cycles (``rng`` a ``random.Random``); return their payloads in order."""
    beats = []
    while len(beats) < count:
        ready = rng.random() < ready_share
        ctx.set(stream.ready, ready)
        await ctx.delay(1e-9)
        if ready and ctx.get(stream.valid):
            beats.append(ctx.get(stream.payload))
        await ctx.tick()
    ctx.set(stream.ready, 0)
    return beats


def watch_stream(stream, name, violations):
    """Return a process that appends to ``violations`` each break of the stream rules."""
    async def process(ctx):
        offered = None
        async for _, _, valid, ready, payload in ctx.tick().sample(
                stream.valid, stream.ready, stream.payload):
            if offered is not None and (not valid or payload != offered):
                violations.append(f"{name}: valid {valid}, payload {payload} after "
                                  f"{offered} was offered and not taken")
            offered = payload if valid and not ready else None
    return process
