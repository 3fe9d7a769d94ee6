"""Implicit im2col: the activation-word addresses of a convolution's GEMM rows.

The activation memory holds a feature map once, NHWC, as words of ``chunk`` channels
(:class:`tritile.sw.conv.Im2colWalk` gives the layout). An engine reads im2col row ``m``,
column group ``g`` (``chunk`` consecutive K entries: one kernel tap, one channel chunk)
as one word at ``origin(m) + offset(g)``, or as zeros where the window covers padding,
where

- ``origin(m)`` is the word of the window's top-left corner for output pixel m (negative
  or past the map's edge under padding), and
- ``offset(g) = (i * W + j) * CT + ct`` for tap (i, j) and chunk ct.

Both walk by addition alone: :class:`Im2colAddress` keeps an *M walker* (output pixel:
x, y, image, origin) and a *K walker* (tap row i, tap column j, chunk, offset), each
stepped by its engine's sequencer, and adds the per-layer steps the host computed. Within
a kernel row the taps' chunks are consecutive words (``offset`` + 1), so only the end of
a kernel row adds a step of its own. A position is padding when ``y + i`` or ``x + j``
leaves the map, two adders and four compares on the registered walker state.

A dense layer is the 1 x 1 window over a 1 x M map: row m's groups are words
``m * CT .. m * CT + CT - 1``, the row-major layout.
"""

import enum

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

__all__ = ["MStep", "KStep", "walk_layout", "engine_walk_limits", "Im2colAddress"]


class MStep(enum.IntEnum):
    """What the M walker does this cycle."""
    HOLD = 0
    NEXT = 1        #: the next output pixel (x, then y, then image)
    RESET = 2       #: output pixel 0
    RETURN = 3      #: back to the pixel saved by ``m_mark``


class KStep(enum.IntEnum):
    """What the K walker does this cycle."""
    HOLD = 0
    NEXT = 1        #: the next column group (chunk, then tap column, then tap row)
    RESET = 2       #: group 0


def walk_layout(max_words, max_side, max_kernel, max_chunks):
    """Return the layout of :class:`tritile.sw.conv.Im2colWalk`'s registers for these limits.

    ``max_words`` bounds the map's words (and every step); ``max_side`` the map's and the
    output's height and width; ``max_kernel`` the kernel's sides, strides and pads;
    ``max_chunks`` the channel chunks. The image count and the kernel's height are the
    sequencer's business (it knows M and K), so they have no register here.
    """
    step = signed(bits_for(max_words) + 1)
    side, kernel = unsigned(bits_for(max_side)), unsigned(bits_for(max_kernel))
    return data.StructLayout({
        "in_h": side, "in_w": side, "chunks": unsigned(bits_for(max_chunks)),
        "out_h": side, "out_w": side, "kernel_w": kernel,
        "stride_y": kernel, "stride_x": kernel, "pad_top": kernel, "pad_left": kernel,
        "base0": step, "x_step": step, "row_step": step, "image_step": step,
        "tap_row_step": step,
    })


def engine_walk_limits(config, chunk, max_words):
    """Return the :class:`Im2colAddress` limits of an engine reading ``chunk`` channels a word.

    The config bounds them: a layer's K is ``kh * kw * CT * chunk <= max_k``, so each kernel
    side (and the stride and pads, which the host keeps below or at it) and the chunks are
    at most ``ceil(max_k / chunk)``; its M is ``images * OH * OW <= max_m``, so an input
    side is at most ``stride * OW + kw``. ``config.conv_walk`` 0 leaves the window logic out.
    """
    groups = -(-config.max_k // chunk)
    return {"max_words": max_words, "max_side": groups * (config.max_m + 1),
            "max_kernel": groups, "max_chunks": groups, "conv": bool(config.conv_walk)}


class Im2colAddress(wiring.Component):
    """Word address (or padding) of the im2col row and column group an engine reads next.

    Parameters
    ----------
    max_words, max_side, max_kernel, max_chunks : int
        Limits that size the registers (see :func:`walk_layout`); each at least 1.
    conv : bool
        Walk windows with padding; False keeps the dense walk alone (``origin`` steps by
        ``x_step``, groups are consecutive words, never padding), for small devices.

    Members
    -------
    walk : In(walk_layout(...))
        The layer's registers; held while the walkers step.
    m_step : In(MStep)
        Step of the M walker, applied at the clock edge.
    m_mark : In(1)
        Save the M position this cycle's step leads to, for a later ``MStep.RETURN``.
    k_step : In(KStep)
        Step of the K walker, applied at the clock edge.
    advance : In(1, init=1)
        Apply the steps (and the mark) at this edge. The steps then need not wait for the
        engine's decision to move: the decision reaches only the registers' enables
        (on iCE40, a row's issue was seven logic levels from the walker's registers).
    addr : Out(range(max_words))
        Word of the current (row, group); meaningful when ``pad`` is 0.
    pad : Out(1)
        The current (row, group) lies in the padding: the engine feeds zeros.
    """

    def __init__(self, *, max_words, max_side, max_kernel, max_chunks, conv=True):
        for name, value in (("max_words", max_words), ("max_side", max_side),
                            ("max_kernel", max_kernel), ("max_chunks", max_chunks)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        self._layout = walk_layout(max_words, max_side, max_kernel, max_chunks)
        self._max_side, self._max_kernel = max_side, max_kernel
        self._conv = conv
        super().__init__({
            "walk": In(self._layout), "m_step": In(MStep), "m_mark": In(1),
            "k_step": In(KStep), "advance": In(1, init=1),
            "addr": Out(range(max_words)), "pad": Out(1),
        })

    def elaborate(self, platform):
        if not self._conv:
            return self._dense()
        m = Module()
        walk = self.walk
        side = signed(bits_for(self._max_side * self._max_kernel) + 2)
        origin_shape = self._layout["base0"].shape

        # -- M walker: output pixel (x, y) of image `image`, its window's origin --------
        pixel = data.StructLayout({"ox": unsigned(bits_for(self._max_side)),
                                   "oy": unsigned(bits_for(self._max_side)),
                                   "x0": side, "y0": side, "origin": origin_shape})
        here = Signal(pixel)
        mark = Signal(pixel)
        start = Signal(pixel)
        m.d.comb += [start.ox.eq(0), start.oy.eq(0), start.x0.eq(-walk.pad_left),
                     start.y0.eq(-walk.pad_top), start.origin.eq(walk.base0)]
        after = Signal(pixel)
        m.d.comb += after.eq(here)
        with m.Switch(self.m_step):
            with m.Case(MStep.NEXT):
                with m.If(here.ox + 1 < walk.out_w):
                    m.d.comb += [after.ox.eq(here.ox + 1), after.x0.eq(here.x0 + walk.stride_x),
                                 after.origin.eq(here.origin + walk.x_step)]
                with m.Else():
                    m.d.comb += [after.ox.eq(0), after.x0.eq(-walk.pad_left)]
                    with m.If(here.oy + 1 < walk.out_h):
                        m.d.comb += [after.oy.eq(here.oy + 1),
                                     after.y0.eq(here.y0 + walk.stride_y),
                                     after.origin.eq(here.origin + walk.row_step)]
                    with m.Else():
                        m.d.comb += [after.oy.eq(0), after.y0.eq(-walk.pad_top),
                                     after.origin.eq(here.origin + walk.image_step)]
            with m.Case(MStep.RESET):
                m.d.comb += after.eq(start)
            with m.Case(MStep.RETURN):
                m.d.comb += after.eq(mark)
        with m.If(self.advance):
            m.d.sync += here.eq(after)
            with m.If(self.m_mark):
                m.d.sync += mark.eq(after)

        # -- K walker: tap (i, j), channel chunk, word offset ------------------------------
        tap = data.StructLayout({"i": self._layout["kernel_w"].shape,
                                 "j": self._layout["kernel_w"].shape,
                                 "chunk": self._layout["chunks"].shape,
                                 "offset": origin_shape})
        group = Signal(tap)
        with m.Switch(Mux(self.advance, self.k_step, KStep.HOLD)):
            with m.Case(KStep.NEXT):
                with m.If(group.chunk + 1 < walk.chunks):
                    m.d.sync += [group.chunk.eq(group.chunk + 1), group.offset.eq(group.offset + 1)]
                with m.Elif(group.j + 1 < walk.kernel_w):
                    m.d.sync += [group.chunk.eq(0), group.j.eq(group.j + 1),
                                 group.offset.eq(group.offset + 1)]
                with m.Else():
                    m.d.sync += [group.chunk.eq(0), group.j.eq(0), group.i.eq(group.i + 1),
                                 group.offset.eq(group.offset + walk.tap_row_step)]
            with m.Case(KStep.RESET):
                m.d.sync += group.eq(0)

        # -- the word, or padding -----------------------------------------------------------
        y = Signal(side)
        x = Signal(side)
        m.d.comb += [y.eq(here.y0 + group.i), x.eq(here.x0 + group.j),
                     self.pad.eq((y < 0) | (y >= walk.in_h) | (x < 0) | (x >= walk.in_w)),
                     self.addr.eq(here.origin + group.offset)]
        return m

    def _dense(self):
        """The walk of a 1 x 1 window over a 1 x M map: word ``origin + offset``."""
        m = Module()
        origin_shape = self._layout["base0"].shape
        origin, mark, offset = (Signal(origin_shape, name=name)
                                for name in ("origin", "mark", "offset"))
        after = Signal(origin_shape)
        m.d.comb += after.eq(origin)
        with m.Switch(self.m_step):
            with m.Case(MStep.NEXT):
                m.d.comb += after.eq(origin + self.walk.x_step)
            with m.Case(MStep.RESET):
                m.d.comb += after.eq(self.walk.base0)
            with m.Case(MStep.RETURN):
                m.d.comb += after.eq(mark)
        with m.If(self.advance):
            m.d.sync += origin.eq(after)
            with m.If(self.m_mark):
                m.d.sync += mark.eq(after)
        with m.Switch(Mux(self.advance, self.k_step, KStep.HOLD)):
            with m.Case(KStep.NEXT):
                m.d.sync += offset.eq(offset + 1)
            with m.Case(KStep.RESET):
                m.d.sync += offset.eq(0)
        m.d.comb += [self.addr.eq(origin + offset), self.pad.eq(0)]
        return m
