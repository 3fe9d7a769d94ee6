"""8N1 UART: a receiver and a transmitter speaking byte streams.

The bit period is a whole number of clock cycles: :func:`uart_divisor` rounds the
config's ``clock_hz / baud`` to the nearest integer. The receiver samples each bit in its
middle, so it tolerates a baud mismatch of a few percent between the two ends (about half
a bit over the ten bits of a character); configs whose ``clock_hz / baud`` is far from an
integer at small divisors should pick another baud.
"""

from amaranth.hdl import C, Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from tritile.sw.config import AcceleratorConfig

__all__ = ["uart_divisor", "UARTReceiver", "UARTTransmitter"]


def uart_divisor(config):
    """Return the clock cycles per bit of ``config``'s UART."""
    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"config must be an AcceleratorConfig, not {type(config).__name__}")
    return (config.clock_hz + config.baud // 2) // config.baud


def _check_divisor(divisor):
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < 4:
        raise ValueError(f"divisor must be an integer of at least 4 clock cycles per bit, "
                         f"not {divisor!r}")


class UARTReceiver(wiring.Component):
    """8N1 receiver.

    The line is synchronized by two flip-flops, a start bit is confirmed in its middle
    (a glitch shorter than half a bit is ignored) and each data bit is sampled in its
    middle. A byte whose stop bit is low is dropped (framing error) and the receiver waits
    for the line to go idle before it looks for the next start bit.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least 4.

    Members
    -------
    rx : In(1)
        The serial line (idle high).
    bytes : Out(stream.Signature(8))
        Received bytes; a byte stays offered until it is taken. A UART cannot hold the
        sender off: a byte that completes while the previous one is still offered is
        dropped and ``overrun`` pulses.
    overrun : Out(1)
        Pulses when a received byte was dropped.
    framing_error : Out(1)
        Pulses when a stop bit was low.
    """

    rx: In(1, init=1)
    bytes: Out(stream.Signature(8))
    overrun: Out(1)
    framing_error: Out(1)

    def __init__(self, divisor):
        _check_divisor(divisor)
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        line = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, line, init=1)

        timer = Signal(range(self.divisor + 1))
        bit = Signal(range(9))
        shift = Signal(8)

        m.d.sync += [self.overrun.eq(0), self.framing_error.eq(0)]
        with m.If(self.bytes.ready):
            m.d.sync += self.bytes.valid.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(self.divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(line):
                    m.next = "IDLE"     # a glitch, not a start bit
                with m.Else():
                    m.d.sync += [timer.eq(self.divisor - 1), bit.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [shift.eq(Cat(shift[1:], line)),
                                 timer.eq(self.divisor - 1), bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(line):
                    with m.If(self.bytes.valid & ~self.bytes.ready):
                        m.d.sync += self.overrun.eq(1)
                    with m.Else():
                        m.d.sync += [self.bytes.payload.eq(shift), self.bytes.valid.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += self.framing_error.eq(1)
                    m.next = "BREAK"
            with m.State("BREAK"):
                with m.If(line):
                    m.next = "IDLE"
        return m


class UARTTransmitter(wiring.Component):
    """8N1 transmitter.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least 4.

    Members
    -------
    bytes : In(stream.Signature(8))
        Bytes to send; a byte is taken while none waits (one waits while the previous one
        is sent), and its start bit follows the previous one's stop bit.
    tx : Out(1)
        The serial line (idle high).
    """

    bytes: In(stream.Signature(8))
    tx: Out(1, init=1)

    def __init__(self, divisor):
        _check_divisor(divisor)
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self.divisor))
        # Start bit, eight data bits (LSB first), stop bit; shifted out from bit 0.
        frame = Signal(10, init=0x3FF)
        remaining = Signal(range(11))
        # The next byte waits in a register of its own: the sender's `valid` reaches only
        # that register's enable, not the shift register's and the counters' (on iCE40
        # the response writer's state decode through them was among the longest paths),
        # and the next frame starts right after the stop bit all the same.
        waiting = Signal(8)
        full = Signal()

        m.d.comb += self.bytes.ready.eq(~full)
        m.d.comb += self.tx.eq(frame[0])
        with m.If(self.bytes.valid & ~full):
            m.d.sync += [waiting.eq(self.bytes.payload), full.eq(1)]
        with m.If(full & (remaining == 0)):
            m.d.sync += [frame.eq(Cat(C(0, 1), waiting, C(1, 1))), full.eq(0),
                         remaining.eq(10), timer.eq(self.divisor - 1)]
        with m.Elif(remaining != 0):
            with m.If(timer != 0):
                m.d.sync += timer.eq(timer - 1)
            with m.Else():
                m.d.sync += [frame.eq(Cat(frame[1:], C(1, 1))),
                             remaining.eq(remaining - 1), timer.eq(self.divisor - 1)]
        return m
