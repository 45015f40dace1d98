"""Fixtures for the segmentation tests: a fresh seed per test (printed so a failure can be replayed)
and one tfds data_dir for the module-scoped generated datasets."""

import numpy as np
import pytest


@pytest.fixture
def seed() -> int:
    value = int(np.random.SeedSequence().entropy % 2**31)
    print(f"seed={value}")
    return value


@pytest.fixture(scope="session")
def segmentation_data_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("segmentation_tfds"))
