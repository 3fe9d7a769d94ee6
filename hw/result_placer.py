"""Placement of a layer's results: the output memory, or a feature map in an activation memory."""

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, ceil_log2

from tritile.sw.engines import ENGINES

from .dsp import shift_add_product
from .engine_bank import ACT_WRITE_LAYOUT, divmod_const
from .requantizer import RESULT_LAYOUT

__all__ = ["PLACE_LAYOUT", "ResultPlacer", "place_layer"]

#: Where the running layer's results go (the layer descriptor's fields; a RUN is
#: ``to_output`` with ``out_base`` 0).
PLACE_LAYOUT = data.StructLayout({
    "to_output": unsigned(1), "out_base": unsigned(24), "m": unsigned(16), "n": unsigned(16),
    "dest_engine": unsigned(8), "dest_base": unsigned(24), "dest_chunks": unsigned(16),
})



def place_layer(place, descriptor):
    """Return the statements that set ``place`` (:data:`PLACE_LAYOUT`) from a layer
    descriptor (``LAYER_LAYOUT``)."""
    fields = {"to_output": descriptor.flags[2], "out_base": descriptor.out_base,
              "m": descriptor.m, "n": descriptor.n, "dest_engine": descriptor.dest_engine,
              "dest_base": descriptor.dest_base, "dest_chunks": descriptor.dest_chunks}
    return [place[name].eq(value) for name, value in fields.items()]


class ResultPlacer(wiring.Component):
    """Write result ``(row, col)`` to ``base + row * width + col'``.

    To the output memory (``to_output``): word ``out_base + row * n + col``, the whole
    32-bit value. Else into the activation memory of ``dest_engine`` as the feature map of
    docs/protocol.md: word ``dest_base + row * dest_chunks + col // chunk``, byte ``col %
    chunk`` (``chunk`` of that engine), the value's low byte (an int8). ``row * width``
    takes two steps: the products of the low and the high half of the row's bits are
    registered, then their sum plus the base and ``col'`` is the address (narrow factors,
    ``row < max_m``). A result reaches the output memory, or leaves on ``act``, three
    cycles after it arrived (the engine bank registers an ``act`` byte once more before
    its memory). Output words past the memory are dropped, as are activation words past
    the engine's memory (by the core), and results outside the problem (``row >= m`` or
    ``col >= n``).

    Parameters
    ----------
    config : AcceleratorConfig
        ``max_m``, ``max_n``, ``out_depth`` and the engines' chunks.
    engines : tuple of str
        The engines of the device, by registry name.

    Members
    -------
    results : In(stream.Signature(RESULT_LAYOUT))
        Results (pooled: ``row`` is the pooled pixel); always ready.
    layer : In(PLACE_LAYOUT)
        The running layer's destination.
    write : In(WritePort.Signature(addr_width, 32))
        The output memory's write port.
    act : Out(stream.Signature(ACT_WRITE_LAYOUT))
        Bytes for an activation memory; the consumer takes one every cycle.
    pending : Out(1)
        A result is on its way into a memory.
    """

    def __init__(self, config, engines):
        self.config = config
        self.chunks = {ENGINES[name].protocol_id: ENGINES[name].chunk(config)
                       for name in engines}
        self.addr_width = ceil_log2(config.out_depth)
        super().__init__({
            "results": In(stream.Signature(RESULT_LAYOUT)),
            "layer": In(PLACE_LAYOUT),
            "write": In(WritePort.Signature(addr_width=self.addr_width, shape=32)),
            "act": Out(stream.Signature(ACT_WRITE_LAYOUT)),
            "pending": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        config, layer = self.config, self.layer
        result = self.results.payload
        col_bits = bits_for(config.max_n)
        col = result.col[:col_bits]
        word_col, byte = Const(0, col_bits), Const(0, 1)
        for engine, chunk in self.chunks.items():
            quotient, remainder = divmod_const(col, chunk)
            chosen = layer.dest_engine == engine
            word_col, byte = Mux(chosen, quotient, word_col), Mux(chosen, remainder, byte)

        # Three stages, each with one adder or multiplier chain at most: the column's
        # word and byte and the operands (a tile that is not a power of two divides by
        # a chain of adders); the two halves of `row * width` and the column's word; their
        # sum, the address (a chain of adders per row bit would limit the clock).
        row_bits, width_bits = bits_for(config.max_m - 1), bits_for(config.max_n)
        half = (row_bits + 1) // 2
        taken = Signal(data.StructLayout({
            "valid": 1, "row": unsigned(row_bits), "col": unsigned(col_bits),
            "word_col": unsigned(col_bits), "byte": unsigned(8), "value": signed(32)}))
        m.d.comb += self.results.ready.eq(1)
        m.d.sync += [
            taken.valid.eq(self.results.valid & (result.row < layer.m)
                           & (result.col < layer.n)),
            taken.row.eq(result.row), taken.col.eq(col), taken.word_col.eq(word_col),
            taken.byte.eq(byte), taken.value.eq(result.value),
        ]
        width = Mux(layer.to_output, layer.n, layer.dest_chunks)[:width_bits]
        parts = Signal(data.StructLayout({
            "valid": 1, "lo": unsigned(half + width_bits),
            "hi": unsigned(row_bits - half + width_bits), "col": unsigned(24),
            "byte": unsigned(8), "value": signed(32)}))
        m.d.sync += [
            parts.valid.eq(taken.valid),
            parts.lo.eq(shift_add_product(taken.row[:half], width)),
            parts.hi.eq(shift_add_product(taken.row[half:row_bits], width)),
            parts.col.eq(Mux(layer.to_output, layer.out_base + taken.col,
                             layer.dest_base + taken.word_col)),
            parts.byte.eq(taken.byte), parts.value.eq(taken.value),
        ]
        # `to_act` and the engine are registered here, so that the activation write leaves
        # from registers beside it (not from the layer's, far away): its path runs on
        # through the engine bank into an engine's write logic.
        placed = Signal(data.StructLayout({
            "valid": 1, "to_act": 1, "engine": unsigned(8), "address": unsigned(25),
            "byte": unsigned(8), "value": signed(32)}))
        m.d.sync += [
            placed.valid.eq(parts.valid), placed.to_act.eq(parts.valid & ~layer.to_output),
            placed.engine.eq(layer.dest_engine),
            placed.address.eq(parts.lo + (parts.hi << half) + parts.col),
            placed.byte.eq(parts.byte), placed.value.eq(parts.value),
        ]
        m.d.comb += [
            self.pending.eq(taken.valid | parts.valid | placed.valid),
            self.write.addr.eq(placed.address),
            self.write.data.eq(placed.value),
            self.write.en.eq(placed.valid & layer.to_output
                             & (placed.address < config.out_depth)),
            self.act.valid.eq(placed.to_act),
            self.act.payload.engine.eq(placed.engine),
            self.act.payload.word.eq(placed.address),
            self.act.payload.byte.eq(placed.byte),
            self.act.payload.data.eq(placed.value[:8]),
        ]
        return m
