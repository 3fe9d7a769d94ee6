"""A small CNN as a program across both engines, for tests/test_program_device.py and
bench/program_link.py.

Conv 3x3 (pad 1) + ReLU + max pool 2 on the systolic engine into the ternary unit's
activation memory, a ternary conv 3x3 + ReLU + global average pool back into the systolic
engine's, and a dense layer to the output memory as raw int32. Descriptors come from
:class:`tritile.sw.conv.Im2colWalk`; the golden model from ``tritile.sw.conv`` and
``tritile.sw.numerics``.
"""

import numpy as np

from tritile.sw.config import PRESETS
from tritile.sw.conv import (Im2colWalk, Window, avgpool_int8, conv2d_int8, conv2d_ternary,
                             maxpool_int8)
from tritile.sw.engines import engine
from tritile.sw.numerics import gemm_int8, requantize
from tritile.sw.protocol import Engine, LayerFlag

__all__ = ["CONFIG", "SYSTOLIC", "TERNARY", "H", "W", "C_IN", "CLASSES", "SYSTOLIC_INPUT",
           "layer_fields", "Cnn"]

CONFIG = PRESETS["sim-small"]
SYSTOLIC, TERNARY = engine("systolic"), engine("ternary")
H = W = 8
C_IN, C1, C2, CLASSES = 3, 8, 16, 10
SYSTOLIC_INPUT, TERNARY_MAP, POOLED = 0, 0, 100    # activation words of the maps


def _ct(channels, spec):
    return -(-channels // spec.chunk(CONFIG))


def layer_fields(spec, walk, source_base, n, flags, **fields):
    """Return the descriptor fields of a layer that walks ``walk`` from ``source_base``."""
    names = ("in_h", "in_w", "chunks", "out_h", "out_w", "kernel_w", "stride_y",
             "stride_x", "pad_top", "pad_left", "x_step", "row_step", "image_step",
             "tap_row_step")
    return dict({name: getattr(walk, name) for name in names},
                engine=spec.protocol_id, flags=int(flags), m=walk.rows,
                k=walk.groups * spec.chunk(CONFIG), n=n, base0=walk.base0 + source_base,
                **fields)


def _requant(rng, n, shift):
    return rng.integers(1 << 12, 1 << 14, n).astype(np.int32), np.full(n, shift, np.int32)


class Cnn:
    """The network's integer parameters, its program and its golden model."""

    def __init__(self, rng):
        self.conv = Window(3, pads=1)
        self.W0 = rng.integers(-128, 128, (9 * C_IN, C1), dtype=np.int8)
        self.b0 = rng.integers(-2000, 2000, C1).astype(np.int32)
        self.m0, self.s0 = _requant(rng, C1, 22)
        self.T1 = rng.integers(-1, 2, (9 * C1, C2), dtype=np.int8)
        self.m1, self.s1 = _requant(rng, C2, 18)
        self.pool_mult, self.pool_shift = 4096, 16      # x 1/16 for the 4 x 4 window
        self.W2 = rng.integers(-128, 128, (C2, CLASSES), dtype=np.int8)
        self.b2 = rng.integers(-5000, 5000, CLASSES).astype(np.int32)

    def golden(self, x):
        acc0 = conv2d_int8(x, self.W0, self.conv, self.b0)
        y0 = maxpool_int8(requantize(acc0, self.m0, self.s0, relu=True), Window(2, 2))
        y1 = requantize(conv2d_ternary(y0, self.T1, self.conv), self.m1, self.s1, relu=True)
        y2 = avgpool_int8(y1, Window(4, 4), np.full(C2, self.pool_mult, np.int32),
                          np.full(C2, self.pool_shift, np.int32))
        return gemm_int8(y2.reshape(1, C2), self.W2, self.b2)

    def descriptors(self):
        walk0 = Im2colWalk.of(self.conv, 1, H, W, _ct(C_IN, SYSTOLIC))
        walk1 = Im2colWalk.of(self.conv, 1, H // 2, W // 2, _ct(C1, TERNARY))
        walk2 = Im2colWalk.of(Window(1), 1, 1, 1, _ct(C2, SYSTOLIC))
        return [
            layer_fields(SYSTOLIC, walk0, SYSTOLIC_INPUT, C1, LayerFlag.RELU | LayerFlag.MAX_POOL,
                   weight_base=0, param_base=0, dest_engine=Engine.TERNARY,
                   dest_base=TERNARY_MAP, dest_chunks=_ct(C1, TERNARY), pool_k=2,
                   pool_out_h=H // 2, pool_out_w=W // 2),
            layer_fields(TERNARY, walk1, TERNARY_MAP, C2, LayerFlag.RELU | LayerFlag.AVERAGE_POOL,
                   weight_base=0, param_base=C1, dest_engine=Engine.SYSTOLIC,
                   dest_base=POOLED, dest_chunks=_ct(C2, SYSTOLIC), pool_k=4,
                   pool_out_h=1, pool_out_w=1, pool_mult=self.pool_mult,
                   pool_shift=self.pool_shift),
            layer_fields(SYSTOLIC, walk2, POOLED, CLASSES, LayerFlag.RAW | LayerFlag.TO_OUTPUT,
                   weight_base=self.systolic_words(), param_base=C1 + C2, out_base=0),
        ]

    def systolic_words(self):
        """Weight words of layer 0 (N tiles x K rows): where layer 2's weights start."""
        k = 9 * _ct(C_IN, SYSTOLIC) * SYSTOLIC.chunk(CONFIG)
        return -(-C1 // CONFIG.systolic_cols) * k

    def load(self, dev):
        x = np.zeros((1, H, W, C_IN), np.int8)
        dev.write_layer_weights("systolic", SYSTOLIC.conv_operands(CONFIG, x, self.W0,
                                                                   self.conv)[1], base=0)
        y = np.zeros((1, H // 2, W // 2, C1), np.int8)
        dev.write_layer_weights("ternary", TERNARY.conv_operands(CONFIG, y, self.T1,
                                                                 self.conv)[1], base=0)
        W2 = np.zeros((_ct(C2, SYSTOLIC) * SYSTOLIC.chunk(CONFIG), CLASSES), np.int8)
        W2[:C2] = self.W2
        dev.write_layer_weights("systolic", W2, base=self.systolic_words())
        dev.write_layer_params(0, self.b0, self.m0, self.s0)
        dev.write_layer_params(C1, np.zeros(C2, np.int32), self.m1, self.s1)
        dev.write_layer_params(C1 + C2, self.b2, np.ones(CLASSES, np.int32),
                               np.ones(CLASSES, np.int32))
        dev.load_program(self.descriptors())
