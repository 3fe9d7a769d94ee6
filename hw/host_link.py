"""The host link's byte transport: the UART pins (or a byte port) and the receive FIFO.

::

    uart_rx -> UARTReceiver -> RX FIFO -+-> rx          (host_rx while use_byte_port)
    uart_tx <- UARTTransmitter <--------+-- tx          (host_tx while use_byte_port)
"""

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .uart import UARTReceiver, UARTTransmitter

__all__ = ["HostLink", "RX_FIFO_DEPTH"]

#: Bytes the receive FIFO holds while the dispatcher works on the previous frame (a full
#: WRITE takes about 3 cycles per data byte; 256 bytes cover the fastest baud the config
#: admits, 10 cycles per character).
RX_FIFO_DEPTH = 256


class HostLink(wiring.Component):
    """Bytes to and from the host, over the UART pins or a byte-stream port.

    Parameters
    ----------
    divisor : int
        Clock cycles per UART bit.
    byte_port : bool
        Add the byte-stream port (for the simulated board, which then skips bit timing).

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
    rx : Out(stream.Signature(8))
        Received bytes, through the FIFO when they come from the UART.
    tx : In(stream.Signature(8))
        Bytes to send.
    overrun : Out(1)
        Pulses when the UART dropped a byte because the FIFO was full.
    """

    def __init__(self, divisor, *, byte_port=False):
        self.divisor = divisor
        self.byte_port = byte_port
        members = {"uart_rx": In(1, init=1), "uart_tx": Out(1, init=1),
                   "rx": Out(stream.Signature(8)), "tx": In(stream.Signature(8)),
                   "overrun": Out(1)}
        if byte_port:
            members.update(host_rx=In(stream.Signature(8)), host_tx=Out(stream.Signature(8)),
                           use_byte_port=In(1))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.receiver = receiver = UARTReceiver(self.divisor)
        m.submodules.transmitter = transmitter = UARTTransmitter(self.divisor)
        # Buffered: its storage has a synchronous read port, so it maps to block RAM.
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=8, depth=RX_FIFO_DEPTH)
        m.d.comb += [receiver.rx.eq(self.uart_rx), self.uart_tx.eq(transmitter.tx),
                     self.overrun.eq(receiver.overrun)]
        wiring.connect(m, receiver.bytes, fifo.w_stream)

        def use_uart():
            wiring.connect(m, fifo.r_stream, wiring.flipped(self.rx))
            wiring.connect(m, wiring.flipped(self.tx), transmitter.bytes)

        if self.byte_port:
            with m.If(self.use_byte_port):
                wiring.connect(m, wiring.flipped(self.host_rx), wiring.flipped(self.rx))
                wiring.connect(m, wiring.flipped(self.tx), wiring.flipped(self.host_tx))
            with m.Else():
                use_uart()
        else:
            use_uart()
        return m
