"""Run the ternary engine in Verilator: the harness of the tests, ``tritile sim ternary`` and
the benchmarks.

:func:`run_ternary` builds :class:`TernarySimTop` (the :class:`~tritile.hw.ternary.
TernaryEngine` plus a result memory that captures every output beat, so the compute phase
runs without a Python call per cycle) with the clock inside Verilog, and runs this module
as the cocotb test module on a batch of problems: for each one it writes the memory image
of :func:`tritile.sw.ternary_layout.ternary_memory_image` and the per-channel parameters
through the engine's streams, starts it, waits for ``done`` and reads the captured results
back. Several problems share one build and one simulator process.
"""

import dataclasses
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from tritile.sw.config import AcceleratorConfig
from tritile.sw.numerics import ternary_matmul
from tritile.sw.planner import plan_ternary
from tritile.sw.ternary_layout import PACKINGS, ternary_memory_image, weight_target

__all__ = ["TernaryProblem", "TernaryRun", "run_ternary"]

_TOP = "ternary_sim_top"
_VECTORS = "TRITILE_TERNARY_VECTORS"
_RESULTS = "TRITILE_TERNARY_RESULTS"


@dataclasses.dataclass
class TernaryProblem:
    """One engine call: ``q @ T``, raw int32 or requantized by ``mult`` / ``shift``.

    Members
    -------
    q : numpy.ndarray
        int8, M x K.
    T : numpy.ndarray
        int8, K x N, values in {-1, 0, 1}.
    packing : str
        ``"2bit"`` or ``"base3"``.
    mult, shift : numpy.ndarray or None
        int32 per output channel (N); both None for raw int32 results.
    relu : bool
        Clamp requantized results at 0.
    throttle : bool
        Drop ``out.ready`` on pseudo-random cycles, to test backpressure.
    """

    q: np.ndarray
    T: np.ndarray
    packing: str = "base3"
    mult: np.ndarray | None = None
    shift: np.ndarray | None = None
    relu: bool = False
    throttle: bool = False

    @property
    def raw(self):
        return self.mult is None


@dataclasses.dataclass
class TernaryRun:
    """What the engine produced for one :class:`TernaryProblem`.

    Members
    -------
    out : numpy.ndarray
        M x N: int32 accumulators, or int8 under requantization.
    busy_cycles, mac_cycles : int
        The engine's counters (see :class:`tritile.hw.ternary.TernaryUnit`).
    predicted_cycles : int
        :func:`tritile.sw.planner.plan_ternary`'s cycles.
    ternary_macs : int
        ``M * K * N``.
    peak_macs_per_cycle : int
        ``L * P``.
    wall_seconds : float
        Wall time of the compute phase (start to ``done``) in the simulator.
    """

    out: np.ndarray
    busy_cycles: int
    mac_cycles: int
    predicted_cycles: int
    ternary_macs: int
    peak_macs_per_cycle: int
    wall_seconds: float

    @property
    def macs_per_cycle(self):
        return self.ternary_macs / self.busy_cycles

    @property
    def utilization(self):
        return self.ternary_macs / (self.peak_macs_per_cycle * self.busy_cycles)

    @property
    def cycles_per_second(self):
        return self.busy_cycles / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def figures(self):
        """Return the run's figures as a dict, for JSON output."""
        return {"cycles": self.busy_cycles, "mac_cycles": self.mac_cycles,
                "ternary_macs": self.ternary_macs, "macs_per_cycle": self.macs_per_cycle,
                "utilization": self.utilization, "predicted_cycles": self.predicted_cycles,
                "wall_seconds": self.wall_seconds,
                "cycles_per_second": self.cycles_per_second}


def _sim_top_class():
    # Amaranth is imported here so that `import tritile.sim.ternary_sim` stays light for
    # the cocotb process until it needs the layouts.
    from amaranth.hdl import Module, Signal
    from amaranth.lib import stream, wiring
    from amaranth.lib.memory import Memory
    from amaranth.lib.wiring import In, Out

    from tritile.hw.requantizer import PARAM_LAYOUT, RESULT_LAYOUT
    from tritile.hw.ternary import START_LAYOUT, WRITE_LAYOUT, TernaryEngine

    class TernarySimTop(wiring.Component):
        """The ternary engine with every result captured in arrival order.

        Members
        -------
        write, start, param_write, busy, done, busy_cycles, mac_cycles
            The engine's, passed through.
        throttle : In(1)
            When high, ``out.ready`` follows a pseudo-random bit instead of staying high.
        captured : Out(32)
            Results captured since the last ``start``.
        read_addr : In(32)
            Index of a captured result to read.
        read_data : Out(RESULT_LAYOUT)
            The result at ``read_addr`` of the previous cycle.
        """

        def __init__(self, config):
            self.config = config
            super().__init__({
                "write": In(stream.Signature(WRITE_LAYOUT)),
                "start": In(stream.Signature(START_LAYOUT)),
                "param_write": In(stream.Signature(PARAM_LAYOUT)),
                "busy": Out(1), "done": Out(1),
                "busy_cycles": Out(32), "mac_cycles": Out(32),
                "throttle": In(1),
                "captured": Out(32),
                "read_addr": In(32),
                "read_data": Out(RESULT_LAYOUT),
            })

        def elaborate(self, platform):
            m = Module()
            m.submodules.engine = engine = TernaryEngine(self.config)
            for name in ("write", "start", "param_write"):
                wiring.connect(m, wiring.flipped(getattr(self, name)), getattr(engine, name))
            m.d.comb += [self.busy.eq(engine.busy), self.done.eq(engine.done),
                         self.busy_cycles.eq(engine.busy_cycles),
                         self.mac_cycles.eq(engine.mac_cycles)]
            m.submodules.results = results = Memory(
                shape=RESULT_LAYOUT, depth=self.config.out_depth, init=[])
            write, read = results.write_port(), results.read_port()
            lfsr = Signal(16, init=0xACE1)
            m.d.sync += lfsr.eq((lfsr << 1) | (lfsr[15] ^ lfsr[13] ^ lfsr[12] ^ lfsr[10]))
            m.d.comb += [
                engine.out.ready.eq(~self.throttle | lfsr[0]),
                write.addr.eq(self.captured),
                write.data.eq(engine.out.payload),
                write.en.eq(engine.out.valid & engine.out.ready
                            & (self.captured < self.config.out_depth)),
                read.addr.eq(self.read_addr),
                self.read_data.eq(read.data),
            ]
            with m.If(self.start.valid & self.start.ready):
                m.d.sync += self.captured.eq(0)
            with m.Elif(engine.out.valid & engine.out.ready):
                m.d.sync += self.captured.eq(self.captured + 1)
            return m

    return TernarySimTop


def __getattr__(name):
    if name == "TernarySimTop":
        return _sim_top_class()
    raise AttributeError(name)


def _check_problem(config, problem):
    if problem.packing not in PACKINGS:
        raise ValueError(f"packing must be one of {', '.join(PACKINGS)}, "
                         f"not {problem.packing!r}")
    ternary_matmul(problem.q, problem.T)                 # validates dtypes, values, shapes
    m, k = problem.q.shape
    n = problem.T.shape[1]
    plan = plan_ternary(config, m, k, n)
    if (problem.mult is None) != (problem.shift is None):
        raise ValueError("give both mult and shift, or neither (raw int32 results)")
    if problem.mult is not None:
        from tritile.sw.numerics import requantize
        # Validates mult and shift exactly as the golden model does.
        requantize(np.zeros((1, n), np.int32), problem.mult, problem.shift)
    return plan


def run_ternary(config, problems, *, work_dir=None, seed=None, log=None):
    """Run ``problems`` (a list of :class:`TernaryProblem`) on ``config``'s engine.

    Returns a list of :class:`TernaryRun`. Raises ValueError for a problem the config
    cannot run, before anything is built.
    """
    from tritile.sim.verilator import build, clocked_wrapper, run_cocotb, verilog_of

    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"config must be an AcceleratorConfig, not {type(config).__name__}")
    plans = [_check_problem(config, p) for p in problems]
    verilog = verilog_of(_sim_top_class()(config), _TOP)
    build_dir = build({f"{_TOP}.v": verilog,
                       f"{_TOP}_tb.v": clocked_wrapper(verilog, _TOP)},
                      f"{_TOP}_tb", timing=True, log=log)
    with tempfile.TemporaryDirectory(prefix="ternary-sim-", dir=work_dir) as tmp:
        tmp = Path(tmp)
        arrays = {}
        for i, (problem, plan) in enumerate(zip(problems, plans)):
            image = ternary_memory_image(config, problem.q, problem.T, problem.packing)
            n = plan.n
            mult = problem.mult if problem.mult is not None else np.zeros(n, np.int32)
            shift = problem.shift if problem.shift is not None else np.ones(n, np.int32)
            arrays[f"act{i}"] = np.frombuffer(image[0], np.uint8)
            target = weight_target(problem.packing)
            arrays[f"weights{i}"] = np.frombuffer(image[target], np.uint8)
            arrays[f"params{i}"] = np.stack([np.asarray(mult, np.int64),
                                             np.asarray(shift, np.int64)], axis=1)
            arrays[f"meta{i}"] = np.array([plan.m, plan.k, plan.n, int(problem.raw),
                                           int(problem.relu), target,
                                           int(problem.throttle)], np.int64)
        np.savez(tmp / "vectors.npz", count=np.array(len(problems)), **arrays)
        run_cocotb(build_dir, f"{_TOP}_tb", "tritile.sim.ternary_sim", module_dir=tmp,
                   work_dir=tmp, seed=seed,
                   extra_env={_VECTORS: str(tmp / "vectors.npz"),
                              _RESULTS: str(tmp / "results.npz")})
        results = dict(np.load(tmp / "results.npz"))
    runs = []
    for i, (problem, plan) in enumerate(zip(problems, plans)):
        rows, cols, values = results[f"rows{i}"], results[f"cols{i}"], results[f"values{i}"]
        if len(values) != plan.m * plan.n:
            raise RuntimeError(f"problem {i}: the engine returned {len(values)} results, "
                               f"not M*N = {plan.m * plan.n}")
        out = np.zeros((plan.m, plan.n), np.int64)
        seen = np.zeros((plan.m, plan.n), bool)
        if rows.max() >= plan.m or cols.max() >= plan.n:
            raise RuntimeError(f"problem {i}: the engine returned a result outside "
                               f"{plan.m}x{plan.n}")
        out[rows, cols] = values
        seen[rows, cols] = True
        if not seen.all():
            raise RuntimeError(f"problem {i}: the engine returned some results twice")
        busy, mac = (int(x) for x in results[f"counters{i}"][:2])
        runs.append(TernaryRun(
            out=out.astype(np.int32 if problem.raw else np.int8),
            busy_cycles=busy, mac_cycles=mac, predicted_cycles=plan.cycles,
            ternary_macs=plan.macs, peak_macs_per_cycle=plan.peak_macs_per_cycle,
            wall_seconds=float(results[f"wall{i}"])))
    return runs


# --- the cocotb side: runs inside the simulator process --------------------------------

def _packer(layout):
    fields = [(name, field.offset, field.width) for name, field in layout]

    def pack(**values):
        word = 0
        for name, offset, width in fields:
            word |= (int(values.get(name, 0)) & ((1 << width) - 1)) << offset
        return word

    def unpack(word, name, signed=False):
        for field_name, offset, width in fields:
            if field_name == name:
                value = (word >> offset) & ((1 << width) - 1)
                if signed and value >> (width - 1):
                    value -= 1 << width
                return value
        raise KeyError(name)

    return pack, unpack


async def _run_problems(dut):
    from cocotb.triggers import NextTimeStep, ReadOnly, RisingEdge

    from tritile.hw.requantizer import PARAM_LAYOUT, RESULT_LAYOUT
    from tritile.hw.ternary import START_LAYOUT, WRITE_LAYOUT

    pack_write, _ = _packer(WRITE_LAYOUT)
    pack_start, _ = _packer(START_LAYOUT)
    pack_param, _ = _packer(PARAM_LAYOUT)
    _, unpack_result = _packer(RESULT_LAYOUT)
    clk = dut.clk
    vectors = np.load(os.environ[_VECTORS])
    dut.rst.value = 1
    for name in ("write__valid", "start__valid", "param_write__valid", "throttle"):
        getattr(dut, name).value = 0
    dut.read_addr.value = 0
    for _ in range(2):
        await RisingEdge(clk)
    dut.rst.value = 0
    out = {}
    for i in range(int(vectors["count"])):
        m, k, n, raw, relu, weights, throttle = (int(x) for x in vectors[f"meta{i}"])
        dut.write__valid.value = 1
        for target, blob in ((0, vectors[f"act{i}"]), (weights, vectors[f"weights{i}"])):
            for addr, byte in enumerate(blob.tolist()):
                dut.write__payload.value = pack_write(target=target, addr=addr, data=byte)
                await RisingEdge(clk)
        dut.write__valid.value = 0
        dut.param_write__valid.value = 1
        for col, (mult, shift) in enumerate(vectors[f"params{i}"].tolist()):
            dut.param_write__payload.value = pack_param(col=col, bias=0, mult=mult,
                                                        shift=shift)
            await RisingEdge(clk)
        dut.param_write__valid.value = 0
        dut.throttle.value = throttle
        dut.start__payload.value = pack_start(m=m, k=k, n=n, raw=raw, relu=relu)
        dut.start__valid.value = 1
        while True:                    # `start` waits for the last write to land
            await ReadOnly()
            accepted = int(dut.start__ready.value)
            await RisingEdge(clk)
            if accepted:
                break
        dut.start__valid.value = 0
        started = time.perf_counter()
        await RisingEdge(dut.done)
        wall = time.perf_counter() - started
        await ReadOnly()
        counters = [int(dut.busy_cycles.value), int(dut.mac_cycles.value)]
        captured = int(dut.captured.value)
        await RisingEdge(clk)
        rows, cols, values = [], [], []
        for index in range(captured):
            dut.read_addr.value = index
            await RisingEdge(clk)
            await ReadOnly()
            word = int(dut.read_data.value)
            rows.append(unpack_result(word, "row"))
            cols.append(unpack_result(word, "col"))
            values.append(unpack_result(word, "value", signed=True))
            await NextTimeStep()
        out.update({f"rows{i}": np.array(rows, np.int64), f"cols{i}": np.array(cols, np.int64),
                    f"values{i}": np.array(values, np.int64),
                    f"counters{i}": np.array(counters, np.int64),
                    f"wall{i}": np.array(wall)})
    np.savez(os.environ[_RESULTS], **out)


try:
    import cocotb
except ImportError:                                     # the harness side without cocotb
    cocotb = None

if cocotb is not None and _VECTORS in os.environ:
    @cocotb.test()
    async def ternary_problems(dut):
        """Run every problem of the vectors file and store what the engine returned."""
        await _run_problems(dut)
