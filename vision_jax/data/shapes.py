"""Generated shapes scenes in NumPy: images, instance masks, boxes and semantic masks.

A scene is a cluttered background (a colour gradient, thin random lines and pixel noise, none of which
are objects) with one or more filled shapes painted on top in order, so later shapes occlude earlier
ones. Every object's ground truth is its *visible* part after occlusion.

Conventions:
- Pixel (row y, column x) covers the square [x, x+1) x [y, y+1); shapes are rasterised by testing the
  pixel centre (x + 0.5, y + 0.5).
- Boxes are (x1, y1, x2, y2) in absolute pixels with pixel-edge extents: a visible mask whose columns
  run from c0 to c1 inclusive has x1 = c0 and x2 = c1 + 1 (the COCO convention, and the one under which
  a horizontal flip maps x1' = W - x2 exactly).
- `instance_map` uint8 [S, S]: 0 where no object is visible, i + 1 where object i is visible. Visible
  masks are disjoint, so this one map holds every instance mask losslessly.

Each example is a pure function of (seed, index): `generate_example(variant, seed, index)` draws from
`np.random.default_rng([seed, index])`, so any example can be regenerated alone and generation is
deterministic.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

SHAPE_CLASS_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")
NUM_SHAPE_CLASSES = len(SHAPE_CLASS_NAMES)

# Geometry of each class relative to its circumradius r (the radius of the smallest circle around it).
STAR_INNER_RATIO = 0.45  # inner vertices of the 5-pointed star sit at 0.45 r
CROSS_HALF_WIDTH_RATIO = 0.33  # each arm of the cross is 2 * 0.33 r wide and 2 r long (tip to tip)


@dataclasses.dataclass(frozen=True)
class SceneVariant:
    """How scenes of one builder config look.

    image_size: side S of the square image, pixels.
    min_objects, max_objects: number of shapes drawn (uniform, inclusive), before occlusion culling.
    min_radius, max_radius: circumradius range of a shape, pixels.
    num_lines: (min, max) clutter lines on the background.
    min_visible_fraction: a shape whose visible area is below this fraction of its full area (or below
      `min_visible_pixels`) is removed from the scene, so every object is recognisable.
    """

    image_size: int
    min_objects: int
    max_objects: int
    min_radius: float
    max_radius: float
    num_lines: tuple[int, int] = (2, 6)
    min_visible_fraction: float = 0.5
    min_visible_pixels: int = 16


SINGLE = SceneVariant(image_size=64, min_objects=1, max_objects=1, min_radius=10.0, max_radius=24.0)
MULTI = SceneVariant(image_size=128, min_objects=1, max_objects=6, min_radius=9.0, max_radius=26.0)
VARIANTS: dict[str, SceneVariant] = {"single": SINGLE, "multi": MULTI}

# Colours are RGB in [0, 255]. An object's colour is at least this far (Euclidean) from the median
# background under it and from every other object's colour, so objects stay distinguishable.
_MIN_BACKGROUND_CONTRAST = 110.0
_MIN_OBJECT_CONTRAST = 90.0
_NOISE_AMPLITUDE = 10.0  # uniform pixel noise in [-10, 10] grey levels on the whole image
_SHADING = 0.15  # each object's brightness varies by +-15% along a random direction


@functools.lru_cache(maxsize=8)
def pixel_centres(image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns (x, y) float32 [S, S] coordinates of the pixel centres (column + 0.5, row + 0.5).

    Cached and read-only: every shape of a scene is rasterised on the same grid. float32 holds these
    half-integers exactly and halves the work of the float64 default.
    """
    coords = np.arange(image_size, dtype=np.float32) + np.float32(0.5)
    x, y = np.meshgrid(coords, coords, indexing="xy")
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def _window(centre_x: float, centre_y: float, half_extent: float, image_size: int) -> tuple[slice, slice]:
    """(rows, cols) slices of the pixels whose centres may lie within half_extent of the centre."""
    lo_x, hi_x = int(max(0, np.floor(centre_x - half_extent))), int(min(image_size, np.ceil(centre_x + half_extent) + 1))
    lo_y, hi_y = int(max(0, np.floor(centre_y - half_extent))), int(min(image_size, np.ceil(centre_y + half_extent) + 1))
    return slice(lo_y, hi_y), slice(lo_x, hi_x)


def _inside_polygon(x: np.ndarray, y: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Even-odd rule: bool mask of points (x, y) inside the closed polygon `vertices` [V, 2] (x, y)."""
    inside = np.zeros(x.shape, dtype=bool)
    vx, vy = vertices[:, 0], vertices[:, 1]
    for i in range(len(vertices)):
        x0, y0, x1, y1 = vx[i - 1], vy[i - 1], vx[i], vy[i]
        if y0 == y1:
            continue  # a horizontal edge never crosses a horizontal ray
        crosses = (y0 > y) != (y1 > y)
        x_at_y = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (x < x_at_y)
    return inside


def _regular_vertices(num: int, radii: np.ndarray, cx: float, cy: float, angle: float) -> np.ndarray:
    """[num, 2] vertices at angles angle + 2 pi k / num and the given radii (cycled)."""
    theta = angle + 2.0 * np.pi * np.arange(num) / num
    r = np.resize(radii, num)
    return np.stack([cx + r * np.cos(theta), cy + r * np.sin(theta)], axis=-1)


def shape_mask(class_id: int, cx: float, cy: float, radius: float, angle: float, image_size: int) -> np.ndarray:
    """Rasterises one shape. Returns bool [S, S], True where the pixel centre lies inside the shape.

    class_id indexes SHAPE_CLASS_NAMES; (cx, cy) is the centre in pixels; radius the circumradius in
    pixels; angle the rotation in radians (ignored for circles).
    """
    if not 0 <= class_id < NUM_SHAPE_CLASSES:
        raise ValueError(f"unknown shape class_id {class_id}; known: 0..{NUM_SHAPE_CLASSES - 1} {SHAPE_CLASS_NAMES}")
    # Only pixels within the circumcircle's bounding square can be inside: rasterise that window.
    rows, cols = _window(cx, cy, radius, image_size)
    full = np.zeros((image_size, image_size), dtype=bool)
    x, y = pixel_centres(image_size)
    full[rows, cols] = _shape_mask_at(SHAPE_CLASS_NAMES[class_id], x[rows, cols], y[rows, cols], cx, cy, radius, angle)
    return full


def _shape_mask_at(name: str, x: np.ndarray, y: np.ndarray, cx: float, cy: float, radius: float, angle: float) -> np.ndarray:
    """bool mask of the points (x, y) inside shape `name`; see shape_mask for the arguments."""
    if name == "circle":
        return (x - cx) ** 2 + (y - cy) ** 2 <= radius**2
    if name == "square":
        return _inside_polygon(x, y, _regular_vertices(4, np.array([radius]), cx, cy, angle))
    if name == "triangle":
        return _inside_polygon(x, y, _regular_vertices(3, np.array([radius]), cx, cy, angle))
    if name == "star":
        radii = np.array([radius, STAR_INNER_RATIO * radius])
        return _inside_polygon(x, y, _regular_vertices(10, radii, cx, cy, angle))
    if name == "cross":
        # Coordinates in the cross's own frame; the union of a horizontal and a vertical bar.
        u = (x - cx) * np.cos(angle) + (y - cy) * np.sin(angle)
        v = -(x - cx) * np.sin(angle) + (y - cy) * np.cos(angle)
        half_length = radius / np.sqrt(1.0 + CROSS_HALF_WIDTH_RATIO**2)  # tip corners on the circle
        half_width = CROSS_HALF_WIDTH_RATIO * half_length
        horizontal = (np.abs(u) <= half_length) & (np.abs(v) <= half_width)
        vertical = (np.abs(u) <= half_width) & (np.abs(v) <= half_length)
        return horizontal | vertical
    raise AssertionError(name)


def _background(rng: np.random.Generator, variant: SceneVariant) -> np.ndarray:
    """float32 [3, S, S] (channels first): a linear gradient between two colours, crossed by thin lines.

    Scenes are drawn channels-first: NumPy broadcasting over a trailing axis of 3 runs ~15x slower.
    """
    size = variant.image_size
    x, y = pixel_centres(size)
    start = rng.uniform(0, 255, size=3)
    end = np.clip(start + rng.uniform(-70, 70, size=3), 0, 255)
    direction = rng.uniform(0, 2 * np.pi)
    # Position along the gradient direction, 0 at one side of the image and 1 at the other.
    along_x = (x[0] - size / 2) * np.cos(direction) / size
    along_y = (y[:, 0] - size / 2) * np.sin(direction) / size
    t = np.clip(along_y[:, None] + along_x[None, :] + 0.5, 0, 1).astype(np.float32)
    image = start.astype(np.float32)[:, None, None] + (end - start).astype(np.float32)[:, None, None] * t[None]
    for _ in range(rng.integers(variant.num_lines[0], variant.num_lines[1] + 1)):
        p0, p1 = rng.uniform(0, size, size=2), rng.uniform(0, size, size=2)
        half_width = rng.uniform(0.5, 1.2)
        colour = rng.uniform(0, 255, size=3)
        # Distance from each pixel centre to the segment, on the segment's bounding window only.
        centre = (p0 + p1) / 2
        rows, cols = _window(centre[0], centre[1], np.abs(p1 - p0).max() / 2 + half_width, size)
        wx, wy = x[0, cols] - np.float32(p0[0]), y[rows, 0] - np.float32(p0[1])
        d = (p1 - p0).astype(np.float32)
        # Projection parameter of each pixel centre on the segment, clipped to its ends; the separable
        # row and column terms are broadcast rather than computed on the whole window.
        s = np.clip(wy[:, None] * (d[1] / max(d @ d, 1e-9)) + wx[None, :] * (d[0] / max(d @ d, 1e-9)), 0, 1)
        squared_distance = (wx[None, :] - s * d[0]) ** 2 + (wy[:, None] - s * d[1]) ** 2
        image[:, rows, cols][:, squared_distance <= half_width**2] = colour[:, None]
    return image


def _object_colour(rng: np.random.Generator, background_colour: np.ndarray, others: list[np.ndarray]) -> np.ndarray:
    """An RGB colour far from the background at the object and from the other objects' colours."""
    best, best_margin = None, -np.inf
    for _ in range(50):
        colour = rng.uniform(0, 255, size=3)
        margin = min(
            np.linalg.norm(colour - background_colour) - _MIN_BACKGROUND_CONTRAST,
            min((np.linalg.norm(colour - o) - _MIN_OBJECT_CONTRAST for o in others), default=np.inf),
        )
        if margin >= 0:
            return colour
        if margin > best_margin:
            best, best_margin = colour, margin
    return best  # rare: the most distinct of the candidates tried


def _composite(masks: list[np.ndarray], size: int) -> np.ndarray:
    """uint8 [S, S] instance map of shapes painted in order (later ones on top)."""
    instance_map = np.zeros((size, size), np.uint8)
    for i, mask in enumerate(masks):
        instance_map[mask] = i + 1
    return instance_map


def boxes_from_instance_map(instance_map: np.ndarray, num_instances: int) -> np.ndarray:
    """float32 [N, 4] tight (x1, y1, x2, y2) pixel-edge boxes of each visible instance i (value i+1)."""
    boxes = np.zeros((num_instances, 4), np.float32)
    for i in range(num_instances):
        rows, cols = np.nonzero(instance_map == i + 1)
        boxes[i] = (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
    return boxes


def generate_example(variant: SceneVariant, seed: int, index: int) -> dict[str, np.ndarray]:
    """Generates scene `index` of the stream `seed`.

    Returns:
      image: uint8 [S, S, 3].
      instance_map: uint8 [S, S], 0 = no object, i + 1 = object i (visible part).
      classes: int64 [N], class index (into SHAPE_CLASS_NAMES) of each object, bottom to top.
      boxes: float32 [N, 4], tight (x1, y1, x2, y2) pixel-edge box of each visible mask.
      label: int64 scalar, class of the object with the largest visible area (first on ties).
    N >= 1 always.
    """
    rng = np.random.default_rng([seed, index])
    size = variant.image_size
    image = _background(rng, variant)
    num_objects = int(rng.integers(variant.min_objects, variant.max_objects + 1))

    classes, masks, colours = [], [], []
    for _ in range(num_objects):
        class_id = int(rng.integers(NUM_SHAPE_CLASSES))
        radius = rng.uniform(variant.min_radius, variant.max_radius)
        cx, cy = rng.uniform(radius, size - radius, size=2)  # the whole shape lies inside the image
        mask = shape_mask(class_id, cx, cy, radius, rng.uniform(0, 2 * np.pi), size)
        # The background under the shape (median: a clutter line crossing it does not count).
        background_colour = np.median(image[:, mask], axis=1)
        classes.append(class_id)
        masks.append(mask)
        colours.append(_object_colour(rng, background_colour, colours))

    # Remove shapes hidden too much by the ones above them; removing one only uncovers others, so
    # repeat until every remaining shape passes.
    full_areas = [np.count_nonzero(m) for m in masks]
    keep = list(range(num_objects))
    while True:
        instance_map = _composite([masks[i] for i in keep], size)
        visible = np.bincount(instance_map.ravel(), minlength=len(keep) + 1)[1:]
        hidden = [
            j for j, i in enumerate(keep)
            if visible[j] < max(variant.min_visible_pixels, variant.min_visible_fraction * full_areas[i])
        ]
        if not hidden or len(keep) == 1:
            break
        keep.pop(hidden[0])

    x, y = pixel_centres(size)
    for i in keep:
        direction = rng.uniform(0, 2 * np.pi)
        along = (x[masks[i]] - size / 2) * np.cos(direction) + (y[masks[i]] - size / 2) * np.sin(direction)
        shade = 1.0 + _SHADING * np.clip(along / (size / 2), -1, 1)
        image[:, masks[i]] = np.clip(colours[i][:, None] * shade[None, :], 0, 255)
    # Uniform noise from raw random bytes: several times cheaper than Gaussian draws here.
    noise_bytes = np.frombuffer(rng.bytes(image.size), np.uint8).reshape(image.shape)
    image += (noise_bytes.astype(np.float32) - 127.5) * np.float32(_NOISE_AMPLITUDE / 127.5)
    image = np.ascontiguousarray(np.clip(np.rint(image), 0, 255).astype(np.uint8).transpose(1, 2, 0))

    classes_kept = np.asarray([classes[i] for i in keep], np.int64)
    return {
        "image": image,
        "instance_map": instance_map,
        "classes": classes_kept,
        "boxes": boxes_from_instance_map(instance_map, len(keep)),
        "label": np.int64(classes_kept[int(np.argmax(visible))]),
    }
