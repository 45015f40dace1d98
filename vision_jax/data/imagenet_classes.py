"""The 1000 ImageNet-1k (ILSVRC 2012) class names, index = label.

`imagenet_classes.txt` (one name a line) is the list torchvision and PyTorch Hub publish
(pytorch/hub's imagenet_classes.txt): label k is the k-th WordNet id in sorted order, the order of
tfds' `imagenet2012` labels and of the classifier outputs of torchvision's and TensorFlow's
ImageNet models. Two names appear twice, as in the original synsets: 'crane' (the bird, 134; the
machine, 517) and 'maillot' (638 and 639).
"""

from __future__ import annotations

import functools
import os

IMAGENET_CLASSES_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "imagenet_classes.txt")


@functools.lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 names, index = ImageNet label."""
    with open(IMAGENET_CLASSES_FILE, encoding="utf-8") as file:
        names = tuple(line.rstrip("\n") for line in file if line.strip())
    if len(names) != 1000:
        raise ValueError(f"{IMAGENET_CLASSES_FILE} holds {len(names)} names, expected 1000")
    return names
