"""Frame parser and response writer of the host link (the byte format of sw/protocol.py).

The :class:`FrameParser` turns a byte stream into checked requests: it hunts for the sync
byte, collects the header, routes the opcode's argument block into a register and the data
bytes into a frame buffer, and checks the CRC. Nothing in the buffer is acted on before the
whole frame has arrived and its CRC matched, so a corrupted or truncated frame cannot
change device state. The :class:`ResponseWriter` frames a status and data bytes.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for

from tritile.sw import protocol

from .block_ram import BlockRAM

__all__ = ["crc16_next", "FrameError", "REQUEST_LAYOUT", "RESPONSE_LAYOUT", "DATA_LAYOUT",
           "FrameParser", "ResponseWriter"]


def _crc16_equations():
    # The CRC is linear over GF(2): run the bitwise algorithm on symbols (sets of input
    # bits, crc bits 0-15 then byte bits 16-23) to get each next bit as an XOR of inputs.
    bits = [{i} for i in range(16)]
    for i in range(8):
        bits[8 + i] = bits[8 + i] ^ {16 + i}
    for _ in range(8):
        top = bits[15]
        bits = [set()] + bits[:15]
        for i in range(16):
            if 0x1021 >> i & 1:
                bits[i] = bits[i] ^ top
    return [sorted(b) for b in bits]


_CRC16_EQUATIONS = _crc16_equations()


def crc16_next(crc, byte):
    """Return the CRC-16/CCITT-FALSE register after ``byte`` (both Amaranth values)."""
    inputs = Cat(crc, byte)
    outputs = []
    for terms in _CRC16_EQUATIONS:
        bit = inputs[terms[0]]
        for term in terms[1:]:
            bit = bit ^ inputs[term]
        outputs.append(bit)
    return Cat(*outputs)


class FrameError(enum.Enum, shape=2):
    """Why a request reached the dispatcher broken (it then only answers an error)."""
    NONE = 0
    BAD_CRC = 1
    BAD_LENGTH = 2


#: A received request. ``args`` holds the argument block in its last
#: :data:`~tritile.sw.protocol.ARGS_SIZE` bytes (little-endian fields; the bytes are
#: shifted in from the top); ``args_missing`` counts the bytes of the block the payload
#: lacked; ``data_length`` counts the data bytes after the block (those past the frame
#: buffer's end are dropped): the payload length is right for the opcode when no argument
#: byte is missing and the data length is 0 (1 or more for a WRITE). ``ordered``: the
#: block's last 16-bit field is at least the one before it (a WRITE's ``stride >= run``),
#: compared a byte at a time as they arrive.
REQUEST_LAYOUT = data.StructLayout({
    "opcode": unsigned(8),
    "seq": unsigned(8),
    "args": unsigned(8 * protocol.MAX_ARGS),
    "args_missing": range(protocol.MAX_ARGS + 1),
    "data_length": range(protocol.MAX_DATA + 1),
    "ordered": unsigned(1),
    "error": FrameError,
})

#: The header of a response: its data bytes follow on :attr:`ResponseWriter.data`.
RESPONSE_LAYOUT = data.StructLayout({
    "opcode": unsigned(8),
    "seq": unsigned(8),
    "status": unsigned(8),
    "length": unsigned(16),
})

#: A response's data byte, and whether it is the last (the writer then sends the CRC).
DATA_LAYOUT = data.StructLayout({"byte": unsigned(8), "last": unsigned(1)})


# The parser compares each argument byte with the one two before it, low bytes where an
# even count of argument bytes is left: every block is whole 16-bit fields from its end.
if any(size % 2 for size in protocol.ARGS_SIZE.values()):
    raise ValueError(f"argument blocks must have even sizes, not {protocol.ARGS_SIZE}")


def _args_size(opcode):
    size = Const(0, range(protocol.MAX_ARGS + 1))
    for op, n in protocol.ARGS_SIZE.items():
        size = Mux(opcode == op, n, size)
    return size


class FrameParser(wiring.Component):
    """Receive request frames into a frame buffer and hand them to a dispatcher.

    Unknown opcodes are received with no argument block (their payload goes to the buffer,
    bytes past its end are dropped) and reported to the dispatcher, which answers them.
    A ``length`` above ``MAX_ARGS + max_data`` (the protocol's
    :data:`~tritile.sw.protocol.MAX_PAYLOAD`) is reported at once as
    ``BAD_LENGTH`` and the parser hunts for the next sync byte. A frame whose next byte
    does not come within ``timeout`` cycles is dropped silently.

    Parameters
    ----------
    timeout : int
        Cycles of silence after which a partial frame is abandoned.
    max_data : int
        Bytes of the frame buffer: :data:`~tritile.sw.protocol.MAX_DATA`, or fewer for a
        formal proof's small model.
    tick_period : int
        Cycles between pulses of ``tick``, which paces the silence count: a period of 1
        counts every cycle, a longer one (a prescaler shared with the responder's cycle
        counter) abandons the frame after ``timeout`` to ``timeout + 2 * tick_period``
        cycles with a counter ``log2(tick_period)`` bits narrower.

    Members
    -------
    bytes : In(stream.Signature(8))
        Received bytes. Not ready while a request waits on ``request``.
    request : Out(stream.Signature(REQUEST_LAYOUT))
        A complete request (or an error report); the dispatcher takes it (``ready``) when
        it has finished with the frame buffer, and the parser then receives the next one.
    read_addr : In(range(max_data))
        Frame buffer address; ``read_data`` shows its byte two cycles later (the buffer's
        read is registered twice, so that no path runs from the block RAM's output into
        the logic that uses the byte).
    read_data : Out(8)
    bad_crc, bad_length, timed_out : Out(1)
        One-cycle pulses for the dispatcher's counters.
    idle : Out(1)
        Hunting for a sync byte: no frame is in progress or waiting on ``request``.
    tick : In(1, init=1)
        Pulses once every ``tick_period`` cycles (constantly high for a period of 1).
    """

    def __init__(self, timeout, max_data=protocol.MAX_DATA, tick_period=1):
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
            raise ValueError(f"timeout must be a positive number of cycles, not {timeout!r}")
        if isinstance(max_data, bool) or not isinstance(max_data, int) or max_data < 1:
            raise ValueError(f"max_data must be a positive number of bytes, not {max_data!r}")
        if (isinstance(tick_period, bool) or not isinstance(tick_period, int)
                or tick_period < 1):
            raise ValueError(f"tick_period must be a positive number of cycles, "
                             f"not {tick_period!r}")
        self.timeout = timeout
        self.max_data = max_data
        # Ticks of silence: the first comes up to a period after the last byte, so one
        # more than the timeout's periods (none more when every cycle ticks).
        self.timeout_ticks = (timeout if tick_period == 1
                              else -(-timeout // tick_period) + 1)
        super().__init__({
            "bytes": In(stream.Signature(8)),
            "request": Out(stream.Signature(REQUEST_LAYOUT)),
            "read_addr": In(range(max_data)),
            "read_data": Out(8),
            "bad_crc": Out(1),
            "bad_length": Out(1),
            "timed_out": Out(1),
            "idle": Out(1),
            "tick": In(1, init=1),
        })

    def elaborate(self, platform):
        m = Module()
        # Written while a frame arrives, read only while its request waits on `request`.
        m.submodules.buffer = buffer = BlockRAM(8, self.max_data, output_register=True)
        m.d.comb += [buffer.read_addr.eq(self.read_addr), self.read_data.eq(buffer.read_data)]

        req = self.request.payload
        byte = self.bytes.payload
        take = Signal()
        crc = Signal(16, init=0xFFFF)
        silence = Signal(range(self.timeout_ticks + 1))
        expired = silence == self.timeout_ticks
        crc_low_ok = Signal()    # the CRC's low byte matched
        # Counters instead of arithmetic on a byte index, so that no path from a received
        # byte chains an adder into a comparison: the argument bytes still to come, the
        # data byte's buffer address (the data length when the frame is over), the
        # payload bytes still to come (a frame longer than MAX_ARGS + max_data is refused
        # before it is counted).
        args_left = req.args_missing
        data_index = req.data_length
        # (at least 8 bits: the length's low byte waits here for its high byte)
        remaining = Signal(max(8, bits_for(protocol.MAX_ARGS + self.max_data)))

        absorb = Signal()      # this byte belongs to the CRC-covered body
        m.d.comb += take.eq(self.bytes.valid & self.bytes.ready)
        m.d.sync += [self.bad_crc.eq(0), self.bad_length.eq(0), self.timed_out.eq(0)]
        with m.If(take):
            m.d.sync += silence.eq(0)
        with m.Elif(~expired & self.tick):
            m.d.sync += silence.eq(silence + 1)
        with m.If(take & absorb):
            m.d.sync += crc.eq(crc16_next(crc, byte))

        m.d.comb += [
            buffer.write_addr.eq(data_index),
            buffer.write_data.eq(byte),
        ]

        def receive(next_state=None, body=True):
            """Take bytes in this state; abandon the frame after `timeout` silent cycles."""
            m.d.comb += [self.bytes.ready.eq(1), absorb.eq(body)]
            if next_state is not None:
                with m.If(take):
                    m.next = next_state
            with m.If(~take & expired):
                m.d.sync += self.timed_out.eq(1)
                m.next = "HUNT"

        with m.FSM():
            with m.State("HUNT"):
                m.d.comb += [self.bytes.ready.eq(1), self.idle.eq(1)]
                m.d.sync += crc.eq(0xFFFF)
                with m.If(take & (byte == protocol.SYNC)):
                    m.next = "OPCODE"
            with m.State("OPCODE"):
                receive("SEQ")
                with m.If(take):
                    m.d.sync += req.opcode.eq(byte)
            with m.State("SEQ"):
                receive("LENGTH_LOW")
                with m.If(take):
                    m.d.sync += [req.seq.eq(byte), args_left.eq(_args_size(req.opcode))]
            with m.State("LENGTH_LOW"):
                receive("LENGTH_HIGH")
                with m.If(take):
                    m.d.sync += remaining[:8].eq(byte)
            with m.State("LENGTH_HIGH"):
                receive()
                length = Cat(remaining[:8], byte)     # the high byte arrives now
                with m.If(take):
                    # Only the bits of the longest payload are kept: a longer one is
                    # reported as BAD_LENGTH at once.
                    m.d.sync += [remaining.eq(length), data_index.eq(0)]
                    with m.If(length > protocol.MAX_ARGS + self.max_data):
                        m.d.sync += [req.error.eq(FrameError.BAD_LENGTH),
                                     self.bad_length.eq(1)]
                        m.next = "REQUEST"
                    with m.Elif(length == 0):
                        m.next = "CRC_LOW"
                    with m.Else():
                        m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                receive()
                with m.If(take):
                    m.d.sync += remaining.eq(remaining - 1)
                    with m.If(args_left != 0):
                        m.d.sync += [req.args.eq(Cat(req.args[8:], byte)),
                                     args_left.eq(args_left - 1)]
                        # `byte` against the byte two before it, as one 16-bit comparison
                        # over a field's two bytes: the carry of byte - earlier (an 8-bit
                        # adder), starting at 1 for a low byte (an even count of argument
                        # bytes left: every block has an even size) and at the low byte's
                        # result for a high byte.
                        earlier = req.args[-16:-8]
                        carry_in = Mux(args_left[0], req.ordered, 1)
                        m.d.sync += req.ordered.eq((byte + (~earlier)[:8] + carry_in)[8])
                    with m.Elif(data_index != self.max_data):
                        m.d.comb += buffer.write_en.eq(1)
                        m.d.sync += data_index.eq(data_index + 1)
                    with m.If(remaining == 1):
                        m.next = "CRC_LOW"
            with m.State("CRC_LOW"):
                receive("CRC_HIGH", body=False)
                with m.If(take):
                    m.d.sync += crc_low_ok.eq(byte == crc[:8])
            with m.State("CRC_HIGH"):
                receive(body=False)
                with m.If(take):
                    with m.If(crc_low_ok & (byte == crc[8:])):
                        m.d.sync += req.error.eq(FrameError.NONE)
                    with m.Else():
                        m.d.sync += [req.error.eq(FrameError.BAD_CRC), self.bad_crc.eq(1)]
                    m.next = "REQUEST"
            with m.State("REQUEST"):
                m.d.comb += self.request.valid.eq(1)
                with m.If(self.request.ready):
                    m.d.sync += req.error.eq(FrameError.NONE)
                    m.next = "HUNT"
        return m


class ResponseWriter(wiring.Component):
    """Frame a response: header, status, ``length`` data bytes, CRC.

    Members
    -------
    header : In(stream.Signature(RESPONSE_LAYOUT))
        A response to ``opcode`` (the writer sets the response bit). ``length`` counts the
        data bytes after the status byte, at most
        :data:`~tritile.sw.protocol.MAX_RESPONSE_DATA`. The writer reads the header while it
        sends the frame and takes it after the frame's last byte.
    data : In(stream.Signature(DATA_LAYOUT))
        The response's data bytes, taken after the status byte has been sent; the one
        marked ``last`` ends them (the source counts them, not the writer).
    bytes : Out(stream.Signature(8))
        The frame, byte by byte, to the transmitter.
    """

    header: In(stream.Signature(RESPONSE_LAYOUT))
    data: In(stream.Signature(DATA_LAYOUT))
    bytes: Out(stream.Signature(8))

    def elaborate(self, platform):
        m = Module()
        head = self.header.payload
        crc = Signal(16)
        sent = Signal()
        absorb = Signal()      # this byte belongs to the CRC-covered body

        m.d.comb += sent.eq(self.bytes.valid & self.bytes.ready)
        # A sent body byte is registered and added to the CRC a cycle later, so that no
        # path runs from the state through the byte multiplexer and the CRC's XORs (on
        # iCE40 the longest, 8 LUTs); the CRC is sent only once it has caught up.
        absorbed = Signal(8)
        pending = Signal()
        m.d.sync += pending.eq(sent & absorb)
        with m.If(sent & absorb):
            m.d.sync += absorbed.eq(self.bytes.payload)
        with m.If(pending):
            m.d.sync += crc.eq(crc16_next(crc, absorbed))
        # The status byte and the data bytes, at most MAX_RESPONSE_DATA + 1: counted in
        # fewer bits than the field's 16.
        data_bits = Shape.cast(range(protocol.MAX_RESPONSE_DATA + 1)).width
        payload_length = Signal(16)
        m.d.comb += payload_length.eq(head.length[:data_bits] + 1)
        # No data bytes: the header is held from IDLE on, and STATUS comes five bytes
        # later, so a register of the compare serves it (no compare on the state's enable).
        empty = Signal()
        m.d.sync += empty.eq(head.length[:data_bits] == 0)

        def emit(value, next_state, body=True, valid=1):
            m.d.comb += [self.bytes.payload.eq(value), self.bytes.valid.eq(valid),
                         absorb.eq(body)]
            with m.If(self.bytes.ready & valid):
                m.next = next_state

        with m.FSM():
            with m.State("IDLE"):
                m.d.sync += crc.eq(0xFFFF)
                with m.If(self.header.valid):
                    m.next = "SYNC"
            with m.State("SYNC"):
                emit(protocol.SYNC, "OPCODE", body=False)
            with m.State("OPCODE"):
                emit(head.opcode | protocol.RESPONSE_BIT, "SEQ")
            with m.State("SEQ"):
                emit(head.seq, "LENGTH_LOW")
            with m.State("LENGTH_LOW"):
                emit(payload_length[:8], "LENGTH_HIGH")
            with m.State("LENGTH_HIGH"):
                emit(payload_length[8:16], "STATUS")
            with m.State("STATUS"):
                emit(head.status, "DATA")
                with m.If(self.bytes.ready & empty):
                    m.next = "CRC_LOW"
            with m.State("DATA"):
                m.d.comb += [self.bytes.payload.eq(self.data.payload.byte),
                             self.bytes.valid.eq(self.data.valid), absorb.eq(1),
                             self.data.ready.eq(self.bytes.ready)]
                with m.If(sent & self.data.payload.last):
                    m.next = "CRC_LOW"
            with m.State("CRC_LOW"):
                emit(crc[:8], "CRC_HIGH", body=False, valid=~pending)
            with m.State("CRC_HIGH"):
                emit(crc[8:], "IDLE", body=False)
                m.d.comb += self.header.ready.eq(self.bytes.ready)
        return m
