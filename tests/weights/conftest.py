"""Fixtures for the weights tests: a fresh seed per test, printed so a failure can be replayed."""

import numpy as np
import pytest


@pytest.fixture
def seed() -> int:
    value = int(np.random.SeedSequence().entropy % 2**31)
    print(f"seed={value}")
    return value
