"""A user's own image folder (tfds ImageFolder layout) through load(), and its errors."""
from __future__ import annotations

import io

import ml_collections
import numpy as np
import pytest
from PIL import Image

from vision_jax.data import datasets


def write_folder(root, rng) -> dict[str, list[tuple[str, str, np.ndarray]]]:
    """Writes root/<split>/<class>/*.png|jpg of random sizes and modes.

    Returns split -> [(class name, file name, the RGB pixels PIL reads back)], the reference content.
    """
    layout = {"train": {"zebra": 3, "cat": 4, "dog": 2}, "val": {"dog": 2, "cat": 1}}
    content = {}
    for split, classes in layout.items():
        content[split] = []
        for class_name, count in classes.items():
            folder = root / split / class_name
            folder.mkdir(parents=True)
            for i in range(count):
                height, width = (int(v) for v in rng.integers(5, 40, size=2))
                mode = ["RGB", "L", "RGBA"][i % 3]
                channels = {"RGB": 3, "L": 1, "RGBA": 4}[mode]
                pixels = rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)
                image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode)
                name = f"img{i}.png" if i != 1 else f"img{i}.PNG"  # extensions match in any case
                image.save(folder / name)
                content[split].append((class_name, name, np.asarray(Image.open(folder / name).convert("RGB"))))
            (folder / "notes.txt").write_text("not an image, ignored")
    return content


def test_images_labels_and_ids_match_the_files(tmp_path, rng, seed):
    content = write_folder(tmp_path, rng)
    config = ml_collections.ConfigDict({"name": "image_folder", "root": str(tmp_path), "data_dir": None})
    for split in ("train", "val"):
        ds, info = datasets.load(config, split)
        assert info.class_names == ("cat", "dog", "zebra")  # union over splits, sorted
        assert info.num_examples == {"train": 9, "val": 3}
        assert info.image_shape == (None, None, 3) and info.has == {"label"}
        # Reference order: sorted by (class, file name).
        expected = sorted(content[split], key=lambda item: (item[0], item[1]))
        examples = list(ds.as_numpy_iterator())
        assert len(examples) == len(expected), seed
        for position, (example, (class_name, _, pixels)) in enumerate(zip(examples, expected)):
            assert example["image_id"] == position
            assert info.class_names[example["label"]] == class_name
            assert example["image"].dtype == np.uint8
            np.testing.assert_array_equal(example["image"], pixels, err_msg=f"{split} {position} seed={seed}")


def test_jpeg_images_decode_like_pillow(tmp_path, rng, seed):
    folder = tmp_path / "train" / "a"
    folder.mkdir(parents=True)
    # Smooth random colour gradients: JPEG's natural content (pure noise exaggerates decoder rounding).
    y, x = np.mgrid[0:24, 0:31] / 30.0
    weights = rng.uniform(-1, 1, size=(3, 3))
    pixels = np.clip(128 + 100 * np.stack([weights[c, 0] * x + weights[c, 1] * y + weights[c, 2] * x * y for c in range(3)], -1), 0, 255)
    Image.fromarray(pixels.astype(np.uint8)).save(folder / "x.jpg", quality=95, subsampling=0)
    reference = np.asarray(Image.open(folder / "x.jpg").convert("RGB")).astype(np.int32)
    ds, _ = datasets.load(ml_collections.ConfigDict({"name": "image_folder", "root": str(tmp_path)}), "train")
    decoded = next(ds.as_numpy_iterator())["image"].astype(np.int32)
    # Saved without chroma subsampling (4:4:4) and decoded with the accurate integer DCT on both sides:
    # two libjpeg builds then differ by rounding only.
    assert decoded.shape == reference.shape, seed
    assert np.abs(decoded - reference).max() <= 1, (np.abs(decoded - reference).max(), seed)


@pytest.mark.parametrize("process_count", [2, 3])
def test_process_shards_partition_the_split(process_count, tmp_path, rng):
    write_folder(tmp_path, rng)
    config = ml_collections.ConfigDict({"name": "image_folder", "root": str(tmp_path)})
    ids = []
    for process_index in range(process_count):
        ds, _ = datasets.load(config, "train", process_index=process_index, process_count=process_count)
        shard = [int(e["image_id"]) for e in ds.as_numpy_iterator()]
        assert len(shard) in (9 // process_count, 9 // process_count + 1)
        ids += shard
    assert sorted(ids) == list(range(9))


def test_bad_folders_get_clear_errors(tmp_path, rng):
    config = ml_collections.ConfigDict({"name": "image_folder", "root": str(tmp_path / "missing")})
    with pytest.raises(ValueError, match=r"image_folder: root '.*missing' is not a folder"):
        datasets.load(config, "train")

    (tmp_path / "train" / "cat").mkdir(parents=True)
    (tmp_path / "train" / "cat" / "readme.txt").write_text("no images here")
    config.root = str(tmp_path)
    with pytest.raises(ValueError, match=r"image_folder: no images in .*train: expected train/<class name>/\*"):
        datasets.load(config, "train")
    with pytest.raises(ValueError, match=r"image_folder: split 'val' not found in .*; available splits: \['train'\]"):
        datasets.load(config, "val")

    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(buffer, format="PNG")
    (tmp_path / "train" / "cat" / "good.png").write_bytes(buffer.getvalue())
    (tmp_path / "train" / "cat" / "broken.png").write_bytes(b"this is text, not a PNG")
    with pytest.raises(ValueError, match=r"image_folder: .*broken.png is not a readable JPEG or PNG image"):
        datasets.load(config, "train")
