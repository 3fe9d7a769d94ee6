"""The simulated board: the whole SoC in Verilator under cocotb, its host link on a TCP socket.

:func:`serve` builds the SoC (cached by RTL hash) and runs it; inside the simulator,
:func:`board` listens on a TCP port and bridges one client's bytes to the SoC:

- ``byte`` mode feeds the SoC's byte-stream port directly (no bit timing: fast);
- ``bit`` mode drives the real ``uart_rx`` pin and samples ``uart_tx`` at the configured
  baud, so the UART itself is exercised.

The clock runs inside the Verilog model with a 10 ns period; one simulated nanosecond is
therefore a tenth of a cycle whatever ``clock_hz`` says, and cycle counts are what matter.
A second client is sent one ``UNAVAILABLE`` response frame with an explanation and is
disconnected. SIGINT and SIGTERM (or the stop file :func:`serve` creates on a signal)
end the simulation cleanly.
"""

import collections
import os
import signal
import socket
import sys
import tempfile
from pathlib import Path

import cocotb
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge, Timer

from tritile.sw import protocol

__all__ = ["MODES", "TOPLEVEL", "soc_build", "serve", "board"]

MODES = ("byte", "bit")
TOPLEVEL = "tritile_soc"
_PERIOD_NS = 10
# Cycles the simulation runs between socket polls while the link is idle.
_IDLE_CYCLES = 2000
_REFUSAL = b"the simulated board already serves another client; close it first"


def soc_build(config, log=None):
    """Build the SoC with its byte port for ``config``; return the build directory."""
    from tritile.hw.soc import SoC
    from .verilator import build, clocked_wrapper, verilog_of

    verilog = verilog_of(SoC(config, byte_port=True), TOPLEVEL)
    return build({"soc.v": verilog, "soc_tb.v": clocked_wrapper(verilog, TOPLEVEL,
                                                                 _PERIOD_NS)},
                 f"{TOPLEVEL}_tb", timing=True, log=log)


def serve(config, *, port=0, host="127.0.0.1", mode="byte", log=None):
    """Run the simulated board until SIGINT/SIGTERM; it prints ``socket://HOST:PORT``."""
    from .verilator import run_cocotb
    from tritile.hw.uart import uart_divisor

    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be in [0, 65535], not {port}")
    build_dir = soc_build(config, log=log)
    with tempfile.TemporaryDirectory(prefix="tritile-board-") as work:
        stop_file = Path(work) / "stop"

        def request_stop(signum, frame):
            stop_file.touch()

        previous = {sig: signal.signal(sig, request_stop)
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            run_cocotb(build_dir, f"{TOPLEVEL}_tb", "tritile.sim.board",
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
        self.to_device = collections.deque()

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
                conn.setblocking(True)
                conn.sendall(protocol.encode_response(
                    0, 0, protocol.Status.UNAVAILABLE, _REFUSAL))
                conn.close()
        self._receive()

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


async def _byte_mode(dut, link, stopping):
    dut.use_byte_port.value = 1
    while not stopping():
        link.poll()
        if not link.to_device and not dut.host_tx__valid.value:
            dut.host_rx__valid.value = 0
            dut.host_tx__ready.value = 0
            await Timer(_IDLE_CYCLES * _PERIOD_NS, "ns")
            await RisingEdge(dut.clk)
            continue
        # Move bytes one per cycle both ways until the link has been quiet for a while.
        received = bytearray()
        quiet = 0
        while quiet < 64:
            pending = bool(link.to_device)
            dut.host_rx__valid.value = int(pending)
            if pending:
                dut.host_rx__payload.value = link.to_device[0]
            dut.host_tx__ready.value = 1
            await ReadOnly()
            taken = pending and bool(dut.host_rx__ready.value)
            out = int(dut.host_tx__payload.value) if dut.host_tx__valid.value else None
            await RisingEdge(dut.clk)
            if taken:
                link.to_device.popleft()
            if out is not None:
                received.append(out)
            quiet = 0 if taken or out is not None else quiet + 1
            if len(received) >= 4096 or (quiet == 8 and received):
                link.send(received)
                received.clear()
            if not link.to_device and quiet == 16:
                link.poll()
        link.send(received)


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
            byte = link.to_device.popleft()
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
    dut.host_rx__valid.value = 0
    dut.host_tx__ready.value = 0
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
