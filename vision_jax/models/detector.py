"""The one detector contract, shared by every detection family (R-CNN, SSD, YOLO).

    train:     apply(variables, images, image_sizes, targets, train=True, rngs=..., mutable=[...])
               -> {'losses': {name: float32 scalar}, 'metrics': {name: float32 scalar}}
    inference: apply(variables, images, image_sizes, train=False)
               (a detector whose regions come from outside, `takes_proposals`: Fast R-CNN, R-CNN:
               apply(variables, images, image_sizes, targets, train=False), where targets needs only
               the proposal fields, `proposals_from_batch`)
               -> {'boxes' [B, K, 4], 'scores' [B, K], 'classes' [B, K] int32, 'valid' [B, K] bool}
                  (+ 'masks' float32 [B, K, M, M] from an instance-segmentation detector: each detection's
                  mask probabilities on its box, not pasted into the image)
    init:      init(rngs, images, image_sizes, train=False) -> the heads' raw outputs (no decoding,
               which has no parameters and only slows `init` down)

* images: float [B, H, W, 3]; image_sizes: float [B, 2] (height, width) of each image inside its
  zero-padded canvas (boxes are clipped to it), None = the whole canvas.
* targets: the batch's ground truth as the input pipeline made it (`targets_from_batch`):
  'boxes' [B, G, 4] (x1, y1, x2, y2) input pixels, 'classes' [B, G] int in 0..C-1, 'valid' [B, G]
  bool, optional 'is_crowd' [B, G] bool; later fields ('box_masks', 'proposals', ...) travel in the
  same dict, so a family that needs one reads it without any signature changing.
* Given proposals (`PROPOSAL_KEYS`, from vision_jax/data/proposals.py through the input pipeline):
  'proposals' [B, P, 4] input pixels, 'proposal_valid' [B, P] bool, optional 'proposal_scores'
  [B, P]. A detector with `takes_proposals = True` reads them in training (from `targets` in
  `losses`) and in inference (`detect(outputs, images, image_sizes, proposals)`, checked by
  `check_proposals`); every other detector never sees them at inference.
* The training loss is the sum of the named losses (each already weighted); metrics are logged.
* Detections: K = the family's max_detections, (x1, y1, x2, y2) input pixels, by decreasing
  score, padding rows invalid; all made by `vision_jax.ops.multiclass_detections`.

A family subclasses `Detector` and supplies `forward`, `losses` and `detect` (and `init_outputs`
where `init` must run more than `forward`; `takes_proposals = True` for given proposals);
`__call__` is written once, here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# Fields of a detection batch that are ground truth (or given proposals) for the model.
TARGET_KEYS = ("boxes", "classes", "valid", "is_crowd", "masks", "box_masks", "proposals", "proposal_valid",
               "proposal_scores")
# The fields of given proposals (the only targets a detector reads at inference).
PROPOSAL_KEYS = ("proposals", "proposal_valid", "proposal_scores")


def targets_from_batch(batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """The model's `targets` dict: every TARGET_KEYS field the batch has."""
    return {key: batch[key] for key in TARGET_KEYS if key in batch}


def proposals_from_batch(batch: Mapping[str, jax.Array]) -> dict[str, jax.Array] | None:
    """The inference `targets`: the batch's PROPOSAL_KEYS fields, or None when it has none."""
    given = {key: batch[key] for key in PROPOSAL_KEYS if key in batch}
    return given or None


def check_proposals(targets: Mapping[str, jax.Array] | None, batch: int, model: str) -> dict[str, jax.Array]:
    """The given proposals of `targets`, checked: {'proposals' float32 [B, P, 4], 'proposal_valid'
    bool [B, P], 'proposal_scores' float32 [B, P] (zeros when absent)}; ValueError naming `model`
    and the config key when they are missing or misshapen."""
    if targets is None or "proposals" not in targets or "proposal_valid" not in targets:
        raise ValueError(f"{model} needs targets['proposals'] [B, P, 4] and targets['proposal_valid'] [B, P], in "
                         f"training and inference: set config.data.proposals ('selective_search' or a proposals file)")
    boxes = jnp.asarray(targets["proposals"])
    if boxes.ndim != 3 or boxes.shape[0] != batch or boxes.shape[-1] != 4:
        raise ValueError(f"targets['proposals'] must be [B, P, 4] with B={batch}, got shape {boxes.shape}")
    for key in ("proposal_valid", "proposal_scores"):
        if key in targets and targets[key].shape != boxes.shape[:2]:
            raise ValueError(f"targets[{key!r}] must be [B, P]={boxes.shape[:2]}, got shape {targets[key].shape}")
    scores = targets.get("proposal_scores")
    scores = jnp.zeros(boxes.shape[:2], jnp.float32) if scores is None else jnp.asarray(scores, jnp.float32)
    return {
        "proposals": boxes.astype(jnp.float32),
        "proposal_valid": jnp.asarray(targets["proposal_valid"]).astype(bool),
        "proposal_scores": scores,
    }


def image_sizes_or_canvas(images: jax.Array, image_sizes: jax.Array | None) -> jax.Array:
    """float32 [B, 2] (height, width) of the valid image in each canvas; None means the whole canvas."""
    batch, height, width = images.shape[:3]
    if image_sizes is None:
        return jnp.broadcast_to(jnp.asarray([height, width], jnp.float32), (batch, 2))
    image_sizes = jnp.asarray(image_sizes, jnp.float32)
    if image_sizes.shape != (batch, 2):
        raise ValueError(f"image_sizes must be [B, 2]=({batch}, 2) (height, width), got {image_sizes.shape}")
    return image_sizes


def check_targets(targets: Mapping[str, jax.Array] | None, batch: int) -> dict[str, jax.Array]:
    """Refuses missing or misshapen ground truth by name; returns the targets with boxes float32,
    classes int32, valid / is_crowd bool (is_crowd all False when absent)."""
    if targets is None:
        raise ValueError("training needs targets={'boxes': [B, G, 4], 'classes': [B, G], 'valid': [B, G], ...}")
    missing = [key for key in ("boxes", "classes", "valid") if key not in targets]
    if missing:
        raise ValueError(f"targets lack {missing}; training needs boxes [B, G, 4], classes [B, G] and valid [B, G]")
    boxes = jnp.asarray(targets["boxes"])
    if boxes.ndim != 3 or boxes.shape[0] != batch or boxes.shape[-1] != 4:
        raise ValueError(f"targets['boxes'] must be [B, G, 4] with B={batch}, got shape {boxes.shape}")
    for key in ("classes", "valid", "is_crowd"):
        if key in targets and targets[key].shape != boxes.shape[:2]:
            raise ValueError(f"targets[{key!r}] must be [B, G]={boxes.shape[:2]}, got shape {targets[key].shape}")
    checked = dict(targets)
    checked["boxes"] = boxes.astype(jnp.float32)
    checked["classes"] = jnp.asarray(targets["classes"]).astype(jnp.int32)
    checked["valid"] = jnp.asarray(targets["valid"]).astype(bool)
    is_crowd = targets.get("is_crowd")
    checked["is_crowd"] = jnp.zeros(boxes.shape[:2], bool) if is_crowd is None else jnp.asarray(is_crowd).astype(bool)
    return checked


def stack_detections(per_image: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """The detections dict of the contract from vmapped `multiclass_detections` outputs."""
    return {key: per_image[key] for key in ("boxes", "scores", "classes", "valid")}


class Detector(nn.Module):
    """Base of every detector: `__call__` is the contract (module docstring).

    Subclasses define the field `num_classes` and the methods:
      forward(images, train) -> raw outputs (any pytree; what `losses` and `detect` read);
      losses(outputs, images, image_sizes, targets) -> {'losses': {...}, 'metrics': {...}};
      detect(outputs, images, image_sizes) -> the detections dict (with `takes_proposals = True`:
        detect(outputs, images, image_sizes, proposals), proposals = `check_proposals`' dict);
      init_outputs(outputs, images) (optional) -> what `init` returns; by default `outputs`.
    """

    takes_proposals = False  # a class constant (no annotation: not a module field)

    def forward(self, images: jax.Array, train: bool) -> Any:
        raise NotImplementedError

    def losses(self, outputs: Any, images: jax.Array, image_sizes: jax.Array, targets: dict) -> dict:
        raise NotImplementedError

    def detect(self, outputs: Any, images: jax.Array, image_sizes: jax.Array) -> dict[str, jax.Array]:
        raise NotImplementedError

    def init_outputs(self, outputs: Any, images: jax.Array) -> Any:
        return outputs

    def __call__(
        self,
        images: jax.Array,
        image_sizes: jax.Array | None = None,
        targets: Mapping[str, jax.Array] | None = None,
        *,
        train: bool = False,
    ) -> dict:
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"{type(self).__name__} expects images [B, H, W, 3], got shape {images.shape}")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        image_sizes = image_sizes_or_canvas(images, image_sizes)
        outputs = self.forward(images, train)
        if self.is_initializing() and not train:
            return self.init_outputs(outputs, images)
        if not train:
            if self.takes_proposals:
                return self.detect(outputs, images, image_sizes,
                                   check_proposals(targets, images.shape[0], type(self).__name__))
            return self.detect(outputs, images, image_sizes)
        return self.losses(outputs, images, image_sizes, check_targets(targets, images.shape[0]))

