"""Fixtures for the detection tests: a fresh seed per test (printed, so a failure can be replayed)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def seed() -> int:
    value = int(np.random.SeedSequence().entropy % (2**31))
    print(f"seed={value}")
    return value


@pytest.fixture
def rng(seed) -> np.random.Generator:
    return np.random.default_rng(seed)
