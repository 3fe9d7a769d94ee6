"""The accelerator's parameters: one validated, hashable, JSON-serializable object.

Every generator, simulation, build and host program is made for one
:class:`AcceleratorConfig`; its :attr:`~AcceleratorConfig.config_id` is stored in the
device's capability ROM so that a host can refuse a program made for another design.
"""

import dataclasses
import hashlib
import json
from pathlib import Path

from .numerics import MULT_BITS

__all__ = ["AcceleratorConfig", "ConfigError", "PRESETS", "load_config",
           "int8_accumulator_bits", "ternary_accumulator_bits"]

# Bound for one int8 x int8 product: (-128) * (-128).
_MAX_PRODUCT = 128 * 128


class ConfigError(ValueError):
    """An accelerator parameter breaks one of the rules of :class:`AcceleratorConfig`."""


def int8_accumulator_bits(max_k):
    """Return the signed width that holds any sum of ``max_k`` int8 x int8 products."""
    return (max_k * _MAX_PRODUCT).bit_length() + 1


def ternary_accumulator_bits(max_k):
    """Return the signed width that holds any sum of ``max_k`` int8 x {-1, 0, +1} terms.

    This is the ``8 + ceil(log2 K) + 1`` of docs/numerics.md.
    """
    return 8 + (max_k - 1).bit_length() + 1


@dataclasses.dataclass(frozen=True)
class AcceleratorConfig:
    """Parameters of one tritile accelerator.

    Parameters
    ----------
    systolic_rows, systolic_cols : int
        Size R x C of the weight-stationary int8 processing-element array. R is the
        reduction (K) dimension of a tile, C the output-channel (N) dimension. Both 0:
        the device has no int8 engine.
    ternary_lanes : int
        Number L of output channels the ternary unit computes at once; 0 (with
        ``ternary_fan_in`` 0): the device has no ternary engine.
    ternary_fan_in : int
        Number P of int8 inputs each ternary lane adds per cycle.
    ternary_read_stages : int
        Registers between the ternary unit's memories and its lanes, 0 to 2. 0 suits
        iCE40, where a register of its own costs a logic cell per bit; each stage adds a
        cycle of latency and shortens the path from block RAM, for higher clocks on ECP5.
    data_width : int
        Width of activations and int8 weights; the numerics contract fixes it at 8.
    acc_width : int
        Width of the int8 engine's accumulators; must hold ``max_k`` products of -128 x -128
        (see :func:`int8_accumulator_bits`) and is at most 32, the output contract.
    max_m, max_k, max_n : int
        Largest problem (rows of X, reduction length, output channels) one engine call
        accepts. Larger layers are tiled by the host driver.
    act_depth : int
        Activation memory, in int8 elements (shared by both engines).
    weight_depth : int
        Int8 weight memory, in weights.
    trit_depth : int
        Ternary weight memory, in trits (stored packed on chip).
    out_depth : int
        Output memory, in results (int32 or int8).
    clock_hz : int
        Target clock of the design, in Hz.
    baud : int
        UART baud rate of the host link (8N1).
    conv_walk : int
        1: the engines read their activations through the implicit-im2col walk
        (convolutions run in place); 0: dense addressing only (row-major rows, no
        padding or window logic), for devices that have no room for the walk.
    max_layers : int
        Layer descriptors the device holds for program mode (RUN_PROGRAM, protocol
        version 3); 0: no program mode.
    param_depth : int
        Entries of the requantizer's parameter memory (``PARAMS`` records), so that the
        channels of a program's layers can stay resident side by side; 0: ``max_n``
        (:attr:`param_entries`).
    requant_serial : int
        How the requantizer multiplies: 0, on DSP blocks, one beat a cycle; k (1 to
        :data:`~tritile.sw.numerics.MULT_BITS`), in logic, k multiplier bits a cycle, so
        it takes a beat every ``ceil(MULT_BITS / k)`` cycles (the planner's cycle model
        counts the stalls) and leaves every DSP to the int8 array.
    """

    systolic_rows: int = 4
    systolic_cols: int = 4
    ternary_lanes: int = 8
    ternary_fan_in: int = 8
    ternary_read_stages: int = 0
    data_width: int = 8
    acc_width: int = 32
    max_m: int = 64
    max_k: int = 256
    max_n: int = 64
    act_depth: int = 4096
    weight_depth: int = 4096
    trit_depth: int = 16384
    out_depth: int = 4096
    clock_hz: int = 24_000_000
    baud: int = 1_000_000
    conv_walk: int = 1
    max_layers: int = 0
    param_depth: int = 0
    requant_serial: int = 0

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{field.name} must be an integer, not {value!r}")
        _check_range(self, "systolic_rows", 0, 64)
        _check_range(self, "systolic_cols", 0, 64)
        _check_range(self, "ternary_lanes", 0, 256)
        _check_range(self, "ternary_fan_in", 0, 256)
        _check_range(self, "ternary_read_stages", 0, 2)
        for a, b, engine in (("systolic_rows", "systolic_cols", "int8 (systolic)"),
                             ("ternary_lanes", "ternary_fan_in", "ternary")):
            if (getattr(self, a) == 0) != (getattr(self, b) == 0):
                raise ConfigError(f"{a} and {b} must both be 0 (no {engine} engine) or "
                                  f"both at least 1, not {getattr(self, a)} and "
                                  f"{getattr(self, b)}")
        if not self.engines:
            raise ConfigError("a config needs at least one engine: systolic_rows and "
                              "ternary_lanes cannot both be 0")
        if self.data_width != 8:
            raise ConfigError(f"data_width must be 8 (the int8 numerics contract), "
                              f"not {self.data_width}")
        _check_range(self, "max_m", 1, 1 << 16)
        _check_range(self, "max_k", 1, 1 << 16)
        _check_range(self, "max_n", 1, 1 << 16)
        # max_k <= 2**16 keeps every int8 sum within 32 bits.
        need = int8_accumulator_bits(self.max_k)
        if not need <= self.acc_width <= 32:
            raise ConfigError(
                f"acc_width must be between {need} (enough for max_k={self.max_k} products "
                f"of -128 x -128) and 32, not {self.acc_width}")
        for name in ("act_depth", "weight_depth", "trit_depth", "out_depth"):
            _check_range(self, name, 1, 1 << 24)
        _check_at_least(self, "act_depth", self.max_k, "max_k (one row of activations)")
        _check_at_least(self, "weight_depth", self.systolic_rows * self.systolic_cols,
                        "systolic_rows * systolic_cols (one weight tile)")
        _check_at_least(self, "trit_depth", self.ternary_lanes * self.ternary_fan_in,
                        "ternary_lanes * ternary_fan_in (one trit tile)")
        _check_at_least(self, "out_depth", max(self.systolic_cols, self.ternary_lanes),
                        "max(systolic_cols, ternary_lanes) (one output row)")
        _check_range(self, "clock_hz", 1_000_000, 1_000_000_000)
        _check_range(self, "baud", 1200, 100_000_000)
        _check_range(self, "conv_walk", 0, 1)
        # RUN_PROGRAM names layers with bytes.
        _check_range(self, "max_layers", 0, 255)
        if self.max_layers and not self.conv_walk:
            raise ConfigError(f"max_layers must be 0 with conv_walk 0 (a program's layers "
                              f"walk windows), not {self.max_layers}")
        if self.param_depth:
            _check_range(self, "param_depth", self.max_n, 1 << 16)
        _check_range(self, "requant_serial", 0, MULT_BITS)
        if self.clock_hz < 4 * self.baud:
            raise ConfigError(f"baud must be at most clock_hz / 4 = {self.clock_hz // 4} "
                              f"so the UART can sample each bit, not {self.baud}")

    @property
    def engines(self):
        """Names of the engines a device built from this config has, in a fixed order."""
        return tuple(name for name, size in (("systolic", self.systolic_rows),
                                             ("ternary", self.ternary_lanes)) if size)

    def check_engines(self, *names):
        """Raise ConfigError unless a device built from this config has engines ``names``."""
        missing = [name for name in names if name not in self.engines]
        if missing:
            raise ConfigError(f"config {self.config_id} has no {' or '.join(missing)} "
                              f"engine (it has {' and '.join(self.engines)})")

    @property
    def param_entries(self):
        """Entries of the requantizer's parameter memory: ``param_depth``, or ``max_n``."""
        return self.param_depth or self.max_n

    @property
    def int8_macs_per_cycle(self):
        """Int8 multiply-accumulates the systolic array does per cycle at full rate."""
        return self.systolic_rows * self.systolic_cols

    @property
    def ternary_macs_per_cycle(self):
        """Ternary accumulations the ternary unit does per cycle at full rate."""
        return self.ternary_lanes * self.ternary_fan_in

    @property
    def int8_acc_bits(self):
        """Accumulator width the int8 engine needs for ``max_k``."""
        return int8_accumulator_bits(self.max_k)

    @property
    def ternary_acc_bits(self):
        """Accumulator width the ternary engine needs for ``max_k``."""
        return ternary_accumulator_bits(self.max_k)

    def to_dict(self):
        """Return the parameters as a plain dict (no derived values)."""
        return dataclasses.asdict(self)

    def to_json(self):
        """Return the canonical JSON text of the parameters (sorted keys, no spaces).

        A parameter of :data:`_OPTIONAL_FEATURES` is left out at 0 (the feature absent), so
        a config without the feature keeps the ``config_id`` it had before the parameter
        existed (ids are recorded in build reports, program files and docs).
        """
        data = {k: v for k, v in self.to_dict().items()
                if not (k in _OPTIONAL_FEATURES and v == 0)}
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data):
        """Build a config from a dict, rejecting unknown keys."""
        if not isinstance(data, dict):
            raise ConfigError(f"a config must be a JSON object, not {type(data).__name__}")
        data = {k: v for k, v in data.items() if k != "config_id"}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config parameter(s) {', '.join(unknown)}; "
                              f"known: {', '.join(sorted(known))}")
        return cls(**data)

    @classmethod
    def from_json(cls, text):
        """Build a config from JSON text."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    @property
    def config_id(self):
        """A stable 32-bit hash of the canonical JSON, as 8 hex digits."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:8]

    def replace(self, **changes):
        """Return a copy with some parameters changed (and validated)."""
        return dataclasses.replace(self, **changes)


#: Parameters added after config ids were published, each 0 when its feature is absent.
_OPTIONAL_FEATURES = ("max_layers", "param_depth", "requant_serial")


def _check_range(config, name, lo, hi):
    value = getattr(config, name)
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, not {value}")


def _check_at_least(config, name, minimum, why):
    value = getattr(config, name)
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum} = {why}, not {value}")


PRESETS = {
    # Small enough that Verilator builds and simulations in the test suite stay quick.
    # Program mode (max_layers) is in every preset that has the implicit-im2col walk.
    "sim-small": AcceleratorConfig(max_layers=16),
    # iCE40UP5K (5280 logic cells, 8 SB_MAC16, 30 EBR of 512 bytes): the int8 engine alone,
    # a 4 x 3 array on 6 SB_MAC16 (two int8 products each) and the requantizer on 2 (70 %
    # of the logic cells, docs/boards.md; the ternary unit has its own preset below).
    "icebreaker": AcceleratorConfig(
        systolic_rows=4, systolic_cols=3, ternary_lanes=0, ternary_fan_in=0,
        max_m=16, max_k=128, max_n=32, act_depth=65472, weight_depth=48768,
        trit_depth=3584, out_depth=256, acc_width=24, clock_hz=34_000_000,
        baud=1_000_000, conv_walk=0),
    # iCE40UP5K, the int8 engine alone on all 8 SB_MAC16: a 4 x 4 array (16 int8 products)
    # with the requantizer's multiply in logic, 4 bits a cycle (4 cycles a result: the
    # array's 16 results per K pass keep up from K = 64; at 2 bits, 8 cycles, only from
    # K = 128 = max_k), its memories in the SPRAMs; at the 40 MHz of the boards issue
    # (docs/boards.md: met on the third placement seed, which `tritile build` tries;
    # seeds spread about 4 MHz at this fill).
    "icebreaker-int8": AcceleratorConfig(
        systolic_rows=4, systolic_cols=4, ternary_lanes=0, ternary_fan_in=0,
        max_m=16, max_k=128, max_n=32, act_depth=65472, weight_depth=65024,
        trit_depth=3584, out_depth=256, acc_width=24, clock_hz=40_000_000,
        baud=1_000_000, conv_walk=0, requant_serial=4),
    # iCE40UP5K, the ternary unit alone: 8 lanes x 8 inputs (64 MACs a cycle, 2.43 GMAC/s
    # at 38 MHz; 82 % of the logic cells, docs/boards.md), no DSP for the array.
    "icebreaker-ternary": AcceleratorConfig(
        systolic_rows=0, systolic_cols=0, ternary_lanes=8, ternary_fan_in=8,
        max_m=16, max_k=128, max_n=32, act_depth=2048, weight_depth=1,
        trit_depth=4096, out_depth=256, acc_width=24, clock_hz=38_000_000,
        baud=1_000_000, conv_walk=0),
    # ECP5-85F: 156 MULT18X18D, 208 EBR. 144 int8 and 512 ternary MACs per cycle; the
    # ternary unit reads its block RAMs through two registers, the array its products
    # through the MULT18X18D's registers; the clock is below what the whole SoC routes at
    # (77.5 to 79.2 MHz at an 85 MHz target: the accumulators' read-out into the
    # requantizer, the sequencer's load tile), not yet the 100 MHz of the target
    # (docs/boards.md).
    "ulx3s-85f": AcceleratorConfig(
        systolic_rows=12, systolic_cols=12, ternary_lanes=32, ternary_fan_in=16,
        ternary_read_stages=2, max_m=128, max_k=512, max_n=128, act_depth=16384,
        weight_depth=32768, trit_depth=131072, out_depth=8192, clock_hz=75_000_000,
        baud=2_000_000, max_layers=16),
    # ECP5-25F: 28 MULT18X18D (16 for the array, 2 for the requantizer), 56 EBR.
    "orangecrab-25f": AcceleratorConfig(
        systolic_rows=4, systolic_cols=4, ternary_lanes=16, ternary_fan_in=8,
        max_m=128, max_k=512, max_n=128, act_depth=8192, weight_depth=16384,
        trit_depth=65536, out_depth=8192, clock_hz=48_000_000, baud=1_000_000,
        max_layers=16),
}


def load_config(name_or_file):
    """Return the preset called ``name_or_file``, or the config stored in that JSON file."""
    if isinstance(name_or_file, AcceleratorConfig):
        return name_or_file
    if name_or_file in PRESETS:
        return PRESETS[name_or_file]
    path = Path(name_or_file)
    if path.suffix == ".json" or path.exists():
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        return AcceleratorConfig.from_json(text)
    raise ConfigError(f"unknown config {name_or_file!r}: give a preset "
                      f"({', '.join(PRESETS)}) or a JSON file")
