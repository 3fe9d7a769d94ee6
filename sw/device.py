"""Host driver: talk to a tritile device over a serial port, a pyserial URL, or a simulation.

::

    with Device.open("sim") as dev:              # or "/dev/ttyUSB1", "socket://host:port"
        print(dev.info()["config_id"])
        W = dev.upload_int8(Wq)
        y = dev.gemm(Xq, W, bias=b, mult=mult, shift=shift, relu=True)

Results equal :func:`tritile.sw.gemm_int8` / :func:`tritile.sw.ternary_matmul` followed by
:func:`tritile.sw.requantize` bit for bit. Problems larger than the device's memories are
split into tiles (:mod:`tritile.sw.tiling`); when K is split, the int32 partial sums are
added on the host and the requantization of the numerics contract (docs/numerics.md, the
same :func:`~tritile.sw.requantize`) is applied there. What differs between the engines
comes from the registry, :mod:`tritile.sw.engines`.
"""

import itertools
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from . import protocol
from .config import AcceleratorConfig, load_config
from .engines import ENGINES, engine, engine_for_numerics
from .numerics import MULT_BITS, SHIFT_MAX, SHIFT_MIN
from .program_model import descriptor_problems, layer_cycles
from .protocol import Opcode, RunFlag, Status, Target
from .tiling import tile_problem

__all__ = ["Device", "write_requests", "weight_requests", "feature_map_words",
           "DeviceError", "DeviceTimeout",
           "LinkProtocolError", "DeviceStatusError", "ConfigMismatchError", "DeviceBusyError",
           "WeightHandle"]


class DeviceError(Exception):
    """Base class of every error the driver raises about the device or the link."""


class DeviceTimeout(DeviceError):
    """The device did not answer in time (port silent, board off, wrong baud)."""


class LinkProtocolError(DeviceError, protocol.ProtocolError):
    """The device's bytes do not follow the protocol (or CRC errors persisted)."""


class DeviceStatusError(DeviceError):
    """The device answered a request with an error status.

    Members
    -------
    status : Status or int
        The status code.
    """

    def __init__(self, status, message):
        self.status = status
        super().__init__(message)


class ConfigMismatchError(DeviceError):
    """A handle, program or expectation was made for another config_id than the device's."""


class DeviceBusyError(DeviceError):
    """The device (or simulated board) is serving someone else."""


@dataclass(eq=False)
class WeightHandle:
    """Weights uploaded to (or tiled for) one device; pass it to :meth:`Device.gemm` or
    :meth:`Device.ternary` instead of the array.

    Members
    -------
    kind : str
        ``"int8"`` or ``"ternary"``: the numerics of the engine it is for
        (:attr:`tritile.sw.engines.EngineSpec.numerics`).
    weights : numpy.ndarray
        The K x N weights (a private copy).
    packing : str
        The weights' packing on the link: ``"int8"``, or ``"2bit"`` or ``"base3"``.
    config_id : str
        The device config the handle was made for.
    """

    kind: str
    weights: np.ndarray
    packing: str
    config_id: str
    id: int = field(default_factory=itertools.count().__next__)


class _Progress:
    """A one-line progress report on stderr, shown once a transfer has run for a second."""

    def __init__(self, label, total, enabled):
        self.label, self.total, self.enabled = label, total, enabled
        self.done = 0
        self.start = time.monotonic()
        self.shown = False

    def update(self, count):
        self.done += count
        elapsed = time.monotonic() - self.start
        if self.enabled and elapsed > 1.0:
            rate = self.done / elapsed
            print(f"\r{self.label}: {100 * self.done / self.total:5.1f}% "
                  f"{self.done}/{self.total} bytes, {rate / 1024:.1f} KiB/s",
                  end="", file=sys.stderr, flush=True)
            self.shown = True

    def close(self):
        if self.shown:
            print(file=sys.stderr, flush=True)


_URL = re.compile(r"serving on (socket://\S+)")


class _SimulatedBoard:
    """A ``tritile sim-board`` subprocess on a free port."""

    def __init__(self, config, mode, startup_timeout, netlist_args=()):
        self._tmp = None
        config_arg = config
        if isinstance(config, AcceleratorConfig) and not netlist_args:
            self._tmp = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
            self._tmp.write(config.to_json())
            self._tmp.close()
            config_arg = self._tmp.name
        board_args = (["--config", str(config_arg), "--uart", mode] if not netlist_args
                      else [*netlist_args, "--uart", "bit"])
        print("tritile: starting the simulated board (its first start builds the SoC in "
              "Verilator, which takes minutes)...", file=sys.stderr, flush=True)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tritile.sw.cli", "sim-board", "--port", "0", *board_args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.log = []
        found = {}
        ready = threading.Event()

        def read():
            for line in self.process.stdout:
                self.log = (self.log + [line.rstrip()])[-40:]
                match = _URL.search(line)
                if match and not ready.is_set():
                    found["url"] = match[1]
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(startup_timeout) or "url" not in found:
            self.close()
            raise DeviceError("the simulated board did not start:\n  " +
                              "\n  ".join(self.log[-15:]))
        self.url = found["url"]

    def close(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._tmp is not None:
            os.unlink(self._tmp.name)
            self._tmp = None


class Device:
    """A connection to one tritile device; use :meth:`open`.

    Parameters
    ----------
    port : serial.Serial
        An open pyserial port (any URL pyserial supports).
    url : str
        Where it leads, for messages.
    baud : int
        Baud rate of the link, for timeouts.
    timeout : float
        Seconds to wait for a response beyond the time its bytes take on the wire.
    retries : int
        Attempts per request after a timeout or a CRC error, before raising.
    progress : bool or None
        Show progress of transfers that take over a second; None shows it on a terminal.
    cycle_rate : float
        Clock cycles per second the device runs at, for RUN timeouts.
    """

    def __init__(self, port, url, *, baud, timeout=2.0, retries=3, progress=None,
                 cycle_rate=None, expect_config_id=None, board=None):
        self._port = port
        self.url = url
        self._baud = baud
        self._cycle_rate = cycle_rate
        self.config = None             # known once the capability has been read
        self._backlog = []
        self.timeout = timeout
        self.retries = retries
        self.progress = sys.stderr.isatty() if progress is None else progress
        self._board = board
        self._seq = 0
        self._decoder = protocol.FrameDecoder()
        self._resident = {}            # engine name -> (handle id, tile, packing) in its memory
        self._params = None            # PARAMS bytes last written
        self._program = {}             # layer index -> descriptor fields last loaded
        self.stats = {"bytes_sent": 0, "bytes_received": 0, "retries": 0, "runs": 0,
                      "busy_cycles": 0, "mac_cycles": 0}
        self.last_run = None
        try:
            self._info, self.config = self._read_info()
        except BaseException:
            self.close()
            raise
        self._cycle_rate = cycle_rate or self.config.clock_hz
        if expect_config_id is not None and expect_config_id != self._info["config_id"]:
            self.close()
            raise ConfigMismatchError(
                f"device at {url} has config_id {self._info['config_id']}, but "
                f"{expect_config_id} was expected")

    # --- opening and closing -------------------------------------------------------------

    @classmethod
    def open(cls, url, *, config="sim-small", mode="byte", baudrate=None, timeout=None,
             retries=3, progress=None, expect_config_id=None, startup_timeout=900,
             netlist=None, cell_models=None):
        """Open a device.

        Parameters
        ----------
        url : str
            ``"sim"`` starts a simulated board (``config``, ``mode`` "byte" or "bit") on a
            free port and stops it on :meth:`close`; anything else goes to pyserial's
            ``serial_for_url``: a port name (``/dev/ttyUSB1``, ``COM3``) or a URL such as
            ``socket://127.0.0.1:PORT``.
        baudrate : int or None
            Serial baud rate; default the config's (``sim-small`` for a port name).
        expect_config_id : str or None
            Raise :class:`ConfigMismatchError` unless the device has this config_id.
        netlist : str or None
            With ``"sim"``: simulate this ``tritile build`` directory's synthesized netlist
            instead of the RTL (``config`` is then the build's, ``mode`` "bit"; slow);
            ``cell_models`` names a Verilog file replacing yosys' models of its cells.
        """
        import serial

        board = None
        cycle_rate = None
        if url == "sim":
            netlist_args = ()
            if netlist is not None:
                netlist_args = ("--netlist", str(netlist), *(
                    ("--cell-models", str(cell_models)) if cell_models else ()))
                config, mode = _netlist_config(netlist), "bit"
            board = _SimulatedBoard(load_config(config), mode, startup_timeout,
                                    netlist_args)
            url = board.url
            # A simulation runs at least this many cycles per wall-clock second.
            cycle_rate = 2e3 if netlist else 2e4 if mode == "bit" else 2e5
            timeout = (60.0 if netlist else 10.0) if timeout is None else timeout
        baud = baudrate or load_config(config).baud
        try:
            port = serial.serial_for_url(url, baudrate=baud, timeout=0.05)
        except (serial.SerialException, ValueError) as exc:
            if board is not None:
                board.close()
            raise DeviceError(f"cannot open {url}: {exc}") from None
        try:
            return cls(port, url, baud=baud, timeout=2.0 if timeout is None else timeout,
                       retries=retries, progress=progress, cycle_rate=cycle_rate,
                       expect_config_id=expect_config_id, board=board)
        except BaseException:
            if board is not None:
                board.close()
            raise

    def close(self):
        """Close the port (and stop the simulated board this device started)."""
        if self._port is not None:
            self._port.close()
            self._port = None
        if self._board is not None:
            self._board.close()
            self._board = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- requests ------------------------------------------------------------------------

    def _send(self, data):
        if self._port is None:
            raise DeviceError(f"device at {self.url} is closed")
        try:
            self._port.write(data)
        except Exception as exc:      # pyserial raises several types for a dead port
            raise DeviceError(f"cannot write to {self.url}: {exc}") from None
        self.stats["bytes_sent"] += len(data)

    def send_raw(self, data):
        """Send ``data`` as it is, for tests of the link (corrupted, partial, foreign frames).

        The device's answers are read with :meth:`receive_frame`; :meth:`resync` brings
        the link back to a frame boundary afterwards.
        """
        self._send(data)

    def receive_frame(self, timeout=None):
        """Return the next frame from the device, whatever its status, or None after
        ``timeout`` seconds (default: the device's timeout)."""
        return self._receive(time.monotonic() + (self.timeout if timeout is None else timeout))

    def _receive(self, deadline):
        """Return the next frame from the device, or None at ``deadline``."""
        while True:
            if self._backlog:
                return self._backlog.pop(0)
            if time.monotonic() > deadline:
                return None
            try:
                data = self._port.read(max(1, self._port.in_waiting))
                if data and self._port.in_waiting:
                    # pyserial's socket:// reports 1 byte waiting however many are
                    # buffered: take them in one non-blocking read, not a call per byte.
                    timeout, self._port.timeout = self._port.timeout, 0
                    try:
                        data += self._port.read(1 << 16)
                    finally:
                        self._port.timeout = timeout
            except Exception as exc:
                raise DeviceError(f"cannot read from {self.url}: {exc}") from None
            if data:
                self.stats["bytes_received"] += len(data)
                self._backlog += self._decoder.feed(data)

    def _wire_seconds(self, nbytes):
        seconds = nbytes * 10 / self._baud
        if self._cycle_rate is not None and self.config is not None:
            # A simulated wire is as slow as the simulation runs.
            seconds *= max(1.0, self.config.clock_hz / self._cycle_rate)
        return seconds

    def _next_seq(self):
        self._seq = (self._seq + 1) & 0xFF
        return self._seq

    def _check_response(self, opcode, frame):
        status = frame.status
        if status != Status.OK:
            name = status.name if isinstance(status, Status) else f"status {status}"
            raise DeviceStatusError(status, f"device at {self.url} answered {name} to "
                                            f"{opcode.name}")
        return frame

    def request(self, opcode, args=b"", data=b"", *, extra_seconds=0.0):
        """Send one request and return its response frame (status OK).

        Retries a bounded number of times after a timeout or a ``BAD_CRC`` answer.
        """
        return self._pipeline([(opcode, args, data)], extra_seconds=extra_seconds)[0]

    def _pipeline(self, requests, *, window=2, extra_seconds=0.0, progress=None):
        """Send requests with up to ``window`` in flight; return their responses in order.

        Each request is retried on its own after a timeout or a CRC error; writes to
        distinct addresses may therefore complete in any order.
        """
        results = [None] * len(requests)
        attempts = [0] * len(requests)
        queue = list(range(len(requests)))
        in_flight = {}                        # seq -> (index, deadline)
        while queue or in_flight:
            while queue and len(in_flight) < window:
                index = queue.pop(0)
                opcode, args, data = requests[index]
                seq = self._next_seq()
                frame = protocol.encode_request(opcode, seq, args, data)
                attempts[index] += 1
                self._send(frame)
                budget = (self.timeout + extra_seconds +
                          2 * self._wire_seconds(len(frame) + protocol.MAX_DATA + 16) * window)
                in_flight[seq] = (index, time.monotonic() + budget)
            deadline = min(d for _, d in in_flight.values())
            frame = self._receive(deadline)
            if frame is None:
                for seq, (index, when) in list(in_flight.items()):
                    if when <= time.monotonic():
                        del in_flight[seq]
                        self._retry(index, attempts, queue, requests, "no response")
                continue
            if frame.opcode == protocol.RESPONSE_BIT and frame.status == Status.UNAVAILABLE:
                # The device answers opcode 0 UNKNOWN_OPCODE; this is the board's refusal.
                raise DeviceBusyError(f"{self.url}: {frame.data.decode(errors='replace')}")
            index = in_flight.get(frame.seq, (None,))[0]
            if index is None or frame.opcode != requests[index][0] | protocol.RESPONSE_BIT:
                continue              # a stale answer to an abandoned or retried request
            opcode = Opcode(requests[index][0])
            del in_flight[frame.seq]
            if frame.payload[:1] == bytes([Status.BAD_CRC]):
                self._retry(index, attempts, queue, requests, "CRC errors")
                continue
            results[index] = self._check_response(opcode, frame)
            if progress is not None:
                progress.update(len(requests[index][2]))
        return results

    def _retry(self, index, attempts, queue, requests, why):
        opcode = Opcode(requests[index][0])
        if attempts[index] > self.retries:
            if why == "no response":
                raise DeviceTimeout(f"no response from {self.url} to {opcode.name} after "
                                    f"{attempts[index]} attempts (is the device on, and is "
                                    f"{self._baud} baud right?)")
            raise LinkProtocolError(f"{opcode.name} to {self.url} failed {attempts[index]} "
                                    f"times with {why}")
        self.stats["retries"] += 1
        queue.insert(0, index)

    # --- device information ------------------------------------------------------------

    def _read_info(self):
        frame = self.request(Opcode.INFO)
        try:
            return protocol.parse_capability(frame.data)
        except protocol.ProtocolError as exc:
            raise LinkProtocolError(f"device at {self.url}: {exc}") from None

    def info(self):
        """Return the device's config parameters, ``config_id``, engines and version."""
        return dict(self._info)

    def ping(self):
        """Check that the device answers; return the round-trip time in seconds."""
        start = time.monotonic()
        self.request(Opcode.PING)
        return time.monotonic() - start

    def resync(self):
        """Bring the link back to a frame boundary; return the ping time.

        Sends :data:`~tritile.sw.protocol.MAX_PAYLOAD` + framing zero bytes, which end any
        partial frame the device holds (it then hunts for a sync byte and ignores the
        rest), discards the answers that produces, and pings.
        """
        self._send(bytes(protocol.MAX_PAYLOAD + protocol.FRAMING_SIZE))
        quiet_until = time.monotonic() + 0.2
        while time.monotonic() < quiet_until:
            if self._port.read(max(1, self._port.in_waiting)):
                quiet_until = time.monotonic() + 0.2
        self._decoder = protocol.FrameDecoder()
        self._backlog = []
        return self.ping()

    def counters(self):
        """Return the device's link counters (frames, CRC errors, timeouts, ...)."""
        return protocol.parse_stats(self.request(Opcode.STATS).data)

    # --- memories ------------------------------------------------------------------------

    def write(self, target, image, *, addr=0, run=0, stride=0, label="upload"):
        """Write ``image`` to ``target`` from byte ``addr``, skipping unused word bytes.

        With ``run`` and ``stride`` set, ``image`` is a whole number of ``stride``-byte
        words of which only the first ``run`` bytes are sent.
        """
        requests = write_requests(target, image, addr=addr, run=run, stride=stride)
        self._forget(target)
        progress = _Progress(label, sum(len(r[2]) for r in requests), self.progress)
        try:
            self._pipeline(requests, progress=progress)
        finally:
            progress.close()

    def _forget(self, target):
        """Drop what the driver remembers of ``target``'s contents (resident weights, the
        last PARAMS): a write changes them (e.g. a program's upload)."""
        if target == Target.PARAMS:
            self._params = None
        for spec in ENGINES.values():
            if target in spec.targets[1:]:
                self._resident.pop(spec.name, None)

    def read(self, target, addr, count, *, label="download"):
        """Return ``count`` bytes of ``target`` from ``addr`` (output memory)."""
        requests = []
        for offset in range(0, count, protocol.MAX_RESPONSE_DATA):
            size = min(protocol.MAX_RESPONSE_DATA, count - offset)
            requests.append((Opcode.READ, protocol.read_args(target, addr + offset, size),
                             b""))
        frames = self._pipeline(requests, window=1)
        return b"".join(frame.data for frame in frames)

    def _write_params(self, bias, mult, shift):
        records = protocol.param_records(bias, mult, shift)
        if records != self._params:
            self._params = None
            self.write(Target.PARAMS, records, label="parameters")
            self._params = records

    # --- handles -------------------------------------------------------------------------

    def _check_handle(self, handle, kind):
        if handle.config_id != self._info["config_id"]:
            raise ConfigMismatchError(
                f"the weight handle was made for config_id {handle.config_id}, but the "
                f"device at {self.url} has {self._info['config_id']}")
        if handle.kind != kind:
            raise ValueError(f"a {handle.kind} weight handle cannot be used for {kind} work")

    def upload_int8(self, Wq):
        """Upload int8 K x N weights; return a handle for :meth:`gemm`.

        Weights that fit the weight memory are sent now and stay resident until another
        upload replaces them; larger ones are sent tile by tile when used.
        """
        return self._upload(engine("systolic"), "Wq", Wq, None)

    def upload_ternary(self, T, packing="base3"):
        """Upload ternary K x N weights packed ``"base3"`` or ``"2bit"``; return a handle."""
        return self._upload(engine("ternary"), "T", T, packing)

    def _upload(self, spec, name, W, packing):
        packing = spec.check_packing(packing)
        handle = self._handle(W, spec.numerics, name, packing)
        tiling = tile_problem(spec, self.config, 1, *handle.weights.shape)
        if tiling.weights_fit:
            self._load_weights(spec, handle, tiling.k_ranges[0], tiling.n_ranges[0])
        return handle

    def _load_weights(self, spec, handle, k_range, n_range):
        key = (handle.id, k_range, n_range, handle.packing)
        if self._resident.get(spec.name) == key:
            return
        W = np.ascontiguousarray(handle.weights[slice(*k_range), slice(*n_range)])
        self._resident.pop(spec.name, None)
        requests = weight_requests(self.config, spec, W, handle.packing)
        progress = _Progress(f"{handle.kind} weights", sum(len(r[2]) for r in requests),
                             self.progress)
        try:
            self._pipeline(requests, progress=progress)
        finally:
            progress.close()
        self._resident[spec.name] = key

    # --- compute -------------------------------------------------------------------------

    def _compute(self, spec, X, handle, bias, mult, shift, relu):
        m, k = X.shape
        n = handle.weights.shape[1]
        raw = mult is None
        if raw and (shift is not None or relu):
            raise ValueError("shift and relu need mult: without mult the result is the raw "
                             "int32 accumulator")
        if not raw:
            mult = _int_vector("mult", mult, n, 0, (1 << MULT_BITS) - 1)
            shift = _int_vector("shift", shift, n, SHIFT_MIN, SHIFT_MAX)
        if bias is not None:
            bias = _int_vector("bias", bias, n, -(1 << 31), (1 << 31) - 1)
        tiling = tile_problem(spec, self.config, m, k, n)
        calls = tiling.calls(raw, relu)
        outputs = []
        for call in calls:
            self._write_params(*tiling.params(call, bias, mult, shift))
            self._load_weights(spec, handle, call.depth, call.cols)
            outputs.append(self._run(spec, X[slice(*call.rows), slice(*call.depth)],
                                     call.shape[2], call.raw, call.relu))
        return tiling.assemble(calls, outputs, bias, mult, shift, relu)

    def _run(self, spec, X, n, raw, relu):
        m, k = X.shape
        image = spec.memory_image(self.config, np.ascontiguousarray(X),
                                  np.zeros((k, n), np.int8))[0]
        run, stride = spec.act_runs(self.config)
        self.write(spec.protocol_target(0), image, run=run, stride=stride,
                   label="activations")
        plan = spec.plan(self.config, m, k, n)
        flags = (RunFlag.RAW if raw else 0) | (RunFlag.RELU if relu else 0)
        frame = self.request(Opcode.RUN, protocol.run_args(spec.protocol_id, flags, m, k, n),
                             extra_seconds=2 * plan.cycles / self._cycle_rate)
        busy, macs = protocol.parse_run(frame.data)
        self.last_run = {"engine": spec.name, "m": m, "k": k, "n": n,
                         "busy_cycles": busy, "mac_cycles": macs,
                         "predicted_cycles": plan.cycles}
        self.stats["runs"] += 1
        self.stats["busy_cycles"] += busy
        self.stats["mac_cycles"] += macs
        if raw:
            data = self.read(Target.OUTPUT32, 0, 4 * m * n)
            return np.frombuffer(data, "<i4").reshape(m, n)
        data = self.read(Target.OUTPUT8, 0, m * n)
        return np.frombuffer(data, np.int8).reshape(m, n)

    def gemm(self, Xq, W, bias=None, mult=None, shift=None, relu=False):
        """Return ``gemm_int8(Xq, W, bias)``, requantized per channel when ``mult`` is given.

        ``W`` is an int8 K x N array or a handle from :meth:`upload_int8`. Without ``mult``
        the result is the int32 accumulator; with ``mult`` and ``shift`` it is
        ``requantize(acc, mult, shift, relu)`` (int8).
        """
        Xq = _int_matrix("Xq", Xq, np.int8)
        handle = self._handle(W, "int8", "W", "int8")
        _check_inner(Xq, handle.weights, "Xq", "W")
        return self._compute(engine("systolic"), Xq, handle, bias, mult, shift, relu)

    def ternary(self, q, T, mult=None, shift=None, relu=False, packing="base3"):
        """Return ``ternary_matmul(q, T)``, requantized per channel when ``mult`` is given.

        ``T`` is a ternary int8 K x N array (sent in ``packing``) or a handle from
        :meth:`upload_ternary`.
        """
        q = _int_matrix("q", q, np.int8)
        spec = engine("ternary")
        handle = self._handle(T, "ternary", "T", spec.check_packing(packing))
        _check_inner(q, handle.weights, "q", "T")
        return self._compute(spec, q, handle, None, mult, shift, relu)

    # --- program mode (protocol version 3) ------------------------------------------------

    def _check_layers(self, first, count):
        limit = self.config.max_layers
        if not limit:
            raise DeviceError(f"device at {self.url} (config {self._info['config_id']}) has "
                              f"no program mode: its max_layers is 0")
        if count < 1:
            raise ValueError(f"a program runs at least 1 layer, not {count}")
        if not (0 <= first and first + count <= limit):
            raise ValueError(f"layers {first} .. {first + count - 1} are outside the "
                             f"device's {limit} descriptors")

    def load_program(self, descriptors, *, check=True):
        """Write layer descriptors (bytes from :func:`~tritile.sw.protocol.encode_layer`, or
        dicts of its fields) to the device's descriptor memory, layer 0 first.

        The device refuses a layer whose shape breaks RUN's rules when it reaches it
        (BAD_SHAPE); it does not check a descriptor's walk, weight, parameter, destination
        or pooling ranges against its memories. With ``check`` (the default) every
        descriptor is checked against them here (:func:`~tritile.sw.program_model.
        descriptor_problems`), and a bad one is refused before anything is sent.
        """
        image = [d if isinstance(d, (bytes, bytearray)) else protocol.encode_layer(**d)
                 for d in descriptors]
        self._check_layers(0, len(image))
        try:    # 80 bytes each, reserved bytes zero
            fields = [protocol.decode_layer(bytes(d)) for d in image]
        except protocol.ProtocolError as exc:
            raise ValueError(str(exc)) from None
        for index, layer in enumerate(fields if check else ()):
            problems = descriptor_problems(self.config, layer)
            if problems:
                raise ValueError(f"layer {index} of the program does not fit device "
                                 f"{self._info['config_id']}: {'; '.join(problems)}")
        self._program = {}
        self.write(Target.PROGRAM, b"".join(image), label="program")
        self._program = dict(enumerate(fields))

    def run_program(self, first=0, count=None):
        """Run layers ``first`` .. ``first + count - 1`` (default: to the last loaded);
        return each layer's ``{"busy_cycles", "mac_cycles"}``."""
        count = len(self._program) - first if count is None else count
        self._check_layers(first, count)
        cycles = 0
        for index in range(first, first + count):
            layer = self._program.get(index)
            if layer is not None and layer["engine"] in set(protocol.Engine):
                try:
                    cycles += layer_cycles(self.config, protocol.Engine(layer["engine"]),
                                           layer["m"], layer["k"], layer["n"])
                except ValueError:
                    break       # the device ends the program there with BAD_SHAPE
        frame = self.request(Opcode.RUN_PROGRAM, protocol.run_program_args(first, count),
                             extra_seconds=2 * cycles / self._cycle_rate)
        layers = [{"busy_cycles": busy, "mac_cycles": macs}
                  for busy, macs in protocol.parse_program_run(frame.data, count)]
        self.stats["runs"] += count
        self.stats["busy_cycles"] += sum(layer["busy_cycles"] for layer in layers)
        self.stats["mac_cycles"] += sum(layer["mac_cycles"] for layer in layers)
        return layers

    def write_input_map(self, engine_name, x, base=0):
        """Write int8 map ``x`` (NHWC, or M x K for a dense layer) to ``engine_name``'s
        activation memory from word ``base``, in the layout of docs/protocol.md.

        A map of fewer channels than one word holds sends only its channels: the bytes
        past them keep what they held, which never counts (a layer's weights for
        channels past C are zero rows).
        """
        spec = engine(engine_name)
        run, stride = spec.act_runs(self.config)
        x = np.asarray(x)
        if x.dtype != np.int8 or 0 in x.shape:
            raise ValueError(f"x must be a non-empty int8 array, not {x.dtype} of shape "
                             f"{x.shape}")
        sent = min(run, x.shape[-1])
        words = feature_map_words(x, run)
        image = np.zeros((len(words), stride), np.uint8)
        image[:, :run] = words.view(np.uint8)
        self.write(spec.protocol_target(0), image.tobytes(), addr=base * stride, run=sent,
                   stride=stride, label="input map")

    def write_layer_weights(self, engine_name, W, base=0, packing=None):
        """Write a program layer's K x N weights ``W`` to ``engine_name``'s weight memory
        from word ``base`` (its descriptor's ``weight_base``), where they stay resident.

        K is the layer's ``groups * chunk`` (conv weights padded per chunk, as
        :meth:`~tritile.sw.engines.EngineSpec.conv_operands` returns them).
        """
        spec = engine(engine_name)
        packing = spec.check_packing(packing)
        W = np.asarray(W)
        if W.ndim != 2 or W.dtype != np.int8 or 0 in W.shape:
            raise ValueError(f"W must be a non-empty 2-D int8 array, not {W.dtype} of "
                             f"shape {W.shape}")
        core_target = spec.weight_core_target(packing)
        image = spec.memory_image(self.config, np.zeros((1, W.shape[0]), np.int8), W,
                                  packing)[core_target]
        run, stride = spec.weight_runs(self.config, packing)
        self.write(spec.protocol_target(core_target), image, addr=base * stride, run=run,
                   stride=stride, label=f"{spec.name} weights")
        self._resident.pop(spec.name, None)

    def write_layer_params(self, base, bias, mult, shift):
        """Write per-channel ``bias``, ``mult``, ``shift`` of a program layer to PARAMS
        records ``base`` .. (its descriptor's ``param_base``)."""
        self._params = None
        self.write(Target.PARAMS, protocol.param_records(bias, mult, shift),
                   addr=base * protocol.PARAM_RECORD.size, label="parameters")

    def read_output(self, m, n, *, raw=False, out_base=0):
        """Return the ``m x n`` results at output index ``out_base`` (int32 with ``raw``)."""
        if raw:
            data = self.read(Target.OUTPUT32, 4 * out_base, 4 * m * n)
            return np.frombuffer(data, "<i4").reshape(m, n)
        return np.frombuffer(self.read(Target.OUTPUT8, out_base, m * n),
                             np.int8).reshape(m, n)

    def _handle(self, weights, kind, name, packing):
        if isinstance(weights, WeightHandle):
            self._check_handle(weights, kind)
            return weights
        weights = _int_matrix(name, weights, np.int8)
        engine_for_numerics(kind).check_weights(name, weights)
        return WeightHandle(kind, weights.copy(), packing, self._info["config_id"])


def _netlist_config(build_dir):
    from tritile.sim.netlist import NetlistError, read_netlist_info

    try:
        return AcceleratorConfig.from_dict(read_netlist_info(build_dir)["config"])
    except NetlistError as exc:
        raise DeviceError(str(exc)) from None


def write_requests(target, image, *, addr=0, run=0, stride=0):
    """Return the WRITE requests ``[(opcode, args, data)]`` that load ``image`` at ``addr``.

    With ``run`` and ``stride``, ``image`` is a whole number of ``stride``-byte words of
    which only the first ``run`` bytes are sent; each frame carries whole runs.
    """
    image = bytes(image)
    if run and run != stride:
        data = np.frombuffer(image, np.uint8).reshape(-1, stride)[:, :run].tobytes()
        per_frame = protocol.MAX_DATA // run * run
    else:
        data, run, stride, per_frame = image, 0, 0, protocol.MAX_DATA
    return [(Opcode.WRITE,
             protocol.write_args(target, addr + (offset // run * stride if run else offset),
                                 run, stride),
             data[offset:offset + per_frame])
            for offset in range(0, len(data), per_frame)]


def weight_requests(config, spec, W, packing=None):
    """Return the WRITE requests that upload one tile of weights ``W`` (K x N) to engine
    ``spec`` (an :class:`~tritile.sw.engines.EngineSpec` or its name) in ``packing``."""
    spec = engine(spec)
    core_target = spec.weight_core_target(packing)
    image = spec.memory_image(config, np.zeros((1, W.shape[0]), np.int8), W,
                              packing)[core_target]
    run, stride = spec.weight_runs(config, packing)
    return write_requests(spec.protocol_target(core_target), image, run=run, stride=stride)


def feature_map_words(x, chunk):
    """Return the activation-memory words of int8 map ``x`` as rows of ``chunk`` bytes.

    ``x`` is NHWC (B x H x W x C) or, for a dense layer, M x K (H = 1, W = M). Pixel
    (b, y, x), channel chunk ct is word ``((b*H + y)*W + x)*CT + ct`` with
    ``CT = ceil(C / chunk)``; channel c sits in byte ``c % chunk``; channels past C are 0.
    """
    x = np.asarray(x)
    if x.ndim == 2:
        x = x[None, None]
    if x.ndim != 4:
        raise ValueError(f"a feature map is NHWC or M x K, not of shape {x.shape}")
    channels = x.shape[3]
    padded = np.zeros(x.shape[:3] + (-(-channels // chunk) * chunk,), np.int8)
    padded[..., :channels] = x
    return padded.reshape(-1, chunk)


def _int_matrix(name, value, dtype):
    array = np.asarray(value)
    if array.dtype != dtype or array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D {np.dtype(dtype)} array, not "
                         f"{array.ndim}-D {array.dtype}")
    if 0 in array.shape:
        raise ValueError(f"{name} must not be empty, but has shape {array.shape}")
    return array


def _int_vector(name, value, n, lo, hi):
    if value is None:
        raise ValueError(f"{name} is required with mult")
    array = np.asarray(value)
    if array.dtype.kind not in "iu" or array.shape != (n,):
        raise ValueError(f"{name} must be an integer array of shape ({n},), not "
                         f"{array.dtype} of shape {array.shape}")
    if array.size and (array.min() < lo or array.max() > hi):
        raise ValueError(f"{name} values must be in [{lo}, {hi}]")
    return array.astype(np.int64)


def _check_inner(X, W, xname, wname):
    if X.shape[1] != W.shape[0]:
        raise ValueError(f"{xname} is {X.shape[0]}x{X.shape[1]} but {wname} is "
                         f"{W.shape[0]}x{W.shape[1]}: inner dimensions differ")
