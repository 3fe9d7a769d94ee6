"""The engine registry: each engine's facts agree with the protocol, the layouts and the
gateware, and reading them (hardware facts included) needs no Amaranth."""

import subprocess
import sys

import numpy as np
import pytest

from tritile.sw.config import PRESETS, AcceleratorConfig
from tritile.sw.engines import (ENGINES, engine, engine_for_numerics, engine_of_target,
                                present_engines)
from tritile.sw.protocol import ENGINE_TARGETS, WRITABLE_TARGETS, Engine, Target, target_size

CONFIG = PRESETS["sim-small"]


def test_one_spec_per_protocol_engine_with_the_config_name():
    assert [spec.protocol_id for spec in ENGINES.values()] == list(Engine)
    assert tuple(ENGINES) == CONFIG.engines
    for spec in ENGINES.values():
        assert engine(spec.name) is engine(spec.protocol_id) is spec
        assert engine_for_numerics(spec.numerics) is spec
    with pytest.raises(ValueError, match="systolic, ternary"):
        engine("int8")


def test_every_engine_target_belongs_to_one_engine():
    for spec in ENGINES.values():
        assert spec.targets == ENGINE_TARGETS[spec.protocol_id]
        for number, target in enumerate(spec.targets):
            assert engine_of_target(target) is spec
            assert spec.core_target(target) == number
            assert target in WRITABLE_TARGETS
    assert engine_of_target(Target.PARAMS) is None


@pytest.mark.parametrize("name", list(ENGINES))
def test_memory_images_use_the_core_numbering_and_fit_the_targets(name):
    spec = engine(name)
    rng = np.random.default_rng(3)
    m, k, n = 5, 19, 11
    X = rng.integers(-128, 128, (m, k), dtype=np.int8)
    W = rng.integers(-1, 2, (k, n), dtype=np.int8)
    for packing in spec.packings:
        image = spec.memory_image(CONFIG, X, W, packing)
        weights = spec.weight_core_target(packing)
        assert sorted(image) == [0, weights]
        for number, data in image.items():
            assert 0 < len(data) <= target_size(CONFIG, spec.protocol_target(number))
        run, stride = spec.weight_runs(CONFIG, packing)
        assert 0 < run <= stride and len(image[weights]) % stride == 0
        used = np.frombuffer(image[weights], np.uint8).reshape(-1, stride)[:, :run].size
        assert used >= spec.weight_bytes(k, n, packing)
    with pytest.raises(ValueError, match="packing"):
        spec.check_packing("4bit")


def test_an_absent_engine_has_empty_targets():
    config = PRESETS["icebreaker"]
    assert [spec.name for spec in present_engines(config)] == ["systolic"]
    assert all(target_size(config, t) == 0 for t in engine("ternary").targets)
    assert all(target_size(config, t) > 0 for t in engine("systolic").targets)


def test_tile_sizes_and_weight_capacity_come_from_the_config():
    config = AcceleratorConfig(systolic_rows=3, systolic_cols=5, ternary_lanes=6,
                               ternary_fan_in=7)
    assert engine("systolic").tile_size(config) == (3, 5)
    assert engine("ternary").tile_size(config) == (7, 6)
    assert engine("ternary").sized(config, tile_n=2).ternary_lanes == 2
    assert engine("systolic").peak_macs_per_cycle(config) == 15
    assert engine("systolic").weight_capacity(config) == config.weight_depth
    assert engine("ternary").weight_capacity(config) == config.trit_depth


def test_layer_problems_name_each_broken_limit():
    config = CONFIG.replace(weight_depth=1000, trit_depth=2000)
    assert engine("systolic").layer_problems(config, 40, 20) == []
    problems = engine("systolic").layer_problems(config, 300, 20)
    assert any("max_k" in p for p in problems) and any("weight_depth" in p for p in problems)
    assert engine("ternary").layer_problems(config, 40, 40) == []
    assert any("trit_depth" in p for p in engine("ternary").layer_problems(config, 60, 40))


def test_cores_are_built_from_the_registry():
    pytest.importorskip("amaranth")
    for spec in ENGINES.values():
        core = spec.make_core(CONFIG)
        # The core's target field numbers every one of the engine's targets.
        assert len(spec.targets) <= 1 << len(core.write.payload.target)
        assert type(spec.make_engine(CONFIG).core) is type(core)


def test_the_registry_and_the_cycle_model_need_no_amaranth():
    code = ("import sys; from tritile.sw.engines import ENGINES; "
            "from tritile.sw.config import PRESETS; "
            "[s.plan(PRESETS['sim-small'], 4, 40, 20) for s in ENGINES.values()]; "
            "import tritile.sw.device, tritile.sw.executor; "
            "sys.exit('amaranth' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
