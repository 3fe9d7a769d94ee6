"""Cells per SoC component: the packing estimate on hand-made netlists, and a real yosys
statistics run of a small hierarchical design next to its flat build."""

import pytest
from amaranth import Elaboratable, Module, Signal
from amaranth.lib.memory import Memory
from amaranth_boards.icebreaker import ICEBreakerPlatform

from tritile.hw.bitstream import DEVICES, run_flow
from tritile.hw.component_costs import component_rows, costs_script, module_costs
from tritile.sw.commands.build import format_components
from tritile.sw.toolchain import find_tool


def _cell(kind, **ports):
    outputs = {"O", "Q", "CO"}
    return {"type": kind, "connections": {p: [b] for p, b in ports.items()},
            "port_directions": {p: "output" if p in outputs else "input" for p in ports}}


def _module(cells, outputs=()):
    return {"cells": dict(enumerate(cells)),
            "ports": {"out": {"direction": "output", "bits": list(outputs)}}}


def test_lut_and_flip_flop_share_a_cell_only_when_the_lut_drives_nothing_else():
    shared = _module([_cell("SB_LUT4", I0=1, I1=2, I2=3, I3=4, O=5),
                      _cell("SB_DFF", C=9, D=5, Q=6)], outputs=[6])
    assert module_costs(shared, "ice40") == {"logic": 1, "lut4": 1, "ff": 1, "carry": 0,
                                             "bram": 0, "spram": 0, "dsp": 0}
    # The LUT output also leaves the module: the flip-flop needs a cell of its own.
    apart = _module(shared["cells"].values(), outputs=[5, 6])
    assert module_costs(apart, "ice40")["logic"] == 2
    # A flip-flop fed by another flip-flop has no LUT to join.
    chain = _module([_cell("SB_DFFE", C=9, E=8, D=1, Q=2), _cell("SB_DFF", C=9, D=2, Q=3)])
    assert module_costs(chain, "ice40")["logic"] == 2


def test_carry_joins_the_lut_that_sums_its_inputs():
    # The adder bit: LUT4 (I1, I2, I3) = (a, b, carry in), SB_CARRY (I0, I1, CI) = (a, b, ci).
    adder = [_cell("SB_LUT4", I0="0", I1=1, I2=2, I3=3, O=4),
             _cell("SB_CARRY", I0=1, I1=2, CI=3, CO=5)]
    assert module_costs(_module(adder, outputs=[4, 5]), "ice40")["logic"] == 1
    # A constant carry in: nextpnr gives the carry a cell of its own.
    first = [_cell("SB_LUT4", I0="0", I1=1, I2=2, I3="0", O=4),
             _cell("SB_CARRY", I0=1, I1=2, CI="0", CO=5)]
    assert module_costs(_module(first, outputs=[4, 5]), "ice40")["logic"] == 2
    # One LUT holds one carry: a second carry on the same bits takes its own cell.
    twice = adder + [_cell("SB_CARRY", I0=1, I1=2, CI=3, CO=6)]
    assert module_costs(_module(twice, outputs=[4, 5, 6]), "ice40")["logic"] == 2


def test_ecp5_logic_is_lut4s_plus_two_per_ccu2c():
    cells = [_cell("LUT4", A=1, Z=2), _cell("CCU2C", A0=1), _cell("TRELLIS_FF", DI=2, Q=3),
             _cell("DP16KD"), _cell("MULT18X18D"), _cell("TRELLIS_DPR16X4")]
    assert module_costs(_module(cells), "ecp5") == {"logic": 3, "lut4": 1, "ff": 1,
                                                    "ccu2c": 1, "lutram": 1, "bram": 1,
                                                    "dsp": 1}


def test_statistics_script_keeps_the_root_and_two_levels_below():
    script = ("read_rtlil top.il\n# placeholder\nsynth_ice40 -dsp -top top\nstat\n"
              "write_json top.json\n")
    rtlil = "".join(f"module \\{name}\nend\n" for name in
                    ("top", "top.pll", "top.soc", "top.soc.a", "top.soc.a.b", "top.soc.a.b.c"))
    assert costs_script(script, rtlil, "soc", "costs.json").splitlines() == [
        "read_rtlil top.il", "# placeholder",
        "setattr -mod -set keep_hierarchy 1 top.soc top.soc.a top.soc.a.b",
        "synth_ice40 -dsp -top top -run :coarse",
        "proc", "flatten", "opt_expr", "opt_clean",
        "opt_hier", "opt_clean", "opt_hier", "opt_clean",
        "synth_ice40 -dsp -top top -run coarse:", "write_json costs.json"]
    with pytest.raises(ValueError, match="no module top.chip"):
        costs_script(script, rtlil, "chip", "costs.json")


class _Counter(Elaboratable):
    """A counter and its value of the cycle before."""

    def __init__(self, width):
        self.count = Signal(width)
        self.delayed = Signal(width)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += [self.count.eq(self.count + 1), self.delayed.eq(self.count)]
        return m


class _Table(Elaboratable):
    """A block RAM read at a counter's address, the counter one level further down."""

    def __init__(self):
        self.data = Signal(8)

    def elaborate(self, platform):
        m = Module()
        m.submodules.address = address = _Counter(9)
        m.submodules.ram = ram = Memory(shape=8, depth=512, init=[i % 256 for i in range(512)])
        read = ram.read_port()
        m.d.comb += [read.addr.eq(address.count), self.data.eq(read.data)]
        return m


class _Chip(Elaboratable):
    def __init__(self):
        self.out = Signal(8)

    def elaborate(self, platform):
        m = Module()
        m.submodules.counter = counter = _Counter(16)
        m.submodules.table = table = _Table()
        # Four of the delayed count's 16 bits are read: the flat build keeps 4 of its
        # flip-flops, and so must the statistics run, across the boundary.
        m.d.sync += self.out.eq(table.data ^ counter.count[8:] ^ counter.delayed[:4])
        return m


class _Top(Elaboratable):
    def elaborate(self, platform):
        m = Module()
        m.submodules.chip = chip = _Chip()
        leds = [platform.request("led", i) for i in range(2)]
        m.d.comb += [leds[0].o.eq(chip.out.xor()), leds[1].o.eq(chip.out[0])]
        return m


def test_component_table_of_a_real_synthesis_adds_up_to_the_flat_build(tmp_path):
    report = run_flow(ICEBreakerPlatform(), _Top(), DEVICES["iCE40UP5K-SG48"], tmp_path,
                      stage="synth", component_root="chip", progress=lambda message: None)
    components = report["components"]
    modules = components["modules"]
    # The root and its parts down to two levels are components; table.address and the
    # top (PLL-less clock, LED buffers) are not.
    assert set(modules) == {"board", "chip", "counter", "table", "table.address"}
    assert modules["counter"]["ff"] == 16 + 4 and modules["table.address"]["ff"] == 9
    assert modules["table"]["bram"] == 1 and modules["table"]["ff"] == 0
    assert modules["chip"]["ff"] == 8
    for resource, total in components["total"].items():
        assert total == sum(m[resource] for m in modules.values()), resource
    # Nothing here is shared across a boundary: the kept hierarchy costs nothing.
    assert components["total"] == components["flat"]
    assert components["flat"]["bram"] == report["synthesis_estimate"]["bram"] == 1
    rows = dict(component_rows(modules, "chip"))
    assert rows["table"]["ff"] == 9 and rows["  table.address"] == modules["table.address"]
    lines = format_components(components)
    assert any(line.split()[:2] == ["counter", str(modules["counter"]["logic"])]
               for line in lines)


def test_a_failed_component_synthesis_costs_the_table_not_the_build(tmp_path, monkeypatch):
    # yosys (the real one, behind a wrapper) fails on the second synthesis only, as
    # YoWASP yosys 0.70 did with an internal error on one kept module of ulx3s-85f.
    real = find_tool("yosys").path
    wrapper = tmp_path / "yosys"
    # yosys writes the error into its own log (-l), the flow's report quotes it.
    wrapper.write_text(f"#!/bin/sh\ncase \"$*\" in *components.ys*) "
                       f"echo 'ERROR: Assert failed' >$3; exit 1;; esac\n"
                       f"exec '{real}' \"$@\"\n")
    wrapper.chmod(0o755)
    monkeypatch.setenv("YOSYS", str(wrapper))
    messages = []
    report = run_flow(ICEBreakerPlatform(), _Top(), DEVICES["iCE40UP5K-SG48"],
                      tmp_path / "build", stage="synth", component_root="chip",
                      progress=messages.append)
    assert "components" not in report
    assert report["components_error"] == (
        f"yosys failed (exit 1); log {tmp_path / 'build' / 'yosys-components.log'}: "
        "ERROR: Assert failed")
    assert report["synthesis_estimate"]["bram"] == 1
    assert any(m.startswith("cells per component unavailable") for m in messages)


def test_a_module_yosys_fails_on_among_the_others_is_measured_apart(tmp_path, monkeypatch):
    # The real yosys behind a wrapper that fails as YoWASP yosys 0.70 does on ulx3s-85f's
    # ternary core: on one module kept beside the others, not when it is kept alone.
    real = find_tool("yosys").path
    wrapper = tmp_path / "yosys"
    wrapper.write_text(
        "#!/bin/sh\n"
        "log=/dev/null; prev=\n"
        "for arg; do [ \"$prev\" = -l ] && log=$arg; prev=$arg; script=$arg; done\n"
        "if grep -q 'keep_hierarchy.*top.chip.counter.*top.chip.table ' \"$script\"; then\n"
        "  echo \"Extracted 42 AND gates and 0 wires from module \\`top.chip.table'\" >$log\n"
        "  echo \"ERROR: Assert \\`wire' failed in abc_ops_reintegrate.cc:596.\" >>$log\n"
        "  exit 1\n"
        f"fi\nexec '{real}' \"$@\"\n")
    wrapper.chmod(0o755)
    expected = run_flow(ICEBreakerPlatform(), _Top(), DEVICES["iCE40UP5K-SG48"],
                        tmp_path / "real", stage="synth", component_root="chip",
                        progress=lambda message: None)["components"]
    monkeypatch.setenv("YOSYS", str(wrapper))
    messages = []
    report = run_flow(ICEBreakerPlatform(), _Top(), DEVICES["iCE40UP5K-SG48"],
                      tmp_path / "build", stage="synth", component_root="chip",
                      progress=messages.append)
    components = report["components"]
    assert components["apart"] == ["table"]
    assert "yosys failed on table among the kept components: measuring it apart" in messages
    # Nothing crosses the table's boundary here, so measured apart it costs the same.
    assert components["modules"] == expected["modules"]
    assert components["total"] == expected["total"]
    assert format_components(components)[-1] == (
        "    (table: measured in a synthesis of its own, yosys failed on it beside the "
        "others)")
