"""Sweeps without a build: SPEC checking, invalid points, the model's cost, the results
store, the Pareto front, the report, and the command's one-line errors."""

import importlib.metadata
import json
import math
import re
import socket

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from tritile.sw import sweep
from tritile.sw.cli import main
from tritile.sw.compiler import compile_model
from tritile.sw.config import PRESETS
from tritile.sw.engines import engine_for_numerics
from tritile.sw.executor import GoldenBackend, execute
from tritile.sw.tiling import rows_per_call
from tritile.sw.sweep_point import build_point
from tritile.sw.sweep_report import markdown_table, pareto_front, sweep_rows, write_report
from tritile.sw.sweep_spec import (ModelCost, SweepError, expand_spec, load_model,
                                   load_spec, model_cost)
from tritile.sw.sweep_store import ResultStore, SweepPoint, source_version, tool_versions

TOOLS = {"amaranth": "0.5.4", "yosys": "0.70"}


def write_spec(tmp_path, text, name="spec.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def mlp_onnx(path, sizes, seed=0):
    """Write an ONNX MLP (MatMul + Add + Relu per layer) with ``sizes`` features."""
    rng = np.random.default_rng(seed)
    nodes, inits, x = [], [], "x"
    for i, (k, n) in enumerate(zip(sizes, sizes[1:])):
        inits += [numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), f"W{i}"),
                  numpy_helper.from_array(rng.standard_normal(n).astype(np.float32), f"b{i}")]
        nodes += [helper.make_node("MatMul", [x, f"W{i}"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"])]
        x = f"a{i}"
        if i + 2 < len(sizes):
            nodes.append(helper.make_node("Relu", [x], [f"r{i}"]))
            x = f"r{i}"
    nodes[-1].output[0] = "y"
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", sizes[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", sizes[-1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path.write_bytes(model.SerializeToString())
    return path


def test_grid_and_points_expand_in_order_without_duplicates(tmp_path):
    spec = load_spec(write_spec(tmp_path, """
base = "icebreaker"
boards = ["icebreaker"]
[grid]
systolic_rows = [2, 4]
systolic_cols = [2, 3]
[[points]]
systolic_rows = 2
systolic_cols = 3
[[points]]
systolic_rows = 1
"""))
    assert spec.parameters == (
        {"systolic_rows": 2, "systolic_cols": 2}, {"systolic_rows": 2, "systolic_cols": 3},
        {"systolic_rows": 4, "systolic_cols": 2}, {"systolic_rows": 4, "systolic_cols": 3},
        {"systolic_rows": 1})
    valid, invalid = expand_spec(spec)
    assert invalid == []
    assert [config for _, config, _ in valid] == [
        PRESETS["icebreaker"].replace(**p) for p in spec.parameters]


def test_json_spec_with_a_base_file_beside_it(tmp_path):
    (tmp_path / "tiny.json").write_text(PRESETS["icebreaker"].replace(max_m=8).to_json())
    path = write_spec(tmp_path, json.dumps({"base": "tiny.json", "points": [{"max_m": 4}]}),
                      "spec.json")
    spec = load_spec(path)
    assert spec.base == PRESETS["icebreaker"].replace(max_m=8)
    assert expand_spec(spec)[0][0][1] == PRESETS["icebreaker"].replace(max_m=4)


@pytest.mark.parametrize("text, message", [
    ('base = "icebreaker"\n[grid]\nsystolic_rowz = [2]\n',
     "grid: unknown parameter(s) systolic_rowz; known: systolic_rows"),
    ('base = "icebreaker"\n[grid]\nsystolic_rows = [2, "four"]\n',
     "grid: systolic_rows must be an integer, not 'four'"),
    ('base = "icebreaker"\n[grid]\nsystolic_rows = 2\n',
     "grid: systolic_rows must be a non-empty list of integers, not 2"),
    ('base = "icebreaker"\n[[points]]\nclock_hz = 2.4e7\n',
     "points[0]: clock_hz must be an integer, not 24000000.0"),
    ('base = "icebreaker"\n[[points]]\nternary_lanes = true\n',
     "points[0]: ternary_lanes must be an integer, not True"),
    ('base = "icebreaker"\ngrids = {}\n', "unknown key(s) grids; known: base, boards"),
    ('[grid]\nsystolic_rows = [2]\n', "needs base = a preset name or a config file"),
    ('base = "icebreakr"\n[grid]\nsystolic_rows = [2]\n', "base: unknown config"),
    ('base = "icebreaker"\n', "has neither grid nor points"),
    ('base = "icebreaker"\nengine = "fp16"\n[grid]\nsystolic_rows = [2]\n',
     "engine must be one of int8, ternary, not 'fp16'"),
    ('base = "icebreaker\n', "is not valid TOML"),
])
def test_malformed_spec_is_refused(tmp_path, text, message):
    with pytest.raises(SweepError, match=re.escape(message)):
        load_spec(write_spec(tmp_path, text))


@pytest.mark.parametrize("text, args, message", [
    ('base = "icebreaker"\n[grid]\nsystolic_rowz = [2]\n', [],
     "unknown parameter(s) systolic_rowz"),
    ('base = "icebreaker"\n[grid]\nsystolic_rows = ["2"]\n', [],
     "systolic_rows must be an integer, not '2'"),
    ('base = "icebreaker"\n[grid]\nsystolic_rows = [2]\n', [],
     "no board to sweep on: give boards in"),
    ('base = "icebreaker"\nboards = ["icebreaker"]\n[grid]\nsystolic_rows = [99]\n', [],
     "every point of"),
    ('base = "icebreaker"\n[grid]\nsystolic_rows = [2]\n', ["--board", "de10"],
     "unknown board 'de10'; supported boards: icebreaker"),
    ('base = "icebreaker"\n[grid]\nsystolic_rows = [2]\n', ["--board", "icebreaker",
                                                           "--stage", "route"],
     "stage must be one of synth, pnr, not 'route'"),
    ('base = "icebreaker"\n[grid]\nsystolic_rows = [2]\n', ["--board", "icebreaker",
                                                           "--seeds", "0"],
     "seeds must be a positive integer, not 0"),
    ('base = "icebreaker"\n[grid]\nsystolic_rows = [2]\n', ["--workers", "0"],
     "--workers must be at least 1, not 0"),
])
def test_command_errors_are_one_line(tmp_path, capsys, text, args, message):
    path = write_spec(tmp_path, text)
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tritile sweep: error: ")
    assert message in err[0]
    assert not (tmp_path / "out" / "points").exists()


def test_missing_spec_file_is_one_line(tmp_path, capsys):
    assert main(["sweep", str(tmp_path / "nope.toml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"tritile sweep: error: cannot read sweep spec {tmp_path / 'nope.toml'}: "
                   f"No such file or directory"]


def test_unreachable_scheduler_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sweep, "CONNECT_TIMEOUT", 2)
    with socket.socket() as s:      # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = write_spec(tmp_path, 'base = "icebreaker"\nboards = ["icebreaker"]\n'
                                '[grid]\nsystolic_rows = [2]\n')
    assert main(["sweep", str(path), "--stage", "synth", "--out", str(tmp_path / "out"),
                 "--scheduler", f"tcp://127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"tritile sweep: error: cannot reach the Dask scheduler at "
                              f"tcp://127.0.0.1:{port}: ")
    assert not any("Traceback" in line for line in err)


def test_points_that_break_config_rules_or_do_not_fit_the_model_are_listed(tmp_path):
    model = load_model(mlp_onnx(tmp_path / "mlp.onnx", [32, 16, 10]))
    spec = load_spec(write_spec(tmp_path, """
base = "icebreaker"
model = "mlp.onnx"
engine = "int8"
[[points]]
systolic_rows = 2
[[points]]
systolic_rows = 70
[[points]]
max_k = 16
[[points]]
systolic_rows = 0
systolic_cols = 0
ternary_lanes = 4
ternary_fan_in = 4
"""))
    assert spec.model == tmp_path / "mlp.onnx"
    valid, invalid = expand_spec(spec, model)
    assert [params for params, _, _ in valid] == [{"systolic_rows": 2}]
    reasons = dict((json.dumps(p), r) for p, r in invalid)
    assert reasons[json.dumps({"systolic_rows": 70})] == \
        "systolic_rows must be between 0 and 64, not 70"
    assert "layer 0 (32x16): K = 32 input features exceed max_k = 16" in \
        reasons[json.dumps({"max_k": 16})]
    assert "runs on the int8 engine, which config" in reasons[json.dumps(
        {"systolic_rows": 0, "systolic_cols": 0, "ternary_lanes": 4, "ternary_fan_in": 4})]


@pytest.mark.parametrize("engine, preset", [("int8", "icebreaker"),
                                            ("ternary", "icebreaker-ternary")])
def test_model_cost_is_what_the_executor_predicts_for_full_calls(tmp_path, engine, preset,
                                                                 rng):
    sizes = [48, 24, 10]
    model = load_model(mlp_onnx(tmp_path / "mlp.onnx", sizes))
    config = PRESETS[preset]
    cost = model_cost(model, config)
    assert cost.engine == engine
    # A batch that is a whole number of engine calls for every layer.
    spec = engine_for_numerics(engine)
    m = math.lcm(*(rows_per_call(spec, config, k, n) for k, n in zip(sizes, sizes[1:])))
    X = rng.standard_normal((m, sizes[0])).astype(np.float32)
    program = compile_model(model, config, engine, calib=X)
    result = execute(program, GoldenBackend(config), X)
    assert cost.cycles_per_inference == pytest.approx(result.predicted_cycles / m)
    assert cost.inferences_per_second(24e6) == pytest.approx(24e6 / cost.cycles_per_inference)


def test_store_reuses_final_records_only(tmp_path):
    config = PRESETS["icebreaker"]
    point = SweepPoint(config, "icebreaker", "synth", None, TOOLS)
    store = ResultStore(tmp_path)
    assert store.get(point) is None
    store.put(point.record("failed", "yosys crashed"))
    assert store.get(point)["reason"] == "yosys crashed" and store.finished(point) is None
    store.put(point.record("unfit", "logic: needs 6000"))
    assert store.finished(point)["status"] == "unfit"
    assert list((tmp_path / "points").iterdir()) == [tmp_path / "points" / f"{point.key}.json"]


def test_point_key_follows_everything_that_decides_the_result():
    config = PRESETS["icebreaker"]
    point = SweepPoint(config, "icebreaker", "pnr", 1, TOOLS)
    same = SweepPoint(PRESETS["icebreaker"].replace(), "icebreaker", "pnr", 1, dict(TOOLS))
    assert point.key == same.key
    others = [SweepPoint(config.replace(max_m=8), "icebreaker", "pnr", 1, TOOLS),
              SweepPoint(config, "orangecrab-25f", "pnr", 1, TOOLS),
              SweepPoint(config, "icebreaker", "synth", None, TOOLS),
              SweepPoint(config, "icebreaker", "pnr", 2, TOOLS),
              SweepPoint(config, "icebreaker", "pnr", 1, {**TOOLS, "yosys": "0.71"}),
              SweepPoint(config, "icebreaker", "pnr", 1, TOOLS, attempts=3),
              SweepPoint(config, "icebreaker", "pnr", 1, TOOLS, builder="qor:build")]
    assert len({point.key, *(other.key for other in others)}) == 8
    assert SweepPoint.from_request(others[-1].request("/tmp/x")) == others[-1]


def test_build_process_refuses_a_point_planned_with_other_tools(tmp_path):
    point = SweepPoint(PRESETS["icebreaker"], "icebreaker", "synth", None,
                       {"tritile": source_version(), "amaranth": "0.4.0"})
    record = build_point(point.request(tmp_path))
    here = importlib.metadata.version("amaranth")
    assert record == point.record("failed", f"the worker's tools differ: amaranth {here} "
                                            f"here, 0.4.0 asked")
    assert list(tmp_path.iterdir()) == []


def test_source_version_follows_the_generator_code(tmp_path):
    package = tmp_path / "hw"
    (package / "sub").mkdir(parents=True)
    (package / "soc.py").write_text("WIDTH = 8\n")
    (package / "sub" / "pe.py").write_text("LATENCY = 1\n")
    before = source_version([package])
    assert source_version([package]) == before
    (package / "sub" / "pe.py").write_text("LATENCY = 2\n")
    assert source_version([package]) != before
    # tritile's own sources name every point's build, beside the flow's tools.
    assert tool_versions([])["tritile"] == source_version()


def _row(board, logic, gmacs, status="ok"):
    return {"board": board, "status": status, "logic": logic, "gmacs": gmacs,
            "model_cycles_per_inference": None, "inferences_per_second": None}


def test_pareto_front_per_board():
    rows = [_row("a", 100, 1.0), _row("a", 200, 2.0), _row("a", 250, 1.5),   # 2 dominated
            _row("a", 200, 2.0), _row("a", 300, 2.0), _row("a", 50, 9.0, "failed"),
            _row("b", 900, 0.5)]
    assert pareto_front(rows) == {0, 1, 3, 6}


def _entry(config, parameters, board="icebreaker"):
    return sweep.SweepEntry(parameters, SweepPoint(config, board, "synth", None, TOOLS))


def _report(logic, seconds=20.0):
    resources = {"logic": {"used": logic, "available": 5280}, "dsp": {"used": 3, "available": 8},
                 "bram": {"used": 10, "available": 30}, "spram": {"used": 0, "available": 4}}
    return {"resources": resources, "clocks": {}, "timing_met": None,
            "build_seconds": seconds}


def test_report_rows_table_and_plot(tmp_path):
    base = PRESETS["icebreaker"].replace(clock_hz=24_000_000)
    entries = [_entry(base.replace(systolic_rows=r), {"systolic_rows": r}) for r in (1, 2, 3, 4)]
    small, large, failed, missing = (e.point for e in entries)
    records = {small.key: small.record("ok", report=_report(2800)),
               large.key: large.record("ok", report=_report(2600)),
               failed.key: failed.record("failed", "its worker died | twice")}
    rows = sweep_rows(entries, records)
    assert [row["status"] for row in rows] == ["ok", "ok", "failed", "missing"]
    # The 2-row array has more MACs per cycle with less logic: the 1-row one is dominated.
    assert [row["pareto"] for row in rows] == [False, True, False, False]
    assert rows[1]["clock_mhz"] == 24.0 and rows[1]["fmax_mhz"] is None
    assert rows[1]["gmacs"] == pytest.approx(2 * 3 * 24e6 / 1e9)
    report = write_report(tmp_path, rows, [({"systolic_rows": 99}, "too many rows")],
                          {"spec": "x"})
    assert json.loads((tmp_path / "report.json").read_text()) == report
    table = (tmp_path / "report.md").read_text()
    assert table == markdown_table(rows, [({"systolic_rows": 99}, "too many rows")]) + "\n"
    lines = table.splitlines()
    assert all(line.count("|") == lines[0].count("|") for line in lines[:6])
    assert "| 2600/5280 (49%) |" in lines[3] and lines[3].endswith("| **yes** |")
    assert "failed: its worker died / twice" in lines[4]
    assert "- systolic_rows=99: too many rows" in lines
    assert (tmp_path / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_with_a_model_the_front_is_of_predicted_inferences_per_second(tmp_path):
    base = PRESETS["icebreaker"].replace(clock_hz=24_000_000)
    # Fewer MACs but fewer cycles for the model (say, less tiling waste): the model
    # decides the front, not the peak GMAC/s.
    entries = [sweep.SweepEntry({"systolic_rows": r}, SweepPoint(
        base.replace(systolic_rows=r), "icebreaker", "synth", None, TOOLS),
        ModelCost("int8", cycles)) for r, cycles in ((2, 1000.0), (4, 1500.0))]
    records = {e.point.key: e.point.record("ok", report=_report(3000)) for e in entries}
    rows = sweep_rows(entries, records)
    assert [row["inferences_per_second"] for row in rows] == [24e6 / 1000, 24e6 / 1500]
    assert rows[1]["gmacs"] > rows[0]["gmacs"]
    assert [row["pareto"] for row in rows] == [True, False]
    table = markdown_table(rows).splitlines()
    assert "| inferences/s |" in table[0] and "| 24000 |" in table[2]
