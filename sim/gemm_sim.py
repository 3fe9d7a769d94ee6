"""Run int8 gemms on the systolic engine in Verilator, cycle-accurately, under cocotb.

The engine is wrapped in a small Verilog harness that owns the clock, plays the memory
image and the requantization parameters into the engine's ``write`` and ``param_write``
streams from ``$readmemh`` files at one beat per cycle, and appends every ``out`` beat to a
text file. cocotb therefore touches the design only a few times per problem (load, start,
wait for ``done``), and the simulation runs at Verilator's own speed.

:func:`run_gemm` is the entry point used by the tests, ``tritile sim gemm`` and the
benchmark; this module is also the cocotb test module it runs.
"""

import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge, with_timeout

from tritile.sw.numerics import gemm_int8, requantize
from tritile.sw.planner import plan_gemm
from tritile.sw.systolic_layout import systolic_geometry, systolic_memory_image

__all__ = ["GemmProblem", "GemmRun", "harness_verilog", "build_gemm_model", "run_gemm"]

_TOP = "gemm_harness"
_PERIOD_NS = 10
_ENGINE = "systolic_engine"


@dataclasses.dataclass
class GemmProblem:
    """One problem: int8 ``Xq`` (M x K) times ``Wq`` (K x N), optional bias and requant.

    ``mult`` and ``shift`` (per output channel) select an int8 result; without them the
    engine returns the raw int32 accumulators (``Xq @ Wq + bias``).
    """

    Xq: np.ndarray
    Wq: np.ndarray
    bias: np.ndarray | None = None
    mult: np.ndarray | None = None
    shift: np.ndarray | None = None
    relu: bool = False

    @property
    def raw(self):
        """Whether the engine returns raw int32 accumulators."""
        return self.mult is None

    def expected(self):
        """Return the golden result of tritile.sw.numerics."""
        acc = gemm_int8(self.Xq, self.Wq, self.bias)
        return acc if self.raw else requantize(acc, self.mult, self.shift, relu=self.relu)


@dataclasses.dataclass
class GemmRun:
    """What one problem produced in simulation.

    Members
    -------
    result : np.ndarray
        M x N, int32 (raw) or int8 (requantized).
    cycles, mac_cycles : int
        The engine's ``busy_cycles`` and ``mac_cycles`` counters.
    predicted_cycles : int
        :func:`tritile.sw.planner.plan_gemm`'s cycle count.
    wall_seconds : float
        Wall time of the compute phase (start to ``done``).
    """

    result: np.ndarray
    cycles: int
    mac_cycles: int
    predicted_cycles: int
    wall_seconds: float
    peak_macs_per_cycle: int

    @property
    def utilization(self):
        """Useful MACs over the MACs the array could have done in :attr:`cycles`."""
        return self.mac_cycles / (self.peak_macs_per_cycle * self.cycles)

    @property
    def cycles_per_second(self):
        """Simulated cycles per wall-clock second of the compute phase."""
        return self.cycles / self.wall_seconds if self.wall_seconds > 0 else float("inf")

    def to_dict(self):
        """Return the figures (not the result) for JSON output."""
        return {"cycles": self.cycles, "mac_cycles": self.mac_cycles,
                "utilization": self.utilization, "predicted_cycles": self.predicted_cycles,
                "wall_seconds": self.wall_seconds,
                "cycles_per_second": self.cycles_per_second}


def _layouts():
    from tritile.hw.requantizer import PARAM_LAYOUT, RESULT_LAYOUT
    from tritile.hw.systolic import START_LAYOUT, WRITE_LAYOUT

    return WRITE_LAYOUT, PARAM_LAYOUT, START_LAYOUT, RESULT_LAYOUT


def _pack(layout, **fields):
    """Return the integer of a struct payload, as it appears on a Verilog port."""
    word = 0
    for name, value in fields.items():
        field = layout[name]
        width = field.width
        word |= (int(value) & ((1 << width) - 1)) << field.offset
    return word


def harness_verilog(config):
    """Return the Verilog of the test harness around the ``systolic_engine`` module."""
    write, param, start, result = _layouts()
    geometry = systolic_geometry(config)
    writes = geometry.act_bytes + geometry.weight_bytes
    write_bits = max(1, (writes - 1).bit_length())
    param_bits = max(1, (config.max_n - 1).bit_length())
    row, col, value = (result[name] for name in ("row", "col", "value"))
    return f"""`timescale 1ns/1ps
// Plays writes.hex / params.hex into the engine on `load`, logs results to results.txt.
module {_TOP} (
    input  wire load,
    input  wire [31:0] n_writes,
    input  wire [31:0] n_params,
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
  wire write_valid = loading && (write_index < n_writes);
  wire param_valid = loading && (param_index < n_params);
  wire write_ready;
  wire param_ready;
  wire out_valid;
  wire [{result.size - 1}:0] out_payload;
  integer log;

  initial begin
    load_done = 1'b0;
    results = 32'd0;
    log = $fopen("results.txt", "w");
  end

  always @(posedge clk) begin
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
    if (out_valid) begin
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
    .out__ready(1'b1),
    .out__payload(out_payload),
    .busy(busy),
    .done(done),
    .busy_cycles(busy_cycles),
    .mac_cycles(mac_cycles)
  );
endmodule
"""


def build_gemm_model(config, *, waves=False, log=None):
    """Generate the engine for ``config`` and build it with the harness (cached by RTL)."""
    from tritile.hw.systolic import SystolicEngine

    from .verilator import build, verilog_of

    sources = {f"{_ENGINE}.v": verilog_of(SystolicEngine(config), _ENGINE),
               f"{_TOP}.v": harness_verilog(config)}
    return build(sources, _TOP, timing=True, waves=waves, log=log)


def _problem_files(config, problem, directory):
    """Write the hex files and return the start payload of ``problem``."""
    write, param, start, _ = _layouts()
    m, k = problem.Xq.shape
    n = problem.Wq.shape[1]
    image = systolic_memory_image(config, problem.Xq, problem.Wq)
    lines = []
    for target, data in image.items():
        # Bytes are written in address order; zero padding is written too, so no stale
        # memory contents of an earlier problem can leak in.
        for addr, byte in enumerate(data):
            lines.append(f"{_pack(write, target=target, addr=addr, data=byte):x}")
    bias = problem.bias if problem.bias is not None else np.zeros(n, np.int32)
    mult = problem.mult if problem.mult is not None else np.zeros(n, np.int32)
    shift = problem.shift if problem.shift is not None else np.ones(n, np.int32)
    params = [f"{_pack(param, col=c, bias=bias[c], mult=mult[c], shift=shift[c]):x}"
              for c in range(n)]
    (directory / "writes.hex").write_text("\n".join(lines) + "\n")
    (directory / "params.hex").write_text("\n".join(params) + "\n")
    return len(lines), len(params), _pack(start, m=m, k=k, n=n, raw=problem.raw,
                                          relu=problem.relu)


def run_gemm(config, problems, *, work_dir=None, waves=False, seed=None, log=None):
    """Run ``problems`` (a list of :class:`GemmProblem`) in one simulation.

    Returns a list of :class:`GemmRun`. Each problem must pass
    :func:`~tritile.sw.planner.plan_gemm` on ``config`` (ValueError otherwise). With
    ``waves``, the simulation writes a VCD into ``work_dir``.
    """
    from .verilator import run_cocotb

    plans = []
    for problem in problems:
        m, k = problem.Xq.shape
        plans.append(plan_gemm(config, m, k, problem.Wq.shape[1]))
        problem.expected()      # validates dtypes, shapes and parameters
    build_dir = build_gemm_model(config, waves=waves, log=log)
    owned = work_dir is None
    work = Path(tempfile.mkdtemp(prefix="tritile-gemm-") if owned else work_dir)
    try:
        work.mkdir(parents=True, exist_ok=True)
        # The cocotb test runs in the simulator's process; it prepares each problem's
        # files from this list just before loading it.
        np.savez(work / "problems.npz", **{
            f"{i}_{name}": value for i, problem in enumerate(problems)
            for name, value in dataclasses.asdict(problem).items() if value is not None})
        (work / "config.json").write_text(config.to_json())
        # The simulator logs to stdout; send that to stderr, so that the callers' stdout
        # carries their results alone (e.g. `tritile sim gemm --json`).
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(2, 1)
        try:
            run_cocotb(build_dir, _TOP, "tritile.sim.gemm_sim",
                       module_dir=Path(__file__).parent, work_dir=work,
                       extra_env={"TRITILE_GEMM_DIR": str(work.resolve())},
                       seed=seed, waves=waves)
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
        return _collect(work, problems, plans)
    finally:
        if owned:
            shutil.rmtree(work, ignore_errors=True)


def _collect(work, problems, plans):
    """Return the :class:`GemmRun` of each problem from the files of a finished run."""
    stats = json.loads((work / "stats.json").read_text())
    lines = (work / "results.txt").read_text().split("\n")
    runs, offset = [], 0
    for problem, plan, stat in zip(problems, plans, stats):
        m, n = problem.Xq.shape[0], problem.Wq.shape[1]
        beats = np.array([[int(x) for x in line.split()]
                          for line in lines[offset:offset + m * n]], np.int64).reshape(-1, 3)
        offset += m * n
        result = np.zeros((m, n), np.int32 if problem.raw else np.int8)
        seen = np.zeros((m, n), np.int64)
        inside = (beats[:, 0] < m) & (beats[:, 1] < n)
        np.add.at(seen, (beats[inside, 0], beats[inside, 1]), 1)
        if len(beats) != m * n or not inside.all() or not (seen == 1).all():
            raise AssertionError(f"the engine sent {len(beats)} results for a {m}x{n} "
                                 f"output, not each element exactly once")
        result[beats[:, 0], beats[:, 1]] = beats[:, 2]
        runs.append(GemmRun(result, stat["cycles"], stat["mac_cycles"], plan.cycles,
                            stat["wall_seconds"], plan.peak_macs_per_cycle))
    return runs


def _load_problems(directory):
    from tritile.sw.config import AcceleratorConfig

    config = AcceleratorConfig.from_json((directory / "config.json").read_text())
    arrays = np.load(directory / "problems.npz")
    problems = {}
    for key in arrays.files:
        index, name = key.split("_", 1)
        problems.setdefault(int(index), {})[name] = arrays[key]
    return config, [GemmProblem(**{k: (bool(v) if k == "relu" else v)
                                   for k, v in problems[i].items()})
                    for i in sorted(problems)]


@cocotb.test()
async def run_problems(dut):
    """Load, start and wait for each problem; record the counters and wall time."""
    directory = Path(os.environ["TRITILE_GEMM_DIR"])
    config, problems = _load_problems(directory)
    dut.load.value = 0
    dut.start_valid.value = 0
    stats = []
    for problem in problems:
        n_writes, n_params, start = _problem_files(config, problem, directory)
        dut.n_writes.value = n_writes
        dut.n_params.value = n_params
        m, k = problem.Xq.shape
        # Bounds that turn a hung engine into a failure instead of a stuck simulation.
        limit = _PERIOD_NS * (10 * plan_gemm(config, m, k, problem.Wq.shape[1]).cycles + 1000)
        dut.load.value = 1
        await with_timeout(RisingEdge(dut.load_done), _PERIOD_NS * (n_writes + 1000), "ns")
        dut.load.value = 0
        dut.start_payload.value = start
        dut.start_valid.value = 1
        began = time.perf_counter()
        await with_timeout(RisingEdge(dut.busy), _PERIOD_NS * 1000, "ns")
        dut.start_valid.value = 0
        await with_timeout(RisingEdge(dut.done), limit, "ns")
        wall = time.perf_counter() - began
        stats.append({"cycles": int(dut.busy_cycles.value),
                      "mac_cycles": int(dut.mac_cycles.value), "wall_seconds": wall})
    (directory / "stats.json").write_text(json.dumps(stats))
