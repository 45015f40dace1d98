"""Predictions drawn onto images: labels, boxes with class names and scores, masks."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from vision_jax.data.transforms import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB

# A fixed palette so that a class keeps its colour across pictures.
PALETTE = np.array(
    [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
     (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
     (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180),
     (0, 0, 128), (128, 128, 128)],
    np.uint8,
)


def color(index: int) -> tuple[int, int, int]:
    return tuple(int(c) for c in PALETTE[index % len(PALETTE)])


def to_uint8(
    image: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN_RGB, std: Sequence[float] = IMAGENET_STD_RGB
) -> np.ndarray:
    """Undoes `vision_jax.data.transforms.normalize_image`: float [H, W, 3] -> uint8 [H, W, 3]."""
    pixels = (image.astype(np.float32) * np.asarray(std, np.float32) + np.asarray(mean, np.float32)) * 255.0
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8)


def upscale(image: np.ndarray, min_side: int = 256) -> tuple[np.ndarray, int]:
    """Nearest-neighbour upscaling of small images so text stays legible; returns the factor."""
    factor = max(1, int(np.ceil(min_side / max(1, min(image.shape[:2])))))
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1), factor


def draw_label(image: np.ndarray, text: str, correct: bool | None = None) -> np.ndarray:
    """Writes `text` in a band above the image (green if correct, red if not)."""
    image, _ = upscale(image)
    band = 16
    canvas = Image.new("RGB", (image.shape[1], image.shape[0] + band), (0, 0, 0))
    canvas.paste(Image.fromarray(image), (0, band))
    fill = (255, 255, 255) if correct is None else ((60, 220, 60) if correct else (240, 60, 60))
    ImageDraw.Draw(canvas).text((2, 2), text, fill=fill)
    return np.asarray(canvas)


def draw_boxes(
    image: np.ndarray,
    boxes: np.ndarray,
    labels: Sequence[str],
    class_ids: Sequence[int],
    reference_boxes: np.ndarray | None = None,
) -> np.ndarray:
    """Draws boxes (x1, y1, x2, y2) in `image`'s pixels with a caption each.

    reference_boxes: optional ground truth drawn in white, thin, under the predictions.
    """
    image, factor = upscale(image)
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    if reference_boxes is not None:
        for box in np.asarray(reference_boxes, np.float64) * factor:
            draw.rectangle([float(v) for v in box], outline=(255, 255, 255), width=1)
    for box, label, class_id in zip(np.asarray(boxes, np.float64) * factor, labels, class_ids):
        draw.rectangle([float(v) for v in box], outline=color(int(class_id)), width=2)
        draw.text((float(box[0]) + 2, max(0.0, float(box[1]) - 11)), label, fill=color(int(class_id)))
    return np.asarray(canvas)


def overlay_mask(image: np.ndarray, label_map: np.ndarray, alpha: float = 0.5, ignore_index: int = 255) -> np.ndarray:
    """Blends a colour per class of `label_map` [H, W] over `image`; 0 and ignore stay clear."""
    colors = PALETTE[(label_map.astype(np.int64) - 1) % len(PALETTE)].astype(np.float32)
    painted = (label_map > 0) & (label_map != ignore_index)
    out = image.astype(np.float32)
    out[painted] = (1 - alpha) * out[painted] + alpha * colors[painted]
    return np.clip(out, 0, 255).astype(np.uint8)
