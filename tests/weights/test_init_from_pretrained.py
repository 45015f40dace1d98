"""config.init: a fresh run starts from a weights file or another run's checkpoint; the loaded part
equals the file (converted by hand here: OIHW -> HWIO, BN statistics into batch_stats); mismatches
are named; frozen stages do not move; a resumed run never re-applies init."""

import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from torchvision_state_dicts import resnet_state_dict
from vision_jax.models.table import build_model
from vision_jax.train.config import ConfigError, load_config_file
from vision_jax.train.initialization import InitMismatchError, apply_loaded, load_init, loaded_part
from vision_jax.train.loop import Experiment, train_and_evaluate
from vision_jax.weights import PACKAGED_WEIGHTS, packaged_weights_path, read_torch_file

WIDTH = 8  # a narrow ResNet-18 keeps the tests cheap; the state dicts have the same width


def _config(repo_root, name, **values):
    config = load_config_file(os.path.join(repo_root, "configs", name))
    for key, value in {"model.width": WIDTH, **values}.items():
        *groups, leaf = key.split(".")
        node = config
        for group in groups:
            node = node[group]
        node[leaf] = value
    return config


def _template(config, num_classes=5):
    model = build_model(config, num_classes)
    size = config.data.image_size
    images = np.zeros((1, size, size, 3), np.float32)
    extra = (np.full((1, 2), size, np.float32),) if config.task == "detection" else ()
    return dict(jax.eval_shape(lambda: model.init(jax.random.key(0), images, *extra, train=False)))


def _write_npz(path, state_dict):
    np.savez(path, **state_dict)
    return str(path)


def _by_hand(state_dict, torch_name, kind):
    """What a torch tensor becomes in Flax, written out independently of vision_jax.weights."""
    array = state_dict[torch_name]
    return array.transpose(2, 3, 1, 0) if kind == "conv" else array


# (torch key, Flax collection, Flax path below the backbone, kind)
RESNET_SAMPLES = [
    ("conv1.weight", "params", ("conv1", "kernel"), "conv"),
    ("bn1.weight", "params", ("bn1", "scale"), "bn"),
    ("bn1.running_mean", "batch_stats", ("bn1", "mean"), "bn"),
    ("layer2.0.downsample.0.weight", "params", ("layer2", "block0", "downsample_conv", "kernel"), "conv"),
    ("layer2.0.downsample.1.running_var", "batch_stats", ("layer2", "block0", "downsample_bn", "var"), "bn"),
    ("layer4.1.conv2.weight", "params", ("layer4", "block1", "conv2", "kernel"), "conv"),
    ("layer4.1.bn2.bias", "params", ("layer4", "block1", "bn2", "bias"), "bn"),
]


def _leaf(tree, collection, path):
    node = tree[collection]
    for key in path:
        node = node[key]
    return np.asarray(node)


@pytest.mark.parametrize(
    "config_name, backbone_path",
    [
        ("detection/shapes_faster_rcnn.py", ("backbone",)),
        ("detection/shapes_ssd.py", ("features", "resnet")),
        ("segmentation/shapes_fcn8s.py", ("backbone",)),
    ],
)
def test_backbone_of_a_detector_and_a_segmenter_equals_the_files_values(repo_root, tmp_path, seed, config_name, backbone_path):
    state_dict = resnet_state_dict("resnet18", np.random.default_rng(seed), width=WIDTH)
    config = _config(repo_root, config_name, **{"init.weights": _write_npz(tmp_path / "r18.npz", state_dict)})
    template = _template(config)
    loaded = load_init(config, template)
    variables = apply_loaded(jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), template), loaded)
    assert loaded.part == backbone_path
    for torch_name, collection, path, kind in RESNET_SAMPLES:
        np.testing.assert_array_equal(_leaf(variables, collection, (*backbone_path, *path)), _by_hand(state_dict, torch_name, kind))
    # exactly the backbone: every backbone variable, nothing of the heads
    inside = [p for p in jax.tree_util.tree_flatten_with_path(template)[0]]
    backbone_leaves = sum(1 for path, _ in inside if tuple(k.key for k in path[1 : 1 + len(backbone_path)]) == backbone_path)
    assert len(loaded.variables) == backbone_leaves
    assert all(p[1 : 1 + len(backbone_path)] == backbone_path for p in loaded.variables)


@pytest.mark.parametrize("config_name", ["detection/shapes_ssd.py", "segmentation/shapes_fcn8s.py"])
def test_imagenet_mobilenet_v2_backbone_loads_into_shapes_ssd_and_fcn(repo_root, config_name):
    """The overrides of the report: model.backbone=mobilenet_v2 model.width=32 init.weights=<packaged>."""
    try:
        path = packaged_weights_path("torchvision_mobilenet_v2_imagenet")
    except FileNotFoundError:
        pytest.skip(f"{PACKAGED_WEIGHTS['torchvision_mobilenet_v2_imagenet'].requirement} is not installed")
    config = _config(
        repo_root,
        config_name,
        **{"model.backbone": "mobilenet_v2", "model.width": 32, "init.weights": "torchvision_mobilenet_v2_imagenet"},
    )
    template = _template(config)
    loaded = load_init(config, template)
    state_dict = read_torch_file(path)
    base = loaded.part
    # block 3 (t = 6): features.4.conv = expand conv/BN, depthwise conv/BN, project conv, BN
    expected = {
        ("params", *base, "stem_conv", "kernel"): state_dict["features.0.0.weight"].transpose(2, 3, 1, 0),
        ("params", *base, "block3", "depthwise_conv", "kernel"): state_dict["features.4.conv.1.0.weight"].transpose(2, 3, 1, 0),
        ("batch_stats", *base, "block3", "project_bn", "var"): state_dict["features.4.conv.3.running_var"],
        ("params", *base, "head_conv", "kernel"): state_dict["features.18.0.weight"].transpose(2, 3, 1, 0),
    }
    for key, value in expected.items():
        np.testing.assert_array_equal(loaded.variables[key], value)
    # every array of torchvision's `features` (52 convs, 52 BNs of 4 arrays), none of its classifier
    assert len(loaded.variables) == 52 + 52 * 4


def test_missing_and_mis_shaped_keys_are_named(repo_root, tmp_path, seed):
    state_dict = resnet_state_dict("resnet18", np.random.default_rng(seed), width=WIDTH)
    del state_dict["layer3.1.bn2.running_mean"]
    state_dict["layer4.0.conv1.weight"] = state_dict["layer4.0.conv1.weight"][:, :-1]
    config = _config(repo_root, "segmentation/shapes_fcn8s.py", **{"init.weights": _write_npz(tmp_path / "bad.npz", state_dict)})
    with pytest.raises(InitMismatchError) as error:
        load_init(config, _template(config))
    message = str(error.value)
    assert "1 mis-shaped" in message and "backbone/layer4/block0/conv1/kernel: the source has (3, 3, 31, 64), the model (3, 3, 32, 64)" in message
    assert "backbone/layer3/block1/bn2" in message and "missing" in message
    # allow_missing: the rest loads; the mis-shaped kernel is still refused
    config.init.allow_missing = True
    with pytest.raises(InitMismatchError, match="mis-shaped"):
        load_init(config, _template(config))


def test_a_model_without_the_backbone_or_the_prefix_is_refused_by_config_key(repo_root):
    config = _config(repo_root, "segmentation/shapes_fcn8s.py")
    segnet_like = {"params": {"encoder": {"conv1": {"kernel": np.zeros((3, 3, 3, 8))}}}}
    with pytest.raises(ConfigError, match="config.init.load='backbone': model 'fcn8s' holds no 'resnet18' backbone"):
        loaded_part(config.init, config.model, segnet_like)
    config.init.load = "encoder/conv2"
    with pytest.raises(ConfigError, match="config.init.load='encoder/conv2' is neither"):
        loaded_part(config.init, config.model, segnet_like)
    config.init.load = "encoder/conv1"
    assert loaded_part(config.init, config.model, segnet_like) == ("encoder", "conv1")


def _restore(workdir, step):
    return ocp.StandardCheckpointer().restore(os.path.join(os.path.abspath(workdir), "checkpoints", str(step), "default"))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def _tiny_run_config(repo_root, data_dir, weights, **values):
    return _config(
        repo_root,
        "localization/shapes_resnet18.py",
        **{
            "data.data_dir": data_dir,
            "data.shapes_num_train": 16,
            "data.shapes_num_test": 8,
            "train.batch_size": 8,
            "train.eval_batch_size": 8,
            "train.num_steps": 3,
            "train.log_every": 1,
            "train.eval_every": 100,
            "train.checkpoint_every": 100,
            "train.progress_bar": False,
            "optimizer.warmup_steps": 0,
            "optimizer.weight_decay": 0.1,  # decay would move a frozen kernel that only has no gradient
            "init.weights": weights,
            **values,
        },
    )


def test_frozen_stages_do_not_move_and_resume_keeps_its_own_weights(repo_root, data_dir, tmp_path, seed):
    rng = np.random.default_rng(seed)
    first = _write_npz(tmp_path / "first.npz", resnet_state_dict("resnet18", rng, width=WIDTH))
    config = _tiny_run_config(repo_root, data_dir, first, **{"init.freeze_stages": 2})
    workdir = str(tmp_path / "run")
    train_and_evaluate(config, workdir)
    trained = _restore(workdir, 3)
    state_dict = dict(np.load(first))
    params, stats = trained["params"]["backbone"], trained["model_state"]["batch_stats"]["backbone"]
    # stages 1 (stem) and 2 (layer1): exactly the file's values, parameters and statistics
    np.testing.assert_array_equal(params["conv1"]["kernel"], _by_hand(state_dict, "conv1.weight", "conv"))
    np.testing.assert_array_equal(params["layer1"]["block1"]["conv2"]["kernel"], _by_hand(state_dict, "layer1.1.conv2.weight", "conv"))
    np.testing.assert_array_equal(stats["layer1"]["block0"]["bn1"]["mean"], state_dict["layer1.0.bn1.running_mean"])
    # later stages trained
    for name, torch_name in [(("layer2", "block0", "conv1"), "layer2.0.conv1.weight"), (("layer4", "block1", "conv2"), "layer4.1.conv2.weight")]:
        kernel = params[name[0]][name[1]][name[2]]["kernel"]
        assert np.abs(kernel - _by_hand(state_dict, torch_name, "conv")).max() > 1e-6, f"{name} did not train"
    assert np.abs(stats["layer3"]["block0"]["bn1"]["mean"] - state_dict["layer3.0.bn1.running_mean"]).max() > 1e-6

    # Resumed with another init file and more steps: the run's own weights, not the new file's.
    second = _write_npz(tmp_path / "second.npz", resnet_state_dict("resnet18", rng, width=WIDTH))
    resumed = Experiment(_tiny_run_config(repo_root, data_dir, second, **{"init.freeze_stages": 2, "train.num_steps": 5}), workdir)
    assert exp_origin_is_resume(resumed.origin)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(resumed.state.params), trained["params"])
    resumed.manager.close()


def exp_origin_is_resume(origin: str) -> bool:
    return origin.startswith("Resumed from the checkpoint") and "not applied" in origin


def test_init_from_another_runs_checkpoint_takes_its_backbone(repo_root, data_dir, tmp_path, seed):
    """A localizer run's backbone into a segmenter (load='backbone' maps backbone to backbone)."""
    config = _tiny_run_config(
        repo_root, data_dir, None, **{"train.num_steps": 1, "seed": seed % 1000}
    )
    workdir = str(tmp_path / "localizer")
    train_and_evaluate(config, workdir)
    source = _restore(workdir, 1)
    target = _config(repo_root, "segmentation/shapes_fcn8s.py", **{"init.weights": workdir})
    loaded = load_init(target, _template(target))
    flat_source = {tuple(k.key for k in path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(source["params"]["backbone"])[0]}
    assert len([k for k in loaded.variables if k[0] == "params"]) == len(flat_source)
    for path, value in flat_source.items():
        np.testing.assert_array_equal(loaded.variables[("params", "backbone", *path)], value)
