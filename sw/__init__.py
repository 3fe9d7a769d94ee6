"""tritile host side: config schema, numerics contract, packing, planner, driver, CLI.

Needs numpy (and pyserial for the driver) only; nothing here imports Amaranth.
"""

from .config import AcceleratorConfig, ConfigError, PRESETS, load_config
from .numerics import (
    quantize_weights_int8, quantize_activations_int8, quantize_bias, requant_params,
    requantize, gemm_int8, ternarize_weights, quantize_activations_absmax, ternary_matmul,
)
from .packing import (
    pack_int8, pack_trits_2bit, unpack_trits_2bit, pack_trits_base3, unpack_trits_base3,
    packed_size,
)
from .planner import EnginePlan, plan_gemm, plan_ternary

__all__ = [
    "AcceleratorConfig", "ConfigError", "PRESETS", "load_config",
    "quantize_weights_int8", "quantize_activations_int8", "quantize_bias", "requant_params",
    "requantize", "gemm_int8", "ternarize_weights", "quantize_activations_absmax",
    "ternary_matmul",
    "pack_int8", "pack_trits_2bit", "unpack_trits_2bit", "pack_trits_base3",
    "unpack_trits_base3", "packed_size",
    "EnginePlan", "plan_gemm", "plan_ternary",
]
