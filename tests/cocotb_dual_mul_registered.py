"""cocotb: a synthesized DualMul8(pipelined=True) against a Python model of its registers.

With ``registered`` (``DUAL_MUL_REGISTERED=1``): one SB_MAC16 with its A, B and product
registers on iCE40, two MULT18X18D with their input and output registers on ECP5 (the
vendor cells' simulation models), the held operands and the registered products. Without:
the products of the operands at an edge, registered behind the multiply."""

import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge


def _signed8(v):
    return ((v & 0xFF) ^ 0x80) - 0x80


@cocotb.test()
async def held_operands_registered_products(dut):
    """Random operands every cycle. Registered: B taken only at edges with b_load, the
    products of the operands held at an edge after the next edge. Otherwise: the
    products of the operands at an edge after that edge."""
    seed = int(os.environ["DUAL_MUL_SEED"])
    registered = os.environ["DUAL_MUL_REGISTERED"] == "1"
    print(f"seed {seed}, registered {registered}")
    rng = random.Random(seed)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 0
    held = None          # the operands the last edge took
    multiplied = None    # those of the edge before: the products on p0, p1
    for cycle in range(20000):
        await FallingEdge(dut.clk)
        if multiplied is not None:
            p0, p1 = dut.p0.value.to_signed(), dut.p1.value.to_signed()
            expected = (multiplied[0] * multiplied[1], multiplied[2] * multiplied[3])
            assert (p0, p1) == expected, (cycle, multiplied, p0, p1)
        a0, b0, a1, b1 = (_signed8(rng.getrandbits(8)) for _ in range(4))
        load = held is None or rng.random() < 0.3
        dut.a0.value, dut.b0.value, dut.a1.value, dut.b1.value = a0, b0, a1, b1
        if registered:
            dut.b_load.value = int(load)
        await RisingEdge(dut.clk)
        if registered:
            multiplied = held
            held = (a0, b0 if load else held[1], a1, b1 if load else held[3])
        else:
            multiplied = (a0, b0, a1, b1)
