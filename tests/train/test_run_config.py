"""The workdir's record of its config: every version kept, and read back as a config that takes
command-line overrides like the config file it came from."""

import json
import os

from absl import flags
from ml_collections import config_flags

from vision_jax.train import run_config
from vision_jax.train.cli import SAVED_CONFIG_FILE, suggest
from vision_jax.train.config import load_config_file

CONFIG = "configs/localization/shapes_resnet18.py"


def test_changed_keys_name_each_differing_leaf():
    saved = {"optimizer": {"learning_rate": 0.1, "name": "sgd"}, "model": {"width": 16}, "loss": {}}
    new = {"optimizer": {"learning_rate": 0.01, "name": "sgd"}, "model": {"width": 16, "stem": "cifar"}, "loss": {}}
    assert run_config.changed_keys(saved, new) == {
        "model.stem": (run_config.ABSENT, "cifar"),
        "optimizer.learning_rate": (0.1, 0.01),
    }


def test_history_keeps_every_version_and_config_json_holds_the_latest(repo_root, tmp_path):
    first = load_config_file(os.path.join(repo_root, CONFIG))
    second = load_config_file(os.path.join(repo_root, CONFIG))
    second.optimizer.learning_rate = 1e-4
    assert run_config.record_start(str(tmp_path), first, 0) == {}
    assert run_config.record_start(str(tmp_path), second, 500) == {"optimizer.learning_rate": (3e-3, 1e-4)}
    history = run_config.read_history(str(tmp_path))
    assert [(entry["step"], entry["changed"]) for entry in history] == [
        (0, {}),
        (500, {"optimizer.learning_rate": {"from": 3e-3, "to": 1e-4}}),
    ]
    assert history[0]["config"]["optimizer"]["learning_rate"] == 3e-3
    assert json.load(open(tmp_path / "config.json"))["optimizer"]["learning_rate"] == 1e-4


def test_a_config_json_without_history_is_copied_into_the_history_first(repo_root, tmp_path):
    config = load_config_file(os.path.join(repo_root, CONFIG))
    (tmp_path / "config.json").write_text(json.dumps({"task": "localization", "seed": 7}))
    run_config.record_start(str(tmp_path), config, 100)
    history = run_config.read_history(str(tmp_path))
    assert [entry["step"] for entry in history] == [None, 100]
    assert history[0]["config"] == {"task": "localization", "seed": 7}


def test_saved_config_reads_back_and_takes_overrides_of_unset_and_set_keys(repo_root, tmp_path):
    original = load_config_file(os.path.join(repo_root, CONFIG))
    run_config.record_start(str(tmp_path), original, 0)
    argv = ["evaluate.py", f"--config={SAVED_CONFIG_FILE}:{tmp_path}", "--config.data.root=/data/mine",
            "--config.data.shapes_num_train=12", "--config.train.eval_batch_size=8"]  # fmt: skip
    flag_values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", flag_values=flag_values, lock_config=True, sys_argv=argv)
    flag_values(argv)
    loaded = flag_values.config
    assert (loaded.data.root, loaded.data.shapes_num_train, loaded.train.eval_batch_size) == ("/data/mine", 12, 8)
    assert loaded.optimizer.decay_boundaries == original.optimizer.decay_boundaries  # a tuple again
    loaded.data.root, loaded.data.shapes_num_train, loaded.train.eval_batch_size = None, None, 250
    assert run_config.as_dict(loaded) == run_config.as_dict(original)


def test_suggestions_for_misspelled_keys():
    keys = ["learning_rate", "momentum", "name", "weight_decay", "warmup_steps"]
    assert suggest("lr", keys) == "learning_rate"
    assert suggest("wd", keys) == "weight_decay"
    assert suggest("momentun", keys) == "momentum"
    assert suggest("warmup", keys) == "warmup_steps"
    assert suggest("zzz", keys) is None


def test_a_run_saved_before_newer_keys_reads_back_with_their_defaults(repo_root, tmp_path):
    """A workdir whose config.json predates keys added since (config.init, data.mask_crop_size: the run
    never set them) still loads and validates, with those keys' defaults; its own values stay."""
    from vision_jax.train.config import base_config, validate

    original = load_config_file(os.path.join(repo_root, CONFIG))
    run_config.record_start(str(tmp_path), original, 0)
    saved = json.load(open(tmp_path / "config.json"))
    del saved["init"]
    del saved["optimizer"]["warmup_steps"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    loaded = run_config.load_saved_config(str(tmp_path))
    assert loaded.init.weights is None and loaded.init.freeze_stages == 0
    # absent from the old run: it ran with the code's default, not with today's config file's value
    assert loaded.optimizer.warmup_steps == base_config(original.task, model=original.model.name).optimizer.warmup_steps
    validate(loaded)
    loaded.optimizer.warmup_steps = original.optimizer.warmup_steps
    assert run_config.as_dict(loaded) == run_config.as_dict(original)
