"""An engine's word memory (hw/engine_memory.py): one port or two, and which get one."""

import pytest
from amaranth.back import rtlil
from amaranth_boards.icebreaker import ICEBreakerPlatform

from helpers import simulate
from tritile.hw.engine_memory import (EngineMemory, check_ice40_memories,
                                      single_port_memories)
from tritile.sw.cli import main
from tritile.sw.config import PRESETS, ConfigError


def _run_against_model(single_port, rng, cycles=300, width=24, depth=12,
                       read_during_write=True):
    """Drive random reads and byte writes; check every read against a model of the port(s).

    One port: a cycle that writes does not read (the data holds in simulation). Two
    ports: the read gives the word before the cycle's write; without the promise
    (``read_during_write=False``) a read of the word being written is not checked.
    """
    dut = EngineMemory(width, depth, single_port=single_port,
                       read_during_write=read_during_write)
    lanes = width // 8

    async def bench(ctx):
        words = [0] * depth
        expected = None
        for _ in range(cycles):
            read_en, read_addr = int(rng.integers(0, 2)), int(rng.integers(0, depth))
            write_en = int(rng.integers(0, 1 << lanes)) if rng.random() < 0.5 else 0
            write_addr, data = int(rng.integers(0, depth)), int(rng.integers(0, 1 << width))
            ctx.set(dut.read_en, read_en)
            ctx.set(dut.read_addr, read_addr)
            ctx.set(dut.write_en, write_en)
            ctx.set(dut.write_addr, write_addr)
            ctx.set(dut.write_data, data)
            if read_en and not (single_port and write_en):
                expected = words[read_addr]
                if not read_during_write and write_en and write_addr == read_addr:
                    expected = None
            for lane in range(lanes):
                if write_en >> lane & 1:
                    mask = 0xFF << 8 * lane
                    words[write_addr] = words[write_addr] & ~mask | data & mask
            await ctx.tick()
            if expected is not None:
                assert ctx.get(dut.read_data) == expected

    simulate(dut, bench)


@pytest.mark.parametrize("single_port", [True, False])
def test_reads_and_byte_writes_match_the_model_of_the_ports(single_port, rng):
    _run_against_model(single_port, rng)


def test_a_memory_without_the_read_during_write_promise_reads_what_was_written(rng):
    _run_against_model(False, rng, read_during_write=False)


def test_only_a_memory_without_the_promise_lets_yosys_drop_its_emulation():
    def rtlil_of(read_during_write):
        return rtlil.convert(EngineMemory(24, 16, single_port=False,
                                          read_during_write=read_during_write))

    assert "no_rw_check" in rtlil_of(False)
    assert "no_rw_check" not in rtlil_of(True)


def test_a_single_port_memory_is_sprams_side_by_side_on_ice40():
    text = rtlil.convert(EngineMemory(24, 16384, single_port=True),
                         platform=ICEBreakerPlatform())
    assert text.count("cell \\SB_SPRAM256KA") == 2
    assert "SB_SPRAM256KA" not in rtlil.convert(EngineMemory(24, 16384, single_port=False),
                                                platform=ICEBreakerPlatform())


def test_the_presets_put_their_large_memories_in_the_four_sprams():
    assert single_port_memories(PRESETS["icebreaker"]) == {"systolic_act": 2,
                                                          "systolic_weights": 2}
    assert single_port_memories(PRESETS["icebreaker-ternary"]) == {"ternary_act": 4}


def test_program_mode_keeps_the_activation_memories_two_ported():
    config = PRESETS["icebreaker"].replace(conv_walk=1, max_layers=4)
    assert single_port_memories(config) == {"systolic_weights": 2}


def test_program_mode_with_more_activations_than_block_ram_is_refused():
    config = PRESETS["icebreaker"].replace(conv_walk=1, max_layers=4, act_depth=65472)
    with pytest.raises(ConfigError) as error:
        check_ice40_memories(config)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("act_depth must be at most ")
    most = int(message.split()[5])
    check_ice40_memories(config.replace(act_depth=most))
    with pytest.raises(ConfigError):
        check_ice40_memories(config.replace(act_depth=most + 1))
    check_ice40_memories(config.replace(conv_walk=0, max_layers=0))    # SPRAM without


def test_tritile_build_refuses_it_in_one_line_before_synthesis(tmp_path, capsys):
    path = tmp_path / "program.json"
    path.write_text(PRESETS["icebreaker"].replace(conv_walk=1, max_layers=4).to_json())
    assert main(["build", "--board", "icebreaker", "--config", str(path),
                 "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("tritile build: error: act_depth must be at most 15296 with "
                          "program mode on iCE40")
    assert not (tmp_path / "out").exists()
