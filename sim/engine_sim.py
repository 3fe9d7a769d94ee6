"""Run either engine in Verilator under cocotb, cycle-accurately: the one harness of the
tests, ``tritile sim`` and the benchmarks.

Every engine is a :class:`~tritile.hw.requantizer.StandaloneEngine` with the same ports,
so one Verilog harness serves both. It owns the clock, plays a problem's memory image and
output-stage parameters into the engine's ``write`` and ``param_write`` streams from
``$readmemh`` files at one beat per cycle, optionally drops ``out.ready`` on
pseudo-random cycles (backpressure), and appends every result to a text file. cocotb
touches the design a few times per problem (load, start, wait for ``done``), so the
simulation runs at Verilator's own speed. Payloads are packed and unpacked with the
engines' own ``amaranth.lib.data`` layouts; what differs between the engines (memory
images, planner, golden model) comes from :mod:`tritile.sw.engines`.

:func:`run_engine` is the entry point; this module is also the cocotb test module it runs.
"""

import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tritile.sw.config import AcceleratorConfig
from tritile.sw.conv import Window, conv2d_int8, conv2d_ternary
from tritile.sw.engines import engine
from tritile.sw.numerics import requantize
from tritile.sw.planner import plan_conv

__all__ = ["EngineProblem", "EngineRun", "start_fields", "SimulationError", "harness_verilog",
           "build_engine_model", "run_engine"]

_TOP = "engine_harness"
_ENGINE = "engine"
_PERIOD_NS = 10
_DIR = "TRITILE_ENGINE_SIM_DIR"


class SimulationError(RuntimeError):
    """The simulated engine broke its contract (results missing, repeated or misplaced)."""


def start_fields(walk, m, k, n, *, raw=True, relu=False, weight_base=0):
    """Return an engine core's ``start`` payload fields for an M x K x N problem read by
    ``walk`` (:meth:`tritile.sw.engines.EngineSpec.walk`), the walk's steps as two's
    complement."""
    from tritile.hw.facts import START_FIELDS

    fields = {**dataclasses.asdict(walk), "m": m, "k": k, "n": n, "raw": int(raw),
              "relu": int(relu), "weight_base": weight_base}
    return {name: fields[name] % (1 << width) for name, width in START_FIELDS.items()}


@dataclasses.dataclass
class EngineProblem:
    """One engine call: ``x @ w (+ bias)``, raw int32 or requantized by ``mult``/``shift``.

    A convolution when ``window`` is given: ``x`` is then an NHWC map that the engine
    reads in place through its implicit-im2col walk, and the result the convolution's
    (B*OH*OW) x N output pixels.

    Members
    -------
    x : numpy.ndarray
        int8, M x K activations, or a B x H x W x C map with ``window``.
    w : numpy.ndarray
        int8, K x N weights (values in {-1, 0, 1} for the ternary engine); with
        ``window``, the (kh*kw*C) x N im2col weight matrix
        (:func:`tritile.sw.conv.conv_weight_matrix`).
    bias, mult, shift : numpy.ndarray or None
        int32 per output channel; without ``mult`` and ``shift`` the result is raw int32.
    relu : bool
        Clamp requantized results at 0.
    packing : str or None
        The weights' packing (the engine's default for None).
    throttle : bool
        Drop ``out.ready`` on pseudo-random cycles, to test backpressure.
    window : Window or None
        The convolution's window; None for a dense problem.
    """

    x: np.ndarray
    w: np.ndarray
    bias: np.ndarray | None = None
    mult: np.ndarray | None = None
    shift: np.ndarray | None = None
    relu: bool = False
    packing: str | None = None
    throttle: bool = False
    window: Window | None = None

    @property
    def raw(self):
        """Whether the engine returns raw int32 accumulators."""
        return self.mult is None

    @property
    def shape(self):
        """``(m, k, n)`` of the GEMM (a convolution's K without channel padding)."""
        if self.window is None:
            return self.x.shape[0], self.x.shape[1], self.w.shape[1]
        oh, ow = self.window.output_size(self.x.shape[1], self.x.shape[2])
        return self.x.shape[0] * oh * ow, self.w.shape[0], self.w.shape[1]

    def plan(self, spec, config):
        """Return the engine's :class:`~tritile.sw.planner.EnginePlan` of the problem."""
        spec = engine(spec)
        if self.window is None:
            return spec.plan(config, *self.shape)
        return plan_conv(config, spec.name, self.window, *self.x.shape, self.w.shape[1])

    def start_fields(self, spec, config):
        """Return the engine's ``start`` fields (see :func:`start_fields`)."""
        plan = self.plan(spec, config)
        walk = engine(spec).walk(config, self.x.shape, self.window)
        return start_fields(walk, plan.m, plan.k, plan.n, raw=self.raw, relu=self.relu)

    def memory_image(self, spec, config):
        """Return ``{core target: bytes}`` that loads the problem into engine ``spec``."""
        spec = engine(spec)
        if self.window is None:
            return spec.memory_image(config, self.x, self.w, self.packing)
        return spec.conv_image(config, self.x, self.w, self.window, self.packing)

    def expected(self, spec):
        """Return the golden result of engine ``spec`` (validates dtypes, shapes, values)."""
        spec = engine(spec)
        if (self.mult is None) != (self.shift is None):
            raise ValueError("give both mult and shift, or neither (raw int32 results)")
        if self.relu and self.raw:
            raise ValueError("relu needs mult and shift (raw int32 results have no ReLU)")
        spec.check_weights("w", np.asarray(self.w))
        if self.window is None:
            acc = spec.golden(self.x, self.w, self.bias)
        elif spec.numerics == "int8":
            acc = conv2d_int8(self.x, self.w, self.window, self.bias)
        else:
            acc = conv2d_ternary(self.x, self.w, self.window)
            if self.bias is not None:
                acc = (acc + np.asarray(self.bias, np.int32)).astype(np.int32)
        acc = acc.reshape(-1, acc.shape[-1])
        return acc if self.raw else requantize(acc, self.mult, self.shift, relu=self.relu)


@dataclasses.dataclass
class EngineRun:
    """What one :class:`EngineProblem` produced in simulation.

    Members
    -------
    out : numpy.ndarray
        M x N, int32 (raw) or int8 (requantized).
    busy_cycles, mac_cycles : int
        The engine's counters (their meaning is the engine's: docs/systolic.md,
        docs/ternary.md).
    predicted_cycles : int
        The planner's cycles for the problem.
    macs : int
        Useful multiply-accumulates, ``M * K * N``.
    peak_macs_per_cycle : int
        MACs per cycle at full rate.
    wall_seconds : float
        Wall time of the compute phase (start to ``done``).
    """

    out: np.ndarray
    busy_cycles: int
    mac_cycles: int
    predicted_cycles: int
    macs: int
    peak_macs_per_cycle: int
    wall_seconds: float

    @property
    def utilization(self):
        """Useful MACs over the MACs the engine could have done in :attr:`busy_cycles`."""
        return self.macs / (self.peak_macs_per_cycle * self.busy_cycles)

    @property
    def cycles_per_second(self):
        """Simulated cycles per wall-clock second of the compute phase."""
        return self.busy_cycles / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def to_dict(self):
        """Return the figures (not the result) for JSON output."""
        return {"cycles": self.busy_cycles, "mac_cycles": self.mac_cycles,
                "predicted_cycles": self.predicted_cycles, "macs": self.macs,
                "utilization": self.utilization, "wall_seconds": self.wall_seconds,
                "cycles_per_second": self.cycles_per_second}


def _layouts():
    from tritile.hw.requantizer import PARAM_LAYOUT, RESULT_LAYOUT, START_LAYOUT, WRITE_LAYOUT

    return WRITE_LAYOUT, PARAM_LAYOUT, START_LAYOUT, RESULT_LAYOUT


def _pack(layout, **fields):
    """Return the bits of a payload of ``layout``, as they appear on a Verilog port."""
    return layout.const(fields).as_bits()


def _write_beats(spec, config):
    """Most write beats one problem takes: every byte of every memory of the engine."""
    return sum(spec.target_size(config, target) for target in spec.targets)


def harness_verilog(spec, config):
    """Return the Verilog of the harness around the ``engine`` module of ``spec``."""
    write, param, start, result = _layouts()
    writes = _write_beats(spec, config)
    write_bits = max(1, (writes - 1).bit_length())
    param_bits = max(1, (config.max_n - 1).bit_length())
    row, col, value = (result[name] for name in ("row", "col", "value"))
    return f"""`timescale 1ns/1ps
// Plays writes.hex / params.hex into the engine on `load`, logs results to results.txt.
module {_TOP} (
    input  wire load,
    input  wire [31:0] n_writes,
    input  wire [31:0] n_params,
    input  wire throttle,
    output reg  load_done,
    input  wire start_valid,
    input  wire [{start.size - 1}:0] start_payload,
    output wire start_ready,
    output wire busy,
    output wire done,
    output wire [31:0] busy_cycles,
    output wire [31:0] mac_cycles,
    output reg  [31:0] results
);
  reg clk = 1'b0;
  always #{_PERIOD_NS // 2} clk = ~clk;

  reg [{write.size - 1}:0] write_beats [0:{writes - 1}];
  reg [{param.size - 1}:0] param_beats [0:{config.max_n - 1}];
  reg loading = 1'b0;
  reg [31:0] write_index = 32'd0;
  reg [31:0] param_index = 32'd0;
  reg [15:0] lfsr = 16'hACE1;
  wire write_valid = loading && (write_index < n_writes);
  wire param_valid = loading && (param_index < n_params);
  wire write_ready;
  wire param_ready;
  wire out_valid;
  wire out_ready = !throttle || lfsr[0];
  wire [{result.size - 1}:0] out_payload;
  integer log;

  initial begin
    load_done = 1'b0;
    results = 32'd0;
    log = $fopen("results.txt", "w");
  end

  always @(posedge clk) begin
    lfsr <= {{lfsr[14:0], lfsr[15] ^ lfsr[13] ^ lfsr[12] ^ lfsr[10]}};
    if (load && !loading && !load_done) begin
      $readmemh("writes.hex", write_beats);
      $readmemh("params.hex", param_beats);
      loading <= 1'b1;
      write_index <= 32'd0;
      param_index <= 32'd0;
    end else if (loading) begin
      if (write_valid && write_ready) write_index <= write_index + 32'd1;
      if (param_valid && param_ready) param_index <= param_index + 32'd1;
      if (!write_valid && !param_valid) begin
        loading <= 1'b0;
        load_done <= 1'b1;
      end
    end else if (!load) begin
      load_done <= 1'b0;
    end
    if (out_valid && out_ready) begin
      $fwrite(log, "%0d %0d %0d\\n", out_payload[{row.offset + row.width - 1}:{row.offset}],
              out_payload[{col.offset + col.width - 1}:{col.offset}],
              $signed(out_payload[{value.offset + value.width - 1}:{value.offset}]));
      results <= results + 32'd1;
    end
    if (done) $fflush(log);
  end

  {_ENGINE} dut (
    .clk(clk),
    .rst(1'b0),
    .write__valid(write_valid),
    .write__ready(write_ready),
    .write__payload(write_beats[write_index[{write_bits - 1}:0]]),
    .param_write__valid(param_valid),
    .param_write__ready(param_ready),
    .param_write__payload(param_beats[param_index[{param_bits - 1}:0]]),
    .start__valid(start_valid),
    .start__ready(start_ready),
    .start__payload(start_payload),
    .out__valid(out_valid),
    .out__ready(out_ready),
    .out__payload(out_payload),
    .busy(busy),
    .done(done),
    .busy_cycles(busy_cycles),
    .mac_cycles(mac_cycles)
  );
endmodule
"""


def build_engine_model(spec, config, *, waves=False, log=None):
    """Generate engine ``spec`` for ``config`` and build it with the harness (cached by RTL)."""
    from .verilator import build, verilog_of

    spec = engine(spec)
    sources = {f"{_ENGINE}.v": verilog_of(spec.make_engine(config), _ENGINE),
               f"{_TOP}.v": harness_verilog(spec, config)}
    return build(sources, _TOP, timing=True, waves=waves, log=log)


def _check(spec, config, problem):
    """Return the plan of ``problem``; ValueError if it is malformed or does not fit."""
    problem.expected(spec)
    spec.check_packing(problem.packing)
    return problem.plan(spec, config)


def run_engine(spec, config, problems, *, work_dir=None, waves=False, seed=None, log=None):
    """Run ``problems`` (a list of :class:`EngineProblem`) on engine ``spec`` in one simulation.

    Returns a list of :class:`EngineRun`. Raises ValueError for a problem that is malformed
    or does not fit one call on ``config`` (before anything is built) and
    :class:`SimulationError` when the engine's results break its contract. The simulator's
    log goes to stderr, so stdout carries the callers' results alone. With ``waves``, a VCD
    is written into ``work_dir``.
    """
    from .verilator import run_cocotb

    spec = engine(spec)
    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"config must be an AcceleratorConfig, not {type(config).__name__}")
    plans = [_check(spec, config, problem) for problem in problems]
    build_dir = build_engine_model(spec, config, waves=waves, log=log)
    owned = work_dir is None
    work = Path(tempfile.mkdtemp(prefix="tritile-engine-") if owned else work_dir)
    try:
        work.mkdir(parents=True, exist_ok=True)
        # The cocotb test runs in the simulator's process; it prepares each problem's
        # files from these just before loading it.
        np.savez(work / "problems.npz", **{
            f"{i}_{name}": value for i, problem in enumerate(problems)
            for name, value in _problem_arrays(problem).items() if value is not None})
        (work / "setup.json").write_text(json.dumps({"engine": spec.name,
                                                     "config": config.to_dict()}))
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(2, 1)
        try:
            run_cocotb(build_dir, _TOP, "tritile.sim.engine_sim",
                       module_dir=Path(__file__).parent, work_dir=work,
                       extra_env={_DIR: str(work.resolve())}, seed=seed, waves=waves)
        except AssertionError as exc:
            raise SimulationError(f"the {spec.name} engine did not finish its problems: "
                                  f"{exc}") from None
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
        return _collect(spec, config, work, problems, plans)
    finally:
        if owned:
            shutil.rmtree(work, ignore_errors=True)


def _collect(spec, config, work, problems, plans):
    """Return the :class:`EngineRun` of each problem from the files of a finished run."""
    stats = json.loads((work / "stats.json").read_text())
    lines = (work / "results.txt").read_text().split("\n")
    runs, offset = [], 0
    for index, (problem, plan, stat) in enumerate(zip(problems, plans, stats)):
        m, _, n = problem.shape
        count = stat["results"]
        beats = np.array([[int(x) for x in line.split()]
                          for line in lines[offset:offset + count]], np.int64).reshape(-1, 3)
        offset += count
        seen = np.zeros((m, n), np.int64)
        inside = (beats[:, 0] < m) & (beats[:, 1] < n)
        np.add.at(seen, (beats[inside, 0], beats[inside, 1]), 1)
        if count != m * n or not inside.all() or not (seen == 1).all():
            raise SimulationError(f"problem {index}: the {spec.name} engine sent {count} "
                                  f"results for a {m}x{n} output, not each element once")
        out = np.zeros((m, n), np.int32 if problem.raw else np.int8)
        out[beats[:, 0], beats[:, 1]] = beats[:, 2]
        runs.append(EngineRun(out, stat["busy_cycles"], stat["mac_cycles"], plan.cycles,
                              plan.macs, spec.peak_macs_per_cycle(config),
                              stat["wall_seconds"]))
    return runs


# --- the cocotb side: runs inside the simulator process --------------------------------

def _problem_arrays(problem):
    """Return ``problem``'s fields as arrays for ``np.savez`` (a window as its 8 numbers)."""
    fields = {field.name: getattr(problem, field.name)
              for field in dataclasses.fields(problem)}
    if problem.window is not None:
        window = problem.window
        fields["window"] = np.array(window.kernel + window.stride + window.pads)
    return fields


def _load_setup(directory):
    setup = json.loads((directory / "setup.json").read_text())
    config = AcceleratorConfig.from_dict(setup["config"])
    arrays = np.load(directory / "problems.npz")
    fields = {}
    for key in arrays.files:
        index, name = key.split("_", 1)
        value = arrays[key]
        if name == "window":
            value = Window(*(tuple(int(v) for v in part)
                             for part in (value[:2], value[2:4], value[4:])))
        elif value.ndim == 0:
            value = value.item()
        fields.setdefault(int(index), {})[name] = value
    return engine(setup["engine"]), config, [EngineProblem(**fields[i]) for i in sorted(fields)]


def _problem_files(spec, config, problem, directory):
    """Write the hex files of ``problem``; return their beat counts and the start payload."""
    write, param, start, _ = _layouts()
    n = problem.w.shape[1]
    image = problem.memory_image(spec, config)
    # Bytes are written in address order (the ternary unit's base-3 transcoding needs a
    # stream's bytes in order), zero padding included, so no stale contents leak in.
    lines = [f"{_pack(write, target=target, addr=addr, data=byte):x}"
             for target, data in image.items() for addr, byte in enumerate(data)]
    bias = problem.bias if problem.bias is not None else np.zeros(n, np.int32)
    mult = problem.mult if problem.mult is not None else np.zeros(n, np.int32)
    shift = problem.shift if problem.shift is not None else np.ones(n, np.int32)
    params = [f"{_pack(param, col=c, bias=b, mult=mu, shift=sh):x}"
              for c, (b, mu, sh) in enumerate(zip(bias.tolist(), mult.tolist(),
                                                  shift.tolist()))]
    (directory / "writes.hex").write_text("\n".join(lines) + "\n")
    (directory / "params.hex").write_text("\n".join(params) + "\n")
    return len(lines), len(params), _pack(start, **problem.start_fields(spec, config))


try:
    import cocotb
except ImportError:                                     # the host side without cocotb
    cocotb = None

if cocotb is not None and _DIR in os.environ:
    @cocotb.test()
    async def run_problems(dut):
        """Load, start and wait for each problem; record the counters and wall time."""
        from cocotb.triggers import RisingEdge, with_timeout

        directory = Path(os.environ[_DIR])
        spec, config, problems = _load_setup(directory)
        dut.load.value = 0
        dut.start_valid.value = 0
        dut.throttle.value = 0
        stats = []
        for problem in problems:
            n_writes, n_params, start = _problem_files(spec, config, problem, directory)
            dut.n_writes.value = n_writes
            dut.n_params.value = n_params
            dut.throttle.value = int(problem.throttle)
            # Bounds that turn a hung engine into a failure instead of a stuck simulation.
            cycles = problem.plan(spec, config).cycles
            limit = _PERIOD_NS * ((20 if problem.throttle else 10) * cycles + 1000)
            before = int(dut.results.value)
            dut.load.value = 1
            await with_timeout(RisingEdge(dut.load_done), _PERIOD_NS * (n_writes + 1000),
                               "ns")
            dut.load.value = 0
            dut.start_payload.value = start
            dut.start_valid.value = 1
            began = time.perf_counter()
            await with_timeout(RisingEdge(dut.busy), _PERIOD_NS * 1000, "ns")
            dut.start_valid.value = 0
            await with_timeout(RisingEdge(dut.done), limit, "ns")
            wall = time.perf_counter() - began
            # The counters hold since `busy` fell; the last result was logged before.
            stats.append({"busy_cycles": int(dut.busy_cycles.value),
                          "mac_cycles": int(dut.mac_cycles.value),
                          "results": int(dut.results.value) - before,
                          "wall_seconds": wall})
        (directory / "stats.json").write_text(json.dumps(stats))
