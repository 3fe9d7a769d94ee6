"""The shared output stage: per-channel bias, requantization, ReLU and int8 saturation.

Both engines end in one :class:`Requantizer`. An engine *core* emits ``(row, col, acc)``
beats of its exact accumulators; the requantizer adds the bias of channel ``col`` and
either passes the int32 sum through (``raw``) or applies the requantization of the
numerics contract (docs/numerics.md)
``clip(((acc * mult) + (1 << (shift - 1))) >> shift, lo, 127)``, with ``lo = 0`` under
``relu``, else -128. The per-channel ``(bias, mult, shift)`` live in a parameter memory
indexed by output channel, written through :attr:`Requantizer.param_write`.

This module also holds the contract every engine core follows (:func:`core_members`, the
``write`` and ``start`` layouts) and :class:`StandaloneEngine`, a core with its own output
stage.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from tritile.sw.config import AcceleratorConfig
from tritile.sw.numerics import MULT_BITS

from .block_ram import BlockRAM
from .dsp import balanced_sum
from .facts import REQUANTIZER_LATENCY, START_FIELDS, WRITE_FIELDS, requantizer_interval

__all__ = ["Requantizer", "StandaloneEngine", "core_members", "PARAM_LAYOUT", "ACC_LAYOUT",
           "RESULT_LAYOUT", "WRITE_LAYOUT", "START_LAYOUT", "LATENCY"]

#: One channel's parameters: written to the parameter memory at ``col``.
PARAM_LAYOUT = data.StructLayout({
    "col": unsigned(16),
    "bias": signed(32),
    "mult": unsigned(MULT_BITS),
    "shift": unsigned(6),
})

#: One exact accumulator of an engine core, before bias (narrower sums sign-extend).
ACC_LAYOUT = data.StructLayout({"row": unsigned(16), "col": unsigned(16), "acc": signed(32)})

#: One result at the engine boundary: requantized int8 (sign-extended) or raw int32.
RESULT_LAYOUT = data.StructLayout({"row": unsigned(16), "col": unsigned(16),
                                   "value": signed(32)})

#: One byte written into an engine core's memory (``target`` in the core's numbering).
WRITE_LAYOUT = data.StructLayout({name: unsigned(width)
                                  for name, width in WRITE_FIELDS.items()})

#: One problem for an engine core: sizes, and whether to return raw int32 or ReLU before
#: saturation.
START_LAYOUT = data.StructLayout({name: unsigned(width)
                                  for name, width in START_FIELDS.items()})

#: Cycles from a beat accepted on ``acc`` to its result valid on ``out`` (no stall), with
#: the multiply on DSP blocks (:func:`~tritile.hw.facts.requantizer_latency` in general).
LATENCY = REQUANTIZER_LATENCY

_ENTRY = data.StructLayout({"bias": signed(32), "mult": unsigned(MULT_BITS),
                            "shift": unsigned(6)})


class Requantizer(wiring.Component):
    """Bias add and per-channel requantization (or raw pass-through), pipelined.

    With its multiply on DSP blocks (``requant_serial`` 0) it accepts one beat per cycle
    and emits one per cycle, :data:`LATENCY` cycles later, in order. With the multiply
    in logic (``requant_serial`` k), it accepts a beat every
    :func:`~tritile.hw.facts.requantizer_interval` cycles (``acc.ready`` is low in
    between) and emits it :func:`~tritile.hw.facts.requantizer_latency` cycles later.
    Backpressure on ``out`` stalls the whole pipeline, the spacing of beats included
    (``acc.ready`` follows ``out.ready`` whenever the last stage holds a result).

    Parameters
    ----------
    config : AcceleratorConfig
        ``param_entries`` sets the depth of the parameter memory (``max_n`` unless the
        config's ``param_depth`` gives room for the channels of several layers);
        ``requant_serial`` how it multiplies.

    Members
    -------
    param_write : In(stream.Signature(PARAM_LAYOUT))
        Writes ``(bias, mult, shift)`` of entry ``col``; always ready. Writes past the
        memory are dropped. Write while no beats are in flight.
    param_base : In(16)
        Entry of channel 0's parameters: channel ``col`` uses entry ``param_base + col``
        (a program's layers keep theirs side by side; a RUN uses 0).
    acc : In(stream.Signature(ACC_LAYOUT))
        Accumulator beats of an engine core; ``row`` is below ``max_m``, ``col`` below
        ``max_n`` and ``acc`` fits ``acc_width`` bits (the pipeline carries no more bits
        of them).
    raw : In(1)
        Per-problem mode, sampled with each accepted beat: 1 returns ``acc + bias`` as
        int32 (wrapping, as the int32 contract never overflows for legal problems),
        0 requantizes.
    relu : In(1)
        Per-problem mode, sampled with each accepted beat: clamp requantized values at 0.
    out : Out(stream.Signature(RESULT_LAYOUT))
        Results, one per accepted beat, in input order.
    busy : Out(1)
        Some accepted beat has not yet left on ``out``.
    """

    def __init__(self, config):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not "
                            f"{type(config).__name__}")
        self.config = config
        super().__init__({
            "param_write": In(stream.Signature(PARAM_LAYOUT)),
            "param_base": In(16),
            "acc": In(stream.Signature(ACC_LAYOUT)),
            "raw": In(1),
            "relu": In(1),
            "out": Out(stream.Signature(RESULT_LAYOUT)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        depth = self.config.param_entries
        # Parameters are written while no beats are in flight, so a read never meets a
        # write of its entry: a BlockRAM, without the read-during-write emulation.
        m.submodules.params = params = BlockRAM(_ENTRY.size, depth)
        entry = _ENTRY(params.read_data)
        payload = self.param_write.payload
        m.d.comb += [
            self.param_write.ready.eq(1),
            params.write_addr.eq(payload.col),
            params.write_data.eq(Cat(payload.bias, payload.mult, payload.shift)),
            params.write_en.eq(self.param_write.valid & (payload.col < depth)),
        ]

        # One enable for every stage: the pipeline moves unless a result waits on `out`.
        # A multiply in logic takes a beat every `interval` cycles: `gap` counts the
        # cycles left before the next, so no beat ever waits inside the pipeline.
        advance = Signal()
        accepted = Signal()
        m.d.comb += [
            advance.eq(~self.out.valid | self.out.ready),
            self.acc.ready.eq(advance),
            accepted.eq(self.acc.valid & self.acc.ready),
        ]
        interval = requantizer_interval(self.config)
        if interval > 1:
            gap = Signal(range(interval))
            m.d.comb += self.acc.ready.eq(advance & (gap == 0))
            with m.If(accepted):
                m.d.sync += gap.eq(interval - 1)
            with m.Elif(advance & (gap != 0)):
                m.d.sync += gap.eq(gap - 1)

        m.d.comb += [params.read_addr.eq(self.acc.payload.col + self.param_base),
                     params.read_en.eq(advance)]

        def stage(name, **fields):
            valid = Signal(name=f"{name}_valid")
            regs = {key: Signal(shape, name=f"{name}_{key}") for key, shape in fields.items()}
            return valid, regs

        # Cores emit rows below max_m and columns below max_n: the tags that ride beside
        # the data need no more bits than that (on iCE40 each tag bit of each stage is a
        # logic cell).
        tag = {"row": unsigned(bits_for(self.config.max_m - 1)),
               "col": unsigned(bits_for(self.config.max_n - 1)), "raw": 1, "relu": 1}

        # Stage 1: the beat waits for its channel's parameters from the synchronous read.
        v1, s1 = stage("s1", **tag, acc=signed(self.config.acc_width))
        # Stage 2: bias added (33 bits, exact), and ``shift - 1`` (see stage 4). A raw beat
        # takes the same path as ``(sum * 2 + 1) >> 1 == sum``, so no stage carries the
        # sum beside the product and the output needs no second source.
        serial = bool(self.config.requant_serial)
        v2, s2 = stage("s2", **tag, sum=signed(33), shift_m1=unsigned(6),
                       **({} if serial else {"mult": unsigned(MULT_BITS)}))
        # Stage 3: product with the multiplier (exact), held until it is complete.
        v3, s3 = stage("s3", **tag, shift_m1=unsigned(6))
        # Stage 4: t = p >> (shift - 1). The output stage rounds, as ``(t + 1) >> 1``, which
        # equals ``(p + (1 << (shift - 1))) >> shift`` for every integer p: no rounding
        # term decoded from the shift. It compares t itself with the int8 limits of the
        # rounded value and adds the 1 only to t's low bits, so no path has a wide shifter
        # and a wide adder in a row. A raw beat (p = 2 * sum, shift 1) is t >> 1: stage 4
        # holds p's low 33 bits for it; otherwise t's low 11 bits and whether t is outside
        # their range (:func:`_shift_narrowed`), which, saturated by p's sign, decide every
        # comparison as t does. The saturation is the output stage's, so that the shift's
        # path ends at a register.
        v4, s4 = stage("s4", **tag, t=signed(33), outside=1, negative=1)

        # A multiply in logic reads stage 2's sum in every step: stage 2 then takes only
        # beats, and keeps one until the next arrives (`interval` cycles at the earliest).
        multiplier = Mux(s1["raw"], 2, entry.mult)
        if serial:
            product, complete, entering, forming = self._serial_multiply(
                m, advance, v1, multiplier, v2, s2["sum"])
            # Stage 3 takes the tags when the product's first step is summed, a cycle after
            # stage 2 took the beat's first step, so that it holds them until the product
            # is complete. With one step a beat the next beat is in stage 2 by then: the
            # tags wait a cycle in a register of their own.
            source = s2
            if interval == 1:
                _, source = stage("s2b", **tag, shift_m1=unsigned(6))
                with m.If(advance):
                    m.d.sync += [source[k].eq(s2[k]) for k in source]
        else:
            product, entering, forming, source = Signal(signed(33 + MULT_BITS)), v2, 0, s2
            with m.If(advance):
                m.d.sync += product.eq(s2["sum"] * s2["mult"])
            complete = Const(1)
        # The shift takes two stages: its steps of 32, 16 and 8 into stage 3b (a raw beat's
        # p there as it is), those of 4, 2 and 1 into stage 4, as the shift's narrowing and
        # range checks are 7 to 8 LUTs deep in all (the critical path of the iCEBreaker's
        # int8 preset once its multiply was split, and of its ternary preset, whose
        # multiply is on DSPs).
        v3b, s3b = stage("s3b", **tag, t=signed(33), outside=1, negative=1, shift_low=3)
        # `busy` is a register holding what the stage flags will hold after this edge (all
        # of them hold while the pipeline stalls, with a result on `out`): its readers, the
        # engine bank's start and the core's, see no logic of the pipeline's (the OR of
        # seven flags in front of them was the iCEBreaker int8 preset's critical path).
        m.d.sync += self.busy.eq(~advance | accepted | v1 | v2 | forming | entering | v3
                                 | v3b | v4)

        with m.If(advance):
            m.d.sync += [v1.eq(accepted), v2.eq(v1), v3.eq(entering | (v3 & ~complete)),
                         v4.eq(v3b), self.out.valid.eq(v4)]
            m.d.sync += [s1[k].eq(getattr(self.acc.payload, k)) for k in ("row", "col", "acc")]
            m.d.sync += [s1["raw"].eq(self.raw), s1["relu"].eq(self.relu)]
            with m.If(v1 if serial else 1):
                m.d.sync += [s2[k].eq(s1[k]) for k in tag]
                m.d.sync += [
                    s2["sum"].eq(s1["acc"] + entry.bias),
                    # Shift 0 is illegal (never written by a correct host); it wraps
                    # harmlessly.
                    s2["shift_m1"].eq(Mux(s1["raw"], 0, entry.shift - 1)),
                ]
                if not serial:
                    m.d.sync += s2["mult"].eq(multiplier)
            with m.If(entering if serial else 1):
                m.d.sync += [s3[k].eq(source[k]) for k in (*tag, "shift_m1")]
            coarse_steps = range(3, 6)
            coarse, _ = _shift_narrowed(product, s3["shift_m1"], _T_BITS, coarse_steps)
            outside = _outside_after_shift(product, s3["shift_m1"], _T_BITS, coarse_steps)
            m.d.sync += [v3b.eq(v3 & complete), *(s3b[k].eq(s3[k]) for k in tag),
                         s3b["t"].eq(Mux(s3["raw"], product[:33], coarse)),
                         s3b["outside"].eq(~s3["raw"] & outside),
                         s3b["negative"].eq(product[-1]),
                         s3b["shift_low"].eq(s3["shift_m1"][:3])]
            narrowed, outside = _shift_narrowed(s3b["t"][:_T_BITS + 7], s3b["shift_low"],
                                                _T_BITS)
            m.d.sync += [s4[k].eq(s3b[k]) for k in tag]
            m.d.sync += [
                s4["t"].eq(Mux(s3b["raw"], s3b["t"], narrowed)),
                s4["outside"].eq(~s3b["raw"] & (outside | s3b["outside"])),
                s4["negative"].eq(s3b["negative"]),
                self.out.payload.row.eq(s4["row"]),
                self.out.payload.col.eq(s4["col"]),
            ]
            # (t + 1) >> 1 is above 127 when t >= 255, below 0 when t < -1, below -128
            # when t < -257; in between it fits 10 bits of t.
            limit = Mux(s4["negative"], -(1 << (_T_BITS - 1)), (1 << (_T_BITS - 1)) - 1)
            t = Mux(s4["outside"], limit, s4["t"][:_T_BITS].as_signed())
            with m.If(s4["raw"]):
                m.d.sync += self.out.payload.value.eq(s4["t"][1:33].as_signed())
            with m.Elif(t >= 255):
                m.d.sync += self.out.payload.value.eq(127)
            with m.Elif(s4["relu"] & (t < -1)):
                m.d.sync += self.out.payload.value.eq(0)
            with m.Elif(t < -257):
                m.d.sync += self.out.payload.value.eq(-128)
            with m.Else():
                m.d.sync += self.out.payload.value.eq((t[:10].as_signed() + 1) >> 1)
        return m

    def _serial_multiply(self, m, advance, load, multiplier, first, multiplicand):
        """Multiply in logic, ``requant_serial`` multiplier bits a step, one step a cycle;
        return ``(product, complete, entering, forming)``.

        ``load``: stage 2 takes a beat at this edge, whose multiplier is ``multiplier``;
        ``first``: stage 2 holds a new beat, whose ``multiplicand`` it keeps for the
        ``interval`` steps. ``entering``: the product's first step is summed at this edge;
        ``complete``: the product is final; ``forming``: a step's partial product is formed
        at this edge (it is between the two stages after it).

        Each step forms the multiplicand x times the step's k multiplier bits as radix-4
        Booth digits (pairs of bits, a radix-2 digit on top when k is odd): a digit in -2
        to 2 selects 0, x or 2x, inverted when negative, a few LUTs deep, so k = 4 takes
        one adder for its two terms, and registers the step's *partial product*. The next
        cycle adds that to the running sum, whose low k bits are then final and shift out.
        So no path has more than one wide carry chain (the k adders in a row of a step were
        the iCEBreaker's critical path), at one cycle more latency and the same rate. A
        negative digit's term is the one's complement, one short: the missing ones, at
        the digits' places, are bits of the multiplier, and start the running sum.
        """
        bits = self.config.requant_serial
        interval = requantizer_interval(self.config)
        # The Booth digits up to a place stand for the multiplier's bits below it minus
        # 2**place times the bit below the place: within +-2**place. So a running sum (the
        # product so far over 2**(bits shifted out)) is below |x| * 2**(k - 1), a partial
        # product below |x| * 2**k, plus the few missing ones: signed, |x|'s bits + k.
        width = len(multiplicand) + bits
        groups = [(offset, min(2, bits - offset)) for offset in range(0, bits, 2)]
        # Booth digits of an unsigned multiplier span one place more than its bits. When
        # the steps end at its top bit (k divides 15), the last step's top digit, radix 2
        # (b13 - b14), also takes the missing place (2 * b14): b13 + b14, not negative.
        extended = interval * bits == MULT_BITS
        to_form = Signal(range(max(interval, 2)))     # steps still to form after this one
        last = (to_form == 1) if interval > 1 else Const(1)

        # The multiplier with a 0 below it (bit i + 1 is multiplier bit i), shifted down k
        # bits a step: the window of a step is its k bits and the one below.
        pending = Signal(MULT_BITS + 1)
        window = Cat(pending, Const(0, bits))[:bits + 1]
        terms = []
        for offset, size in groups:
            below, low_bit, top = window[offset], window[offset + 1], window[offset + size]
            one = below ^ low_bit
            if size == 2:
                negative, two = top, ~one & (top ^ low_bit)
            elif extended:
                negative, two = ~last & low_bit, last & below & low_bit
            else:
                negative, two = low_bit, Const(0)
            magnitude = Mux(one, multiplicand, Mux(two, multiplicand << 1, 0))
            terms.append(Mux(negative, ~magnitude, magnitude) << offset)
        ones = [Const(0)] * MULT_BITS
        for step in range(interval):
            for offset, size in groups:
                place, top = step * bits + offset, step * bits + offset + size - 1
                if top < MULT_BITS and not (extended and top == MULT_BITS - 1):
                    ones[place] = pending[top + 1]

        partial = Signal(signed(width))
        init = Signal(MULT_BITS)
        stepped, entering = Signal(), Signal()
        # Steps still to sum (a bit at least: Verilog has no zero-width vector).
        to_sum = Signal(range(max(interval, 2)))
        forming = first | (to_form != 0)
        high = Signal(signed(width))
        # The final low bits, as they shift out (none with one step).
        low = Signal((interval - 1) * bits) if interval > 1 else Const(0, 0)
        with m.If(advance):
            m.d.sync += [stepped.eq(forming), entering.eq(first)]
            with m.If(forming):
                m.d.sync += [partial.eq(balanced_sum(terms)),
                             to_form.eq(Mux(first, interval - 1, to_form - 1))]
            with m.If(load):
                m.d.sync += pending.eq(Cat(0, multiplier))
            with m.Elif(forming):
                m.d.sync += pending.eq(pending >> bits)
            with m.If(first):
                m.d.sync += init.eq(Cat(*ones))
            with m.If(stepped):
                m.d.sync += [high.eq(Mux(entering, init, high >> bits) + partial),
                             to_sum.eq(Mux(entering, interval - 1, to_sum - 1))]
                if interval > 1:
                    m.d.sync += low.eq(Cat(low[bits:], high[:bits]))
        product = Cat(low, high)[:len(multiplicand) + MULT_BITS].as_signed()
        return product, to_sum == 0, entering, forming


# Bits of the shifted product the output stage compares: its limits -257 and 255 and the
# 10 bits it rounds fit 11.
_T_BITS = 11


def _shift_narrowed(value, amount, width, steps=None):
    """Return ``(t, outside)``: the low ``width`` bits of ``t = value >> amount``
    (arithmetic, so it floors as docs/numerics.md requires) and whether ``t`` is outside
    the signed ``width``-bit range (then it has ``value``'s sign; at its lower end
    ``outside`` may also be set). With ``steps``, only the steps of those bits of
    ``amount``: their ``t`` keeps the bits the steps below can still bring down.

    A barrel shifter, largest step first, that keeps after each step only the bits the
    smaller steps can still bring into the result: ``width + 2**i - 1`` bits before the
    steps below ``2**i``. A value that does not fit them is outside the result's range
    whatever the smaller steps do, and a flag records it. On iCE40 that is 123
    multiplexers for a 48-bit product where the full shift takes 288.
    """
    value = value.as_signed()
    outside = Const(0)
    for step in reversed(range(len(amount)) if steps is None else steps):
        value = Mux(amount[step], value >> (1 << step), value)
        keep = width + (1 << step) - 1
        if keep < len(value):
            top = value[keep - 1:]
            outside = outside | ~((top == 0) | (top == (1 << len(top)) - 1))
            value = value[:keep].as_signed()
    return value, outside


def _outside_after_shift(value, amount, width, steps):
    """Return the ``outside`` flag of :func:`_shift_narrowed` with ``steps``, tested on
    ``value`` itself.

    The steps keep ``width + 2**min(steps) - 1`` bits, so ``value >> s`` (``s`` the
    steps' shift) is outside them unless ``value``'s bits from ``s`` + that - 1 up are all
    equal. One such test for each of the steps' shifts, beside the shifter rather than
    behind it, and the amount's bits choose one: on iCE40 the flag behind the shifter
    (the steps of 32, 16 and 8) was 7 LUTs deep.
    """
    value, steps = value.as_signed(), sorted(steps)
    keep = width + (1 << steps[0]) - 1
    tests = []
    for code in range(1 << len(steps)):
        shift = sum(1 << step for j, step in enumerate(steps) if code >> j & 1)
        top = value[min(shift + keep - 1, len(value) - 1):]
        tests.append(~((top == 0) | (top == (1 << len(top)) - 1)))
    return Array(tests)[Cat(*(amount[step] for step in steps))]


def _counters():
    return {"busy": Out(1), "done": Out(1), "busy_cycles": Out(32), "mac_cycles": Out(32)}


def core_members(write_layout, start_layout):
    """Return the ports every engine core has, for its ``wiring.Component`` signature.

    ``write`` and ``start`` streams of the engine's own layouts, the ``acc`` stream with
    ``raw`` and ``relu`` for the output stage, ``out_busy`` from it, and the counters.
    """
    return {
        "write": In(stream.Signature(write_layout)),
        "start": In(stream.Signature(start_layout)),
        "acc": Out(stream.Signature(ACC_LAYOUT)),
        "raw": Out(1),
        "relu": Out(1),
        "out_busy": In(1),
        **_counters(),
    }


class StandaloneEngine(wiring.Component):
    """An engine core followed by its own :class:`Requantizer`: one complete engine.

    The SoC shares one output stage between its cores; a core on its own (tests,
    ``tritile sim``, ``tritile generate --top``) gets one through this wrapper. A core has
    ``write``, ``start``, ``acc``, ``raw``, ``relu``, ``out_busy``, ``busy``, ``done``,
    ``busy_cycles`` and ``mac_cycles``.

    Parameters
    ----------
    core : wiring.Component
        The engine core (:class:`~tritile.hw.systolic.SystolicCore` or
        :class:`~tritile.hw.ternary.TernaryUnit`); its ``config`` sizes the requantizer.

    Members
    -------
    write, start, busy, done, busy_cycles, mac_cycles
        The core's.
    param_write : In(stream.Signature(PARAM_LAYOUT))
        Per-channel parameters of the output stage.
    out : Out(stream.Signature(RESULT_LAYOUT))
        Results, one per beat, in the core's order.
    """

    def __init__(self, core):
        self.core = core
        self.config = core.config
        super().__init__({
            "write": In(stream.Signature(core.write.payload.shape())),
            "start": In(stream.Signature(core.start.payload.shape())),
            "param_write": In(stream.Signature(PARAM_LAYOUT)),
            "out": Out(stream.Signature(RESULT_LAYOUT)),
            **_counters(),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        m.submodules.requantizer = requantizer = Requantizer(self.config)
        wiring.connect(m, wiring.flipped(self.write), core.write)
        wiring.connect(m, wiring.flipped(self.start), core.start)
        wiring.connect(m, wiring.flipped(self.param_write), requantizer.param_write)
        wiring.connect(m, core.acc, requantizer.acc)
        wiring.connect(m, requantizer.out, wiring.flipped(self.out))
        m.d.comb += [
            requantizer.raw.eq(core.raw),
            requantizer.relu.eq(core.relu),
            core.out_busy.eq(requantizer.busy),
            self.busy.eq(core.busy),
            self.done.eq(core.done),
            self.busy_cycles.eq(core.busy_cycles),
            self.mac_cycles.eq(core.mac_cycles),
        ]
        return m
