"""The segmentation family: FCN-32s/16s/8s (Long et al. 2015), SegNet (max-unpooling decoder), the
convolutional autoencoder, and the sliding-window baseline.

    settings.py            FCNSettings / SegNetSettings / AutoencoderSettings (config.model.segmentation.*)
    fcn.py                 FCN with bilinear-initialised transposed convolutions and skips
    bilinear_upsampling.py the bilinear kernels and the transposed-convolution layer
    segnet.py              SegNet encoder / decoder with argmax unpooling
    autoencoder.py         ConvAutoencoder; copy_encoder_params to initialise a segmenter
    sliding_window.py      per-pixel classification of crops (the baseline FCN is measured against)
    build.py               build_fcn / build_segnet / build_autoencoder (config, num_classes)
"""

from vision_jax.models.segmentation.build import GROUP, build_autoencoder, build_fcn, build_segnet
from vision_jax.models.segmentation.settings import AutoencoderSettings, FCNSettings, SegNetSettings

__all__ = [
    "GROUP",
    "AutoencoderSettings",
    "FCNSettings",
    "SegNetSettings",
    "build_autoencoder",
    "build_fcn",
    "build_segnet",
]
