"""PNG files of pictures drawn by a task."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image


def write_pictures(directory: str, pictures: list[np.ndarray], prefix: str = "eval") -> list[str]:
    """Writes uint8 [H, W, 3] pictures as `directory/{prefix}_{i:02d}.png`; returns the paths."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    for i, picture in enumerate(pictures):
        path = os.path.join(directory, f"{prefix}_{i:02d}.png")
        Image.fromarray(np.asarray(picture, np.uint8)).save(path)
        paths.append(path)
    return paths
