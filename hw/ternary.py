"""The MatMul-free ternary accumulation unit: int8 activations times trits, without a multiplier.

:class:`TernaryUnit` is the engine core: L lanes, each adding P int8 activations per cycle
after passing, negating or zeroing each one by its trit, and accumulating across K.
:class:`TernaryEngine` is the standalone engine: the core followed by the shared
:class:`~tritile.hw.requantizer.Requantizer`.

Dataflow (one K group of P inputs, for L lanes, per cycle), one component a box::

    write --> TernaryMemories (base-3 transcoded, 2-bit codes stored)
    issue --> activation word (P bytes) ---------------+
          \\-> weight word (L*P 2-bit codes) ----------+--> TernaryLanes (select, adder
              trees) --> TernaryAccumulators (across K; output bank, one lane a beat)

The unit itself holds the problem's registers and the issue sequencer, which walks N
tiles, rows and K groups through the implicit-im2col walker
(:class:`~tritile.hw.im2col.Im2colAddress`), and the tags that travel beside the data.
Every tree level is registered; a row whose sums find the output bank still draining
stalls the whole pipeline.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, wiring

from tritile.sw.arith import ceil_div
from tritile.sw.config import AcceleratorConfig
from tritile.sw.ternary_layout import TARGET_ACTIVATIONS, ternary_geometry

from .engine_memory import single_port_memories
from .facts import WALK_FIELDS
from .im2col import Im2colAddress, KStep, MStep, engine_walk_limits
from .requantizer import START_LAYOUT, WRITE_LAYOUT, StandaloneEngine, core_members
from .ternary_accumulators import TernaryAccumulators
from .ternary_lanes import TernaryLanes
from .ternary_memories import TernaryMemories

__all__ = ["TernaryUnit", "TernaryEngine"]

#: What travels beside each issued group: it is one (``valid``), the last of its row.
_TAG_LAYOUT = data.StructLayout({"valid": 1, "last": 1})


def _check_config(config):
    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"config must be an AcceleratorConfig, not {type(config).__name__}")


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
        packing, 2 weights as one base-3 stream in address order, see
        :class:`~tritile.hw.ternary_memories.TernaryMemories`), accepted while idle and
        no ``start`` is offered, but for the cycle after a base-3 byte that completes a
        byte of the next word. Addresses outside a memory, and target 3, are dropped.
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
        Both restart in the cycle after ``start`` is accepted (they hold the last
        problem's counts in that cycle, while ``busy`` is already high), and both are
        final when ``busy`` falls (``mac_cycles`` counts a group the cycle after it).
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

        # `start` waits for the memories' write register to empty, and an offered `start`
        # holds writes back, so every write reaches its memory before the first read.
        m.submodules.memories = memories = TernaryMemories(
            geo, single_port_memories(config), program_mode=bool(config.max_layers))
        idle = ~self.busy
        starting = Signal()
        # The counters restart from `started`, the registered `starting`: the start's
        # handshake (the core's `busy`, the bank's start gating, `start.ready`) then
        # reaches only the problem's registers, not the counters' enables across the chip.
        started = Signal()
        m.d.sync += started.eq(starting)
        wiring.connect(m, wiring.flipped(self.write), memories.write)
        # A program places results into the activation memory while the unit computes.
        placing = self.write.payload.target == TARGET_ACTIVATIONS
        m.d.comb += [memories.accept.eq((idle | placing) & ~self.start.valid),
                     self.start.ready.eq(idle & ~memories.holding),
                     starting.eq(self.start.valid & self.start.ready)]
        dims, issuing, walker, weight_base = self._problem(m, starting, running)

        m.submodules.lanes = lanes = TernaryLanes(geo.lanes, geo.fan_in)
        m.submodules.accumulators = accumulators = TernaryAccumulators(
            config, len(lanes.sums[0]))
        # The whole pipeline holds while a finished row waits for the output bank.
        advance = ~accumulators.stall
        issue_tag, trit_addr = self._issue(m, starting, started, issuing, advance, walker,
                                           dims)

        # Both words leave block RAM in the same cycle and feed the lanes directly: the
        # stored 2-bit codes need no decoding beyond wiring. Tags travel beside the data,
        # one register per pipeline stage: the synchronous reads, the read stages and
        # the adder trees' levels.
        m.d.comb += [memories.weight_addr.eq(weight_base + trit_addr),
                     memories.act_addr.eq(walker.addr), memories.read_en.eq(advance)]
        tags = [issue_tag]
        for stage in range(1 + config.ternary_read_stages + lanes.latency):
            tag = Signal(_TAG_LAYOUT, name=f"tag{stage + 1}")
            with m.If(advance):
                m.d.sync += tag.eq(tags[-1])
            tags.append(tag)
        # A padding position reads a word whose data is replaced by zeros.
        pad = self._stage(m, walker.pad, advance, "pad_read")
        weight_word, activations = memories.weight_data, memories.act_data
        stages = config.ternary_read_stages
        for stage in range(stages):
            if stage == stages - 1:
                # The last read stage registers the zeros: the flag then drives that
                # stage's register inputs, not every lane's selects (ABC folds the zeroing
                # into them: on the ECP5-85F the flag was the SoC's most congested net).
                activations = Mux(pad, 0, activations)
            weight_word, activations, pad = (self._stage(m, word, advance, f"{name}_s{stage}")
                                             for word, name in ((weight_word, "weights"),
                                                                (activations, "acts"),
                                                                (pad, "pad")))
        m.d.comb += [lanes.activations.eq(activations if stages else Mux(pad, 0, activations)),
                     lanes.codes.eq(weight_word), lanes.advance.eq(advance)]

        final_tag = tags[-1]
        m.d.comb += [accumulators.sums.eq(lanes.sums), accumulators.carries.eq(lanes.carries),
                     accumulators.valid.eq(final_tag.valid),
                     accumulators.last.eq(final_tag.last), accumulators.clear.eq(starting),
                     accumulators.m.eq(dims["m"]), accumulators.n.eq(dims["n"])]
        wiring.connect(m, accumulators.acc, wiring.flipped(self.acc))

        in_flight = Cat(*(tag.valid for tag in tags[1:])).any()
        finished = running & ~issuing & ~in_flight & ~accumulators.draining
        # The unit runs in the cycle after the start (`started`), so the count restarts
        # there at 1 rather than at 0 on `starting`.
        with m.If(started):
            m.d.sync += self.busy_cycles.eq(1)
        with m.Elif(running):
            m.d.sync += self.busy_cycles.eq(self.busy_cycles + 1)
        with m.If(finished):
            m.d.sync += running.eq(0)
        return m

    def _problem(self, m, starting, running):
        """Take a started problem's registers; return (dims, issuing, walker, weight_base).

        Counters are as wide as the config's limits; only the ``acc`` port widens them.
        """
        config, geo = self.config, self.geometry
        dims = {name: Signal(range(limit + 1), name=f"dim_{name}")
                for name, limit in (("m", config.max_m), ("k", config.max_k),
                                    ("n", config.max_n))}
        issuing = Signal()
        start = self.start.payload
        m.submodules.walker = walker = Im2colAddress(
            **engine_walk_limits(config, geo.fan_in, geo.act_words))
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
            ]
        return dims, issuing, walker, weight_base

    def _issue(self, m, starting, started, issuing, advance, walker, dims):
        """Walk N tiles, rows, K groups, one group a cycle; return (tag, weight word)."""
        config, geo = self.config, self.geometry
        lanes, fan_in = geo.lanes, geo.fan_in
        start = self.start.payload
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
        # A problem issues at most tiles x rows x groups of the limits: the count needs
        # no more bits (a 32-bit counter with its clear took about 60 cells more on iCE40).
        mac_cycles = Signal(range(ceil_div(config.max_n, lanes) * config.max_m
                                  * ceil_div(config.max_k, fan_in) + 1))
        m.d.comb += self.mac_cycles.eq(mac_cycles)
        # Groups are counted a cycle after they issue (`issued`), from the registered
        # start (`started`): the first issues in the cycle after the start at the
        # earliest, the last at least two cycles before `busy` falls.
        issued = Signal()
        m.d.sync += issued.eq(issuing & advance)
        with m.If(started):
            m.d.sync += mac_cycles.eq(0)
        with m.Elif(issued):
            m.d.sync += mac_cycles.eq(mac_cycles + 1)

        # Tags carry no row or column: results leave in issue order, so the output bank
        # counts them itself.
        issue_tag = Signal(_TAG_LAYOUT)
        m.d.comb += [issue_tag.valid.eq(issuing), issue_tag.last.eq(last_k)]

        with m.If(starting):
            # A dimension clamped to its limit is within one block iff it or the limit is.
            first_k = (start.k <= fan_in) | (config.max_k <= fan_in)
            first_row = (start.m <= 1) | (config.max_m <= 1)
            m.d.comb += [walker.m_step.eq(MStep.RESET), walker.k_step.eq(KStep.RESET)]
            m.d.sync += [n_base.eq(0), row.eq(0), k_base.eq(0), trit_addr.eq(0),
                         tile_trit_base.eq(0),
                         last_k.eq(first_k), single_k.eq(first_k),
                         last_row.eq(first_row), single_row.eq(first_row),
                         last_tile.eq((start.n <= lanes) | (config.max_n <= lanes))]
        with m.Elif(issuing & advance):
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
                m.d.sync += [k_base.eq(0), row.eq(0), trit_addr.eq(trit_addr + 1),
                             tile_trit_base.eq(trit_addr + 1),
                             last_k.eq(single_k), last_row.eq(single_row),
                             last_tile.eq(n_base + 2 * lanes >= dims["n"])]
                with m.If(~last_tile):
                    m.d.sync += n_base.eq(n_base + lanes)
                with m.Else():
                    m.d.sync += [issuing.eq(0), n_base.eq(0)]
        return issue_tag, trit_addr

    @staticmethod
    def _stage(m, value, enable, name):
        """Return ``value`` through a register that loads while ``enable``."""
        reg = Signal(len(value), name=name, reset_less=True)
        with m.If(enable):
            m.d.sync += reg.eq(value)
        return reg


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
