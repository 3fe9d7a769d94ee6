"""The engines of a SoC, behind one write stream and one start stream.

The SoC's one place that deals with engines one by one; every fact about an engine comes
from the registry (:mod:`tritile.sw.engines`): which targets each owns and how big they
are (:func:`target_sizes`), the weight memory a RUN's K*N must fit (:func:`weight_limits`),
its core (``spec.make_core``), and here the routing of writes, starts and results to and
from the running core.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from tritile.sw.engines import ENGINES, engine
from tritile.sw.protocol import Target

from .dsp import times_const
from .facts import START_FIELDS, WALK_FIELDS
from .program_sequencer import LAYER_LAYOUT
from .request_checker import PROBLEM_LAYOUT
from .requantizer import RESULT_LAYOUT, Requantizer
from .write_walker import byte_write_layout

__all__ = ["ACT_WRITE_LAYOUT", "engine_names", "target_sizes", "weight_limits",
           "counter_bits", "floor_div_const", "divmod_const", "ceil_div_const", "EngineBank"]

#: One int8 result written into an engine's activation memory, at a word and a byte of it.
ACT_WRITE_LAYOUT = data.StructLayout({"engine": unsigned(8), "word": unsigned(24),
                                      "byte": unsigned(8), "data": unsigned(8)})

#: Start fields a program's layer takes from its descriptor (a RUN's are the dense walk).
_LAYER_START = frozenset(WALK_FIELDS) | {"weight_base"}


def engine_names(config, engines=None):
    """Return the engines of a SoC: ``engines`` (registry names; by default every engine
    ``config`` has), checked to be distinct, known and in the config."""
    engines = config.engines if engines is None else tuple(engines)
    unknown = [e for e in engines if e not in ENGINES]
    if unknown or len(set(engines)) != len(engines):
        raise ValueError(f"engines must be distinct names from "
                         f"{', '.join(ENGINES)}, not {engines!r}")
    config.check_engines(*engines)
    return engines


def target_sizes(config, engines):
    """Return the byte size of every target on a SoC with ``engines`` (0 for the others')."""
    from tritile.sw import protocol

    absent = {t for spec in ENGINES.values() if spec.name not in engines for t in spec.targets}
    return {t: 0 if t in absent else protocol.target_size(config, t) for t in Target}


def weight_limits(config):
    """Return the weight capacity (the bound on a RUN's K*N) of every engine, by protocol id."""
    return {spec.protocol_id: spec.weight_capacity(config) for spec in ENGINES.values()}


def counter_bits(config, spec):
    """Return the bits that hold engine ``spec``'s ``(busy_cycles, mac_cycles)`` of any
    problem the shape check lets through (a RUN's or a program layer's, at most
    ``max_m x max_k x max_n``); the counters' bits above are always 0.

    ``mac_cycles`` counts at most the problem's MACs (all M*K*N on the array, issued groups
    on the ternary unit). ``busy_cycles`` is the cycle model's count
    (:func:`tritile.sw.planner.plan_in_place`; exact, as results are never held up after
    the requantizer), largest for the largest problem, and doubled: a margin for any
    smaller problem whose ragged tiles cost more. The model's cycles do not depend on the
    weight memory, so the largest problem is planned with one that holds its weights; 32
    bits where even that cannot be configured.
    """
    from tritile.sw.config import ConfigError
    from tritile.sw.planner import plan_in_place

    m, k, n = config.max_m, config.max_k, config.max_n
    try:
        room = config.replace(**{spec.weight_depth_field: max(spec.weight_capacity(config),
                                                                 k * n)})
    except ConfigError:
        return 32, 32
    busy = plan_in_place(room, spec.name, m, k, n).cycles
    return min(32, (2 * busy).bit_length()), min(32, (m * k * n).bit_length())


def floor_div_const(value, divisor):
    """Return ``value // divisor`` for an unsigned ``value`` and a constant ``divisor``.

    A power of two is wiring; any other divisor multiplies by its rounded-up reciprocal
    ``r = ceil(2**s / divisor)`` in shifted adds, exact for every ``value`` of its width
    because ``s`` exceeds the width of ``value * divisor`` (the error term ``value * e / 2**s``,
    ``e < divisor``, stays below ``1 / divisor``).
    """
    if divisor & (divisor - 1) == 0:
        return value >> (divisor.bit_length() - 1)
    shift = len(value) + 1 + divisor.bit_length()
    reciprocal = -(-(1 << shift) // divisor)
    return times_const(value, reciprocal) >> shift


def divmod_const(value, divisor):
    """Return ``(value // divisor, value % divisor)`` for a constant ``divisor``."""
    quotient = floor_div_const(value, divisor)
    if divisor & (divisor - 1) == 0:
        return quotient, value[:divisor.bit_length() - 1]
    remainder = (value - times_const(quotient, divisor))[:len(value)]
    return quotient, remainder[:max(1, (divisor - 1).bit_length())]


def ceil_div_const(value, divisor):
    """Return ``ceil(value / divisor)`` for a constant ``divisor``, without a divider."""
    return floor_div_const(value + (divisor - 1), divisor)


class EngineBank(wiring.Component):
    """The engine cores, the shared output stage and the requantization parameters.

    Writes go to the core that owns their target (in the core's own numbering of its
    targets, the order of :data:`~tritile.sw.protocol.ENGINE_TARGETS`) or, for
    ``PARAMS``, into a record that is handed to the :class:`~tritile.hw.requantizer.
    Requantizer` as its last byte arrives. Writes to a target nobody owns are dropped.
    During a program, ``place`` writes a layer's int8 results into an activation memory
    (host writes are refused then, so the two never meet; ``place`` wins).

    A RUN starts its core on the dense walk of its problem; a layer of a program on the
    walk and weight base of its descriptor (``layer``, with ``program``). The requantizer
    reads the parameters of channel ``n`` at ``layer.param_base + n``.

    Parameters
    ----------
    config : AcceleratorConfig
        Sizes of everything.
    engines : tuple of str
        Engine cores to include, by their registry names (:data:`tritile.sw.engines.ENGINES`).
    addr_bits : int
        Address bits of the write stream.

    Members
    -------
    write : In(stream.Signature(byte_write_layout(addr_bits)))
        Bytes for the engines' memories and the parameters; each is held in a register
        on its way in, then in its core's write register until the core takes it, and
        ``ready`` is the first register being empty (a byte every other cycle at most).
    start : In(stream.Signature(PROBLEM_LAYOUT))
        Starts a problem on engine ``start.payload.engine`` (which must be present). The
        core takes it from its second cycle offered, and never before the last write has
        reached the core.
    layer : In(LAYER_LAYOUT)
        The layer running or last run: its ``engine`` (the core whose results and counters
        are routed out), ``param_base``, and (with ``program``) walk and weight base.
    program : In(1)
        The start comes from a program: the core walks ``layer``'s window.
    place : In(stream.Signature(ACT_WRITE_LAYOUT))
        A result byte for an activation memory (word and byte in that engine's layout);
        it reaches its core's write port a cycle later, from the core's write register.
    results : Out(stream.Signature(RESULT_LAYOUT))
        That engine's results.
    busy : Out(1)
        That engine is working (until its last result has left the output stage), or a
        placed byte is in a core's write register (it lands in its memory this cycle).
    busy_cycles, mac_cycles : Out(32)
        That engine's counters of its last problem.
    """

    def __init__(self, config, engines, addr_bits):
        self.config = config
        self.engines = tuple(engines)
        # Each engine's counter widths, computed once (the cycle model plans a problem).
        self._counter_bits = {name: counter_bits(config, engine(name))
                              for name in self.engines}
        #: The bits of ``busy_cycles`` and ``mac_cycles`` that can be set (the others are 0).
        self.counter_bits = tuple(max(bits) for bits in zip(*self._counter_bits.values()))
        super().__init__({
            "write": In(stream.Signature(byte_write_layout(addr_bits))),
            "start": In(stream.Signature(PROBLEM_LAYOUT)),
            "layer": In(LAYER_LAYOUT),
            "program": In(1),
            "place": In(stream.Signature(ACT_WRITE_LAYOUT)),
            "results": Out(stream.Signature(RESULT_LAYOUT)),
            "busy": Out(1),
            "busy_cycles": Out(32),
            "mac_cycles": Out(32),
        })

    @staticmethod
    def _dense_start(m, problem, chunk):
        """Yield ``(field, value)`` of a core's start for the dense ``problem`` of a RUN.

        The dense walk is the 1 x 1 window over a 1 x M map of ``CT = ceil(K / chunk)``
        words a pixel (:meth:`tritile.sw.engines.EngineSpec.walk`): every step is CT and the
        origin 0, so no multiplier sits between the request and the core. CT is
        registered (a chunk that is not a power of two divides by a tree of adders): the
        start reaches the core one cycle after it is offered (see :meth:`elaborate`).
        """
        chunks = Signal(START_FIELDS["chunks"], name=f"dense_chunks_{chunk}")
        m.d.sync += chunks.eq(ceil_div_const(problem.k, chunk))
        values = {"m": problem.m, "k": problem.k, "n": problem.n, "raw": problem.raw,
                  "relu": problem.relu, "in_h": 1, "in_w": problem.m, "chunks": chunks,
                  "out_h": 1, "out_w": problem.m, "kernel_w": 1, "stride_y": 1,
                  "stride_x": 1, "pad_top": 0, "pad_left": 0, "base0": 0,
                  "x_step": chunks, "row_step": chunks, "image_step": chunks,
                  "tap_row_step": 1, "weight_base": 0}
        for field in START_FIELDS:
            yield field, values[field]

    def _core_write(self, m, spec, core, write, write_valid, write_taken):
        """Register the write into ``core``: a placed byte, else the held host write.

        The choice between the two (and the placed byte's address) is made before the
        core's write register, so no path runs from the result placer or the host's held
        write through the choice into a core's write logic (the ternary memories'
        base-3 decode and enables). A placed byte wins (host writes are refused during a
        program, so the two never meet) and is taken every cycle; a host write moves in
        when the register is empty, every other cycle at most, as the held write does.
        Return the register's valid.
        """
        held = Signal.like(core.write.payload, name=f"{spec.name}_write", reset_less=True)
        holding = Signal(name=f"{spec.name}_write_valid")
        m.d.comb += [core.write.payload.eq(held), core.write.valid.eq(holding)]
        core_target = 0
        for t in spec.targets[1:]:
            core_target = Mux(write.target == t, spec.core_target(t), core_target)
        # A placed byte: word `w`, byte `b` of the activation memory is byte address
        # w * stride + b of its target (strides are powers of two).
        place = self.place.payload
        _, stride = spec.act_runs(self.config)
        placed = self.place.valid & (place.engine == spec.protocol_id)
        host = write_valid & Cat(*(write.target == t for t in spec.targets)).any()
        with m.If(host):
            m.d.comb += write_taken.eq(~holding & ~placed)
        with m.If(placed):
            m.d.sync += [
                holding.eq(1),
                held.target.eq(spec.core_target(spec.targets[0])),
                held.addr.eq(Cat(place.byte[:(stride - 1).bit_length()], place.word)),
                held.data.eq(place.data),
            ]
        with m.Elif(host & ~holding):
            m.d.sync += [holding.eq(1), held.target.eq(core_target),
                         held.addr.eq(write.addr), held.data.eq(write.data)]
        with m.Elif(core.write.ready):
            m.d.sync += holding.eq(0)
        return holding

    def elaborate(self, platform):
        m = Module()
        m.submodules.requantizer = requantizer = Requantizer(self.config)
        wiring.connect(m, requantizer.out, wiring.flipped(self.results))
        # Writes are registered on their way in, and again in their core's write register
        # (:meth:`_core_write`), so no path runs from the link's frame buffer into a
        # core's write logic (the base-3 decoder, the memories' enables), and `ready` is
        # the first register being empty, so none runs back from a core's acceptance (the
        # ternary memories' `straddled`) into the link's walker either.
        # A write is taken every other cycle at most; the write walker offers one every
        # third (FETCH, FETCHED, PUT), so a WRITE takes no more cycles for it.
        write = Signal.like(self.write.payload, name="write_held")
        write_valid = Signal()
        write_taken = Signal()          # the held write leaves this cycle
        m.d.comb += [write_taken.eq(1), self.write.ready.eq(~write_valid)]
        with m.If(~write_valid):
            m.d.sync += [write.eq(self.write.payload), write_valid.eq(self.write.valid)]
        with m.Elif(write_taken):
            m.d.sync += write_valid.eq(0)
        start = self.start.payload
        layer = self.layer
        m.d.comb += [self.place.ready.eq(1), requantizer.param_base.eq(layer.param_base)]
        # A placed byte is in a core's write register the cycle after `place` offered it
        # (a core takes an activation byte every cycle): the layer is not over until then.
        placing = Signal()
        core_busy = Signal()
        m.d.sync += placing.eq(self.place.valid)
        m.d.comb += self.busy.eq(core_busy | placing)
        # A start is passed on from its second cycle offered, when the registers of the
        # dense walk hold its payload's (a stream's payload holds while it is offered),
        # and once the held write has reached its core (both registers empty).
        settled = Signal()
        m.d.sync += settled.eq(self.start.valid & ~self.start.ready)
        landed = Signal()               # no write is on its way into a core
        passed = settled & landed
        cores_holding = []

        for name in self.engines:
            spec = engine(name)
            core = m.submodules[f"{name}_core"] = spec.make_core(self.config)
            selected = layer.engine == spec.protocol_id
            busy_bits, mac_bits = self._counter_bits[name]
            with m.If(selected):
                m.d.comb += [
                    requantizer.acc.payload.eq(core.acc.payload),
                    requantizer.acc.valid.eq(core.acc.valid),
                    core.acc.ready.eq(requantizer.acc.ready),
                    requantizer.raw.eq(core.raw),
                    requantizer.relu.eq(core.relu),
                    core.out_busy.eq(requantizer.busy),
                    core_busy.eq(core.busy),
                    # Only the bits a count can reach: the core's counter bits above
                    # them, and the responder's multiplexer inputs, are then dropped.
                    self.busy_cycles.eq(core.busy_cycles[:busy_bits]),
                    self.mac_cycles.eq(core.mac_cycles[:mac_bits]),
                ]
            m.d.comb += [
                core.start.payload[field].eq(
                    Mux(self.program, layer[field], value) if field in _LAYER_START
                    else value)
                for field, value in self._dense_start(m, start, spec.chunk(self.config))]
            cores_holding.append(
                self._core_write(m, spec, core, write, write_valid, write_taken))
            with m.If(start.engine == spec.protocol_id):
                m.d.comb += [core.start.valid.eq(self.start.valid & passed),
                             self.start.ready.eq(core.start.ready & passed)]

        m.d.comb += landed.eq(~write_valid & ~Cat(*cores_holding).any())

        # A PARAMS record is collected byte by byte and written as its last byte arrives.
        record = Signal(64)
        param_write = requantizer.param_write
        complete = Cat(record[:56], write.data)
        with m.If(write_valid & (write.target == Target.PARAMS)):
            m.d.sync += record.word_select(write.addr[:3], 8).eq(write.data)
            m.d.comb += param_write.valid.eq(write.addr[:3] == 7)
        m.d.comb += [
            param_write.payload.col.eq(write.addr[3:]),
            param_write.payload.bias.eq(complete[0:32]),
            param_write.payload.mult.eq(complete[32:32 + 15]),
            param_write.payload.shift.eq(complete[48:54]),
        ]
        return m
