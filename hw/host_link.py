"""The host link's byte transport: the UART pins (or a byte port) and the receive FIFO.

::

    uart_rx -> UARTReceiver -> RX FIFO -+-> rx          (host_rx while use_byte_port)
    uart_tx <- UARTTransmitter <--------+-- tx          (host_tx while use_byte_port)
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from .block_ram import BlockRAM
from .uart import UARTReceiver, UARTTransmitter

__all__ = ["HostLink", "ReceiveFIFO", "RX_FIFO_DEPTH"]

#: Bytes the receive FIFO holds while the dispatcher works on the previous frame (a full
#: WRITE takes about 4 cycles per data byte, 8200 cycles; 256 bytes cover the fastest
#: baud the config admits, 4 cycles a bit: 40 a character, about 205 in that time).
RX_FIFO_DEPTH = 256


class ReceiveFIFO(wiring.Component):
    """A byte FIFO in a block RAM with a registered output.

    What :class:`~amaranth.lib.fifo.SyncFIFOBuffered` does for the link, in about a third
    of its logic: two pointers one bit wider than the address (equal: empty; equal but
    for that bit: full; emptiness is also a register), no level count, and the output
    register is the RAM's own read register, read only when its byte has been taken.

    Parameters
    ----------
    depth : int
        Bytes the RAM holds, a power of 2 (one more waits on ``r_stream``).

    Members
    -------
    w_stream : In(stream.Signature(8))
        Bytes in; not ready while the FIFO is full.
    r_stream : Out(stream.Signature(8))
        Bytes out, in order.
    """

    def __init__(self, depth):
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 2 or \
                depth & (depth - 1):
            raise ValueError(f"depth must be a power of 2 of at least 2, not {depth!r}")
        self.depth = depth
        super().__init__({"w_stream": In(stream.Signature(8)),
                          "r_stream": Out(stream.Signature(8))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.storage = storage = BlockRAM(8, self.depth)
        bits = exact_log2(self.depth)
        head, tail = Signal(bits + 1), Signal(bits + 1)     # next write, next read
        # head == tail, kept as a register: the read side's enables (fetch, the output's
        # valid) are then a LUT from the reader's `ready`, not behind the pointers'
        # compare (on iCE40 that path, 8 LUTs into the output's valid, was the longest).
        empty = Signal(init=1)
        full = (head[:bits] == tail[:bits]) & (head[bits] != tail[bits])
        fetch = ~empty & (~self.r_stream.valid | self.r_stream.ready)
        write = Signal()
        with m.If(write & ~fetch):
            m.d.sync += empty.eq(0)
        with m.Elif(fetch & ~write):
            m.d.sync += empty.eq((tail + 1)[:bits + 1] == head)
        m.d.comb += [
            self.w_stream.ready.eq(~full), write.eq(self.w_stream.valid & ~full),
            storage.write_addr.eq(head[:bits]), storage.write_data.eq(self.w_stream.payload),
            storage.write_en.eq(write),
            storage.read_addr.eq(tail[:bits]), storage.read_en.eq(fetch),
            self.r_stream.payload.eq(storage.read_data),
        ]
        with m.If(write):
            m.d.sync += head.eq(head + 1)
        with m.If(fetch):
            m.d.sync += [tail.eq(tail + 1), self.r_stream.valid.eq(1)]
        with m.Elif(self.r_stream.ready):
            m.d.sync += self.r_stream.valid.eq(0)
        return m


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
        m.submodules.fifo = fifo = ReceiveFIFO(RX_FIFO_DEPTH)
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
