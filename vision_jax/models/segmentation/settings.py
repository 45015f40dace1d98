"""The segmentation family's hyper-parameters: `config.model.segmentation.*` is generated from
`FCNSettings` (models 'fcn32s', 'fcn16s', 'fcn8s'), `SegNetSettings` ('segnet') or
`AutoencoderSettings` ('conv_autoencoder', the reconstruction task's model)."""

from __future__ import annotations

import dataclasses

from vision_jax.models.backbones.vgg import CONVS_PER_BLOCK
from vision_jax.models.settings import require


@dataclasses.dataclass(frozen=True)
class FCNSettings:
    """FCN (Long et al. 2015) on the backbone of config.model.backbone."""

    head_features: int = 0  # fc6 / fc7 channels (4096 in the paper's VGG-16); 0 = none
    head_kernel_size: int = 7  # fc6 kernel side
    dropout_rate: float = 0.5  # after fc6 / fc7 (only with head_features > 0)
    learn_final_upsampling: bool = False  # the paper keeps the last upsampling a fixed bilinear one

    def check(self) -> None:
        require(self.head_features >= 0, "head_features", self.head_features, "must be >= 0")
        require(self.head_kernel_size >= 1, "head_kernel_size", self.head_kernel_size, "must be >= 1")
        require(0.0 <= self.dropout_rate < 1.0, "dropout_rate", self.dropout_rate, "must be in [0, 1)")


@dataclasses.dataclass(frozen=True)
class SegNetSettings:
    """SegNet (Badrinarayanan et al. 2017): its own VGG-16-BN-style encoder of config.model.width."""

    convs_per_block: tuple[int, ...] = CONVS_PER_BLOCK  # encoder / decoder blocks (VGG-16's)

    def check(self) -> None:
        require(len(self.convs_per_block) >= 1 and min(self.convs_per_block) >= 1, "convs_per_block",
                self.convs_per_block, "needs one positive count per block")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class AutoencoderSettings:
    """Convolutional autoencoder whose encoder is the backbone of config.model.backbone."""

    code_feature: str = "C4"  # backbone output used as the code
    code_stride: int = 16  # its stride (C4: 16 for VGG-16 and ResNets with the imagenet stem)
    decoder_min_features: int = 16  # decoder channels halve per x2 step down to this

    def check(self) -> None:
        require(self.code_stride >= 1, "code_stride", self.code_stride, "must be >= 1")
        require(self.decoder_min_features >= 1, "decoder_min_features", self.decoder_min_features, "must be >= 1")
