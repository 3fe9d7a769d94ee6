"""The MatMul-free ternary accumulation unit: int8 activations times trits, without a multiplier.

:class:`TernaryUnit` is the engine core: L lanes, each adding P int8 activations per cycle
after passing, negating or zeroing each one by its trit, and accumulating across K.
:class:`TernaryEngine` is the standalone engine: the core followed by the shared
:class:`~tritile.hw.requantizer.Requantizer`.

Dataflow (one K group of P inputs, for L lanes, per cycle)::

    issue --> activation word (P bytes) ----------------------+
          \\-> weight word (packed L*P trits) --> decoders --> select --> adder tree
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
from tritile.sw.ternary_layout import PACKINGS, ternary_geometry

from .requantizer import StandaloneEngine, core_members
from .trit_decoder import Trit2BitDecoder, TritBase3Decoder

__all__ = ["WRITE_LAYOUT", "START_LAYOUT", "TernaryUnit", "TernaryEngine"]

#: A byte written to one of the engine's memories (target 0 activations, 1 weights).
WRITE_LAYOUT = data.StructLayout({"target": 2, "addr": unsigned(24), "data": 8})

#: One problem: ``packing`` indexes :data:`tritile.sw.ternary_layout.PACKINGS`.
START_LAYOUT = data.StructLayout({"m": 16, "k": 16, "n": 16, "raw": 1, "relu": 1,
                                  "packing": 1})

_PACKING_BASE3 = PACKINGS.index("base3")


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
        Byte writes into the memories, accepted while idle. Addresses outside a memory,
        and targets other than 0 and 1, are dropped.
    start : In(stream.Signature(START_LAYOUT))
        Starts one problem, accepted while idle. ``m``, ``k`` and ``n`` above the config's
        limits are clamped to them; a zero dimension finishes at once with no output.
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

        # --- memories and the write port -------------------------------------------------
        m.submodules.act_mem = act_mem = Memory(
            shape=unsigned(8 * geo.act_word_bytes), depth=geo.act_words, init=[])
        m.submodules.weight_mem = weight_mem = Memory(
            shape=unsigned(8 * geo.weight_word_bytes), depth=geo.weight_words, init=[])
        idle = ~self.busy
        write = self.write.payload
        m.d.comb += self.write.ready.eq(idle)
        for target, mem, stride, word_bytes in (
                (0, act_mem, geo.act_stride, geo.act_word_bytes),
                (1, weight_mem, geo.weight_stride, geo.weight_word_bytes)):
            port = mem.write_port(granularity=8)
            byte_bits = (stride - 1).bit_length()
            word, byte = write.addr[byte_bits:], write.addr[:byte_bits]
            hit = (self.write.valid & idle & (write.target == target)
                   & (word < mem.depth) & (byte < word_bytes))
            m.d.comb += [
                port.addr.eq(word),
                port.data.eq(Cat(*([write.data] * word_bytes))),
            ]
            for i in range(word_bytes):
                m.d.comb += port.en[i].eq(hit & (byte == i))

        # --- problem registers -----------------------------------------------------------
        # Counters are as wide as the config's limits; only the `acc` port widens them.
        dims = {name: Signal(range(limit + 1), name=f"dim_{name}")
                for name, limit in (("m", config.max_m), ("k", config.max_k),
                                    ("n", config.max_n))}
        packing = Signal(1)
        issuing = Signal()
        start = self.start.payload
        m.d.comb += self.start.ready.eq(idle)
        with m.If(self.start.valid & idle):
            for name, limit in (("m", config.max_m), ("k", config.max_k),
                                ("n", config.max_n)):
                value = getattr(start, name)
                m.d.sync += dims[name].eq(Mux(value > limit, limit, value))
            m.d.sync += [
                self.raw.eq(start.raw), self.relu.eq(start.relu), packing.eq(start.packing),
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
        act_addr = Signal(range(max(geo.act_words, 2)))
        trit_addr = Signal(range(max(geo.weight_words, 2)))
        tile_trit_base = Signal.like(trit_addr)
        last_k = k_base + fan_in >= dims["k"]
        last_row = row + 1 >= dims["m"]
        last_tile = n_base + lanes >= dims["n"]

        # Tags carry no row or column: results leave in issue order, so the output bank
        # counts them itself.
        tag_layout = data.StructLayout({"valid": 1, "last": 1})
        issue_tag = Signal(tag_layout)
        m.d.comb += [issue_tag.valid.eq(issuing), issue_tag.last.eq(last_k)]

        with m.If(self.start.valid & idle):
            m.d.sync += [n_base.eq(0), row.eq(0), k_base.eq(0), act_addr.eq(0),
                         trit_addr.eq(0), tile_trit_base.eq(0)]
        with m.Elif(issuing & advance):
            m.d.sync += self.mac_cycles.eq(self.mac_cycles + 1)
            with m.If(~last_k):
                m.d.sync += [k_base.eq(k_base + fan_in), act_addr.eq(act_addr + 1),
                             trit_addr.eq(trit_addr + 1)]
            with m.Elif(~last_row):
                m.d.sync += [k_base.eq(0), row.eq(row + 1), act_addr.eq(act_addr + 1),
                             trit_addr.eq(tile_trit_base)]
            with m.Else():
                m.d.sync += [k_base.eq(0), row.eq(0), act_addr.eq(0),
                             trit_addr.eq(trit_addr + 1), tile_trit_base.eq(trit_addr + 1)]
                with m.If(~last_tile):
                    m.d.sync += n_base.eq(n_base + lanes)
                with m.Else():
                    m.d.sync += [issuing.eq(0), n_base.eq(0)]

        # The weight word is read first and decoded straight out of block RAM into the
        # trit registers; the activation word is read one cycle later, so that it leaves
        # block RAM beside those registers and feeds the lanes without a register of its
        # own.
        act_read = act_mem.read_port()
        weight_read = weight_mem.read_port()
        act_addr_late = Signal.like(act_addr)
        with m.If(advance):
            m.d.sync += act_addr_late.eq(act_addr)
        m.d.comb += [
            weight_read.addr.eq(trit_addr), weight_read.en.eq(advance),
            act_read.addr.eq(act_addr_late), act_read.en.eq(advance),
        ]

        # Tags travel beside the data, one register per pipeline stage.
        tags = [issue_tag]

        def next_tag():
            tag = Signal(tag_layout, name=f"tag{len(tags)}")
            with m.If(advance):
                m.d.sync += tag.eq(tags[-1])
            tags.append(tag)
            return tag

        next_tag()                                         # synchronous weight read

        # --- decode: both packings in parallel, the run's packing selected -------------
        weight_word = weight_read.data
        group_trits = lanes * fan_in
        decoded = {}
        for name, decoder_cls in (("2bit", Trit2BitDecoder), ("base3", TritBase3Decoder)):
            per = decoder_cls.TRITS
            flags = []
            for i in range(geo.word_bytes(name)):
                decoder = decoder_cls()
                m.submodules[f"decode_{name}_{i}"] = decoder
                m.d.comb += decoder.byte.eq(weight_word[8 * i:8 * i + 8])
                flags.extend(decoder.trits[j] for j in range(per))
            decoded[name] = flags[:group_trits]
        use_base3 = packing == _PACKING_BASE3
        nonzero = Signal(group_trits, reset_less=True)
        negative = Signal(group_trits, reset_less=True)
        with m.If(advance):
            for i in range(group_trits):
                two, three = decoded["2bit"][i], decoded["base3"][i]
                m.d.sync += [
                    nonzero[i].eq(Mux(use_base3, three.nonzero, two.nonzero)),
                    negative[i].eq(Mux(use_base3, three.negative, two.negative)),
                ]
        next_tag()                                         # trits and activation read
        activations = act_read.data

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
        clear_acc = row_done | (self.start.valid & idle)
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
        with m.If(self.start.valid & idle):
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
