"""Fixtures for the data tests: a fresh seed, a session-wide tfds data_dir and small shapes datasets.

Every tfds dataset the tests prepare goes into one temporary data_dir for the session, so the tests
neither read nor write ~/tensorflow_datasets and the small shapes variants are generated once.
"""
from __future__ import annotations

import ml_collections
import numpy as np
import pytest

from data_test_helpers import shapes_config


@pytest.fixture
def seed() -> int:
    """A fresh seed per test run; printed so that a failure can be replayed."""
    value = int(np.random.SeedSequence().entropy % (2**63))
    print(f"seed={value}")
    return value


@pytest.fixture
def rng(seed) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.fixture(scope="session")
def tfds_data_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("tfds_data"))


@pytest.fixture(scope="session")
def single_shapes_config(tfds_data_dir) -> ml_collections.ConfigDict:
    return shapes_config("single", tfds_data_dir)


@pytest.fixture(scope="session")
def multi_shapes_config(tfds_data_dir) -> ml_collections.ConfigDict:
    return shapes_config("multi", tfds_data_dir)
