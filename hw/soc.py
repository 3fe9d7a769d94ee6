"""The board SoC: host link, command dispatcher, engines, shared output stage, output memory.

::

    uart_rx -> UARTReceiver -> FIFO -+-> FrameParser -> dispatcher -> engine cores
    (host_rx byte port, optional) ---+                 |  |  |          |
                                                       |  |  +-> PARAMS -> Requantizer
    uart_tx <- UARTTransmitter <-+- ResponseWriter <---+  |                 |
    (host_tx byte port) <--------+                        +-- output memory <-+

Every constant of the wire format comes from :mod:`tritile.sw.protocol`. The dispatcher
acts on a request only after its CRC matched, checks every address range and problem shape
before it touches a memory or starts an engine, and answers each request with one response.
"""

import enum

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from tritile.sw import protocol
from tritile.sw.config import AcceleratorConfig
from tritile.sw.protocol import ENGINE_TARGETS, Engine, Opcode, Status, Target

from .dsp import SerialMultiplier, shift_add_product
from .event_counters import EventCounters
from .frame import FrameError, FrameParser, ResponseWriter
from .requantizer import Requantizer
from .uart import UARTReceiver, UARTTransmitter, uart_divisor

__all__ = ["SoC", "ENGINE_NAMES", "RX_FIFO_DEPTH"]

#: Engines a SoC can contain, by the names `tritile generate` and the capability use.
ENGINE_NAMES = {engine.name.lower(): engine for engine in Engine}

#: Bytes the receive FIFO holds while the dispatcher works on the previous frame (a full
#: WRITE takes about 3 cycles per data byte; 256 bytes cover the fastest baud the config
#: admits, 10 cycles per character).
RX_FIFO_DEPTH = 256


class _Source(enum.IntEnum):
    """Where a response's data bytes come from."""
    CAPABILITY = 0
    STATS = 1
    CYCLES = 2        # busy and MAC cycles of the last RUN
    OUTPUT = 3


def _make_core(name, config):
    if name == "ternary":
        from .ternary import TernaryUnit
        return TernaryUnit(config)
    from .systolic import SystolicCore
    return SystolicCore(config)


class SoC(wiring.Component):
    """The accelerator as a device on a serial link.

    Parameters
    ----------
    config : AcceleratorConfig
        Sizes of everything; ``clock_hz`` and ``baud`` set the UART divisor.
    engines : tuple of str or None
        Engine cores to include, from :data:`ENGINE_NAMES`; by default every engine the
        config has (``config.engines``). A RUN for a missing engine is answered
        ``UNAVAILABLE``.
    byte_port : bool
        Add a byte-stream port next to the UART pins (for the simulated board, which then
        skips bit timing); ``use_byte_port`` selects it.

    Members
    -------
    uart_rx : In(1)
        Serial input from the host (idle high).
    uart_tx : Out(1)
        Serial output to the host (idle high).
    host_rx : In(stream.Signature(8))
        Only with ``byte_port``: request bytes, used while ``use_byte_port`` is high.
    host_tx : Out(stream.Signature(8))
        Only with ``byte_port``: response bytes, used while ``use_byte_port`` is high.
    use_byte_port : In(1)
        Only with ``byte_port``: 1 selects the byte port, 0 the UART pins.
    """

    def __init__(self, config, *, engines=None, byte_port=False):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not "
                            f"{type(config).__name__}")
        engines = config.engines if engines is None else tuple(engines)
        unknown = [e for e in engines if e not in ENGINE_NAMES]
        if unknown or len(set(engines)) != len(engines):
            raise ValueError(f"engines must be distinct names from "
                             f"{', '.join(ENGINE_NAMES)}, not {engines!r}")
        config.check_engines(*engines)
        self.config = config
        self.engines = engines
        self.byte_port = byte_port
        self.capability = protocol.capability_bytes(
            config, [ENGINE_NAMES[e] for e in engines])
        members = {"uart_rx": In(1, init=1), "uart_tx": Out(1, init=1)}
        if byte_port:
            members.update(host_rx=In(stream.Signature(8)), host_tx=Out(stream.Signature(8)),
                           use_byte_port=In(1))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        config = self.config
        divisor = uart_divisor(config)

        # --- link: UART or byte port -> parser; writer -> UART or byte port -------------
        m.submodules.uart_rx = uart_rx = UARTReceiver(divisor)
        m.submodules.uart_tx = uart_tx = UARTTransmitter(divisor)
        # Buffered: its storage has a synchronous read port, so it maps to block RAM.
        m.submodules.rx_fifo = rx_fifo = SyncFIFOBuffered(width=8, depth=RX_FIFO_DEPTH)
        m.submodules.parser = parser = FrameParser(protocol.frame_timeout_cycles(config))
        m.submodules.writer = writer = ResponseWriter()
        m.d.comb += [
            uart_rx.rx.eq(self.uart_rx),
            self.uart_tx.eq(uart_tx.tx),
            rx_fifo.w_data.eq(uart_rx.bytes.payload),
            rx_fifo.w_en.eq(uart_rx.bytes.valid),
            uart_rx.bytes.ready.eq(rx_fifo.w_rdy),
        ]
        def link_uart():
            m.d.comb += [
                parser.bytes.payload.eq(rx_fifo.r_data),
                parser.bytes.valid.eq(rx_fifo.r_rdy),
                rx_fifo.r_en.eq(parser.bytes.ready),
            ]
            wiring.connect(m, writer.bytes, uart_tx.bytes)

        if self.byte_port:
            with m.If(self.use_byte_port):
                wiring.connect(m, wiring.flipped(self.host_rx), parser.bytes)
                wiring.connect(m, writer.bytes, wiring.flipped(self.host_tx))
            with m.Else():
                link_uart()
        else:
            link_uart()

        # --- engines, the shared output stage and the output memory ----------------------
        cores = {}
        for name in self.engines:
            cores[name] = m.submodules[f"{name}_core"] = _make_core(name, config)
        m.submodules.requantizer = requantizer = Requantizer(config)
        m.submodules.output = output = Memory(shape=32, depth=config.out_depth, init=[])
        m.submodules.capability = capability = Memory(
            shape=8, depth=len(self.capability), init=self.capability)

        engine = Signal(range(len(Engine)))      # the engine of the running problem
        selected = {name: engine == ENGINE_NAMES[name] for name in cores}
        dim_m, dim_k, dim_n = Signal(16), Signal(16), Signal(16)
        for name, core in cores.items():
            with m.If(selected[name]):
                m.d.comb += [
                    requantizer.acc.payload.eq(core.acc.payload),
                    requantizer.acc.valid.eq(core.acc.valid),
                    core.acc.ready.eq(requantizer.acc.ready),
                    requantizer.raw.eq(core.raw),
                    requantizer.relu.eq(core.relu),
                    core.out_busy.eq(requantizer.busy),
                ]

        # Results land at row * N + col; anything outside the problem or memory is dropped.
        # row * N takes two steps: the products of the low and the high half of the row's
        # bits are registered, then their sum plus col addresses the memory (row < max_m,
        # as the engines never exceed it, and N <= max_n: narrow factors; a chain of
        # adders per row bit would limit the clock).
        result = requantizer.out.payload
        row_bits, n_bits = bits_for(config.max_m - 1), bits_for(config.max_n)
        half = (row_bits + 1) // 2
        part_valid = Signal()
        part_lo = Signal(half + n_bits)
        part_hi = Signal(row_bits - half + n_bits)
        part_col = Signal.like(result.col)
        part_value = Signal(32)
        m.d.comb += requantizer.out.ready.eq(1)
        m.d.sync += [
            part_valid.eq(requantizer.out.valid & (result.row < dim_m) & (result.col < dim_n)),
            part_lo.eq(shift_add_product(result.row[:half], dim_n[:n_bits])),
            part_hi.eq(shift_add_product(result.row[half:row_bits], dim_n[:n_bits])),
            part_col.eq(result.col),
            part_value.eq(result.value),
        ]
        # The sum goes straight to the memory's address (two adders, no register).
        out_write = output.write_port()
        place_addr = Signal(row_bits + n_bits + 1)
        m.d.comb += [
            place_addr.eq(part_lo + (part_hi << half) + part_col),
            out_write.addr.eq(place_addr),
            out_write.data.eq(part_value),
            out_write.en.eq(part_valid & (place_addr < config.out_depth)),
        ]

        # --- the request being served ----------------------------------------------------
        req = parser.request.payload
        args = req.args
        target = args[0:8]
        base = args[8:32]
        run_length = args[32:48]
        stride = args[48:64]
        count = args[32:48]
        flags = args[8:16]
        # The checks of a request are registered in the cycle it arrives (its fields are
        # stable until it is released) and decided on in the next (DECODE), so that no
        # path runs through all of them.
        length_ok = Signal()
        expected = Const(0, 16)
        for op, size in protocol.ARGS_SIZE.items():
            expected = Mux(req.opcode == op, size, expected)
        m.d.sync += length_ok.eq(Mux(
            req.opcode == Opcode.WRITE,
            (req.length > expected) & (req.length <= expected + protocol.MAX_DATA),
            req.length == expected))
        known = Signal()
        m.d.sync += known.eq(Cat(*(req.opcode == op for op in Opcode)).any())

        # Byte sizes of the targets, from the one definition in sw/protocol.py.
        targets = {name: ENGINE_TARGETS[ENGINE_NAMES[name]] for name in ENGINE_NAMES}
        absent = [t for name in ENGINE_NAMES if name not in self.engines for t in targets[name]]
        sizes = {t: protocol.target_size(config, t) for t in Target if t not in absent}
        # Addresses are computed in `addr_bits`, enough for every target, a run length and a
        # stride; a base with higher bits set is out of range at once.
        addr_bits = max(bits_for(max(sizes.values())), 16)
        size = Signal(addr_bits)
        select = Const(0, addr_bits)
        for t, t_size in sizes.items():
            select = Mux(target == t, t_size, select)
        m.d.comb += size.eq(select)
        far = Signal()
        m.d.comb += far.eq(base[addr_bits:].any())
        writable, readable, strides_ok, present = Signal(), Signal(), Signal(), Signal()
        read_ok = Signal()
        m.d.sync += [
            read_ok.eq((count != 0) & (count <= protocol.MAX_DATA) & ~far
                       & (base[:addr_bits] + count <= size)),
            writable.eq(Cat(*(target == t for t in protocol.WRITABLE_TARGETS)).any()
                        & (size != 0)),
            readable.eq(Cat(*(target == t for t in protocol.READABLE_TARGETS)).any()),
            # A strided WRITE needs stride >= run length > 0; a contiguous one stride 0.
            strides_ok.eq(Mux(run_length != 0, (stride >= run_length) & (stride != 0),
                              stride == 0)),
            present.eq(Cat(*(args[0:8] == ENGINE_NAMES[e] for e in self.engines)).any()),
        ]

        # --- counters --------------------------------------------------------------------
        # Frame-level events are counted in a block RAM (they happen at most once per
        # frame, and never while a response is being sent); overruns (any time) and
        # cycles (every cycle) in logic. The RAM holds a slot for every STATS field, in
        # the protocol's order, so a STATS byte index is its address.
        fields = protocol.STATS_FIELDS
        length_error = Signal()    # the dispatcher found a length wrong for the opcode
        frame_done = Signal()
        run_done = Signal()
        events = {"frames": frame_done, "bad_crc": parser.bad_crc,
                  "bad_length": parser.bad_length, "timeouts": parser.timed_out,
                  "runs": run_done}
        sources = [("bad_length", length_error), *events.items()]
        m.submodules.counters = counters = EventCounters(
            len(fields), [fields.index(name) for name, _ in sources])
        m.d.comb += counters.event.eq(Cat(*(pulse for _, pulse in sources)))
        overruns, cycles = Signal(32), Signal(32)
        m.d.sync += [overruns.eq(overruns + uart_rx.overrun), cycles.eq(cycles + 1)]

        # --- response data: a byte index into one of several sources ----------------------
        status = Signal(8)
        resp_length = Signal(16)
        resp_last = Signal(16)          # index of the last data byte
        index = Signal(16)
        source = Signal(range(len(_Source)))
        out_read = output.read_port(transparent_for=())
        byte_addr = Signal(addr_bits)     # READ checked base + count against the size
        m.d.comb += byte_addr.eq(base + index)
        cap_read = capability.read_port(transparent_for=())
        m.d.comb += cap_read.addr.eq(index)
        output8 = target == Target.OUTPUT8
        m.d.comb += out_read.addr.eq(Mux(output8, byte_addr, byte_addr[2:]))
        m.d.comb += counters.read_addr.eq(index)
        stats_field = index[2:5]
        stats_byte = Mux(stats_field == fields.index("overruns"),
                         overruns.word_select(index[:2], 8),
                         Mux(stats_field == fields.index("cycles"),
                             cycles.word_select(index[:2], 8), counters.read_data))
        # The cores keep the counters of their last problem until the next start.
        busy_cycles, mac_cycles = Const(0, 32), Const(0, 32)
        for name, core in cores.items():
            busy_cycles = Mux(selected[name], core.busy_cycles, busy_cycles)
            mac_cycles = Mux(selected[name], core.mac_cycles, mac_cycles)
        cycles_bytes = Cat(busy_cycles, mac_cycles)
        out_word = out_read.data
        out_byte = Mux(output8, out_word[:8], out_word.word_select(byte_addr[:2], 8))
        data_byte = Signal(8)
        with m.Switch(source):
            with m.Case(_Source.CAPABILITY):
                m.d.comb += data_byte.eq(cap_read.data)
            with m.Case(_Source.STATS):
                m.d.comb += data_byte.eq(stats_byte)
            with m.Case(_Source.CYCLES):
                m.d.comb += data_byte.eq(cycles_bytes.word_select(index[:3], 8))
            with m.Case(_Source.OUTPUT):
                m.d.comb += data_byte.eq(out_byte)

        m.d.comb += [
            writer.header.payload.opcode.eq(req.opcode),
            writer.header.payload.seq.eq(req.seq),
            writer.header.payload.status.eq(status),
            writer.header.payload.length.eq(resp_length),
            writer.data.payload.eq(data_byte),
        ]

        # --- WRITE: address generator shared by the check pass and the write pass --------
        # Wide enough that address + stride never wraps while every earlier address was in
        # range (both below 2**addr_bits); after the first address out of range nothing
        # is written, so later wraps do not matter.
        address = Signal(addr_bits + 1)
        in_run = Signal(16)
        out_of_range = Signal()
        data_len = Signal(16)
        m.d.comb += data_len.eq(req.length - protocol.ARGS_SIZE[Opcode.WRITE])
        # Registered once per request, so that no path chains several adders: bytes the
        # check pass has still to walk, the current run's bytes, the step from a run's
        # last byte to the next run, the index of the last byte in a run and in the data.
        left, run_bytes, gap = Signal(16), Signal(16), Signal(16)
        run_last, last_index = Signal(16), Signal(16)
        run_end = (run_length != 0) & (in_run == run_last)

        def step_address():
            m.d.sync += [
                index.eq(index + 1),
                address.eq(Mux(run_end, address + gap, address + 1)),
                in_run.eq(Mux(run_end, 0, in_run + 1)),
            ]

        m.d.comb += parser.read_addr.eq(index)
        write_byte = parser.read_data
        param_record = Signal(64)
        for name, core in cores.items():
            ours = targets[name]
            core_target = 0                 # the core numbers its targets as `ours` lists them
            for i, t in enumerate(ours[1:], start=1):
                core_target = Mux(target == t, i, core_target)
            m.d.comb += [
                core.write.payload.target.eq(core_target),
                core.write.payload.addr.eq(address),
                core.write.payload.data.eq(write_byte),
            ]
        param_write = requantizer.param_write
        record = Cat(param_record[:56], write_byte)      # the record as its last byte arrives
        m.d.comb += [
            param_write.payload.col.eq(address[3:]),
            param_write.payload.bias.eq(record[0:32]),
            param_write.payload.mult.eq(record[32:32 + 15]),
            param_write.payload.shift.eq(record[48:54]),
        ]

        def respond(code, length=0, data_source=_Source.CAPABILITY):
            m.d.sync += [status.eq(code), resp_length.eq(length), source.eq(data_source),
                         index.eq(0)]
            m.next = "RESPOND"

        raw_flag = Signal()
        relu_flag = Signal()
        # Products of dimensions, checked only while every dimension is within its limit
        # (a larger one fails SHAPE_LIMITS anyway), so the factors can be narrow.
        dim_bits = bits_for(max(config.max_m, config.max_k, config.max_n))
        m.submodules.shape_product = multiplier = SerialMultiplier(dim_bits)
        product = multiplier.product
        shape_bad = Signal()

        def multiply(a, b):
            m.d.comb += [multiplier.a.eq(a), multiplier.b.eq(b), multiplier.start.eq(1)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(parser.request.valid):
                    m.d.sync += [index.eq(0), in_run.eq(0), address.eq(base),
                                 out_of_range.eq(far), left.eq(data_len),
                                 last_index.eq(data_len - 1), run_last.eq(run_length - 1),
                                 gap.eq(stride - run_length + 1)]
                    m.next = "DECODE"
            with m.State("DECODE"):
                with m.If(req.error == FrameError.BAD_CRC):
                    respond(Status.BAD_CRC)
                with m.Elif(req.error == FrameError.BAD_LENGTH):
                    respond(Status.BAD_LENGTH)
                with m.Elif(~known):
                    respond(Status.UNKNOWN_OPCODE)
                with m.Elif(~length_ok):
                    m.d.comb += length_error.eq(1)
                    respond(Status.BAD_LENGTH)
                with m.Else():
                    m.d.comb += frame_done.eq(1)
                    with m.Switch(req.opcode):
                        with m.Case(Opcode.PING):
                            respond(Status.OK)
                        with m.Case(Opcode.INFO):
                            respond(Status.OK, len(self.capability), _Source.CAPABILITY)
                        with m.Case(Opcode.STATS):
                            respond(Status.OK, 4 * len(protocol.STATS_FIELDS), _Source.STATS)
                        with m.Case(Opcode.WRITE):
                            with m.If(~writable):
                                respond(Status.BAD_TARGET)
                            with m.Elif(~strides_ok):
                                respond(Status.BAD_ADDRESS)
                            with m.Else():
                                m.next = "WRITE_SPLIT"
                        with m.Case(Opcode.READ):
                            with m.If(~readable):
                                respond(Status.BAD_TARGET)
                            with m.Elif(~read_ok):
                                respond(Status.BAD_ADDRESS)
                            with m.Else():
                                respond(Status.OK, count, _Source.OUTPUT)
                        with m.Case(Opcode.RUN):
                            with m.If(~present):
                                respond(Status.UNAVAILABLE)
                            with m.Else():
                                m.d.sync += [
                                    engine.eq(args[0:8]),
                                    raw_flag.eq(flags[0]), relu_flag.eq(flags[1]),
                                    dim_m.eq(args[16:32]), dim_k.eq(args[32:48]),
                                    dim_n.eq(args[48:64]), shape_bad.eq(0),
                                ]
                                m.next = "SHAPE_LIMITS"

            # WRITE: walk every address first; write only if all are inside the target.
            # Addresses only grow (stride >= run length), so the last byte of each run
            # decides: two cycles per run, two for a contiguous write.
            with m.State("WRITE_SPLIT"):
                m.d.sync += run_bytes.eq(Mux((run_length == 0) | (left < run_length),
                                             left, run_length))
                m.next = "WRITE_CHECK"
            with m.State("WRITE_CHECK"):
                with m.If(address + run_bytes > size):
                    m.d.sync += out_of_range.eq(1)
                m.d.sync += [left.eq(left - run_bytes), address.eq(address + stride)]
                with m.If(left == run_bytes):
                    m.next = "WRITE_DECIDE"
                with m.Else():
                    m.next = "WRITE_SPLIT"
            with m.State("WRITE_DECIDE"):
                m.d.sync += [index.eq(0), in_run.eq(0), address.eq(base)]
                with m.If(out_of_range):
                    respond(Status.BAD_ADDRESS)
                with m.Else():
                    m.next = "WRITE_FETCH"
            with m.State("WRITE_FETCH"):
                # The frame buffer shows byte `index` in the next cycle.
                m.next = "WRITE_PUT"
            with m.State("WRITE_PUT"):
                accepted = Signal()
                with m.If(target == Target.PARAMS):
                    m.d.comb += accepted.eq(1)
                    m.d.sync += param_record.word_select(address[:3], 8).eq(write_byte)
                    m.d.comb += param_write.valid.eq(address[:3] == 7)
                for name, core in cores.items():
                    ours = targets[name]
                    with m.If(Cat(*(target == t for t in ours)).any()):
                        m.d.comb += [core.write.valid.eq(1), accepted.eq(core.write.ready)]
                with m.If(accepted):
                    step_address()
                    with m.If(index == last_index):
                        respond(Status.OK)
                    with m.Else():
                        # Fetch the next byte now: one byte per cycle while accepted.
                        m.d.comb += parser.read_addr.eq(index + 1)

            # RUN: the same rules as tritile.sw.planner.check_problem and plan_*.
            with m.State("SHAPE_LIMITS"):
                for dim, limit in ((dim_m, config.max_m), (dim_k, config.max_k),
                                   (dim_n, config.max_n)):
                    with m.If((dim == 0) | (dim > limit)):
                        m.d.sync += shape_bad.eq(1)
                multiply(dim_m, dim_k)
                m.next = "SHAPE_ACT"
            # Each product was started in the state before: M*K, then M*N, then K*N.
            weight_limit = Mux(engine == Engine.TERNARY, config.trit_depth,
                               config.weight_depth)
            for state, limit, factors, next_state in (
                    ("SHAPE_ACT", config.act_depth, (dim_m, dim_n), "SHAPE_OUT"),
                    ("SHAPE_OUT", config.out_depth, (dim_k, dim_n), "SHAPE_WEIGHTS"),
                    ("SHAPE_WEIGHTS", weight_limit, None, "SHAPE_DECIDE")):
                with m.State(state):
                    with m.If(multiplier.done):
                        with m.If(product > limit):
                            m.d.sync += shape_bad.eq(1)
                        if factors is not None:
                            multiply(*factors)
                        m.next = next_state
            with m.State("SHAPE_DECIDE"):
                with m.If(shape_bad):
                    respond(Status.BAD_SHAPE)
                with m.Else():
                    m.next = "START"
            with m.State("START"):
                for name, core in cores.items():
                    with m.If(selected[name]):
                        payload = core.start.payload
                        m.d.comb += [payload.m.eq(dim_m), payload.k.eq(dim_k),
                                     payload.n.eq(dim_n), payload.raw.eq(raw_flag),
                                     payload.relu.eq(relu_flag), core.start.valid.eq(1)]
                        with m.If(core.start.ready):
                            m.next = "RUNNING"
            with m.State("RUNNING"):
                # A core raises `busy` the cycle after it accepted `start`.
                m.next = "DRAIN"
            with m.State("DRAIN"):
                # A core stays busy while the requantizer holds its beats (`out_busy`);
                # then only the placement stage may still hold the last result.
                busy = Const(0)
                for name, core in cores.items():
                    busy = busy | (selected[name] & core.busy)
                with m.If(~busy & ~part_valid):
                    m.d.comb += run_done.eq(1)
                    respond(Status.OK, 8, _Source.CYCLES)

            # Send the header, then `resp_length` data bytes, then release the frame.
            with m.State("RESPOND"):
                m.d.comb += writer.header.valid.eq(1)
                m.d.sync += resp_last.eq(resp_length - 1)
                with m.If(writer.header.ready):
                    with m.If(resp_length == 0):
                        m.next = "RELEASE"
                    with m.Else():
                        m.next = "DATA_FETCH"
            with m.State("DATA_FETCH"):
                # Memory sources show byte `index` in the next cycle; the counters once
                # every event so far is counted.
                with m.If(source == _Source.STATS):
                    m.d.comb += counters.read_en.eq(1)
                    with m.If(counters.read_ready):
                        m.next = "DATA_SEND"
                with m.Else():
                    m.next = "DATA_SEND"
            with m.State("DATA_SEND"):
                m.d.comb += [writer.data.valid.eq(1), counters.hold.eq(source == _Source.STATS)]
                with m.If(writer.data.ready):
                    m.d.sync += index.eq(index + 1)
                    with m.If(index == resp_last):
                        m.next = "RELEASE"
                    with m.Else():
                        m.next = "DATA_FETCH"
            with m.State("RELEASE"):
                m.d.comb += parser.request.ready.eq(1)
                m.next = "IDLE"
        return m
