"""cocotb: the iCE40 DualMul8 (one SB_MAC16, yosys' model) against Python's products."""

import cocotb
from cocotb.triggers import Timer


def _signed8(v):
    return ((v & 0xFF) ^ 0x80) - 0x80


@cocotb.test()
async def every_operand_pair(dut):
    """All 65536 (a0, b0) pairs, while (a1, b1) walk a different permutation."""
    for i in range(1 << 16):
        a0, b0 = _signed8(i), _signed8(i >> 8)
        a1, b1 = _signed8(i * 77 + 13), _signed8((i >> 8) * 31 + i)
        dut.a0.value, dut.b0.value, dut.a1.value, dut.b1.value = a0, b0, a1, b1
        await Timer(1, unit="ns")
        p0, p1 = dut.p0.value.to_signed(), dut.p1.value.to_signed()
        assert (p0, p1) == (a0 * b0, a1 * b1), (a0, b0, a1, b1, p0, p1)
