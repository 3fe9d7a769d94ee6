"""Comparisons of a value with a constant, as logic rather than a carry chain.

Yosys maps ``value > limit`` to a subtractor's carry chain, a cell per bit on iCE40;
the same comparison written out bit by bit is a handful of LUT4s (a 16-bit value
against 960: 7 LUT4s instead of 15 cells), which is what the request checks need.
"""

from amaranth.hdl import Const, Value

__all__ = ["exceeds"]


def exceeds(value, limit):
    """Return ``value > limit`` for an unsigned ``value`` and a non-negative int ``limit``.

    From the top bit down: ``value`` is greater at the first bit where it has a 1 and
    ``limit`` a 0, all bits above being equal.
    """
    value = Value.cast(value)
    if limit < 0:
        raise ValueError(f"Limit must be a non-negative integer, not {limit}")
    if limit >= 1 << len(value):
        return Const(0)
    greater, equal = Const(0), Const(1)
    for i in reversed(range(len(value))):
        if (limit >> i) & 1:
            equal = equal & value[i]
        else:
            greater = greater | (equal & value[i])
            equal = equal & ~value[i]
    return greater
