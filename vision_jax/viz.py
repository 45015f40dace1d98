"""Pictures a person can read at a glance: images with boxes, captions, title bands and a legend.

Visual language (the same in every task, explained by each picture's legend):
- ground truth: an outline just outside the box in black/white stripes (visible on pale and dark
  images alike), captioned with the class name on a black chip;
- prediction: a solid outline in the class colour edged in black, inside the box, captioned
  'class score' on a chip of the class colour;
- missed: a ground-truth object no prediction found, striped red/white, captioned 'MISSED class';
- instance masks (Mask R-CNN): each detection's mask blended in its own colour with its border in the
  pure colour, and that detection's outline and 'class score' chip in the same colour (as detectron2's
  Visualizer gives each instance a colour), so two touching objects of one class stay apart.
Every caption is a filled chip whose text is black or white, whichever contrasts more with the chip
(WCAG contrast); captions are moved so that none overlaps another. Small images are upscaled (nearest
neighbour) to a short side of at least 256 pixels and the font (Pillow's built-in scalable font)
grows with the image, so text stays legible in the PNG.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vision_jax.data.transforms import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB
from vision_jax.evaluation.voc import pairwise_iou

RGB = tuple[int, int, int]
# A fixed palette so that a class keeps its colour across pictures.
PALETTE = np.array(
    [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
     (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
     (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180),
     (0, 0, 128), (128, 128, 128)],
    np.uint8,
)
BLACK, WHITE = (0, 0, 0), (255, 255, 255)
BAND_RGB = (28, 28, 28)  # title and legend bands
ERROR_RGB = (220, 0, 0)  # missed objects, wrong predictions (in no class's palette colour)
CORRECT_RGB = (0, 115, 50)
IGNORE_RGB = (128, 128, 128)
MIN_SIDE = 256  # images with a shorter side are upscaled to at least this for drawing
PANEL_GAP = 6  # pixels between side-by-side panels


def color(index: int) -> RGB:
    return tuple(int(c) for c in PALETTE[index % len(PALETTE)])


def to_uint8(
    image: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN_RGB, std: Sequence[float] = IMAGENET_STD_RGB
) -> np.ndarray:
    """Undoes `vision_jax.data.transforms.normalize_image`: float [H, W, 3] -> uint8 [H, W, 3]."""
    pixels = (image.astype(np.float32) * np.asarray(std, np.float32) + np.asarray(mean, np.float32)) * 255.0
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8)


def upscale(image: np.ndarray, min_side: int = MIN_SIDE) -> tuple[np.ndarray, int]:
    """Nearest-neighbour upscaling by an integer factor so the short side is >= min_side; returns the factor."""
    factor = max(1, int(np.ceil(min_side / max(1, min(image.shape[:2])))))
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1), factor


def relative_luminance(rgb: Sequence[float]) -> float:
    """WCAG relative luminance of an sRGB colour (0..255 per channel): 0 (black) .. 1 (white)."""
    c = np.asarray(rgb, np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return float(linear @ np.array([0.2126, 0.7152, 0.0722]))


def text_colour(background: Sequence[float]) -> RGB:
    """Black or white, whichever has the higher WCAG contrast ratio with `background` (>= 4.5:1 always)."""
    luminance = relative_luminance(background)
    return BLACK if (luminance + 0.05) / 0.05 >= 1.05 / (luminance + 0.05) else WHITE


def font_size_for(side: int) -> int:
    """Font size in pixels for a drawing whose short side is `side` pixels: 14 at 256, at most 26."""
    return int(np.clip(round(side / 20), 14, 26))


@functools.lru_cache(maxsize=16)
def font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only its ~11 px bitmap font
        return ImageFont.load_default()


@dataclasses.dataclass(frozen=True)
class TextStyle:
    """Chip geometry of a font: chips are `height` pixels high, text `pad` pixels in from the left."""

    font: ImageFont.ImageFont
    pad: int
    ink_top: int  # first row of ink below the text origin
    height: int

    @classmethod
    def of_size(cls, size: int) -> "TextStyle":
        face = font(size)
        top, bottom = face.getbbox("Hg")[1::2]
        pad = max(2, size // 5)
        return cls(face, pad, top, bottom - top + 2 * pad)

    def width(self, text: str) -> int:
        return int(np.ceil(self.font.getlength(text))) + 2 * self.pad


def draw_chip(draw: ImageDraw.ImageDraw, style: TextStyle, x: int, y: int, text: str, background: RGB) -> None:
    """A filled rectangle of `background` at (x, y) with `text` in the contrasting colour."""
    draw.rectangle([x, y, x + style.width(text) - 1, y + style.height - 1], fill=background)
    draw.text((x + style.pad, y + style.pad - style.ink_top), text, fill=text_colour(background), font=style.font)


def free_position(
    size: tuple[int, int], preferred: tuple[int, int], taken: Sequence[Sequence[int]], area: Sequence[int]
) -> tuple[int, int]:
    """Top-left (x, y) for a `size` = (w, h) rectangle inside `area` (x0, y0, x1, y1, exclusive ends),
    overlapping none of the `taken` rectangles (x0, y0, x1, y1), as near `preferred` as possible: steps
    of whole rectangle heights up and down, then whole widths sideways. `preferred` (clamped into the
    area) when every place is taken."""
    w, h = size
    x_max, y_max = max(area[0], area[2] - w), max(area[1], area[3] - h)
    x0, y0 = int(np.clip(preferred[0], area[0], x_max)), int(np.clip(preferred[1], area[1], y_max))
    if not len(taken):
        return x0, y0
    ys = y0 + (h + 1) * np.concatenate([[0], np.stack([np.arange(1, 64), -np.arange(1, 64)], 1).ravel()])
    xs = x0 + (w + 1) * np.concatenate([[0], np.stack([np.arange(1, 16), -np.arange(1, 16)], 1).ravel()])
    ys, xs = ys[(ys >= area[1]) & (ys <= y_max)], xs[(xs >= area[0]) & (xs <= x_max)]
    xs = np.unique(np.concatenate([xs, [area[0], x_max]]))
    xs = xs[np.argsort(np.abs(xs - x0), kind="stable")]
    grid_y, grid_x = np.meshgrid(ys, xs, indexing="ij")
    # Nearest first, in chip units: one row up or down costs as much as one chip width sideways.
    order = np.argsort((np.abs(grid_y - y0) / (h + 1) + np.abs(grid_x - x0) / (w + 1)).ravel(), kind="stable")
    candidates = np.stack([grid_x.ravel(), grid_y.ravel()], 1)[order]
    taken = np.asarray(taken, np.int64)
    overlaps = (
        (candidates[:, None, 0] < taken[None, :, 2]) & (taken[None, :, 0] < candidates[:, None, 0] + w)
        & (candidates[:, None, 1] < taken[None, :, 3]) & (taken[None, :, 1] < candidates[:, None, 1] + h)
    ).any(1)
    free = np.flatnonzero(~overlaps)
    return (int(candidates[free[0], 0]), int(candidates[free[0], 1])) if len(free) else (x0, y0)


def paint_ring(
    pixels: np.ndarray, box: Sequence[float], width: int, colours: Sequence[RGB], area: Sequence[int]
) -> None:
    """Paints the `width`-pixel ring just inside `box` (x0, y0, x1, y1, canvas pixels) into uint8
    `pixels` [H, W, 3], clipped to `area`; two colours alternate in diagonal stripes (dashes)."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    cx0, cy0, cx1, cy1 = max(x0, area[0]), max(y0, area[1]), min(x1, area[2]), min(y1, area[3])
    if cx0 >= cx1 or cy0 >= cy1:
        return
    ys, xs = np.mgrid[cy0:cy1, cx0:cx1]
    ring = (xs < x0 + width) | (xs >= x1 - width) | (ys < y0 + width) | (ys >= y1 - width)
    dash = 3 * width
    stripe = ((xs + ys) // dash) % len(colours)
    window = pixels[cy0:cy1, cx0:cx1]
    for index, colour in enumerate(colours):
        window[ring & (stripe == index)] = colour


def wrap(text: str, style: TextStyle, width: int) -> list[str]:
    """`text` broken at spaces into lines whose chips fit in `width` pixels (a longer word stays whole)."""
    lines: list[str] = []
    for word in text.split(" "):
        if lines and style.width(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines


def band(width: int, lines: Sequence[str], style: TextStyle, background: RGB = BAND_RGB) -> np.ndarray:
    """A uint8 [rows * style.height, width, 3] strip of text on `background`; lines too long for the
    width wrap onto further rows."""
    rows = [row for line in lines for row in wrap(line, style, width)]
    strip = Image.new("RGB", (width, style.height * len(rows)), background)
    draw = ImageDraw.Draw(strip)
    for index, row in enumerate(rows):
        draw_chip(draw, style, 0, index * style.height, row, background)
    return np.asarray(strip)


# Legend swatches: ('fill', colour) a filled square; ('truth' | 'missed' | 'prediction', colour) the
# outline style as drawn on pictures.
Swatch = tuple[str, RGB]


def legend(width: int, entries: Sequence[tuple[Swatch, str]], style: TextStyle) -> np.ndarray:
    """A uint8 [h, width, 3] band of swatch + label entries, wrapped into as many rows as needed."""
    gap, swatch_w = style.pad * 3, int(style.height * 1.6)
    items, x, row = [], gap, 0
    for swatch, label in entries:
        item_w = swatch_w + style.width(label)
        if x + item_w > width and x > gap:
            x, row = gap, row + 1
        items.append((x, row, swatch, label))
        x += item_w + gap
    pixels = np.full((style.height * (row + 1) + style.pad, width, 3), BAND_RGB, np.uint8)
    inset = style.pad + 1
    for x, row, (kind, colour), _ in items:
        y = row * style.height + style.pad
        box = (x + inset, y + inset, x + swatch_w - inset, y + style.height - inset)
        if kind == "fill":
            pixels[box[1] : box[3], box[0] : box[2]] = colour
        else:
            outline(pixels, box, kind, colour, max(2, style.height // 8), (0, 0) + pixels.shape[1::-1])
    strip = Image.fromarray(pixels)
    draw = ImageDraw.Draw(strip)
    for x, row, _, label in items:
        draw_chip(draw, style, x + swatch_w, row * style.height + style.pad, label, BAND_RGB)
    return np.asarray(strip)


def outline(pixels: np.ndarray, box: Sequence[float], kind: str, colour: RGB, width: int, area: Sequence[int]) -> None:
    """Draws `box` (canvas pixels) in the style `kind`: 'prediction' (solid colour edged in black, inside
    the box), 'truth' (black/white stripes just outside) or 'missed' (red/white stripes just outside)."""
    x0, y0, x1, y1 = box
    if kind == "prediction":
        paint_ring(pixels, box, width + 2, [BLACK], area)
        paint_ring(pixels, (x0 + 1, y0 + 1, x1 - 1, y1 - 1), width, [colour], area)
    else:
        stripes = [WHITE, BLACK] if kind == "truth" else [WHITE, ERROR_RGB]
        paint_ring(pixels, (x0 - width, y0 - width, x1 + width, y1 + width), width, stripes, area)


@dataclasses.dataclass(frozen=True)
class Caption:
    rect: tuple[int, int, int, int]  # (x0, y0, x1, y1), exclusive ends, in the finished picture's pixels
    text: str
    background: RGB


class Canvas:
    """An image (upscaled when small) under an optional title band, on which boxes and captions are
    drawn in the image's own pixel coordinates. `captions` lists the captions in the order placed; no
    two overlap while the image has room."""

    def __init__(self, image: np.ndarray, title: Sequence[str] = (), title_rgb: RGB = BAND_RGB):
        upscaled, self.factor = upscale(np.asarray(image, np.uint8))
        height, width = upscaled.shape[:2]
        self.style = TextStyle.of_size(font_size_for(min(height, width)))
        self.line_width = max(2, self.style.height // 8)
        top = band(width, title, self.style, title_rgb) if title else np.zeros((0, width, 3), np.uint8)
        self.pixels = np.concatenate([top, upscaled])
        self.area = (0, len(top), width, len(top) + height)  # the image's rectangle
        self.captions: list[Caption] = []

    def to_canvas(self, box: Sequence[float]) -> np.ndarray:
        return np.asarray(box, np.float64) * self.factor + [0, self.area[1], 0, self.area[1]]

    def box(self, box: Sequence[float], kind: str, colour: RGB = WHITE) -> None:
        """box: (x1, y1, x2, y2) in the image's pixels; kind: 'prediction' | 'truth' | 'missed'."""
        outline(self.pixels, self.to_canvas(box), kind, colour, self.line_width, self.area)

    def caption(self, box: Sequence[float], text: str, background: RGB, below: bool = False) -> None:
        """A chip above the box's top-left corner (below its bottom-left with `below`), moved where free."""
        x0, y0, _, y1 = self.to_canvas(box)
        size = (self.style.width(text), self.style.height)
        margin = self.line_width + 1
        preferred = (int(x0) - margin, int(y1) + margin if below else int(y0) - margin - size[1])
        x, y = free_position(size, preferred, [c.rect for c in self.captions], self.area)
        self.captions.append(Caption((x, y, x + size[0], y + size[1]), text, background))

    def finish(self, legend_entries: Sequence[tuple[Swatch, str]] = ()) -> np.ndarray:
        """The picture, uint8 [H, W, 3]: title band, image with captions, legend band (if any entries)."""
        picture = Image.fromarray(self.pixels)
        draw = ImageDraw.Draw(picture)
        for caption in self.captions:
            draw_chip(draw, self.style, *caption.rect[:2], caption.text, caption.background)
        parts = [np.asarray(picture)]
        if legend_entries:
            parts.append(legend(self.pixels.shape[1], legend_entries, self.style))
        return np.concatenate(parts)


STYLE_LEGEND: tuple[tuple[Swatch, str], ...] = (
    (("truth", WHITE), "truth"),
    (("prediction", (200, 200, 200)), "prediction: class score"),
    (("missed", WHITE), "missed"),
)


def class_legend(class_ids: Sequence[int], class_names: Sequence[str]) -> list[tuple[Swatch, str]]:
    """One filled swatch per distinct class id (palette colour), in id order."""
    return [(("fill", color(k)), class_names[k]) for k in sorted({int(k) for k in class_ids})]


def match_detections(
    boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, truth_boxes: np.ndarray, truth_classes: np.ndarray,
    truth_crowd: np.ndarray | None = None, iou_threshold: float = 0.5,
) -> np.ndarray:
    """Greedy matching in score order, as COCO and VOC evaluate: each detection takes the unmatched,
    non-crowd ground-truth box of its class with the highest IoU >= iou_threshold.

    boxes [K, 4], scores [K], classes [K]; truth_boxes [N, 4], truth_classes [N], truth_crowd [N] bool
    (crowd boxes are never matched nor missed). Returns bool [N]: truth object found by a detection."""
    found = np.zeros(len(truth_boxes), bool)
    eligible = ~np.asarray(truth_crowd, bool) if truth_crowd is not None else np.ones(len(truth_boxes), bool)
    if not len(boxes) or not len(truth_boxes):
        return found
    ious = pairwise_iou(boxes, truth_boxes)
    for k in np.argsort(-np.asarray(scores), kind="stable"):
        candidates = np.where(eligible & ~found & (truth_classes == classes[k]), ious[k], -1.0)
        best = int(np.argmax(candidates))
        if candidates[best] >= iou_threshold:
            found[best] = True
    return found


def instance_colour(index: int) -> RGB:
    """The colour of the index-th instance of a picture: the palette walked with a stride coprime to its
    length, so that neighbours in score order get distant colours."""
    return color(index * 7)


def overlay_instance_masks(image: np.ndarray, masks: np.ndarray, colours: Sequence[RGB], alpha: float = 0.45) -> np.ndarray:
    """uint8 [H, W, 3]: each bool [H, W] mask of masks [K, H, W] blended over the image in its colour
    (later masks over earlier ones), the mask's border pixels (a 4-neighbour outside it) in the pure colour."""
    out = image.astype(np.float32)
    for mask, colour in zip(np.asarray(masks, bool), colours):
        rgb = np.asarray(colour, np.float32)
        out[mask] = (1 - alpha) * out[mask] + alpha * rgb
        padded = np.pad(mask, 1)
        inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
        out[mask & ~inner] = rgb
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def draw_detections(
    image: np.ndarray, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
    truth_boxes: np.ndarray, truth_classes: np.ndarray, class_names: Sequence[str],
    truth_crowd: np.ndarray | None = None, min_score: float | None = None,
    title: Sequence[str] | None = None, title_rgb: RGB = BAND_RGB, masks: np.ndarray | None = None,
) -> Canvas:
    """The canvas of one image's detections over its ground truth, unfinished (call `.finish(...)`).

    image: uint8 [H, W, 3]; boxes [K, 4] (x1, y1, x2, y2) in the image's pixels, scores [K], classes [K]
    (ids into class_names); truth_boxes [N, 4], truth_classes [N], truth_crowd [N] bool or None. Ground
    truth that no detection matched at IoU >= 0.5 with the right class is drawn and captioned as
    missed. title: the band's lines (None: a count of objects found and missed, and of the detections,
    said to score >= min_score when given). masks: bool [K, H, W] of the detections in the image's pixels,
    or None; with masks, detection k is drawn in `instance_colour(k)` instead of its class's colour."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    truth_boxes = np.asarray(truth_boxes, np.float64).reshape(-1, 4)
    scores, classes, truth_classes = np.asarray(scores), np.asarray(classes), np.asarray(truth_classes)
    found = match_detections(boxes, scores, classes, truth_boxes, truth_classes, truth_crowd)
    crowd = np.asarray(truth_crowd, bool) if truth_crowd is not None else np.zeros(len(truth_boxes), bool)
    missed = ~found & ~crowd
    if title is None:
        scoring = f" scoring >= {min_score:.2f}" if min_score is not None else ""
        plural = lambda count, noun: f"{count} {noun}{'' if count == 1 else 's'}"
        title = [f"{plural(len(truth_boxes), 'object')}: {int(found.sum())} found, {int(missed.sum())} missed",
                 f"{plural(len(boxes), 'detection')}{scoring}"]
    colours = [color(int(k)) for k in classes] if masks is None else [instance_colour(i) for i in range(len(boxes))]
    if masks is not None:
        image = overlay_instance_masks(image, masks, colours)
    canvas = Canvas(image, title, title_rgb)
    # Ground truth over the predictions, misses last: the thin striped outlines stay whole where a
    # prediction's wider one runs along them.
    for box, colour in zip(boxes, colours):
        canvas.box(box, "prediction", colour)
    for box in truth_boxes[~missed]:
        canvas.box(box, "truth")
    for box in truth_boxes[missed]:
        canvas.box(box, "missed")
    # Captions in order of importance: the first placed get their preferred spot.
    for box, k in zip(truth_boxes[missed], truth_classes[missed]):
        canvas.caption(box, f"MISSED {class_names[int(k)]}", ERROR_RGB, below=True)
    for k in np.argsort(-scores, kind="stable"):
        canvas.caption(boxes[k], f"{class_names[int(classes[k])]} {float(scores[k]):.2f}", colours[k])
    for box, k, is_crowd in zip(truth_boxes[~missed], truth_classes[~missed], crowd[~missed]):
        canvas.caption(box, f"{'crowd ' if is_crowd else ''}{class_names[int(k)]}", BLACK, below=True)
    return canvas


def verdict_title(truth: str, predicted: str, correct: bool, detail: str = "") -> tuple[list[str], RGB]:
    """Title lines 'correct|WRONG - truth: ...' / 'predicted: ...' and the band colour (green / red)."""
    lines = [f"{'correct' if correct else 'WRONG'} - truth: {truth}", f"predicted: {predicted}{detail}"]
    return lines, CORRECT_RGB if correct else ERROR_RGB


def panel_origins(num_panels: int, panel_height: int, panel_width: int) -> list[tuple[int, int]]:
    """(y, x) of each panel's top-left in a `side_by_side` picture of panels already upscaled to
    panel_height x panel_width: one title row above, PANEL_GAP pixels between panels."""
    top = TextStyle.of_size(font_size_for(min(panel_height, panel_width))).height
    return [(top, i * (panel_width + PANEL_GAP)) for i in range(num_panels)]


def side_by_side(
    panels: Sequence[np.ndarray], titles: Sequence[str], legend_entries: Sequence[tuple[Swatch, str]] = ()
) -> np.ndarray:
    """Equal-sized uint8 [H, W, 3] panels upscaled alike, left to right, each under its title, with an
    optional legend band below; geometry in `panel_origins`."""
    scaled = [upscale(np.asarray(p, np.uint8))[0] for p in panels]
    height, width = scaled[0].shape[:2]
    style = TextStyle.of_size(font_size_for(min(height, width)))
    origins = panel_origins(len(scaled), height, width)
    picture = np.full((origins[0][0] + height, origins[-1][1] + width, 3), BAND_RGB, np.uint8)
    for (y, x), panel, title in zip(origins, scaled, titles):
        picture[y:, x : x + width] = panel
        picture[:y, x : x + width] = band(width, [title], style)
    if legend_entries:
        picture = np.concatenate([picture, legend(picture.shape[1], legend_entries, style)])
    return picture


def overlay_mask(
    image: np.ndarray, label_map: np.ndarray, alpha: float = 0.5, ignore_index: int = 255, edge_width: int = 0
) -> np.ndarray:
    """Blends the colour of class k - 1 (PALETTE) over the pixels of value k of `label_map` [H, W];
    0 and ignore stay clear. edge_width > 0: the pixels of a region within that many pixels of its
    border are painted in the pure colour, so a region shows the legend's exact colour."""
    label_map = label_map.astype(np.int64)
    colors = PALETTE[(label_map - 1) % len(PALETTE)].astype(np.float32)
    painted = (label_map > 0) & (label_map != ignore_index)
    out = image.astype(np.float32)
    out[painted] = (1 - alpha) * out[painted] + alpha * colors[painted]
    if edge_width > 0:
        w, (height, width) = edge_width, label_map.shape
        padded = np.pad(label_map, w, mode="edge")
        edge = np.zeros_like(painted)
        for shift in range(-w, w + 1):  # another label within w pixels along the row or the column
            edge |= padded[w + shift : w + shift + height, w : w + width] != label_map
            edge |= padded[w : w + height, w + shift : w + shift + width] != label_map
        out[painted & edge] = colors[painted & edge]
    return np.clip(out, 0, 255).astype(np.uint8)
