"""The engines' timing and structure facts, owned by the hardware, in plain Python.

The gateware builds itself from these numbers and the host's cycle model
(:mod:`tritile.sw.planner`) reads them, so a change to the hardware's pipeline is one
edit here, checked by the cycle-exact tests of both engines. The module imports nothing,
so ``tritile.sw`` can read it without Amaranth: the planner imports it inside its
functions, as every use of ``tritile.hw`` from ``tritile.sw`` must be (docs/systolic.md,
"Where the facts live").
"""

__all__ = ["REQUANTIZER_LATENCY", "SYSTOLIC_START", "SYSTOLIC_FEED", "SYSTOLIC_ACCUMULATE",
           "SYSTOLIC_ACC_BUFFERS", "TERNARY_PIPELINE", "START_FIELDS", "WALK_FIELDS",
           "WRITE_FIELDS", "systolic_array_latency", "requantizer_interval",
           "requantizer_latency"]

#: Cycles from a beat accepted on the :class:`~tritile.hw.requantizer.Requantizer`'s
#: ``acc`` to its result valid on ``out`` (no stall), with its multiply on DSP blocks: its
#: six named stages (the shift in two).
REQUANTIZER_LATENCY = 6


def requantizer_interval(config):
    """Return the cycles between two beats the requantizer of ``config`` accepts.

    1 with its multiply on DSP blocks (``requant_serial`` 0); with ``requant_serial`` k,
    its multiply in logic takes ``ceil(MULT_BITS / k)`` cycles a beat, and it accepts the
    next beat that many cycles after the last.
    """
    from tritile.sw.numerics import MULT_BITS

    bits = config.requant_serial
    return -(-MULT_BITS // bits) if bits else 1


def requantizer_latency(config):
    """Return the cycles from a beat accepted by the requantizer of ``config`` to its
    result on ``out`` (no stall): :data:`REQUANTIZER_LATENCY` with the multiply on DSP
    blocks, whose product takes one cycle (its register); in logic, the product takes a
    cycle a step and one for the register between a step's partial product and its sum:
    :func:`requantizer_interval` cycles more."""
    if not config.requant_serial:
        return REQUANTIZER_LATENCY
    return REQUANTIZER_LATENCY + requantizer_interval(config)

#: Systolic core: cycles from the accepted start to the first row fed into the array
#: (the start is registered).
SYSTOLIC_START = 1


def systolic_array_latency(rows):
    """Return the cycles from a row fed into a systolic array of ``rows`` rows to its
    column sums: the skew of the last row (``rows - 1``), its activation register, its
    product register and its partial-sum register
    (:class:`~tritile.hw.systolic_array.SystolicArray`). The columns add nothing: a row's
    activation reaches all of them at once."""
    return rows + 2


#: Systolic core: cycles from a row's issue to its entering the array: the memories'
#: synchronous read and the feed register behind it (a block RAM's read then ends at a
#: register, not across the die at the array's operand registers).
SYSTOLIC_FEED = 2
#: Systolic core: cycles from a block's last row fed to its first accumulator entering the
#: output stage, beyond the array's latency (:func:`systolic_array_latency`): the feed
#: (:data:`SYSTOLIC_FEED`), the accumulator's sum register, its write and the
#: block-complete flag.
SYSTOLIC_ACCUMULATE = SYSTOLIC_FEED + 3
#: Systolic core: accumulator buffers of R x C. With three, the read-out of a block
#: (R * C cycles) and the pipeline latency (R + 2 + SYSTOLIC_ACCUMULATE) hide behind the
#: compute of the next two blocks.
SYSTOLIC_ACC_BUFFERS = 3

#: Ternary unit: cycles besides the first row's G groups, the adder tree's ceil(log2 P)
#: levels, the read stages and the last row's beats: the synchronous reads of both words
#: (the stored trits feed the lanes without a register) and the cycle after the last beat
#: that ends ``busy``.
TERNARY_PIPELINE = 2

#: Fields and widths of every engine core's ``start`` payload: one problem's sizes, whether
#: to return raw int32 or to apply ReLU before saturation, the implicit-im2col walk of its
#: activations (:class:`tritile.sw.conv.Im2colWalk`; the steps are two's complement) and
#: the weight memory word where its weights start. The widths are the layer descriptor's;
#: each core keeps as many bits of each as its config needs.
START_FIELDS = {"m": 16, "k": 16, "n": 16, "raw": 1, "relu": 1,
                "in_h": 16, "in_w": 16, "chunks": 16, "out_h": 16, "out_w": 16,
                "kernel_w": 8, "stride_y": 8, "stride_x": 8, "pad_top": 8, "pad_left": 8,
                "base0": 32, "x_step": 32, "row_step": 32, "image_step": 32,
                "tap_row_step": 32, "weight_base": 24}
#: The walk's fields among :data:`START_FIELDS`.
WALK_FIELDS = ("in_h", "in_w", "chunks", "out_h", "out_w", "kernel_w", "stride_y",
               "stride_x", "pad_top", "pad_left", "base0", "x_step", "row_step",
               "image_step", "tap_row_step")
#: Fields and widths of every engine core's ``write`` payload: one byte to a memory
#: (``target`` in the core's own numbering, see :mod:`tritile.sw.engines`), at a byte
#: address.
WRITE_FIELDS = {"target": 2, "addr": 24, "data": 8}
