"""Pictures readable at a glance (vision_jax.viz, vision_jax.train.pictures): caption contrast and size,
captions that do not overlap, ground-truth outlines visible on any image, missed objects marked, the
matching that decides what is missed, contact sheets. Random images and boxes from a fresh seed."""

import os

import numpy as np
import pytest
from PIL import Image

from vision_jax import viz
from vision_jax.train import pictures as picture_files

CLASS_NAMES = tuple(f"class{k}" for k in range(20))


def luminance(rgb) -> np.ndarray:
    """WCAG 2 relative luminance of sRGB uint8 colours [..., 3]."""
    c = np.asarray(rgb, np.float64) / 255.0
    return np.where(c <= 0.03928, c / 12.92, ((c + 0.055) / 1.055) ** 2.4) @ [0.2126, 0.7152, 0.0722]


def contrast_ratio(a, b) -> np.ndarray:
    la, lb = luminance(a), luminance(b)
    return (np.maximum(la, lb) + 0.05) / (np.minimum(la, lb) + 0.05)


def random_box(rng, size: int, margin: int = 4, min_side: int = 12) -> np.ndarray:
    x1, y1 = rng.uniform(margin, size - margin - min_side, 2)
    x2, y2 = rng.uniform(x1 + min_side, size - margin), rng.uniform(y1 + min_side, size - margin)
    return np.array([x1, y1, x2, y2])


def ring(canvas: viz.Canvas, box, outside: bool) -> tuple[slice, slice, np.ndarray]:
    """Where an outline of `box` is drawn: the line_width ring just outside (truth, missed) or inside
    (prediction) the box, in the canvas's pixels: (rows, columns, mask within them)."""
    x0, y0, x1, y1 = (int(round(v)) for v in canvas.to_canvas(box))
    w = canvas.line_width
    if outside:
        x0, y0, x1, y1 = x0 - w, y0 - w, x1 + w, y1 + w
    ys, xs = np.mgrid[y0:y1, x0:x1]
    mask = (xs < x0 + w) | (xs >= x1 - w) | (ys < y0 + w) | (ys >= y1 - w)
    return slice(y0, y1), slice(x0, x1), mask


def ring_pixels(picture, canvas, box, outside=True) -> np.ndarray:
    """The pixels of `box`'s outline that no caption covers (a caption may sit on an outline)."""
    uncovered = np.ones(picture.shape[:2], bool)
    for caption in canvas.captions:
        x0, y0, x1, y1 = caption.rect
        uncovered[y0:y1, x0:x1] = False
    rows, columns, mask = ring(canvas, box, outside)
    return picture[rows, columns][mask & uncovered[rows, columns]]


def test_caption_text_contrasts_with_its_chip_whatever_the_chip_colour(rng, seed):
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    canvas = viz.Canvas(image)
    backgrounds = [tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(10)]
    backgrounds += [(118, 118, 118), (255, 0, 255), (0, 0, 255), (255, 255, 0)]  # near black/white's tie, saturated
    for i, background in enumerate(backgrounds):
        x, y = rng.uniform(0, 50, 2)
        canvas.caption((x, y, x + 10, y + 10), f"Hg{i} 0.{i:02d}", background)
    picture = canvas.finish()
    assert len(canvas.captions) == len(backgrounds)
    for caption in canvas.captions:
        x0, y0, x1, y1 = caption.rect
        chip = picture[y0:y1, x0:x1].reshape(-1, 3)
        ink = chip[np.any(chip != caption.background, axis=1)]
        assert len(ink) >= 40, f"seed={seed}: {caption} has {len(ink)} text pixels"
        assert np.mean(np.all(chip == caption.background, axis=1)) >= 0.4, f"seed={seed}: {caption} not filled"
        ratios = contrast_ratio(ink, caption.background)
        # The glyphs' cores are the text colour; their anti-aliased edges blend towards the chip.
        assert ratios.max() >= 4.5 and np.quantile(ratios, 0.75) >= 3.0, (
            f"seed={seed}: {caption}: contrast max {ratios.max():.2f}, upper quartile {np.quantile(ratios, 0.75):.2f}"
        )


def test_captions_of_a_64_pixel_image_are_drawn_at_least_10_pixels_tall(rng, seed):
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    box = random_box(rng, 64)
    canvas = viz.draw_detections(image, box[None], [0.9], [3], box[None], [3], ("Hog",) * 4)
    picture = canvas.finish()
    assert min(picture.shape[:2]) >= viz.MIN_SIDE
    for caption in canvas.captions:
        x0, y0, x1, y1 = caption.rect
        chip = picture[y0:y1, x0:x1]
        ink_rows = np.flatnonzero((contrast_ratio(chip, caption.background) >= 3.0).any(axis=1))
        assert ink_rows[-1] - ink_rows[0] + 1 >= 10, f"seed={seed}: {caption.text!r} ink {ink_rows}"


def test_captions_of_stacked_detections_do_not_overlap(rng, seed):
    size = int(rng.integers(48, 160))
    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    box = random_box(rng, size, min_side=16)
    num = 8
    boxes = box + rng.uniform(-2, 2, (num, 4))
    classes = rng.permutation(len(CLASS_NAMES))[:num]
    canvas = viz.draw_detections(image, boxes, rng.uniform(0.5, 1, num), classes, box[None], classes[:1], CLASS_NAMES)
    picture = canvas.finish()
    rects = np.array([c.rect for c in canvas.captions])
    assert len(rects) == num + 1, f"seed={seed}: {canvas.captions}"
    x0, y0, x1, y1 = rects.T
    overlap = (x0[:, None] < x1[None]) & (x0[None] < x1[:, None]) & (y0[:, None] < y1[None]) & (y0[None] < y1[:, None])
    np.fill_diagonal(overlap, False)
    assert not overlap.any(), f"seed={seed}: overlapping captions {np.argwhere(overlap)}: {rects}"
    left, top, right, bottom = canvas.area
    inside = (x0 >= left) & (x1 <= right) & (y0 >= top) & (y1 <= bottom)
    assert inside.all(), f"seed={seed}: {rects}"
    for caption in canvas.captions:  # each chip is really there, none painted over
        a, b, c, d = caption.rect
        filled = np.mean(np.all(picture[b:d, a:c] == caption.background, axis=-1))
        assert filled >= 0.4, f"seed={seed}: {caption}: {filled:.2f} of its pixels show its colour"


@pytest.mark.parametrize("fill", [0, 255])
def test_ground_truth_outline_stands_out_on_a_plain_image(fill, rng, seed):
    """On an all-black and an all-white image, with a prediction on the very same box, the truth's
    outline (outside the box) still contrasts with the image, and the prediction's (inside) shows."""
    size = int(rng.integers(48, 200))
    image = np.full((size, size, 3), fill, np.uint8)
    box = random_box(rng, size)
    klass = int(rng.integers(len(CLASS_NAMES)))
    canvas = viz.draw_detections(image, box[None], [0.8], [klass], box[None], [klass], CLASS_NAMES)
    picture = canvas.finish()
    truth = ring_pixels(picture, canvas, box, outside=True)
    visible = np.mean(contrast_ratio(truth, (fill,) * 3) >= 3.0)
    assert visible >= 0.4, f"seed={seed}: {visible:.2f} of the truth outline contrasts with a {fill} image"
    assert not np.all(truth == viz.ERROR_RGB, axis=-1).any(), f"seed={seed}: a found object drawn as missed"
    predicted = np.all(ring_pixels(picture, canvas, box, outside=False) == viz.color(klass), axis=-1).mean()
    assert predicted >= 0.3, f"seed={seed}: {predicted:.2f} of the prediction's outline in its class colour"


def test_an_object_no_detection_found_is_marked_missed_at_its_box(rng, seed):
    size = int(rng.integers(64, 160))
    image = rng.integers(0, 200, (size, size, 3), dtype=np.uint8)  # never the red of ERROR_RGB
    half = size // 2
    found_box, missed_box = random_box(rng, half), random_box(rng, half) + [half, 0, half, 0]
    found_class, missed_class, other_class = (int(k) for k in rng.permutation(len(CLASS_NAMES))[:3])
    # Detections: the first object with its class; the second at its exact box but with another class.
    canvas = viz.draw_detections(
        image, np.stack([found_box + rng.uniform(-1, 1, 4), missed_box]), np.array([0.9, 0.95]),
        np.array([found_class, other_class]), np.stack([found_box, missed_box]), np.array([found_class, missed_class]),
        CLASS_NAMES,
    )
    picture = canvas.finish()
    red = lambda box: np.all(ring_pixels(picture, canvas, box) == viz.ERROR_RGB, axis=-1).mean()
    assert red(missed_box) >= 0.3, f"seed={seed}: {red(missed_box):.2f} of the missed object's outline is red"
    assert red(found_box) == 0, f"seed={seed}: the found object's outline has red"
    missed = [c for c in canvas.captions if c.text.startswith("MISSED")]
    assert [(c.text, c.background) for c in missed] == [(f"MISSED {CLASS_NAMES[missed_class]}", viz.ERROR_RGB)]
    bx0, by0, bx1, by1 = canvas.to_canvas(missed_box)
    x0, y0, x1, y1 = missed[0].rect
    gap = max(bx0 - x1, x0 - bx1, by0 - y1, y0 - by1)
    assert gap <= canvas.style.height, f"seed={seed}: MISSED caption {missed[0].rect} is {gap:.0f} px from its box"


def test_matching_needs_the_right_class_and_an_iou_of_at_least_one_half(rng, seed):
    x, y = rng.integers(0, 100, 2)
    width, height = 2 * rng.integers(5, 25, 2)  # even integers: the half box's IoU is 0.5 exactly in floats
    truth = np.array([[x, y, x + width, y + height]])
    half_iou = np.array([[x, y, x + width, y + height / 2]])  # inside the truth, half its area: IoU 0.5
    below = np.array([[x, y, x + width, y + height * 0.49]])
    match = lambda boxes, klass: viz.match_detections(boxes, np.ones(1), np.array([klass]), truth, np.array([2]))
    assert match(half_iou, 2).tolist() == [True], f"seed={seed}"
    assert match(below, 2).tolist() == [False], f"seed={seed}"
    assert match(truth, 3).tolist() == [False], f"seed={seed}"


def test_one_detection_finds_one_object_and_the_higher_score_chooses_first():
    truth = np.array([[0, 0, 10, 10], [0, 0, 10, 9.0]])
    # A detection between the two: IoU 0.9 with the first truth box, 1.0 with the second.
    one = viz.match_detections(np.array([[0, 0, 10, 9.0]]), np.array([0.5]), np.array([1]), truth, np.array([1, 1]))
    assert one.tolist() == [False, True]
    # Two detections on the second box: the higher score takes it, the other the first (IoU 0.9).
    two = viz.match_detections(
        np.array([[0, 0, 10, 9.0]] * 2), np.array([0.4, 0.6]), np.array([1, 1]), truth, np.array([1, 1])
    )
    assert two.tolist() == [True, True]


def test_a_crowd_region_is_never_called_missed(rng):
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    truth = np.array([[8, 8, 40, 40.0]])
    canvas = viz.draw_detections(
        image, np.zeros((0, 4)), [], [], truth, [1], CLASS_NAMES, truth_crowd=np.array([True])
    )
    assert [c.text for c in canvas.captions] == ["crowd class1"]
    assert not np.all(ring_pixels(canvas.finish(), canvas, truth[0]) == viz.ERROR_RGB, axis=-1).any()


def test_a_long_title_wraps_within_the_picture_width(rng, seed):
    image = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    title = " ".join(f"word{i}" for i in range(int(rng.integers(20, 60))))
    canvas = viz.Canvas(image, [title, "short"])
    rows = viz.wrap(title, canvas.style, canvas.pixels.shape[1])
    assert canvas.finish().shape[1] == 96 * 4, f"seed={seed}"
    assert canvas.area[1] == (len(rows) + 1) * canvas.style.height, f"seed={seed}"
    assert " ".join(rows) == title and max(canvas.style.width(r) for r in rows) <= 96 * 4, f"seed={seed}: {rows}"


def test_legend_shows_each_class_colour_and_each_outline_style(rng, seed):
    classes = rng.permutation(len(viz.PALETTE))[:3]
    entries = [*viz.STYLE_LEGEND, *viz.class_legend(classes, CLASS_NAMES)]
    strip = viz.legend(256, entries, viz.TextStyle.of_size(14))
    colours = {tuple(c) for c in strip.reshape(-1, 3)}
    for k in range(len(viz.PALETTE)):
        assert (viz.color(k) in colours) == (k in classes), f"seed={seed}: class {k}, shown {classes}"
    assert {viz.WHITE, viz.BLACK, viz.ERROR_RGB} <= colours


def test_contact_sheet_puts_each_picture_in_its_grid_cell(rng, seed):
    num = int(rng.integers(1, 11))
    shapes = rng.integers(20, 80, (num, 2))
    pictures = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in shapes]
    sheet = picture_files.contact_sheet(pictures)
    columns = int(np.ceil(np.sqrt(num)))
    rows = -(-num // columns)
    gap, cell_h, cell_w = picture_files.SHEET_GAP, shapes[:, 0].max(), shapes[:, 1].max()
    assert sheet.shape == (rows * cell_h + (rows + 1) * gap, columns * cell_w + (columns + 1) * gap, 3), f"seed={seed}"
    for index, picture in enumerate(pictures):
        y, x = gap + (index // columns) * (cell_h + gap), gap + (index % columns) * (cell_w + gap)
        cell = sheet[y : y + len(picture), x : x + picture.shape[1]]
        np.testing.assert_array_equal(cell, picture, err_msg=f"seed={seed}")


def test_write_pictures_writes_each_picture_and_their_contact_sheet(tmp_path, rng, seed):
    pictures = [rng.integers(0, 256, (30, 40, 3), dtype=np.uint8) for _ in range(5)]
    paths = picture_files.write_pictures(str(tmp_path), pictures, prefix="prediction")
    assert paths == [str(tmp_path / f"prediction_{i:02d}.png") for i in range(5)]
    assert sorted(os.listdir(tmp_path)) == sorted([os.path.basename(p) for p in paths] + ["prediction_sheet.png"])
    sheet = np.asarray(Image.open(picture_files.sheet_path(str(tmp_path), "prediction")))
    np.testing.assert_array_equal(sheet, picture_files.contact_sheet(pictures), err_msg=f"seed={seed}")


def test_a_sheet_larger_than_the_limit_is_scaled_down_to_it():
    pictures = [np.zeros((1500, 1200, 3), np.uint8)] * 9
    sheet = picture_files.contact_sheet(pictures)
    assert max(sheet.shape[:2]) == picture_files.MAX_SHEET_SIDE
    gap = picture_files.SHEET_GAP
    assert sheet.shape[0] / sheet.shape[1] == pytest.approx((3 * 1500 + 4 * gap) / (3 * 1200 + 4 * gap), rel=1e-3)
