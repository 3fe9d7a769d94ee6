"""Integer helpers shared by the layouts, the planner and the generators."""

__all__ = ["ceil_div"]


def ceil_div(a, b):
    """Return ``ceil(a / b)`` for integers, exactly (no float rounding)."""
    return -(-a // b)
