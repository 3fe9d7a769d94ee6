"""The board SoC: a composition of the host link, the request path and the engines.

::

    HostLink -> RequestPath -+-> write, start, layer --> EngineBank (cores, requantizer)
       ^      (parser, checker,|                              |        ^ place
       |       dispatcher,     |                              v        |
       |       walker, shapes, |                    Pooling (program mode)
       |       sequencer)      |                              v        |
       |                       |                         ResultPlacer -+
       |                       |                              v
    ResponseWriter <- Responder <- response            output memory
                         ^ capability, counters, ------------'

Every constant of the wire format comes from :mod:`tritile.sw.protocol`. Nothing acts on
a request before its CRC matched and the checker passed it; every address range and
problem shape is checked before a memory is touched or an engine started; each request
gets one response. Everything engine-specific is in :mod:`tritile.hw.engine_bank`.
"""

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from tritile.sw import protocol
from tritile.sw.config import AcceleratorConfig
from tritile.sw.engines import ENGINES

from .block_ram import BlockRAM
from .engine_bank import EngineBank, engine_names, target_sizes, weight_limits
from .frame import ResponseWriter
from .host_link import RX_FIFO_DEPTH, HostLink
from .pooling import Pooling, pool_layer
from .request_path import RequestPath
from .responder import Responder
from .result_placer import ResultPlacer, place_layer
from .uart import uart_divisor

__all__ = ["SoC", "RX_FIFO_DEPTH"]


class SoC(wiring.Component):
    """The accelerator as a device on a serial link.

    Parameters
    ----------
    config : AcceleratorConfig
        Sizes of everything; ``clock_hz`` and ``baud`` set the UART divisor.
    engines : tuple of str or None
        Engine cores to include, by their registry names (:data:`tritile.sw.engines.
        ENGINES`); by default every engine the
        config has (``config.engines``). A RUN for a missing engine is answered
        ``UNAVAILABLE``.
    byte_port : bool
        Add a byte-stream port next to the UART pins (see :class:`HostLink`).

    Members
    -------
    uart_rx : In(1)
        Serial input from the host (idle high).
    uart_tx : Out(1)
        Serial output to the host (idle high).
    host_rx, host_tx, use_byte_port
        Only with ``byte_port``: as :class:`~tritile.hw.host_link.HostLink`'s.
    idle : Out(1)
        Only with ``byte_port``: no frame in progress, no request being served, no
        response being sent; nothing changes until the next byte (the simulated board
        then stops the clock).
    """

    def __init__(self, config, *, engines=None, byte_port=False):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an AcceleratorConfig, not "
                            f"{type(config).__name__}")
        engines = engine_names(config, engines)
        self.config = config
        self.engines = engines
        self.byte_port = byte_port
        self.capability = protocol.capability_bytes(
            config, [ENGINES[e].protocol_id for e in engines])
        members = {"uart_rx": In(1, init=1), "uart_tx": Out(1, init=1)}
        if byte_port:
            members.update(host_rx=In(stream.Signature(8)), host_tx=Out(stream.Signature(8)),
                           use_byte_port=In(1), idle=Out(1))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        config = self.config
        m.submodules.link = link = HostLink(uart_divisor(config), byte_port=self.byte_port)
        m.submodules.requests = requests = RequestPath(
            config, target_sizes(config, self.engines),
            [ENGINES[e].protocol_id for e in self.engines], weight_limits(config),
            len(self.capability), protocol.frame_timeout_cycles(config),
            tick_period=Responder.TICK_PERIOD)
        bits = requests.addr_bits
        m.submodules.engines = engines = EngineBank(config, self.engines, bits)
        m.submodules.placer = placer = ResultPlacer(config, self.engines)
        m.submodules.responder = responder = Responder(self.capability, bits, config.out_depth,
                                                       program_mode=bool(config.max_layers),
                                                       counter_bits=engines.counter_bits)
        m.d.comb += requests.tick.eq(responder.tick)
        m.submodules.writer = writer = ResponseWriter()
        # The host reads the output memory only while the engines and the placer are idle
        # (the dispatcher answers BUSY), so no read meets a write: a BlockRAM, without the
        # read-during-write emulation (on iCE40 its compare of the two addresses was the
        # critical path, from the request path into the placer's write).
        m.submodules.output = output = BlockRAM(32, config.out_depth)

        m.d.comb += [link.uart_rx.eq(self.uart_rx), self.uart_tx.eq(link.uart_tx)]
        if self.byte_port:
            wiring.connect(m, wiring.flipped(self.host_rx), link.host_rx)
            wiring.connect(m, link.host_tx, wiring.flipped(self.host_tx))
            m.d.comb += [link.use_byte_port.eq(self.use_byte_port),
                         self.idle.eq(requests.idle & ~writer.header.valid)]

        # Requests in: writes and starts to the engines.
        wiring.connect(m, link.rx, requests.bytes)
        wiring.connect(m, requests.write, engines.write)
        wiring.connect(m, requests.start, engines.start)
        layer = requests.layer
        m.d.comb += [engines.layer.eq(layer), engines.program.eq(requests.program)]
        # Results (pooled in program mode) into the output memory or an activation memory.
        busy = engines.busy | placer.pending
        if config.max_layers:
            m.submodules.pooling = pooling = Pooling.for_engines(config, self.engines)
            wiring.connect(m, engines.results, pooling.results)
            wiring.connect(m, pooling.pooled, placer.results)
            busy |= pooling.busy
            m.d.comb += pool_layer(pooling.layer, layer)
        else:
            wiring.connect(m, engines.results, placer.results)
        m.d.comb += [output.write_addr.eq(placer.write.addr),
                     output.write_data.eq(placer.write.data),
                     output.write_en.eq(placer.write.en)]
        wiring.connect(m, placer.act, engines.place)
        m.d.comb += place_layer(placer.layer, layer)
        m.d.comb += [
            requests.engine_busy.eq(busy),
            requests.busy_cycles.eq(engines.busy_cycles),
            requests.mac_cycles.eq(engines.mac_cycles),
            requests.counter_addr.eq(responder.counter_addr),
            responder.counter_data.eq(requests.counter_data),
        ]
        # Responses out, with the counters of the link's events.
        wiring.connect(m, requests.response, responder.response)
        m.d.comb += [output.read_addr.eq(responder.output.addr),
                     output.read_en.eq(responder.output.en),
                     responder.output.data.eq(output.read_data)]
        wiring.connect(m, responder.header, writer.header)
        wiring.connect(m, responder.data, writer.data)
        wiring.connect(m, writer.bytes, link.tx)
        m.d.comb += [
            responder.events.eq(requests.events),
            responder.overrun.eq(link.overrun),
            responder.busy_cycles.eq(engines.busy_cycles),
            responder.mac_cycles.eq(engines.mac_cycles),
        ]
        return m
