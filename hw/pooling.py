"""Pooling of a layer's results on their way out: max or average over k x k output pixels.

Both engines emit results N tile by N tile; within a tile, row by row (output pixels in
raster order, image by image, every row starting at 0) and each row's columns in
order. A pooling window covers ``k`` consecutive output rows of one tile, so one *pooled
row* of partial results per channel of the tile is all that must be kept: a line buffer
of ``pooled width x tile`` entries (entry ``px * T + n % T``), not the whole map. A
window's first result starts its entry, its last completes it and sends the pooled value
on; results of pixels past the last whole window (the floor at the right and bottom
edges) complete nothing.

Average pooling is the exact window sum followed by ``requantize(sum, mult, shift)`` of
the numerics contract (:func:`tritile.sw.conv.avgpool_int8`), computed here in the same
steps as the :class:`~tritile.hw.requantizer.Requantizer`'s.
"""

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from tritile.sw.engines import ENGINES
from tritile.sw.numerics import MULT_BITS
from tritile.sw.protocol import LayerPool

from .dsp import times_const
from .engine_bank import divmod_const
from .requantizer import RESULT_LAYOUT

__all__ = ["POOL_LAYOUT", "Pooling", "pool_layer"]

#: A layer's pooling: the mode, the window (= stride), the output map it pools (``out_h``
#: x ``out_w`` per image) and the pooled width, the average's requantization, and the
#: engine that computes the layer (its N tile).
POOL_LAYOUT = data.StructLayout({
    "mode": unsigned(2), "k": unsigned(8), "out_h": unsigned(16), "out_w": unsigned(16),
    "pooled_w": unsigned(16), "mult": unsigned(16), "shift": unsigned(8),
    "engine": unsigned(8),
})

#: A result's pixel as the pooling walks the output map: its column and row, its place
#: in its window, its pooled column and the first pooled row of its window row, the
#: pooled row ``row_base + px`` it joins, and flags kept beside them, each a fact of
#: these values: ``*_last`` (``x + 1 == out_w``, ``y + 1 == out_h``, ``wx + 1 == k``,
#: ``wy + 1 == k``), ``keep`` (``px < pooled_w``), ``fresh`` (``wx == wy == 0``) and
#: ``final`` (the window's last result).
_PIXEL = data.StructLayout({
    "x": unsigned(16), "y": unsigned(16), "wx": unsigned(8), "wy": unsigned(8),
    "px": unsigned(16), "row_base": unsigned(16), "row": unsigned(16), "x_last": 1,
    "y_last": 1, "wx_last": 1, "wy_last": 1, "keep": 1, "fresh": 1, "final": 1,
})

#: The flags of a walk's first place, facts of the layer alone: a row's first pixel is its
#: row's last when ``out_w == 1`` (``x_last``), a map's first row its last when ``out_h ==
#: 1`` (``y_last``), a window's first place its last when ``k == 1`` (``k_last``), and a
#: row's first pooled column is kept unless ``pooled_w == 0`` (``keep``).
_START_FLAGS = data.StructLayout({"x_last": 1, "y_last": 1, "k_last": 1, "keep": 1})


def pool_layer(pool, descriptor):
    """Return the statements that set ``pool`` (:data:`POOL_LAYOUT`) from a layer
    descriptor (``LAYER_LAYOUT``)."""
    fields = {"mode": descriptor.flags[4:6], "k": descriptor.pool_k,
              "out_h": descriptor.out_h, "out_w": descriptor.out_w,
              "pooled_w": descriptor.pool_out_w, "mult": descriptor.pool_mult,
              "shift": descriptor.pool_shift, "engine": descriptor.engine}
    return [pool[name].eq(value) for name, value in fields.items()]


class Pooling(wiring.Component):
    """Pool a stream of results ``(row, col, value)`` into ``(pooled pixel, col, value)``.

    Without pooling every result passes with its row. With max or
    average pooling, result ``(m, n)`` of output pixel ``(b, y, x)`` joins window
    ``(b, y // k, x // k)``; the window's pooled value leaves as row ``m' = (b * PH + y //
    k) * PW + x // k`` (``PW`` = ``pooled_w``, ``PH = out_h // k``) once its last result has
    arrived. Every result takes the same :attr:`LATENCY` cycles.

    The pixel of a result is followed, not divided out: the rows of a tile arrive in order
    from 0, so a row equal to the last one is the same pixel, row 0 is pixel (0, 0, 0) and
    any other row the next pixel.

    Parameters
    ----------
    tiles : dict of int to int
        The N tile (results of one row per pass) of each engine, by protocol id.
    max_pooled_w : int
        The widest pooled row the line buffer holds.

    Members
    -------
    results : In(stream.Signature(RESULT_LAYOUT))
        The running layer's results; always ready.
    layer : In(POOL_LAYOUT)
        The running layer's pooling; held while its results arrive.
    pooled : Out(stream.Signature(RESULT_LAYOUT))
        Pooled results; the consumer takes one every cycle (``ready`` is not looked at).
    busy : Out(1)
        A result is inside.
    """

    #: Cycles from a result on ``results`` to its pooled value on ``pooled``.
    LATENCY = 8

    @classmethod
    def for_engines(cls, config, engines):
        """The pooling of a SoC with ``engines`` (registry names) on ``config``: each
        engine's N tile, and pooled rows up to ``max_m // 2`` wide."""
        return cls({ENGINES[e].protocol_id: ENGINES[e].tile_size(config)[1] for e in engines},
                   config.max_m // 2)

    def __init__(self, tiles, max_pooled_w):
        self.tiles = {int(e): int(t) for e, t in tiles.items()}
        self.tile = max(self.tiles.values())
        self.max_pooled_w = max(1, max_pooled_w)
        self.depth = self.max_pooled_w * self.tile
        super().__init__({
            "results": In(stream.Signature(RESULT_LAYOUT)),
            "layer": In(POOL_LAYOUT),
            "pooled": Out(stream.Signature(RESULT_LAYOUT)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        layer = self.layer
        result = self.results.payload
        pooling = layer.mode != LayerPool.NONE
        m.d.comb += self.results.ready.eq(1)

        # -- stage 1: the result's pixel and its place in the window -------------------
        after = self._position(m)
        accepted = self.results.valid

        entry_shape = range(self.depth)
        # The result's slot in its pooled pixel's entries, beside the pixel: dividing the
        # column by a tile that is not a power of two is a chain of adders of its own.
        slot = Const(0, 1)
        for engine, tile in self.tiles.items():
            _, remainder = divmod_const(result.col, tile)
            slot = Mux(layer.engine == engine, remainder, slot)
        s1 = Signal(data.StructLayout({
            "valid": 1, "col": unsigned(16), "value": signed(32), "row": unsigned(16),
            "px": unsigned(16), "slot": range(self.tile), "fresh": 1, "final": 1,
            "keep": 1}))
        m.d.sync += [
            s1.valid.eq(accepted), s1.col.eq(result.col), s1.value.eq(result.value),
            s1.slot.eq(slot),
            s1.row.eq(Mux(pooling, after.row, result.row)),
            s1.px.eq(after.px),
            s1.fresh.eq(~pooling | after.fresh),
            s1.final.eq(~pooling | after.final),
            s1.keep.eq(pooling & after.keep),
        ]

        # -- stage 2: the line buffer entry of (px, col) is read ------------------------
        m.submodules.line = line = Memory(shape=signed(32), depth=self.depth, init=[])
        write = line.write_port()
        read = line.read_port(transparent_for=(write,))
        entry = Signal(entry_shape)
        m.d.comb += [entry.eq(times_const(s1.px[:bits_for(self.depth)], self.tile) + s1.slot),
                     read.addr.eq(entry), read.en.eq(1)]
        entry_layout = data.StructLayout({
            "valid": 1, "col": unsigned(16), "value": signed(32), "row": unsigned(16),
            "entry": entry_shape, "fresh": 1, "final": 1, "keep": 1})
        s2 = Signal(entry_layout)
        m.d.sync += [s2.valid.eq(s1.valid), s2.col.eq(s1.col), s2.value.eq(s1.value),
                     s2.row.eq(s1.row), s2.entry.eq(entry), s2.fresh.eq(s1.fresh),
                     s2.final.eq(s1.final),
                     s2.keep.eq(s1.keep & (s1.px < self.max_pooled_w))]

        # -- stage 3: the entry's value so far, registered ---------------------------------
        # The result one ahead of this one writes its entry only now: if it is the same
        # entry, its new value replaces the memory's (a result two ahead wrote in the
        # cycle of this one's read, which the read port passes through).
        s3 = Signal(entry_layout)
        # The datapath's registers need no reset: the valid bits beside them say when
        # they hold a value (the reset net then reaches only the controls).
        old = Signal(signed(32), reset_less=True)
        combined = Signal(signed(32))
        writing = s3.valid & s3.keep
        m.d.sync += [s3.eq(s2), old.eq(Mux(writing & (s3.entry == s2.entry), combined,
                                           read.data))]

        # ... and the window's value with this result, written back in the same cycle.
        with m.If(s3.fresh):
            m.d.comb += combined.eq(s3.value)
        with m.Elif(layer.mode == LayerPool.MAX):
            m.d.comb += combined.eq(Mux(s3.value > old, s3.value, old))
        with m.Else():
            m.d.comb += combined.eq(old + s3.value)
        m.d.comb += [write.addr.eq(s3.entry), write.data.eq(combined), write.en.eq(writing)]
        tag = data.StructLayout({"valid": 1, "row": unsigned(16), "col": unsigned(16)})
        s4 = Signal(tag)
        s5_value = Signal(signed(32), reset_less=True)
        m.d.sync += [s4.valid.eq(s3.valid & s3.final), s4.row.eq(s3.row), s4.col.eq(s3.col),
                     s5_value.eq(combined)]

        # -- stages 4 to 7: the average's requantization (see Requantizer) --------------
        # The 32 x 15-bit product is taken as two 16-bit halves' products, each one
        # multiplier block with nothing after it, and summed in the next cycle.
        average = layer.mode == LayerPool.AVERAGE
        s5, s6, s7 = Signal(tag), Signal(tag), Signal(tag)
        mult = layer.mult[:MULT_BITS]
        low = Signal(unsigned(16 + MULT_BITS), reset_less=True)
        high = Signal(signed(16 + MULT_BITS + 1), reset_less=True)
        product = Signal(signed(32 + MULT_BITS + 1), reset_less=True)
        shift_m1 = Signal(8, reset_less=True)
        t = Signal(signed(32 + MULT_BITS + 1), reset_less=True)
        passed5, passed6, passed7 = (Signal(signed(32), name=f"passed{i}", reset_less=True)
                                     for i in (5, 6, 7))
        m.d.sync += [
            s5.eq(s4), s6.eq(s5), s7.eq(s6),
            passed5.eq(s5_value), passed6.eq(passed5), passed7.eq(passed6),
            low.eq(s5_value[:16] * mult),
            high.eq(s5_value[16:].as_signed() * mult),
            product.eq(low + (high << 16)),
            shift_m1.eq(layer.shift - 1),
            t.eq(product >> shift_m1),
        ]
        out = self.pooled.payload
        m.d.sync += [self.pooled.valid.eq(s7.valid), out.row.eq(s7.row), out.col.eq(s7.col)]
        # (t + 1) >> 1 is above 127 when t >= 255, below -128 when t < -257.
        with m.If(~average):
            m.d.sync += out.value.eq(passed7)
        with m.Elif(t >= 255):
            m.d.sync += out.value.eq(127)
        with m.Elif(t < -257):
            m.d.sync += out.value.eq(-128)
        with m.Else():
            m.d.sync += out.value.eq((t[:10].as_signed() + 1) >> 1)
        m.d.comb += self.busy.eq(s1.valid | s2.valid | s3.valid | s4.valid | s5.valid
                                 | s6.valid | s7.valid | self.pooled.valid)
        return m


    def _position(self, m):
        """Return the pixel of the result offered (its x, y, place in its window, pooled
        column and row, and the window's flags), counted on from the last result's as the
        engines emit rows.

        Two pixels are registered: ``here``, the last result's, and ``ahead``, the one
        after it, stepped a cycle early. The result's pixel is then a choice of three (row
        0 starts over, the last row stays ``here``, another row is ``ahead``), with no
        adder or compare of the walk between the result and stage 1.
        """
        layer = self.layer
        row = self.results.payload.row
        here = Signal(_PIXEL)           # the pixel of the last result
        ahead = Signal(_PIXEL)          # the pixel after it
        last_row = Signal(16)
        start = Signal(_START_FLAGS)
        m.d.comb += [start.x_last.eq(layer.out_w == 1), start.y_last.eq(layer.out_h == 1),
                     start.k_last.eq(layer.k == 1), start.keep.eq(layer.pooled_w != 0)]
        first = Signal(_PIXEL)          # the pixel of row 0
        m.d.comb += [first.x_last.eq(start.x_last), first.y_last.eq(start.y_last),
                     first.wx_last.eq(start.k_last), first.wy_last.eq(start.k_last),
                     first.keep.eq(start.keep), first.fresh.eq(1),
                     first.final.eq(start.k_last)]
        after = Signal(_PIXEL)          # the pixel of this result
        then_ahead = Signal(_PIXEL)     # the pixel after it
        after_first, after_ahead = self._step(m, first, start), self._step(m, ahead, start)
        with m.If(row == 0):
            m.d.comb += [after.eq(first), then_ahead.eq(after_first)]
        with m.Elif(row != last_row):
            m.d.comb += [after.eq(ahead), then_ahead.eq(after_ahead)]
        with m.Else():
            m.d.comb += [after.eq(here), then_ahead.eq(ahead)]
        with m.If(self.results.valid):
            m.d.sync += [here.eq(after), ahead.eq(then_ahead), last_row.eq(row)]
        return after

    def _step(self, m, p, start):
        """Return the pixel after pixel ``p`` (the next column, the next row at the end of
        one, the next image at the end of a map); ``start`` (:data:`_START_FLAGS`) has the
        flags of a row's, a map's and a window's first place.

        Each field is one adder or compare of ``p``'s deep: ``p``'s flags say which way
        it steps, the next flags are compares of ``p``'s values plus two (a window's or
        map's last place ``v`` is ``v + 1 == size``).
        """
        layer = self.layer
        px_next = Signal(16)
        wx_next, wy_next = Signal(8), Signal(8)
        row_base_next = Signal(16)
        row_done = p.x_last             # the next pixel starts a row
        window_row_done = row_done & p.wy_last
        m.d.comb += [
            px_next.eq(Mux(row_done, 0, Mux(p.wx_last, p.px + 1, p.px))),
            wx_next.eq(Mux(row_done | p.wx_last, 0, p.wx + 1)),
            wy_next.eq(Mux(row_done, Mux(p.wy_last | p.y_last, 0, p.wy + 1), p.wy)),
            row_base_next.eq(Mux(window_row_done, p.row_base + layer.pooled_w, p.row_base)),
        ]
        wx_last = Mux(row_done | p.wx_last, start.k_last, p.wx + 2 == layer.k)
        wy_last = Mux(row_done, Mux(p.wy_last | p.y_last, start.k_last, p.wy + 2 == layer.k),
                      p.wy_last)
        q = Signal(_PIXEL)
        m.d.comb += [
            q.x.eq(Mux(row_done, 0, p.x + 1)),
            q.y.eq(Mux(row_done, Mux(p.y_last, 0, p.y + 1), p.y)),
            q.wx.eq(wx_next), q.wy.eq(wy_next), q.px.eq(px_next),
            q.row_base.eq(row_base_next),
            q.row.eq(Mux(row_done, row_base_next, p.row + p.wx_last)),
            q.x_last.eq(Mux(row_done, start.x_last, p.x + 2 == layer.out_w)),
            q.y_last.eq(Mux(row_done, Mux(p.y_last, start.y_last, p.y + 2 == layer.out_h),
                            p.y_last)),
            q.wx_last.eq(wx_last), q.wy_last.eq(wy_last),
            q.keep.eq(Mux(row_done, start.keep,
                          Mux(p.wx_last, (p.px + 1)[:16] < layer.pooled_w, p.keep))),
            q.fresh.eq((wx_next == 0) & (wy_next == 0)),
            q.final.eq(wx_last & wy_last),
        ]
        return q
