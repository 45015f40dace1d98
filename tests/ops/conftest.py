"""Fixtures for the ops tests: a fresh seed per test and random boxes with degenerate cases."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def seed() -> int:
    """A fresh seed per test run; printed so that a failure can be replayed."""
    value = int(np.random.SeedSequence().entropy % (2 ** 63))
    print(f"seed={value}")
    return value


@pytest.fixture
def rng(seed) -> np.random.Generator:
    return np.random.default_rng(seed)


def sample_boxes(rng: np.random.Generator, num_boxes: int, image_size: float = 200.0,
                 degenerate_fraction: float = 0.2, allow_inverted: bool = True) -> np.ndarray:
    """[num_boxes, 4] float32 xyxy boxes, partly outside the image, with degenerate ones mixed in.

    Degenerate kinds: zero width, zero height, a point, an exact duplicate of another box,
    integer coordinates (shared edges), and, if allowed, inverted boxes (x2 < x1 or y2 < y1).
    """
    centre = rng.uniform(-0.1 * image_size, 1.1 * image_size, (num_boxes, 2))
    size = image_size * np.exp(rng.uniform(np.log(0.02), np.log(0.6), (num_boxes, 2)))
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
    kinds = rng.integers(0, 6 if allow_inverted else 5, num_boxes)
    degenerate = rng.uniform(size=num_boxes) < degenerate_fraction
    for i in np.flatnonzero(degenerate):
        if kinds[i] == 0:
            boxes[i, 2] = boxes[i, 0]
        elif kinds[i] == 1:
            boxes[i, 3] = boxes[i, 1]
        elif kinds[i] == 2:
            boxes[i, 2:] = boxes[i, :2]
        elif kinds[i] == 3 and num_boxes > 1:
            boxes[i] = boxes[rng.integers(num_boxes)]
        elif kinds[i] == 4:
            boxes[i] = np.round(boxes[i] / 10) * 10
        elif kinds[i] == 5:
            boxes[i] = boxes[i, [2, 3, 0, 1]] if rng.uniform() < 0.5 else boxes[i, [2, 1, 0, 3]]
    return boxes.astype(np.float32)


@pytest.fixture
def box_sampler():
    """The ``sample_boxes`` function, for tests that draw boxes with the test's rng."""
    return sample_boxes
