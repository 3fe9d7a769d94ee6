"""Shared pytest fixtures (simulator and stream helpers: tests/helpers.py).

Randomized tests take their generator from a fixture: ``rng`` (a NumPy generator) or
``py_rng`` (a ``random.Random``). Each test gets its own generator, so its data never
depends on which tests ran before; the seed is printed, and ``TRITILE_SEED=N pytest ...``
replays a failure with the same data. A test that also reads ``capsys`` names ``rng``
first, so that the seed line is printed before the capture starts.
"""

import random

import numpy as np
import pytest

from helpers import seed as _seed


@pytest.fixture
def seed():
    """The seed of this test: ``TRITILE_SEED`` if set, else a fresh random one (printed)."""
    return _seed()


@pytest.fixture
def rng(seed):
    """A NumPy generator of this test's own, seeded by the ``seed`` fixture."""
    return np.random.default_rng(seed)


@pytest.fixture
def py_rng(seed):
    """A ``random.Random`` of this test's own, seeded by the ``seed`` fixture."""
    return random.Random(seed)
