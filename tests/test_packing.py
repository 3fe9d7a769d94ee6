"""Properties of the weight packings of docs/numerics.md."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from tritile.sw import (pack_int8, pack_trits_2bit, unpack_trits_2bit, pack_trits_base3,
                        unpack_trits_base3, packed_size)

trit_arrays = st.lists(st.integers(-1, 1), max_size=200).map(lambda v: np.array(v, np.int8))


@given(trit_arrays)
def test_2bit_round_trip_any_length(trits):
    data = pack_trits_2bit(trits)
    assert len(data) == -(-trits.size // 4)
    np.testing.assert_array_equal(unpack_trits_2bit(data, trits.size), trits)


@given(trit_arrays)
def test_base3_round_trip_any_length(trits):
    data = pack_trits_base3(trits)
    assert len(data) == -(-trits.size // 5)
    np.testing.assert_array_equal(unpack_trits_base3(data, trits.size), trits)


def test_2bit_codes_and_order():
    # +1 -> 01, -1 -> 11, 0 -> 00, first trit in bits [1:0].
    assert pack_trits_2bit(np.array([1, -1, 0, 1], np.int8)) == bytes([0b01_00_11_01])
    assert pack_trits_2bit(np.array([-1], np.int8)) == bytes([0b11])


def test_base3_every_group_matches_formula_and_decoder():
    groups = np.array(np.meshgrid(*[[-1, 0, 1]] * 5, indexing="ij")).reshape(5, -1).T
    data = pack_trits_base3(groups.astype(np.int8))
    for group, q in zip(groups, data):
        v = sum((int(t) + 1) * 3 ** (4 - i) for i, t in enumerate(group))
        assert q == (v * 256 + 242) // 243
        decoded = [((((q * 3 ** i) & 0xFF) * 3) >> 8) - 1 for i in range(5)]
        assert decoded == list(group)
    assert len(set(data)) == 243


def test_base3_is_1_6_bits_per_trit():
    trits = np.zeros(5000, np.int8)
    assert len(pack_trits_base3(trits)) * 8 / trits.size == 1.6


def test_pack_flattens_row_major():
    T = np.array([[1, 0, -1], [0, 1, 1]], np.int8)
    np.testing.assert_array_equal(unpack_trits_base3(pack_trits_base3(T), 6), T.reshape(-1))
    W = np.array([[-128, 1], [127, -1]], np.int8)
    assert pack_int8(W) == bytes([0x80, 0x01, 0x7F, 0xFF])


@pytest.mark.parametrize("bad, message", [
    (np.array([2], np.int8), r"values must be in \{-1, 0, 1\}, found 2"),
    (np.array([0, 1, -2, 3], np.int8), r"values must be in \{-1, 0, 1\}, found -2"),
    (np.array([1.0]), "T must have dtype int8, not float64"),
    (np.array([1], np.int16), "T must have dtype int8, not int16")])
def test_packers_reject_non_trits(bad, message):
    with pytest.raises(ValueError, match=message):
        pack_trits_2bit(bad)
    with pytest.raises(ValueError, match=message):
        pack_trits_base3(bad)


def test_pack_int8_rejects_other_dtypes():
    with pytest.raises(ValueError, match="int8"):
        pack_int8(np.array([1, 2], np.int32))


def test_unpack_rejects_bad_input():
    with pytest.raises(ValueError, match="0b10"):
        unpack_trits_2bit(bytes([0b10]), 1)
    with pytest.raises(ValueError, match="3 trits take 1 bytes in 2bit packing, not 2"):
        unpack_trits_2bit(bytes(2), 3)
    with pytest.raises(ValueError, match="5 trits take 2 bytes in 2bit packing, not 1"):
        unpack_trits_2bit(bytes(1), 5)
    with pytest.raises(ValueError, match="padding"):
        unpack_trits_2bit(bytes([0b01_00]), 1)
    invalid = next(q for q in range(256) if q not in set(pack_trits_base3(
        np.array(np.meshgrid(*[[-1, 0, 1]] * 5)).reshape(5, -1).T.astype(np.int8))))
    with pytest.raises(ValueError, match="not a base-3"):
        unpack_trits_base3(bytes([invalid]), 5)
    with pytest.raises(ValueError, match="padding"):
        unpack_trits_base3(pack_trits_base3(np.array([1, 1], np.int8)), 1)
    with pytest.raises(ValueError, match="count"):
        unpack_trits_base3(b"", -1)
    with pytest.raises(ValueError, match="bytes"):
        unpack_trits_base3([1, 2], 5)


def test_packed_size():
    assert packed_size(0, "base3") == 0
    assert packed_size(11, "base3") == 3
    assert packed_size(9, "2bit") == 3
    with pytest.raises(ValueError, match="packing"):
        packed_size(4, "3bit")
