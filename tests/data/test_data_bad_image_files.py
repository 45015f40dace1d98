"""Issue 15, item 1: a user's image that cannot be decoded, or whose size differs from its annotation, is
reported by path (and COCO image id), at load time or when tf.data reads it, never as TensorFlow's bare
`Invalid PNG data` / `jpeg::Uncompress failed`; boxes clipped or dropped by coco_json are logged.

Each test does what the user did: a JPEG or PNG cut short (header intact) in image_folder, mask_folder
(image or mask) and coco_json; a coco_json whose height/width differ from the file; a file that breaks
after the run started. Images are random noise of random sizes, files and cut points drawn from the
test's seed (printed on failure).
"""
from __future__ import annotations

import json
import logging
import os

import ml_collections
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from vision_jax.data import data_errors, datasets, image_files, pipeline

FORMATS = {"jpeg": ".jpg", "png": ".png"}


def save_image(path, rng, image_format: str, size: tuple[int, int] | None = None) -> None:
    height, width = size or (int(v) for v in rng.integers(40, 90, 2))
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(pixels).save(path, format=image_format.upper())


def truncate(path, rng) -> None:
    """Cuts the file at a random point past the first quarter: the header stays, the data is cut."""
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: int(len(data) * rng.uniform(0.25, 0.9))])


def corrupt_inside(path, rng) -> None:
    """Flips bytes inside a PNG's image data; the signature and the IEND chunk at the end stay intact."""
    data = bytearray(open(path, "rb").read())
    start = data.index(b"IDAT") + 8 + int(rng.integers(0, 16))
    for i in range(start, start + 24):
        data[i] ^= 0x5A
    open(path, "wb").write(bytes(data))


def folder_config(name: str, root) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({"name": name, "root": str(root), "data_dir": None})


def identity_preprocess(example, seed):
    del seed
    return {"image": tf.image.resize(example["image"], [8, 8]), "image_id": example["image_id"]}


def read_all(ds) -> None:
    """Reads every batch the way the train loop's evaluation does."""
    for _ in pipeline.eval_batches(ds, identity_preprocess, batch_size=2):
        pass


def write_image_folder(root, rng, *image_formats: str, per_class: int = 3) -> list[str]:
    """root/train/{cat,dog}/*: per_class images each, cycling through image_formats; their paths in the
    loader's order."""
    paths = []
    for class_name in ("cat", "dog"):
        for i in range(per_class):
            image_format = image_formats[i % len(image_formats)]
            path = os.path.join(root, "train", class_name, f"{i:03d}{FORMATS[image_format]}")
            save_image(path, rng, image_format)
            paths.append(path)
    return paths


@pytest.mark.parametrize("image_format", ["jpeg", "png"])
def test_image_folder_names_a_truncated_image_at_load_time(image_format, tmp_path, rng, seed):
    paths = write_image_folder(tmp_path, rng, image_format)
    bad = paths[int(rng.integers(len(paths)))]
    truncate(bad, rng)
    with pytest.raises(ValueError) as error:
        datasets.load(folder_config("image_folder", tmp_path), "train")
    message = str(error.value)
    assert message.startswith(f"image_folder: {bad} is truncated or corrupt"), f"seed={seed}: {message}"
    assert "fix or remove it" in message and "{{" not in message, message


def test_image_folder_lists_every_bad_file_in_one_error(tmp_path, rng, seed):
    paths = write_image_folder(tmp_path, rng, "jpeg", "png", per_class=4)
    bad = sorted(rng.choice(paths, 3, replace=False).tolist())
    for path in bad[:2]:
        truncate(path, rng)
    with open(bad[2], "wb") as f:
        f.write(b"<html>not found</html>")  # a download that saved an error page
    with pytest.raises(ValueError) as error:
        datasets.load(folder_config("image_folder", tmp_path), "train")
    message = str(error.value)
    assert f"3 of {len(paths)} image files cannot be used" in message, f"seed={seed}: {message}"
    for path in bad:
        assert path in message, f"seed={seed}: {path} missing from {message}"
    assert f"{bad[2]} is not a readable JPEG or PNG image (first bytes b'<html>no')" in message
    assert message.index(bad[0]) < message.index(bad[1]), "listed in the loader's order"


def test_a_jpeg_with_bytes_after_its_end_marker_is_accepted(tmp_path, rng, seed):
    """Some cameras append data after the end-of-image marker: TensorFlow decodes such files, so the
    end-of-file check must not refuse them (it falls back to a full decode)."""
    paths = write_image_folder(tmp_path, rng, "jpeg", per_class=1)
    clean = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    trailer = rng.integers(0, 256, int(rng.integers(1, 5000)), dtype=np.uint8).tobytes()
    with open(paths[0], "ab") as f:
        f.write(trailer + b"\x00" * int(rng.integers(0, 5000)))
    ds, _ = datasets.load(folder_config("image_folder", tmp_path), "train")
    decoded = [e["image"] for e in ds.as_numpy_iterator()]
    for got, expected in zip(decoded, clean):
        assert got.shape == expected.shape and np.abs(got.astype(int) - expected).max() <= 1, f"seed={seed}"


@pytest.mark.parametrize("which", ["first", "last", "random"])
def test_a_file_broken_after_load_is_named_when_the_pipeline_reads_it(which, tmp_path, rng, seed):
    paths = write_image_folder(tmp_path, rng, "png")
    ds, _ = datasets.load(folder_config("image_folder", tmp_path), "train")
    bad = {"first": paths[0], "last": paths[-1], "random": paths[int(rng.integers(len(paths)))]}[which]
    truncate(bad, rng)  # e.g. a sync job rewrites the folder while the run trains
    with pytest.raises(data_errors.DataFileError) as error:
        read_all(ds)
    assert str(error.value) == (
        f"image_folder: {bad} cannot be read or decoded (a truncated or corrupt JPEG/PNG?); fix or remove it"
    ), f"seed={seed}"
    # Iterating the loader's dataset directly gives TensorFlow's error, whose text still names the file.
    with pytest.raises(tf.errors.InvalidArgumentError, match=str(bad)):
        list(ds.as_numpy_iterator())


def test_a_png_corrupt_inside_passes_the_load_check_and_is_named_in_training(tmp_path, rng, seed):
    paths = write_image_folder(tmp_path, rng, "png")
    bad = paths[int(rng.integers(len(paths)))]
    corrupt_inside(bad, rng)
    ds, info = datasets.load(folder_config("image_folder", tmp_path), "train")  # the end of file is intact
    batches = pipeline.train_batches(ds, identity_preprocess, batch_size=2, seed=seed % 2**31,
                                     num_examples=info.num_examples["train"])
    with pytest.raises(data_errors.DataFileError, match=f"^image_folder: {bad} cannot be read or decoded"):
        next(batches)


def write_mask_folder(root, rng, count: int = 4, classes_txt: bool = False) -> tuple[list[str], list[str]]:
    images, masks = [], []
    for i in range(count):
        height, width = (int(v) for v in rng.integers(40, 80, 2))
        image_format = ["jpeg", "png"][i % 2]
        image_path = os.path.join(root, "train", "images", f"{i:03d}{FORMATS[image_format]}")
        save_image(image_path, rng, image_format, (height, width))
        mask_path = os.path.join(root, "train", "masks", f"{i:03d}.png")
        os.makedirs(os.path.dirname(mask_path), exist_ok=True)
        Image.fromarray(rng.integers(0, 3, (height, width), dtype=np.uint8), mode="L").save(mask_path)
        images.append(image_path)
        masks.append(mask_path)
    if classes_txt:
        (root / "classes.txt").write_text("background\nroad\ncar\n")
    return images, masks


@pytest.mark.parametrize("which", ["jpeg image", "png image", "mask"])
@pytest.mark.parametrize("classes_txt", [False, True])
def test_mask_folder_names_a_truncated_image_or_mask_at_load_time(which, classes_txt, tmp_path, rng, seed):
    images, masks = write_mask_folder(tmp_path, rng, classes_txt=classes_txt)
    pick = int(rng.integers(2)) * 2  # a JPEG image (even positions) or a PNG one (odd)
    bad = {"jpeg image": images[pick], "png image": images[pick + 1], "mask": masks[int(rng.integers(len(masks)))]}[which]
    truncate(bad, rng)
    with pytest.raises(ValueError, match=f"^mask_folder: {bad} is truncated or corrupt"):
        datasets.load(folder_config("mask_folder", tmp_path), "train")


def test_mask_folder_names_a_mask_corrupt_inside_when_read(tmp_path, rng, seed):
    _, masks = write_mask_folder(tmp_path, rng, classes_txt=True)  # no scan of the masks at load time
    bad = masks[int(rng.integers(len(masks)))]
    corrupt_inside(bad, rng)
    ds, _ = datasets.load(folder_config("mask_folder", tmp_path), "train")
    with pytest.raises(data_errors.DataFileError, match=f"^mask_folder: {bad} cannot be decoded"):
        read_all(ds)


def write_coco(root, rng, image_ids: list[int], image_format: str = "png") -> list[dict]:
    """root/train.json and its images (no annotations unless added); returns the json's images."""
    images = []
    for image_id in image_ids:
        height, width = (int(v) for v in rng.integers(40, 80, 2))
        file_name = f"{image_id:05d}{FORMATS[image_format]}"
        save_image(os.path.join(root, "train", file_name), rng, image_format, (height, width))
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
    content = {"images": images, "annotations": [], "categories": [{"id": 1, "name": "thing"}]}
    (root / "train.json").write_text(json.dumps(content))
    return images


@pytest.mark.parametrize("image_format", ["jpeg", "png"])
def test_coco_json_names_a_truncated_image_and_its_id_at_load_time(image_format, tmp_path, rng, seed):
    image_ids = sorted(int(v) for v in rng.choice(100_000, 5, replace=False))
    images = write_coco(tmp_path, rng, image_ids, image_format)
    bad = images[int(rng.integers(len(images)))]
    path = os.path.join(tmp_path, "train", bad["file_name"])
    truncate(path, rng)
    with pytest.raises(ValueError) as error:
        datasets.load(folder_config("coco_json", tmp_path), "train")
    expected = f"coco_json: {tmp_path / 'train.json'}: {path} (image id {bad['id']}) is truncated or corrupt"
    assert str(error.value).startswith(expected), f"seed={seed}: {error.value}"


def test_coco_json_lists_images_whose_size_differs_from_the_json(tmp_path, rng, seed):
    image_ids = sorted(int(v) for v in rng.choice(100_000, 6, replace=False))
    images = write_coco(tmp_path, rng, image_ids, "jpeg")
    content = json.loads((tmp_path / "train.json").read_text())
    wrong = rng.choice(len(images), 2, replace=False)
    content["images"][wrong[0]]["height"] += int(rng.integers(1, 10))
    entry = content["images"][wrong[1]]
    entry["height"], entry["width"] = entry["width"], entry["height"] + 1  # e.g. EXIF rotation not applied
    (tmp_path / "train.json").write_text(json.dumps(content))
    with pytest.raises(ValueError) as error:
        datasets.load(folder_config("coco_json", tmp_path), "train")
    message = str(error.value)
    assert "2 of 6 image files cannot be used" in message, f"seed={seed}: {message}"
    for index in wrong:
        real, listed = images[index], content["images"][index]
        path = os.path.join(tmp_path, "train", real["file_name"])
        assert (f"{path} (image id {real['id']}) is {real['width']}x{real['height']} (width x height), but "
                f"train.json says width {listed['width']}, height {listed['height']}") in message, f"seed={seed}: {message}"


def test_coco_json_image_resized_after_load_is_named_with_its_id_when_read(tmp_path, rng, seed):
    images = write_coco(tmp_path, rng, [4, 8, 15])
    ds, _ = datasets.load(folder_config("coco_json", tmp_path), "train")
    changed = images[int(rng.integers(3))]
    path = os.path.join(tmp_path, "train", changed["file_name"])
    save_image(path, rng, "png", (changed["height"] + 3, changed["width"]))
    with pytest.raises(data_errors.DataFileError) as error:
        read_all(ds)
    assert str(error.value) == (
        f"coco_json: {path} (image id {changed['id']}) decodes to {changed['width']}x{changed['height'] + 3} "
        f"(width x height), but its json says width {changed['width']}, height {changed['height']}"
    ), f"seed={seed}"


def test_coco_json_logs_clipped_and_dropped_boxes_with_examples(tmp_path, rng, seed, caplog):
    images = write_coco(tmp_path, rng, [3, 5])
    content = json.loads((tmp_path / "train.json").read_text())
    first, second = images
    w, h = first["width"], first["height"]
    content["annotations"] = [
        {"id": 1, "image_id": 3, "category_id": 1, "bbox": [2, 2, 5, 5], "area": 25, "iscrowd": 0},  # inside
        {"id": 2, "image_id": 3, "category_id": 1, "bbox": [w - 4, 1, 10, 6], "area": 60, "iscrowd": 0},  # clipped
        {"id": 3, "image_id": 5, "category_id": 1, "bbox": [-8, -3, 10, 9], "area": 90, "iscrowd": 0},  # clipped
        {"id": 4, "image_id": 5, "category_id": 1, "bbox": [1, 1, 0, 5], "area": 0, "iscrowd": 0},  # no area
    ]
    (tmp_path / "train.json").write_text(json.dumps(content))
    with caplog.at_level(logging.WARNING, logger="vision_jax.data.coco_json"):
        ds, _ = datasets.load(folder_config("coco_json", tmp_path), "train")
    log = caplog.text
    json_path = tmp_path / "train.json"
    clipped = (f"{json_path}: 2 of 4 boxes extend past their image and were clipped to it, e.g. annotation 2 of "
               f"image id 3 ({tmp_path / 'train' / first['file_name']}, {w}x{h}): bbox [{w - 4}, 1, 10, 6] -> "
               f"x1 y1 x2 y2 [{w - 4}.0, 1.0, {w}.0, 7.0]; annotation 3 of image id 5")
    dropped = (f"{json_path}: 1 of 4 boxes have no area inside their image and were dropped, e.g. annotation 4 of "
               f"image id 5 ({tmp_path / 'train' / second['file_name']}")
    assert clipped in log and dropped in log, f"seed={seed}: {log}"
    counts = {int(e["image_id"]): (len(e["boxes"]), int(e["dropped_degenerate_boxes"])) for e in ds.as_numpy_iterator()}
    assert counts == {3: (2, 0), 5: (1, 1)}


def test_the_load_time_check_reads_each_file_once_until_it_changes(tmp_path, rng, seed, monkeypatch):
    paths = write_image_folder(tmp_path, rng, "jpeg")
    config = folder_config("image_folder", tmp_path)
    opened = []
    real_open = open

    def counting_open(path, *args, **kwargs):
        opened.append(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(image_files, "open", counting_open, raising=False)
    datasets.load(config, "train")
    assert sorted(opened) == sorted(paths)
    opened.clear()
    datasets.load(config, "train")  # an evaluation reloading the split: only stat() of each file
    assert opened == []
    changed = paths[int(rng.integers(len(paths)))]
    save_image(changed, rng, "jpeg")
    os.utime(changed, ns=(os.stat(changed).st_atime_ns, os.stat(changed).st_mtime_ns + 10**9))
    datasets.load(config, "train")
    assert opened == [changed], f"seed={seed}"
