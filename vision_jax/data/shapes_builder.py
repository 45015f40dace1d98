"""The generated shapes dataset as a local tfds builder, and its loader into canonical examples.

Configs (`data_config.shapes_variant`):
- `single`: 64x64 images with exactly one shape on a cluttered background; 10000 train / 1000 test.
  For classification and localization (`label` = the shape's class, `boxes` holds its one box).
- `multi`: 128x128 images with 1 to 6 shapes that may overlap; 5000 train / 500 test. For detection,
  instance and semantic segmentation.
Sizes can be changed with `data_config.shapes_num_train` / `shapes_num_test` (e.g. 64 in tests); a
non-default size is its own builder config (`single_train64_test32`) in the data_dir. Example i of a
split is the same whatever the split size: it is `shapes.generate_example(variant, split seed, i)`.

The data is generated with NumPy on first use (seconds) into `data_dir/vision_jax_shapes/<config>/`.
On disk each example holds the image, the instance map (zlib), classes and boxes; the loader expands the
instance map into the canonical `masks` [N, H, W] and `segmentation` [H, W].
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from vision_jax.data import shapes
from vision_jax.data import tfds_reading
from vision_jax.data.dataset_info import DatasetInfo

_DEFAULT_SIZES = {"single": (10_000, 1_000), "multi": (5_000, 500)}
# A fixed seed per (variant, split): the data never changes between machines or runs.
_SPLIT_SEEDS = {("single", "train"): 1_001, ("single", "test"): 1_002, ("multi", "train"): 2_001, ("multi", "test"): 2_002}


class ShapesConfig(tfds.core.BuilderConfig):
    """A scene variant ('single' or 'multi') and the number of examples in each split."""

    def __init__(self, *, variant: str, num_train: int, num_test: int, **kwargs):
        super().__init__(**kwargs)
        self.variant = variant
        self.num_train = num_train
        self.num_test = num_test


def _config_name(variant: str, num_train: int, num_test: int) -> str:
    if (num_train, num_test) == _DEFAULT_SIZES[variant]:
        return variant
    return f"{variant}_train{num_train}_test{num_test}"


class ShapesBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Local tfds builder for the generated shapes scenes (no download)."""

    name = "vision_jax_shapes"
    # tfds looks for a checksums file next to the builder's code (for downloads, which this builder has
    # none of); finding that path needs the optional `importlib_resources` package, so skip the search.
    code_path = None
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Five shape classes, single and multi variants."}
    BUILDER_CONFIGS = [
        ShapesConfig(name=v, variant=v, num_train=n_train, num_test=n_test, description=f"{v} variant, default sizes")
        for v, (n_train, n_test) in _DEFAULT_SIZES.items()
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        size = shapes.VARIANTS[self.builder_config.variant].image_size
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                # Raw bytes: the pixel noise leaves PNG only ~25% smaller, at 1-2 ms per image to
                # encode (and without an encoding tfds would store uint8 as a slow int64 list); the
                # instance map is mostly runs of equal values and zlib makes it ~20x smaller.
                "image": tfds.features.Tensor(
                    shape=(size, size, 3), dtype=np.uint8, encoding=tfds.features.Encoding.BYTES
                ),
                "instance_map": tfds.features.Tensor(
                    shape=(size, size), dtype=np.uint8, encoding=tfds.features.Encoding.ZLIB
                ),
                "classes": tfds.features.Tensor(shape=(None,), dtype=np.int64),
                "boxes": tfds.features.Tensor(shape=(None, 4), dtype=np.float32),
                "label": tfds.features.ClassLabel(names=shapes.SHAPE_CLASS_NAMES),
            }),
            # Stored in generation order, so the example at position i is generate_example(.., i).
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        config = self.builder_config
        return {
            "train": self._generate_examples("train", config.num_train),
            "test": self._generate_examples("test", config.num_test),
        }

    def _generate_examples(self, split: str, num_examples: int):
        variant_name = self.builder_config.variant
        variant = shapes.VARIANTS[variant_name]
        seed = _SPLIT_SEEDS[(variant_name, split)]
        for index in range(num_examples):
            yield index, shapes.generate_example(variant, seed, index)


def make_builder(variant: str, num_train: int | None, num_test: int | None, data_dir: str | None) -> ShapesBuilder:
    """A ShapesBuilder for `variant` with the given split sizes (None = default size)."""
    if variant not in _DEFAULT_SIZES:
        raise ValueError(f"unknown shapes_variant {variant!r}; known: {sorted(_DEFAULT_SIZES)}")
    default_train, default_test = _DEFAULT_SIZES[variant]
    num_train = default_train if num_train is None else int(num_train)
    num_test = default_test if num_test is None else int(num_test)
    if num_train < 1 or num_test < 1:
        raise ValueError(f"shapes_num_train={num_train} and shapes_num_test={num_test} must be >= 1")
    name = _config_name(variant, num_train, num_test)
    if name == variant:
        config = name  # the class's own config object
    else:
        config = ShapesConfig(name=name, variant=variant, num_train=num_train, num_test=num_test,
                              description=f"{variant} variant, {num_train} train / {num_test} test")
    return ShapesBuilder(config=config, data_dir=data_dir)


def to_canonical(example: dict) -> dict:
    """Stored example -> canonical example (see dataset_info.py).

    masks[i] = (instance_map == i + 1); segmentation = 0 where no object, classes[i] + 1 on object i.
    """
    instance_map = example["instance_map"]  # uint8 [H, W]
    classes = example["classes"]
    num_instances = tf.shape(classes)[0]
    instance_values = tf.range(1, num_instances + 1, dtype=tf.int32)
    masks = tf.equal(tf.cast(instance_map, tf.int32)[None], instance_values[:, None, None])
    # Lookup table value -> semantic class: 0 -> background, i + 1 -> classes[i] + 1.
    semantic_of_instance = tf.concat([tf.zeros([1], tf.int64), classes + 1], axis=0)
    segmentation = tf.gather(semantic_of_instance, tf.cast(instance_map, tf.int32))
    return {
        "image": example["image"],
        "image_id": example["image_id"],
        "label": example["label"],
        "boxes": example["boxes"],
        "classes": classes,
        "is_crowd": tf.zeros([num_instances], tf.bool),
        "masks": tf.cast(masks, tf.uint8),
        "segmentation": tf.cast(segmentation, tf.uint8),
    }


def load_shapes(data_config, split: str, *, process_index: int, process_count: int) -> tuple[tf.data.Dataset, DatasetInfo]:
    """Loader for name 'shapes'. data_config keys: data_dir, shapes_variant ('single' | 'multi',
    default 'single'), shapes_num_train, shapes_num_test (None = 10000/1000 single, 5000/500 multi)."""
    variant = data_config.get("shapes_variant", "single") or "single"
    builder = make_builder(
        variant, data_config.get("shapes_num_train"), data_config.get("shapes_num_test"), data_config.get("data_dir")
    )
    tfds_reading.prepare(builder, what_to_do="The shapes data is generated locally; check that data_dir is writable.")
    tfds_reading.check_split(builder, split, "shapes")
    ds = tfds_reading.read_process_shard(builder, split, process_index=process_index, process_count=process_count)
    ds = ds.map(to_canonical, num_parallel_calls=tf.data.AUTOTUNE)
    size = shapes.VARIANTS[variant].image_size
    info = DatasetInfo(
        name=f"shapes/{variant}",
        num_classes=shapes.NUM_SHAPE_CLASSES,
        class_names=shapes.SHAPE_CLASS_NAMES,
        num_examples={s: builder.info.splits[s].num_examples for s in tfds_reading.split_names(builder)},
        image_shape=(size, size, 3),
        has=frozenset({"label", "boxes", "masks", "segmentation"}),
        segmentation_class_names=("background",) + shapes.SHAPE_CLASS_NAMES,
    )
    return ds, info
