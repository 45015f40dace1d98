"""What a loaded dataset is: `DatasetInfo`, and the canonical example every loader yields.

A canonical example (one element of the `tf.data.Dataset` that `vision_jax.data.datasets.load` returns)
is a dict holding, depending on the dataset (`DatasetInfo.has` says which optional fields exist):

- `image`: uint8 [H, W, 3] (grayscale tiled to 3 channels).
- `image_id`: int64 scalar, unique within the split (over all processes).
- `label`: int64 scalar, image-level class in 0..num_classes-1.
- `boxes`: float32 [N, 4], (x1, y1, x2, y2) in absolute pixels of the original image; `classes`: int64
  [N] in 0..num_classes-1; `is_crowd`: bool [N].
- `masks`: uint8 [N, H, W], 0/1 instance masks (the visible part of each object).
- `segmentation`: uint8 [H, W], semantic class per pixel: 0 = background, k + 1 = object class k,
  255 = ignore.
"""

from __future__ import annotations

import dataclasses

CANONICAL_OPTIONAL_FIELDS = frozenset({"label", "boxes", "masks", "segmentation"})
SEGMENTATION_IGNORE_VALUE = 255


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset that the model and the evaluator need.

    name: the dataset name as given in the config (plus builder variant, e.g. 'shapes/single').
    num_classes: number of object/image classes, 0..C-1 (no background class).
    class_names: the C class names, index = class id.
    num_examples: split name -> number of examples in the whole split (all processes together).
    image_shape: (H, W, 3) when every image has that size; None for a variable dimension.
    has: which optional canonical fields exist, a subset of {'label', 'boxes', 'masks', 'segmentation'}.
    segmentation_class_names: names of the semantic values when `segmentation` exists: index 0 =
      'background', k + 1 = class_names[k]; the value 255 means ignore and has no name.
    """

    name: str
    num_classes: int
    class_names: tuple[str, ...]
    num_examples: dict[str, int]
    image_shape: tuple[int | None, int | None, int]
    has: frozenset[str]
    segmentation_class_names: tuple[str, ...] = ()

    def __post_init__(self):
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{self.name}: num_classes={self.num_classes} but {len(self.class_names)} class_names")
        unknown = set(self.has) - CANONICAL_OPTIONAL_FIELDS
        if unknown:
            raise ValueError(f"{self.name}: unknown fields in has: {sorted(unknown)}; known: {sorted(CANONICAL_OPTIONAL_FIELDS)}")
        if "segmentation" in self.has and not self.segmentation_class_names:
            raise ValueError(f"{self.name}: has 'segmentation' but no segmentation_class_names")
