"""The MatMul-free ternary accumulation unit: int8 activations times trits, without a multiplier.

:class:`TernaryUnit` is the engine core: L lanes, each adding P int8 activations per cycle
after passing, negating or zeroing each one by its trit, and accumulating across K.
:class:`TernaryEngine` is the standalone engine: the core followed by the shared
:class:`~tritile.hw.requantizer.Requantizer`.

Dataflow (one K group of P inputs, for L lanes, per cycle)::

    write --> [base-3 decoder, transcoder] --> weight memory (2-bit codes)
    issue --> activation word (P bytes) ---------------+
          \\-> weight word (L*P 2-bit codes) ----------+--> select --> adder tree
                                                          --> accumulator --> bank
                                                          --> out (one lane a beat)

A lane negates by inversion, ``-x = ~x + 1``: the adder tree adds ``~x`` and feeds the
"+1" of each negated input in as a carry-in of one adder (``a + b + c`` computed as
``((a << 1 | c) + (b << 1 | 1)) >> 1``), so a negation costs no adder of its own. A tree of
P leaves has P - 1 adders; the accumulator takes the last carry. Every tree level is
registered. A row's sums move to an output bank that drains one lane per cycle while the
next row computes; a sum that finds the bank still draining stalls the whole pipeline.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory

from tritile.sw.config import AcceleratorConfig
from tritile.sw.ternary_layout import (TARGET_ACTIVATIONS, TARGET_WEIGHTS_2BIT,
                                      TARGET_WEIGHTS_BASE3, ternary_geometry)

from .facts import WALK_FIELDS
from .im2col import Im2colAddress, KStep, MStep, engine_walk_limits
from .requantizer import START_LAYOUT, WRITE_LAYOUT, StandaloneEngine, core_members
from .trit_decoder import Base3Transcoder, Trit2BitDecoder, TritBase3Decoder, two_bit_codes

__all__ = ["TernaryUnit", "TernaryEngine"]


def _check_config(config):
    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"config must be an AcceleratorConfig, not {type(config).__name__}")


def _add_with_carry(a, b, carry):
    """Return ``a + b + carry`` (signed) through one adder, ``carry`` entering as bit 0."""
    total = Cat(carry, a).as_signed() + Cat(Const(1, 1), b).as_signed()
    return total[1:].as_signed()


class TernaryUnit(wiring.Component):
    """Engine core of L lanes x P inputs: ``acc = q @ T`` for int8 ``q`` and trits ``T``.

    The memories hold one problem laid out by
    :func:`tritile.sw.ternary_layout.ternary_memory_image`. The unit walks N tiles of L
    lanes, then rows of X, then K groups of P inputs, one group per cycle, and emits each
    row's L exact sums one per cycle.

    Parameters
    ----------
    config : AcceleratorConfig
        ``ternary_lanes`` (L), ``ternary_fan_in`` (P), the ``max_*`` limits and the
        ``act_depth`` / ``trit_depth`` memory sizes (see
        :func:`tritile.sw.ternary_layout.ternary_geometry`).

    Members
    -------
    write : In(stream.Signature(WRITE_LAYOUT))
        Byte writes into the memories (target 0 activations, 1 weights in the 2-bit
        packing, 2 weights in base-3, a word's base-3 bytes in order from its first),
        accepted while idle and no ``start`` is offered. Addresses outside a memory, and
        target 3, are dropped.
    start : In(stream.Signature(START_LAYOUT))
        Starts one problem, accepted while idle, one cycle after the last write at the
        earliest. ``m``, ``k`` and ``n`` above the config's limits are clamped to them; a
        zero dimension finishes at once with no output.
    acc : Out(stream.Signature(ACC_LAYOUT))
        The exact sums ``(row, col, acc)``, row by row within each N tile.
    raw, relu : Out(1)
        The modes of the running problem, for the output stage.
    out_busy : In(1)
        The output stage still holds results; the unit stays busy until it is empty.
    busy : Out(1)
        High from the cycle after ``start`` is accepted until the last sum has left the
        unit and the output stage is empty.
    done : Out(1)
        High for the one cycle after ``busy`` falls.
    busy_cycles : Out(32)
        Cycles from the one after ``start`` is accepted until the last sum has left the
        unit (the output stage's latency is not counted).
    mac_cycles : Out(32)
        Cycles in which a group of L x P trits entered the array (padding lanes and
        inputs of ragged edges count in full), so ``mac_cycles / busy_cycles`` is the
        array's occupancy; the MAC utilization is ``M * K * N / (L * P * busy_cycles)``.
    """

    def __init__(self, config):
        _check_config(config)
        self.config = config
        self.geometry = ternary_geometry(config)
        super().__init__(core_members(WRITE_LAYOUT, START_LAYOUT))

    def elaborate(self, platform):
        m = Module()
        config, geo = self.config, self.geometry
        # The unit computes while `running`; it stays busy while the output stage holds
        # its results, so a new problem never overtakes the last one's results.
        running = Signal()
        was_busy = Signal()
        m.d.comb += self.busy.eq(running | self.out_busy)
        m.d.sync += was_busy.eq(self.busy)
        m.d.comb += self.done.eq(was_busy & ~self.busy)
        lanes, fan_in = geo.lanes, geo.fan_in
        acc_bits = config.ternary_acc_bits

        # --- memories and the write ports ------------------------------------------------
        # The weight memory holds every trit in the 2-bit code, whatever its packing on the
        # link: base-3 bytes are transcoded as they are written (see _weight_writes).
        m.submodules.act_mem = act_mem = Memory(
            shape=unsigned(8 * geo.act_word_bytes), depth=geo.act_words, init=[])
        m.submodules.weight_mem = weight_mem = Memory(
            shape=unsigned(8 * geo.weight_word_bytes), depth=geo.weight_words, init=[])
        # A write is registered, with its byte decoded as base-3, before it reaches a
        # memory: decoding and placing a base-3 byte in one cycle was the unit's longest
        # path. `start` waits for the register to empty, and an offered `start` holds
        # writes back, so every write reaches its memory before the first read.
        idle = ~self.busy
        request = Signal(WRITE_LAYOUT)
        requested = Signal()
        starting = Signal()
        # A program places results into the activation memory while the unit computes.
        placing = self.write.payload.target == TARGET_ACTIVATIONS
        m.d.comb += [self.write.ready.eq((idle | placing) & ~self.start.valid),
                     self.start.ready.eq(idle & ~requested),
                     starting.eq(self.start.valid & self.start.ready)]
        m.submodules.decode_base3 = decoder = TritBase3Decoder()
        base3_codes = Signal(2 * TritBase3Decoder.TRITS)
        m.d.comb += decoder.byte.eq(self.write.payload.data)
        m.d.sync += [request.eq(self.write.payload),
                     requested.eq(self.write.valid & self.write.ready),
                     base3_codes.eq(two_bit_codes(decoder.trits))]
        self._activation_writes(m, act_mem, request, requested)
        self._weight_writes(m, weight_mem, self.write.payload, request, requested,
                            base3_codes)

        # --- problem registers -----------------------------------------------------------
        # Counters are as wide as the config's limits; only the `acc` port widens them.
        dims = {name: Signal(range(limit + 1), name=f"dim_{name}")
                for name, limit in (("m", config.max_m), ("k", config.max_k),
                                    ("n", config.max_n))}
        issuing = Signal()
        start = self.start.payload
        m.submodules.walker = walker = Im2colAddress(
            **engine_walk_limits(config, fan_in, geo.act_words))
        walk = Signal.like(walker.walk)
        weight_base = Signal(range(max(geo.weight_words, 2)))
        # The first group's address is needed the cycle after the start: the walker
        # starts from the new walk while the registers take it.
        m.d.comb += walker.walk.eq(walk)
        with m.If(starting):
            m.d.comb += [walker.walk[name].eq(start[name]) for name in ("pad_top", "pad_left",
                                                                         "base0")]
            m.d.sync += [*(walk[name].eq(start[name]) for name in WALK_FIELDS),
                         weight_base.eq(start.weight_base)]
            for name, limit in (("m", config.max_m), ("k", config.max_k),
                                ("n", config.max_n)):
                value = getattr(start, name)
                m.d.sync += dims[name].eq(Mux(value > limit, limit, value))
            m.d.sync += [
                self.raw.eq(start.raw), self.relu.eq(start.relu),
                issuing.eq((start.m != 0) & (start.k != 0) & (start.n != 0)),
                running.eq(1),
                self.busy_cycles.eq(0),
                self.mac_cycles.eq(0),
            ]

        # The whole pipeline holds while a finished row waits for the output bank.
        stall = Signal()
        advance = ~stall

        # --- issue: walk N tiles, rows, K groups -----------------------------------------
        n_base = Signal(range(config.max_n))
        row = Signal(range(config.max_m))
        k_base = Signal(range(config.max_k))
        trit_addr = Signal(range(max(geo.weight_words, 2)))
        tile_trit_base = Signal.like(trit_addr)
        # "This is the last K group / row / N tile" flags are registers, set one step
        # ahead, so no adder and comparison sits in front of the issue multiplexers (on
        # ECP5-85F at 64 x 16 that chain was the critical path). `single_k` and
        # `single_row`: the problem has one K group, one row.
        last_k, last_row, last_tile = Signal(), Signal(), Signal()
        single_k, single_row = Signal(), Signal()

        # Tags carry no row or column: results leave in issue order, so the output bank
        # counts them itself.
        tag_layout = data.StructLayout({"valid": 1, "last": 1})
        issue_tag = Signal(tag_layout)
        m.d.comb += [issue_tag.valid.eq(issuing), issue_tag.last.eq(last_k)]

        with m.If(starting):
            # A dimension clamped to its limit is within one block iff it or the limit is.
            first_k = (start.k <= fan_in) | (config.max_k <= fan_in)
            first_row = (start.m <= 1) | (config.max_m <= 1)
            m.d.comb += [walker.m_step.eq(MStep.RESET), walker.k_step.eq(KStep.RESET)]
            m.d.sync += [n_base.eq(0), row.eq(0), k_base.eq(0), trit_addr.eq(0), tile_trit_base.eq(0),
                         last_k.eq(first_k), single_k.eq(first_k),
                         last_row.eq(first_row), single_row.eq(first_row),
                         last_tile.eq((start.n <= lanes) | (config.max_n <= lanes))]
        with m.Elif(issuing & advance):
            m.d.sync += self.mac_cycles.eq(self.mac_cycles + 1)
            with m.If(~last_k):
                m.d.comb += walker.k_step.eq(KStep.NEXT)
                m.d.sync += [k_base.eq(k_base + fan_in), trit_addr.eq(trit_addr + 1),
                             last_k.eq(k_base + 2 * fan_in >= dims["k"])]
            with m.Elif(~last_row):
                m.d.comb += [walker.m_step.eq(MStep.NEXT), walker.k_step.eq(KStep.RESET)]
                m.d.sync += [k_base.eq(0), row.eq(row + 1), trit_addr.eq(tile_trit_base),
                             last_k.eq(single_k), last_row.eq(row + 2 >= dims["m"])]
            with m.Else():
                m.d.comb += [walker.m_step.eq(MStep.RESET), walker.k_step.eq(KStep.RESET)]
                m.d.sync += [k_base.eq(0), row.eq(0), trit_addr.eq(trit_addr + 1), tile_trit_base.eq(trit_addr + 1),
                             last_k.eq(single_k), last_row.eq(single_row),
                             last_tile.eq(n_base + 2 * lanes >= dims["n"])]
                with m.If(~last_tile):
                    m.d.sync += n_base.eq(n_base + lanes)
                with m.Else():
                    m.d.sync += [issuing.eq(0), n_base.eq(0)]

        # Both words leave block RAM in the same cycle and feed the lanes directly: the
        # stored 2-bit codes need no decoding beyond wiring.
        act_read = act_mem.read_port()
        weight_read = weight_mem.read_port()
        m.d.comb += [
            weight_read.addr.eq(weight_base + trit_addr), weight_read.en.eq(advance),
            act_read.addr.eq(walker.addr), act_read.en.eq(advance),
        ]

        # Tags travel beside the data, one register per pipeline stage.
        tags = [issue_tag]

        def next_tag():
            tag = Signal(tag_layout, name=f"tag{len(tags)}")
            with m.If(advance):
                m.d.sync += tag.eq(tags[-1])
            tags.append(tag)
            return tag

        next_tag()                                         # synchronous reads
        # A padding position reads a word whose data is replaced by zeros.
        pad = self._stage(m, walker.pad, advance, "pad_read")
        weight_word, activations = weight_read.data, act_read.data
        for stage in range(config.ternary_read_stages):
            weight_word, activations, pad = (self._stage(m, word, advance, f"{name}_s{stage}")
                                             for word, name in ((weight_word, "weights"),
                                                                (activations, "acts"),
                                                                (pad, "pad")))
            next_tag()
        activations = Mux(pad, 0, activations)
        trits = []
        for i in range(geo.weight_word_bytes):
            m.submodules[f"decode_{i}"] = decoder = Trit2BitDecoder()
            m.d.comb += decoder.byte.eq(weight_word[8 * i:8 * i + 8])
            trits.extend(decoder.trits[j] for j in range(Trit2BitDecoder.TRITS))
        nonzero = Cat(*(trit.nonzero for trit in trits))
        negative = Cat(*(trit.negative for trit in trits))

        # --- select and adder tree, one per lane -----------------------------------------
        lane_sums = []
        for lane in range(lanes):
            nodes = []
            for j in range(fan_in):
                x = activations[8 * j:8 * j + 8]
                trit = lane * fan_in + j
                term = Signal(signed(8), name=f"term_l{lane}_{j}")
                # ~v stands for -v - 1; the missing 1 rides as a carry (see module doc).
                # A zero with its sign set is ~0 + 1 = 0, so the sign needs no gate.
                passed = Mux(nonzero[trit], x, 0)
                m.d.comb += term.eq(Mux(negative[trit], ~passed, passed))
                nodes.append((term, [negative[trit]]))
            level = 0
            while len(nodes) > 1:
                level += 1
                merged = []
                for i in range(0, len(nodes), 2):
                    pair = nodes[i:i + 2]
                    carries = [c for _, cs in pair for c in cs]
                    if len(pair) == 2:
                        value = _add_with_carry(pair[0][0], pair[1][0], carries[0])
                        carries = carries[1:]
                    else:
                        value = pair[0][0]
                    reg = Signal(signed(len(value)), name=f"sum_l{lane}_v{level}_{i // 2}",
                                 reset_less=True)
                    regs = [Signal(name=f"carry_l{lane}_v{level}_{i // 2}_{c}",
                                   reset_less=True)
                            for c in range(len(carries))]
                    with m.If(advance):
                        m.d.sync += reg.eq(value)
                        m.d.sync += [r.eq(c) for r, c in zip(regs, carries)]
                    merged.append((reg, regs))
                nodes = merged
            lane_sums.append(nodes[0])
        levels = (fan_in - 1).bit_length()
        for _ in range(levels):
            next_tag()
        final_tag = tags[-1]

        # --- accumulate across K, hand finished rows to the output bank ------------------
        bank = [Signal(signed(acc_bits), name=f"bank{lane}", reset_less=True)
                for lane in range(lanes)]
        bank_active = Signal()
        m.d.comb += stall.eq(final_tag.valid & final_tag.last & bank_active)
        # A row's last group, and a new problem, leave the accumulators at zero: one
        # synchronous reset of their flip-flops, not a multiplexer in front of each adder.
        row_done = final_tag.valid & final_tag.last & advance
        clear_acc = row_done | (starting)
        for lane, (root, carries) in enumerate(lane_sums):
            acc = Signal(signed(acc_bits), name=f"acc{lane}", reset_less=True)
            total = Signal(signed(acc_bits), name=f"total{lane}")
            m.d.comb += total.eq(_add_with_carry(acc, root, carries[0]))
            with m.If(clear_acc):
                m.d.sync += acc.eq(0)
            with m.Elif(final_tag.valid & advance):
                m.d.sync += acc.eq(total)
            with m.If(row_done):
                m.d.sync += bank[lane].eq(total)

        # Rows reach the bank in issue order: rows inner, N tiles outer.
        next_row = Signal(range(config.max_m))
        next_col = Signal(range(config.max_n))
        bank_row = Signal.like(next_row)
        bank_col = Signal.like(next_col)
        bank_lane = Signal(range(lanes + 1))
        out = self.acc
        m.d.comb += [
            out.valid.eq(bank_active),
            out.payload.row.eq(bank_row),
            out.payload.col.eq(bank_col),
            out.payload.acc.eq(bank[0]),
        ]
        with m.If(starting):
            m.d.sync += [next_row.eq(0), next_col.eq(0)]
        with m.If(row_done):
            m.d.sync += [bank_active.eq(1), bank_row.eq(next_row), bank_col.eq(next_col),
                         bank_lane.eq(0)]
            with m.If(next_row + 1 >= dims["m"]):
                m.d.sync += [next_row.eq(0), next_col.eq(next_col + lanes)]
            with m.Else():
                m.d.sync += next_row.eq(next_row + 1)
        with m.Elif(out.valid & out.ready):
            m.d.sync += [bank[i].eq(bank[i + 1]) for i in range(lanes - 1)]
            m.d.sync += [bank_col.eq(bank_col + 1), bank_lane.eq(bank_lane + 1)]
            with m.If((bank_lane == lanes - 1) | (bank_col + 1 >= dims["n"])):
                m.d.sync += bank_active.eq(0)

        # --- completion and counters -----------------------------------------------------
        in_flight = Cat(*(tag.valid for tag in tags[1:])).any()
        finished = running & ~issuing & ~in_flight & ~bank_active
        with m.If(running):
            m.d.sync += self.busy_cycles.eq(self.busy_cycles + 1)
        with m.If(finished):
            m.d.sync += running.eq(0)
        return m


    @staticmethod
    def _stage(m, value, enable, name):
        """Return ``value`` through a register that loads while ``enable``."""
        reg = Signal(len(value), name=name, reset_less=True)
        with m.If(enable):
            m.d.sync += reg.eq(value)
        return reg

    @staticmethod
    def _word_and_byte(write, mem, stride):
        """Split a write's address into (word, byte within the word, word in range)."""
        byte_bits = (stride - 1).bit_length()
        word, byte = write.addr[byte_bits:], write.addr[:byte_bits]
        return word, byte, word < mem.depth

    def _activation_writes(self, m, act_mem, write, requested):
        geo = self.geometry
        port = act_mem.write_port(granularity=8)
        word, byte, in_range = self._word_and_byte(write, act_mem, geo.act_stride)
        hit = (requested & (write.target == TARGET_ACTIVATIONS) & in_range
               & (byte < geo.act_word_bytes))
        m.d.comb += [port.addr.eq(word),
                     port.data.eq(Cat(*([write.data] * geo.act_word_bytes)))]
        for i in range(geo.act_word_bytes):
            m.d.comb += port.en[i].eq(hit & (byte == i))

    def _weight_writes(self, m, weight_mem, incoming, write, requested, base3_codes):
        """Write 2-bit bytes as they come; transcode base-3 bytes into two 2-bit bytes.

        Base-3 byte ``i`` of a word writes 2-bit bytes ``B = i + i // 4`` and ``B + 1``
        (:class:`~tritile.hw.trit_decoder.Base3Transcoder`); the bytes of a word written in
        order, as the host writes them, leave every trit in place. Which bytes a write
        would enable is decided from the ``incoming`` payload and registered with it; the
        rest works on the registered request ``write``, present when ``requested``.
        """
        geo = self.geometry
        port = weight_mem.write_port(granularity=8)
        _, in_byte, in_range = self._word_and_byte(incoming, weight_mem, geo.weight_stride)
        in_two_bit = in_range & (incoming.target == TARGET_WEIGHTS_2BIT) & (
            in_byte < geo.word_bytes("2bit"))
        in_base3 = in_range & (incoming.target == TARGET_WEIGHTS_BASE3) & (
            in_byte < geo.word_bytes("base3"))
        in_first = in_byte + in_byte[2:]
        enables = Signal(geo.weight_word_bytes)
        is_base3 = Signal()                        # the request is a base-3 byte
        odd_first = Signal()                       # ... whose 2-bit byte B is odd
        m.d.sync += [
            enables.eq(Cat(*((in_two_bit & (in_byte == i))
                             | (in_base3 & ((in_first == i) | (in_first + 1 == i)))
                             for i in range(geo.weight_word_bytes)))),
            is_base3.eq(in_base3), odd_first.eq(in_first[0]),
        ]
        base3 = requested & is_base3               # a base-3 byte is being written

        word, byte, _ = self._word_and_byte(write, weight_mem, geo.weight_stride)
        m.submodules.transcode = transcode = Base3Transcoder()
        next_word = Signal.like(word)              # where an in-order run continues
        next_byte = Signal(len(byte) + 1)
        with m.If(base3):
            m.d.sync += [next_word.eq(word), next_byte.eq(byte + 1)]
        m.d.comb += [
            transcode.codes.eq(base3_codes),
            transcode.phase.eq(byte[:2]),
            transcode.chained.eq((word == next_word) & (byte == next_byte)),
            transcode.load.eq(base3),
        ]
        # Byte positions alternate between the transcoder's two bytes, B even or odd.
        even = Mux(odd_first, transcode.second, transcode.first)
        odd = Mux(odd_first, transcode.first, transcode.second)
        m.d.comb += [
            port.addr.eq(word),
            port.data.eq(Cat(*(Mux(base3, odd if i % 2 else even, write.data)
                               for i in range(geo.weight_word_bytes)))),
            port.en.eq(Mux(requested, enables, 0)),
        ]


class TernaryEngine(StandaloneEngine):
    """Standalone ternary engine: :class:`TernaryUnit` followed by the shared Requantizer.

    Parameters
    ----------
    config : AcceleratorConfig
        As for :class:`TernaryUnit`; ``max_n`` also sizes the requantizer's parameters.

    Members
    -------
    write, start, busy_cycles, mac_cycles
        As for :class:`TernaryUnit`.
    param_write : In(stream.Signature(PARAM_LAYOUT))
        Per-channel ``(bias, mult, shift)`` of the output stage. The ternary numerics have
        no bias: write 0 (the reset value).
    out : Out(stream.Signature(RESULT_LAYOUT))
        Results: requantized int8 (sign-extended), or ``acc + bias`` as int32 under ``raw``.
    busy : Out(1)
        High while the core runs or results are still inside the output stage.
    done : Out(1)
        High for one cycle when ``busy`` falls.
    """

    def __init__(self, config):
        super().__init__(TernaryUnit(config))
