"""Helpers shared by the data tests (imported by basename, as pytest's rootdir-relative import allows)."""
from __future__ import annotations

import ml_collections

SMALL_SHAPES = {"single": (64, 24), "multi": (40, 12)}  # (train, test) sizes generated for tests


def shapes_config(variant: str, data_dir: str) -> ml_collections.ConfigDict:
    """A data config for a small shapes variant stored in data_dir."""
    num_train, num_test = SMALL_SHAPES[variant]
    return ml_collections.ConfigDict({
        "name": "shapes", "root": None, "data_dir": data_dir, "shapes_variant": variant,
        "shapes_num_train": num_train, "shapes_num_test": num_test,
    })
