"""The shape check of a RUN: the rules of ``tritile.sw.planner.check_problem``."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from .constant_compare import exceeds
from .dsp import SerialMultiplier
from .request_checker import PROBLEM_LAYOUT

__all__ = ["ShapeChecker"]


class ShapeChecker(wiring.Component):
    """Check a RUN's M, K and N against the limits and its products against the memories.

    Each dimension must be in ``1 .. max``; then M*K must fit the activation memory
    (unless the problem is a program's layer, which reads its map ``in_place``), M*N
    the output memory and K*N the engine's weight memory. The products come from one
    :class:`~tritile.hw.dsp.SerialMultiplier`, one after the other, with narrow factors
    (a dimension above its limit fails anyway); every limit is a constant, so each
    comparison is a few LUTs (:func:`~tritile.hw.constant_compare.exceeds`).

    Parameters
    ----------
    config : AcceleratorConfig
        Limits and memory depths.
    weight_limits : dict of Engine to int
        Weight memory depth (K*N limit) of each engine.

    Members
    -------
    problem : In(stream.Signature(PROBLEM_LAYOUT))
        The RUN's problem, held until it is taken: when the check is over.
    bad : Out(1)
        In the cycle ``problem`` is taken: the shape breaks a rule.
    """

    problem: In(stream.Signature(PROBLEM_LAYOUT))
    bad: Out(1)

    def __init__(self, config, weight_limits):
        self.config = config
        self.weight_limits = dict(weight_limits)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        config = self.config
        p = self.problem.payload
        dim_bits = bits_for(max(config.max_m, config.max_k, config.max_n))
        m.submodules.multiplier = multiplier = SerialMultiplier(dim_bits)
        product = multiplier.product

        def multiply(a, b):
            m.d.comb += [multiplier.a.eq(a), multiplier.b.eq(b), multiplier.start.eq(1)]

        weights_exceeded = 0
        for engine, limit in self.weight_limits.items():
            weights_exceeded = Mux(p.engine == engine, exceeds(product, limit),
                                   weights_exceeded)
        # Each product's comparisons with the limits, registered: a product is final
        # from its `done` on, and read a cycle later (`product_ready`), so no path runs
        # from the product through a comparison and the state into `hit`.
        exceeded = {name: Signal(name=f"{name}_exceeded")
                    for name in ("act", "out", "weights")}
        m.d.sync += [exceeded["act"].eq(exceeds(product, config.act_depth)),
                     exceeded["out"].eq(exceeds(product, config.out_depth)),
                     exceeded["weights"].eq(weights_exceeded)]

        # A broken rule is noted in `hit` in the cycle it is found, and gathered into
        # `broken` a cycle later: no path runs from the multiplier's count through a
        # state's comparison into the verdict's enable (on iCE40 such a path was the
        # longest of the request path). `bad` is their OR, final in DONE.
        hit, broken = Signal(), Signal()
        m.d.sync += [hit.eq(0), broken.eq(broken | hit)]
        m.d.comb += self.bad.eq(broken | hit)
        # The multiplier's `done` (a compare of its remaining bits with zero) a cycle
        # late, so that no path runs from that compare through the state's next product
        # into the multiplier's registers (on iCE40 the request path's longest, 7 LUTs);
        # never set in the cycle after a start, whose `done` was the last product's.
        product_ready = Signal()
        m.d.sync += product_ready.eq(multiplier.done & ~multiplier.start)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.problem.valid):
                    m.d.sync += broken.eq(0)
                    m.next = "LIMITS"
            with m.State("LIMITS"):
                for dim, limit in ((p.m, config.max_m), (p.k, config.max_k),
                                   (p.n, config.max_n)):
                    with m.If((dim == 0) | exceeds(dim, limit)):
                        m.d.sync += hit.eq(1)
                multiply(p.m, p.k)
                m.next = "ACT"
            # Each product was started in the state before: M*K, then M*N, then K*N.
            for state, limit, factors, next_state in (
                    ("ACT", "act", (p.m, p.n), "OUT"),
                    ("OUT", "out", (p.k, p.n), "WEIGHTS"),
                    ("WEIGHTS", "weights", None, "DONE")):
                with m.State(state):
                    with m.If(product_ready):
                        too_big = exceeded[limit]
                        if state == "ACT":
                            too_big &= ~p.in_place
                        with m.If(too_big):
                            m.d.sync += hit.eq(1)
                        if factors is not None:
                            multiply(*factors)
                        m.next = next_state
            with m.State("DONE"):
                m.d.comb += self.problem.ready.eq(1)
                m.next = "IDLE"
        return m
