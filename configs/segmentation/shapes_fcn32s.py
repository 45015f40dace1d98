"""FCN-32s on the generated shapes scenes: the FCN-8s recipe (shapes_fcn8s.py) without the skips, for
the side-by-side comparison of the paper's Table 2.

    python scripts/train.py --config configs/segmentation/shapes_fcn32s.py --workdir runs/shapes_fcn32s

Measured: see the README's results table (filled from runs on the 2-core CPU machine).
"""

import importlib.util
import os


def _sibling(name: str):
    """Loads configs/segmentation/<name>.py (configs are files, not a package)."""
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def get_config():
    c = _sibling("shapes_fcn8s").get_config()
    c.model.name = "fcn32s"
    return c
