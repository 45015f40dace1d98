"""FCN-32s on the generated shapes scenes: the FCN-8s recipe (shapes_fcn8s.py) without the skips, for
the side-by-side comparison of the paper's Table 2.

    python scripts/train.py --config configs/segmentation/shapes_fcn32s.py --workdir runs/shapes_fcn32s

Measured on the 2-core CPU machine (shared: load average 5.8 at the start, 7.7 at the end), test split
(500 images), right after the FCN-8s run of shapes_fcn8s.py: mIoU 0.450, pixel accuracy 0.914, mean class
accuracy 0.538, frequency-weighted IoU 0.852 (IoU background 0.915, circle 0.600, square 0.413, triangle
0.232, star 0.219, cross 0.322); wall time 15 min 2 s. FCN-8s on the same recipe: mIoU 0.817. The
stride-32 scores, upsampled 32x, cannot draw the outline of shapes 18-52 px across; the skips can.
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
