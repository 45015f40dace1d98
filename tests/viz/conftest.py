import numpy as np
import pytest


@pytest.fixture
def seed() -> int:
    """A fresh seed per test run; printed so that a failure can be replayed."""
    value = int(np.random.SeedSequence().entropy % (2**63))
    print(f"seed={value}")
    return value


@pytest.fixture
def rng(seed) -> np.random.Generator:
    return np.random.default_rng(seed)
