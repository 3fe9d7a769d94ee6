"""Fixtures shared by the tests (helpers for the simulator and streams: tests/helpers.py)."""

import random

import pytest

from helpers import seed


@pytest.fixture
def rng():
    """A ``random.Random`` with a printed seed (``TRITILE_SEED`` replays it)."""
    return random.Random(seed())
