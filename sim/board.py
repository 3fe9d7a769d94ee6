"""The simulated board: the whole SoC in Verilator under cocotb, its host link on a TCP socket.

:func:`serve` builds the SoC (cached by RTL hash) and runs it; inside the simulator,
:func:`board` listens on a TCP port and bridges one client's bytes to the SoC:

- ``byte`` mode feeds the SoC's byte-stream port from ring buffers in the Verilog test
  wrapper (:func:`ring_wrapper`): cocotb writes whole words of request bytes into the RX
  ring and drains the TX ring every few hundred cycles, while Verilog moves one byte per
  cycle, so Python is not called per byte (no bit timing: fast);
- ``bit`` mode drives the real ``uart_rx`` pin and samples ``uart_tx`` at the configured
  baud, so the UART itself is exercised.

The clock runs inside the Verilog model with a 10 ns period; one simulated nanosecond is
therefore a tenth of a cycle whatever ``clock_hz`` says, and cycle counts are what matter.
In byte mode the board stops the clock while the SoC is idle (its ``idle`` port: no
partial frame, nothing being served or sent) and waits on the sockets, so an idle board
uses little CPU; a partial frame keeps the clock running until the SoC's frame timeout
abandons it, as on hardware. A second client is sent one ``UNAVAILABLE`` response frame
with an explanation and is disconnected. SIGINT and SIGTERM (or the stop file
:func:`serve` creates on a signal) end the simulation cleanly.
"""

import os
import select
import signal
import socket
import sys
import tempfile
from pathlib import Path

import cocotb
from cocotb.triggers import FallingEdge, RisingEdge, Timer

from tritile.sw import protocol

__all__ = ["MODES", "TOPLEVEL", "RING_WORD_BYTES", "RING_WORDS", "ring_wrapper",
           "soc_build", "serve", "board"]

MODES = ("byte", "bit")
TOPLEVEL = "tritile_soc"
_PERIOD_NS = 10
#: Bytes per word of the wrapper's ring buffers: cocotb moves a word per VPI access.
RING_WORD_BYTES = 64
#: Words per ring: 16 KiB each way, several full frames, so a pipelined upload never
#: waits for Python to refill the RX ring.
RING_WORDS = 256
# Cycles the simulation runs between socket polls while the link is idle, and while bytes
# are moving: short enough for millisecond round trips, long enough that a poll (tens of
# microseconds of Python) costs little against the model's few hundred k cycles/s.
_IDLE_CYCLES = 1000
_BUSY_CYCLES = 400
# While the SoC is idle (no partial frame whose timeout must run, nothing being served or
# sent) the clock stops and the board waits on the sockets for this long at a time.
_QUIET_SECONDS = 0.02
_REFUSAL = b"the simulated board already serves another client; close it first"


def ring_wrapper(module=TOPLEVEL, period_ns=_PERIOD_NS, word_bytes=RING_WORD_BYTES,
                 words=RING_WORDS):
    """Return the test wrapper ``<module>_tb``: the clock, and byte rings on the byte port.

    ``rx_ring``/``tx_ring`` hold ``words`` words of ``word_bytes`` bytes, byte ``i`` of the
    stream at bit ``8 * (i % word_bytes)`` of word ``i // word_bytes % words``. The
    pointers are free-running byte counts, each with one writer: cocotb writes
    ``rx_ring``, ``rx_wptr`` and ``tx_rptr`` (through VPI); the wrapper writes ``rx_rptr``,
    ``tx_ring`` and ``tx_wptr``. The wrapper feeds ``host_rx`` from the RX ring and fills
    the TX ring from ``host_tx``, one byte per cycle each, and stops taking response bytes
    while the TX ring is full. The UART pins and ``use_byte_port`` pass through.
    """
    if word_bytes & (word_bytes - 1) or words & (words - 1):
        raise ValueError(f"ring word bytes and words must be powers of 2, not "
                         f"{word_bytes} and {words}")
    lane = (word_bytes - 1).bit_length()
    index = lane + (words - 1).bit_length()
    width = 8 * word_bytes
    size = word_bytes * words
    lane_bits = f"[{lane - 1}:0]" if lane else "[0:0]"

    def byte_of(pointer):
        return f"{pointer}[{index - 1}:{lane}]][{{{pointer}{lane_bits}, 3'b000}} +: 8]"

    return f"""`timescale 1ns/1ps
module {module}_tb (
    input wire rst,
    input wire uart_rx,
    output wire uart_tx,
    input wire use_byte_port
);
  reg clk = 1'b0;
  always #{period_ns / 2:g} clk = ~clk;
  // Written only by cocotb through VPI, which Verilator's lint cannot see.
  /* verilator lint_off UNDRIVEN */
  reg [{width - 1}:0] rx_ring [0:{words - 1}];
  reg [31:0] rx_wptr = 32'd0;
  reg [31:0] tx_rptr = 32'd0;
  /* verilator lint_on UNDRIVEN */
  reg [31:0] rx_rptr = 32'd0;
  reg [{width - 1}:0] tx_ring [0:{words - 1}];
  reg [31:0] tx_wptr = 32'd0;
  wire rx_valid = rx_rptr != rx_wptr;
  wire rx_ready;
  wire tx_valid;
  wire [7:0] tx_payload;
  wire tx_ready = (tx_wptr - tx_rptr) != 32'd{size};
  wire idle;
  always @(posedge clk) begin
    if (rx_valid && rx_ready) rx_rptr <= rx_rptr + 32'd1;
    if (tx_valid && tx_ready) begin
      tx_ring[{byte_of("tx_wptr")} <= tx_payload;
      tx_wptr <= tx_wptr + 32'd1;
    end
  end
  {module} dut (
    .clk(clk),
    .rst(rst),
    .uart_rx(uart_rx),
    .uart_tx(uart_tx),
    .use_byte_port(use_byte_port),
    .host_rx__valid(rx_valid),
    .host_rx__ready(rx_ready),
    .host_rx__payload(rx_ring[{byte_of("rx_rptr")}),
    .host_tx__valid(tx_valid),
    .host_tx__ready(tx_ready),
    .host_tx__payload(tx_payload),
    .idle(idle)
  );
endmodule
"""


def soc_build(config, log=None):
    """Build the SoC with its byte port for ``config``; return the build directory."""
    from tritile.hw.soc import SoC
    from .verilator import build, verilog_of

    verilog = verilog_of(SoC(config, byte_port=True), TOPLEVEL)
    return build({"soc.v": verilog, "soc_tb.v": ring_wrapper()},
                 f"{TOPLEVEL}_tb", timing=True, log=log)


def serve(config, *, port=0, host="127.0.0.1", mode="byte", log=None, netlist=None,
          cell_models=""):
    """Run the simulated board until SIGINT/SIGTERM; it prints ``socket://HOST:PORT``.

    With ``netlist`` (a ``tritile build`` output directory) the board is that build's
    synthesized netlist (:mod:`tritile.sim.netlist`, ``config`` must be the build's), in
    ``bit`` mode: the bitstream's host link is its UART pins. ``cell_models`` is Verilog
    whose modules replace yosys' models of those cells.
    """
    from .verilator import run_cocotb
    from tritile.hw.uart import uart_divisor

    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be in [0, 65535], not {port}")
    if netlist is None:
        build_dir, toplevel = soc_build(config, log=log), f"{TOPLEVEL}_tb"
    else:
        from .netlist import NETLIST_TOPLEVEL, netlist_build

        if mode != "bit":
            raise ValueError("a netlist has no byte port: its host link is the UART pins "
                             "(mode 'bit')")
        build_dir = netlist_build(netlist, cell_replacements=cell_models, log=log)
        toplevel = NETLIST_TOPLEVEL
    with tempfile.TemporaryDirectory(prefix="tritile-board-") as work:
        stop_file = Path(work) / "stop"

        def request_stop(signum, frame):
            stop_file.touch()

        previous = {sig: signal.signal(sig, request_stop)
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            run_cocotb(build_dir, toplevel, "tritile.sim.board",
                       module_dir=Path(__file__).parent, work_dir=work,
                       extra_env={"TRITILE_BOARD_HOST": host,
                                  "TRITILE_BOARD_PORT": str(port),
                                  "TRITILE_BOARD_MODE": mode,
                                  "TRITILE_BOARD_DIVISOR": str(uart_divisor(config)),
                                  "TRITILE_BOARD_STOP": str(stop_file)})
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class _Link:
    """The one connected client, and the listening socket that refuses others."""

    def __init__(self, host, port):
        self.server = socket.create_server((host, port))
        self.server.setblocking(False)
        self.url = f"socket://{host}:{self.server.getsockname()[1]}"
        self.client = None
        self.served = False
        self.to_device = bytearray()

    def poll(self):
        """Read what the client sent, then accept or refuse new connections.

        Reading first notices a client that has just closed, so that the one that
        replaced it is not refused.
        """
        self._receive()
        while True:
            try:
                conn, _ = self.server.accept()
            except BlockingIOError:
                break
            if self.client is None:
                conn.setblocking(False)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.client = conn
                self.to_device.clear()
                if self.served:
                    # The last client may have left a partial frame in the parser: zeros
                    # complete it (it fails its CRC) and are then ignored.
                    self.to_device.extend(bytes(protocol.MAX_PAYLOAD + protocol.FRAMING_SIZE))
                self.served = True
            else:
                self._refuse(conn)
        self._receive()

    @staticmethod
    def _refuse(conn):
        # The refusal answers the client's first request: sent before it, it could be
        # discarded by the client's port as it opens (pyserial flushes its input then).
        # Then wait for the client to close: closing first would reset the connection
        # or end the stream right behind the frame, and pyserial could drop it.
        conn.settimeout(5.0)
        try:
            if conn.recv(4096):
                conn.sendall(protocol.encode_response(0, 0, protocol.Status.UNAVAILABLE,
                                                      _REFUSAL))
                while conn.recv(4096):
                    pass
        except OSError:
            pass
        conn.close()

    def _receive(self):
        if self.client is not None:
            try:
                while True:
                    data = self.client.recv(65536)
                    if not data:
                        self._drop()
                        break
                    self.to_device.extend(data)
            except BlockingIOError:
                pass
            except OSError:
                self._drop()

    def wait(self, seconds):
        """Block until a client sends or connects, or ``seconds`` have passed."""
        sockets = [self.server] + ([self.client] if self.client is not None else [])
        select.select(sockets, [], [], seconds)

    def send(self, data):
        if self.client is not None and data:
            try:
                self.client.setblocking(True)
                self.client.sendall(bytes(data))
                self.client.setblocking(False)
            except OSError:
                self._drop()

    def _drop(self):
        self.client.close()
        self.client = None
        self.to_device.clear()

    def close(self):
        if self.client is not None:
            self._drop()
        self.server.close()


class _Rings:
    """cocotb's side of :func:`ring_wrapper`'s rings: it writes ``rx_wptr`` and ``tx_rptr``."""

    def __init__(self, dut):
        self.dut = dut
        self.size = RING_WORD_BYTES * RING_WORDS
        self.rx_wptr = 0
        self.tx_rptr = 0
        # The word that rx_wptr points into, as written so far: a later push rewrites the
        # whole word, and the bytes the wrapper may be reading keep their values.
        self.partial = bytearray()

    def push(self, data):
        """Copy as much of ``data`` as fits into the RX ring; remove it from ``data``."""
        # A word of slack: the last word written is padded with zeros, which must not
        # land on bytes the wrapper has yet to read.
        pending = (self.rx_wptr - int(self.dut.rx_rptr.value)) % (1 << 32)
        free = self.size - RING_WORD_BYTES - pending
        count = min(free, len(data))
        if count <= 0:
            return
        stream = self.partial + data[:count]
        first = self.rx_wptr // RING_WORD_BYTES
        for offset in range(0, len(stream), RING_WORD_BYTES):
            word = stream[offset:offset + RING_WORD_BYTES]
            self.dut.rx_ring[(first + offset // RING_WORD_BYTES) % RING_WORDS].value = \
                int.from_bytes(word, "little")
        del data[:count]
        self.rx_wptr = (self.rx_wptr + count) % (1 << 32)
        self.partial = bytearray(stream[len(stream) // RING_WORD_BYTES * RING_WORD_BYTES:]
                                 if self.rx_wptr % RING_WORD_BYTES else b"")
        self.dut.rx_wptr.value = self.rx_wptr

    def rx_pending(self):
        """Return whether the RX ring holds bytes the SoC has not taken yet."""
        return int(self.dut.rx_rptr.value) != self.rx_wptr

    def pull(self):
        """Return the bytes the SoC has put into the TX ring since the last pull."""
        count = (int(self.dut.tx_wptr.value) - self.tx_rptr) % (1 << 32)
        if not count:
            return b""
        first = self.tx_rptr // RING_WORD_BYTES
        last = (self.tx_rptr + count - 1) // RING_WORD_BYTES
        words = b"".join(
            int(self.dut.tx_ring[w % RING_WORDS].value).to_bytes(RING_WORD_BYTES, "little")
            for w in range(first, last + 1))
        skip = self.tx_rptr % RING_WORD_BYTES
        self.tx_rptr = (self.tx_rptr + count) % (1 << 32)
        self.dut.tx_rptr.value = self.tx_rptr
        return words[skip:skip + count]


async def _byte_mode(dut, link, stopping):
    rings = _Rings(dut)
    dut.use_byte_port.value = 1
    # Every later wait is a whole number of periods, so cocotb always reads and writes the
    # rings at a falling edge, half a cycle away from the wrapper's updates.
    await FallingEdge(dut.clk)
    while not stopping():
        link.poll()
        rings.push(link.to_device)
        received = rings.pull()
        link.send(received)
        busy = received or link.to_device or rings.rx_pending()
        if not busy and dut.idle.value:
            # Stopping the clock here changes nothing the host can see: the SoC is waiting
            # for its next byte, and no frame timeout is running.
            link.wait(_QUIET_SECONDS)
            await Timer(_PERIOD_NS, "ns")
        else:
            await Timer((_BUSY_CYCLES if busy else _IDLE_CYCLES) * _PERIOD_NS, "ns")


async def _uart_receiver(dut, bit_ns, link, stopping):
    while not stopping():
        await FallingEdge(dut.uart_tx)
        await Timer(bit_ns * 3 // 2, "ns")
        byte = 0
        for i in range(8):
            byte |= int(dut.uart_tx.value) << i
            await Timer(bit_ns, "ns")
        link.send(bytes([byte]))


async def _bit_mode(dut, link, stopping, divisor):
    dut.use_byte_port.value = 0
    bit_ns = divisor * _PERIOD_NS
    cocotb.start_soon(_uart_receiver(dut, bit_ns, link, stopping))
    while not stopping():
        link.poll()
        if not link.to_device:
            await Timer(_IDLE_CYCLES * _PERIOD_NS, "ns")
            continue
        while link.to_device:
            byte = link.to_device.pop(0)
            for bit in [0] + [(byte >> i) & 1 for i in range(8)] + [1]:
                dut.uart_rx.value = bit
                await Timer(bit_ns, "ns")
            if not link.to_device:
                link.poll()


@cocotb.test()
async def board(dut):
    """Serve the SoC on a TCP socket until asked to stop (run by :func:`serve`)."""
    mode = os.environ["TRITILE_BOARD_MODE"]
    stop_file = Path(os.environ["TRITILE_BOARD_STOP"])
    stop = {"flag": False}

    def on_signal(signum, frame):
        stop["flag"] = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    polls = {"n": 0}

    def stopping():
        polls["n"] += 1
        if polls["n"] % 64 == 0 and stop_file.exists():
            stop["flag"] = True
        return stop["flag"]

    dut.uart_rx.value = 1
    dut.use_byte_port.value = 0
    dut.rst.value = 1
    await Timer(5 * _PERIOD_NS, "ns")
    await RisingEdge(dut.clk)
    dut.rst.value = 0
    link = _Link(os.environ["TRITILE_BOARD_HOST"], int(os.environ["TRITILE_BOARD_PORT"]))
    print(f"tritile sim-board: {mode} mode, serving on {link.url}", flush=True)
    sys.stdout.flush()
    try:
        if mode == "byte":
            await _byte_mode(dut, link, stopping)
        else:
            await _bit_mode(dut, link, stopping, int(os.environ["TRITILE_BOARD_DIVISOR"]))
    finally:
        link.close()
    print("tritile sim-board: stopped", flush=True)
