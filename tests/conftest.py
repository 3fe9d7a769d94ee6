"""Shared pytest fixtures.

Randomized tests take their generator from the ``rng`` fixture: each test gets its own
generator (so data never depends on which tests ran before), its seed is printed, and
``TRITILE_SEED=N pytest ...`` replays any failure with the same data.
"""

import os

import numpy as np
import pytest


@pytest.fixture
def seed():
    """The seed of this test: ``TRITILE_SEED`` if set, else a fresh random one (printed)."""
    value = os.environ.get("TRITILE_SEED")
    value = int(value) if value else int(np.random.SeedSequence().entropy % (1 << 32))
    print(f"seed={value} (replay with TRITILE_SEED={value})")
    return value


@pytest.fixture
def rng(seed):
    """A NumPy generator of this test's own, seeded by the ``seed`` fixture."""
    return np.random.default_rng(seed)
