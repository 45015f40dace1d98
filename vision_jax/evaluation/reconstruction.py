"""Image-reconstruction metrics (autoencoders): mean squared error and PSNR, on the host.

Images are in [0, 1]. Per image i with N = H * W * 3 values, mse_i = sum (x - y)^2 / N and
psnr_i = 10 log10(1 / mse_i) dB (peak value 1); the reported `psnr` is the mean of psnr_i over images
(the usual convention, e.g. in super-resolution papers), `mse` the mean of mse_i. A perfect
reconstruction (mse_i = 0) counts as `max_psnr` dB so the mean stays finite.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

DEFAULT_MAX_PSNR = 100.0


def per_image_psnr(reconstructions: np.ndarray, targets: np.ndarray, max_psnr: float = DEFAULT_MAX_PSNR) -> np.ndarray:
    """float64 [B]: PSNR (dB, peak 1) of each reconstruction [B, H, W, C] against its target in [0, 1]."""
    reconstructions = np.asarray(reconstructions, np.float64)
    targets = np.asarray(targets, np.float64)
    if reconstructions.shape != targets.shape or reconstructions.ndim != 4:
        raise ValueError(
            f"reconstructions {reconstructions.shape} and targets {targets.shape} must both be [B, H, W, C]"
        )
    mse = np.mean((reconstructions - targets) ** 2, axis=(1, 2, 3))
    with np.errstate(divide="ignore"):
        return np.minimum(-10.0 * np.log10(mse), max_psnr)


class ReconstructionEvaluator:
    """update(predictions, batch): predictions['reconstruction'] float [B, H, W, 3] in [0, 1] against
    batch['target'] (same shape); rows with batch['example_valid'] == False are skipped.
    result(): {'psnr': mean per-image PSNR (dB), 'mse': mean per-image MSE}."""

    def __init__(self, max_psnr: float = DEFAULT_MAX_PSNR):
        self.max_psnr = max_psnr
        self.psnr_sum = 0.0
        self.mse_sum = 0.0
        self.count = 0

    def update(self, predictions: Mapping[str, np.ndarray], batch: Mapping[str, np.ndarray]) -> None:
        valid = np.asarray(batch["example_valid"], bool)
        reconstructions = np.asarray(predictions["reconstruction"], np.float64)[valid]
        targets = np.asarray(batch["target"], np.float64)[valid]
        self.psnr_sum += float(per_image_psnr(reconstructions, targets, self.max_psnr).sum())
        self.mse_sum += float(np.mean((reconstructions - targets) ** 2, axis=(1, 2, 3)).sum())
        self.count += int(valid.sum())

    def result(self) -> dict[str, float]:
        if self.count == 0:
            return {"psnr": float("nan"), "mse": float("nan")}
        return {"psnr": self.psnr_sum / self.count, "mse": self.mse_sum / self.count}
