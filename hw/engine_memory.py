"""An engine's word memory, and which of them the iCE40UP5K keeps in its SPRAMs.

The UP5K has four SB_SPRAM256KA, 16K words of 16 bits each, next to 30 block RAMs of
512 bytes: the SPRAMs hold eight times what the block RAMs hold, but each has one port,
an address that reads or writes, not both, in a cycle. An engine's memory fits that port
when its writes and its reads never meet: the host writes while the engine is idle (the
dispatcher answers BUSY to everything while an engine runs), the engine reads while it
computes. Program mode breaks this for the activation memories only: the result placer
writes a layer's results into them while an engine reads the next. Such a memory stays
in block RAM, which is why program mode on iCE40 bounds ``act_depth``
(:func:`check_ice40_memories`).

:func:`single_port_memories` is the one place that decides: every platform builds these
memories with one port's behaviour (a write cycle does not read), so the simulations run
what the iCE40 bitstream runs; on iCE40 they are SB_SPRAM256KA side by side for width.
"""

from amaranth.hdl import Cat, ClockSignal, Instance, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from tritile.sw.arith import ceil_div
from tritile.sw.config import ConfigError
from tritile.sw.systolic_layout import systolic_geometry
from tritile.sw.ternary_layout import ternary_geometry

from .block_ram import BlockRAM
from .dsp import is_ice40

__all__ = ["SPRAM_WORDS", "SPRAM_WIDTH", "UP5K_SPRAMS", "EngineMemory",
           "single_port_memories", "spram_count", "check_ice40_memories"]

#: Words and bits per word of one SB_SPRAM256KA.
SPRAM_WORDS = 16384
SPRAM_WIDTH = 16
#: SB_SPRAM256KA on the iCE40UP5K.
UP5K_SPRAMS = 4
# SB_RAM40_4K configurations (words, bits) and the UP5K's count of them.
_BRAM_SHAPES = ((256, 16), (512, 8), (1024, 4), (2048, 2))
_UP5K_BRAMS = 30


def spram_count(width):
    """Return the SB_SPRAM256KA a memory of ``width``-bit words takes side by side."""
    return ceil_div(width, SPRAM_WIDTH)


def _bram_count(width, words):
    return min(ceil_div(width, bits) * ceil_div(words, depth) for depth, bits in _BRAM_SHAPES)


def _engine_memories(config):
    """Yield (name, width, words, single-port safe) of ``config``'s engine memories.

    In the order they claim SPRAMs: the int8 engine's activations and weights, the
    ternary unit's weights (its activations are a layer's, its weights a network's), then
    its activations.
    """
    program = bool(config.max_layers)
    if config.systolic_rows:
        geo = systolic_geometry(config)
        yield "systolic_act", 8 * config.systolic_rows, geo.act_words, not program
        yield "systolic_weights", 8 * config.systolic_cols, geo.weight_words, True
    if config.ternary_lanes:
        geo = ternary_geometry(config)
        yield "ternary_weights", 8 * geo.weight_word_bytes, geo.weight_words, True
        yield "ternary_act", 8 * geo.act_word_bytes, geo.act_words, not program


def single_port_memories(config):
    """Return ``{name: SPRAMs}`` of the memories the SoC for ``config`` gives one port.

    Each memory whose writes and reads never meet (see the module docstring) and whose
    words fit one SPRAM's depth, in :func:`_engine_memories`' order, as long as the
    UP5K's four SPRAMs hold it beside those before it. Names: ``systolic_act``,
    ``systolic_weights``, ``ternary_weights``, ``ternary_act``.
    """
    chosen, left = {}, UP5K_SPRAMS
    for name, width, words, safe in _engine_memories(config):
        if safe and words <= SPRAM_WORDS and spram_count(width) <= left:
            chosen[name] = spram_count(width)
            left -= chosen[name]
    return chosen


def check_ice40_memories(config):
    """Raise ConfigError if ``config``'s activation memories cannot be built on iCE40.

    With program mode they need two ports, so block RAM: together they must fit the
    UP5K's 30 block RAMs (which the rest of the SoC shares; the fit check sees that).
    """
    def act_brams(cfg):
        return sum(_bram_count(width, words) for name, width, words, _ in
                   _engine_memories(cfg) if name.endswith("_act"))

    if not config.max_layers or act_brams(config) <= _UP5K_BRAMS:
        return
    low, high = config.max_k, config.act_depth      # the largest act_depth that fits
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if act_brams(config.replace(act_depth=mid)) <= _UP5K_BRAMS \
            else (low, mid - 1)
    raise ConfigError(
        f"act_depth must be at most {low} with program mode on iCE40 (max_layers "
        f"{config.max_layers}: results are placed into the activation memories while an "
        f"engine reads them, so they need two ports, block RAM, not the single-ported "
        f"SPRAM), not {config.act_depth}")


class EngineMemory(wiring.Component):
    """A memory of ``width``-bit words with byte write enables and a synchronous read.

    Parameters
    ----------
    width : int
        Bits per word, a multiple of 8.
    depth : int
        Words.
    single_port : bool
        The memory has one port (see :func:`single_port_memories`): a cycle that writes
        does not read (``read_en`` is ignored and ``read_data`` is undefined after it),
        whatever the platform; on iCE40 it is ``ceil(width / 16)`` SB_SPRAM256KA side by
        side, and ``depth`` must be at most 16384. Otherwise a write and a read can share
        a cycle (block RAM), the read giving the word before the write.
    read_during_write : bool
        Of a two-port memory: a read of the word written in the same cycle gives the old
        word (the default). ``False`` when its user never reads a word in the cycle it
        writes it (or discards such a read): that read is then undefined on hardware, and
        yosys maps the memory onto block RAM without the registers and multiplexers that
        emulate the promise (docs/ternary.md gives what they cost).

    Members
    -------
    read_addr : In(range(depth))
        Word to read; its data follows one cycle after a cycle with ``read_en``.
    read_en : In(1)
        Read (``read_data`` holds otherwise).
    read_data : Out(width)
        The word read.
    write_addr : In(range(depth))
        Word to write.
    write_en : In(width // 8)
        Byte ``i`` of ``write_data`` is written when bit ``i`` is set.
    write_data : In(width)
        The bytes to write.
    """

    def __init__(self, width, depth, *, single_port, read_during_write=True):
        if not isinstance(width, int) or width <= 0 or width % 8:
            raise ValueError(f"Width must be a positive multiple of 8, not {width!r}")
        if not isinstance(depth, int) or depth <= 0:
            raise ValueError(f"Depth must be a positive integer, not {depth!r}")
        if single_port and depth > SPRAM_WORDS:
            raise ValueError(f"Depth of a single-port memory must be at most {SPRAM_WORDS} "
                             f"(one SB_SPRAM256KA), not {depth}")
        self.width, self.depth, self.single_port = width, depth, single_port
        self.read_during_write = read_during_write
        super().__init__({
            "read_addr": In(range(depth)),
            "read_en": In(1),
            "read_data": Out(width),
            "write_addr": In(range(depth)),
            "write_en": In(width // 8),
            "write_data": In(width),
        })

    def elaborate(self, platform):
        m = Module()
        writing = self.write_en.any()
        if self.single_port and platform is not None and is_ice40(platform):
            self._sprams(m, writing)
            return m
        read_en = self.read_en & ~writing if self.single_port else self.read_en
        if not (self.read_during_write or self.single_port):
            # Without the promise: a BlockRAM, which yosys maps without the logic that
            # emulates it.
            m.submodules.ram = memory = BlockRAM(self.width, self.depth, granularity=8,
                                                 ram_style=None)
            m.d.comb += [memory.write_addr.eq(self.write_addr),
                         memory.write_en.eq(self.write_en),
                         memory.write_data.eq(self.write_data),
                         memory.read_addr.eq(self.read_addr), memory.read_en.eq(read_en),
                         self.read_data.eq(memory.read_data)]
            return m
        m.submodules.memory = memory = Memory(shape=unsigned(self.width), depth=self.depth,
                                              init=[])
        write = memory.write_port(granularity=8)
        read = memory.read_port(transparent_for=())
        m.d.comb += [write.addr.eq(self.write_addr), write.en.eq(self.write_en),
                     write.data.eq(self.write_data), read.addr.eq(self.read_addr),
                     read.en.eq(read_en), self.read_data.eq(read.data)]
        return m

    def _sprams(self, m, writing):
        """Build the memory of SB_SPRAM256KA side by side, one address for both."""
        count = spram_count(self.width)
        addr = Signal(14)
        data_in = Signal(SPRAM_WIDTH * count)
        data_out = Signal(SPRAM_WIDTH * count)
        # The SPRAM masks nibbles: each byte enable covers two.
        mask = Signal(4 * count)
        m.d.comb += [addr.eq(Mux(writing, self.write_addr, self.read_addr)),
                     data_in.eq(self.write_data),
                     mask.eq(Cat(*(enable.replicate(2) for enable in self.write_en))),
                     self.read_data.eq(data_out)]
        for i in range(count):
            m.submodules[f"spram{i}"] = Instance(
                "SB_SPRAM256KA",
                i_ADDRESS=addr, i_DATAIN=data_in[16 * i:16 * (i + 1)],
                i_MASKWREN=mask[4 * i:4 * (i + 1)], i_WREN=writing,
                i_CHIPSELECT=writing | self.read_en, i_CLOCK=ClockSignal(),
                i_STANDBY=0, i_SLEEP=0, i_POWEROFF=1,
                o_DATAOUT=data_out[16 * i:16 * (i + 1)])
