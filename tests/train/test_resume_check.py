"""resume.check on its own: which changed keys it blames for a checkpoint that does not fit."""

import ml_collections
import pytest

from vision_jax.train import resume, run_config


def structure_for(config):
    """A stand-in for the traced train state: the width sets a kernel's shape, the optimizer its state."""
    width = config.model.width
    structure = {"params.conv.kernel": ((3, 3, 3, width), "float32")}
    if config.optimizer.name == "adamw":
        structure["opt_state.0.mu.conv.kernel"] = ((3, 3, 3, width), "float32")
    return structure


def config(width=4, name="adamw", learning_rate=0.1):
    return ml_collections.ConfigDict(
        {"model": {"width": width}, "optimizer": {"name": name, "learning_rate": learning_rate}}
    )


@pytest.fixture
def workdir(tmp_path):
    run_config.record_start(str(tmp_path), config(), 0)
    return str(tmp_path)


def check(workdir, new, saved=None):
    return resume.check(workdir, 100, saved or structure_for(config()), new, structure_for)


def test_shape_preserving_changes_are_returned(workdir):
    assert check(workdir, config(learning_rate=0.01)) == {"optimizer.learning_rate": (0.1, 0.01)}


def test_only_the_keys_that_change_the_structure_are_blamed(workdir):
    with pytest.raises(resume.ResumeRefusedError) as error:
        check(workdir, config(width=8, name="sgd", learning_rate=0.01))
    message = str(error.value)
    assert "model.width (4 saved, 8 now), optimizer.name ('adamw' saved, 'sgd' now) change the shapes" in message
    assert "learning_rate" not in message
    assert "params.conv.kernel: [3, 3, 3, 4] float32 saved, [3, 3, 3, 8] float32 now" in message


def test_a_mismatch_with_an_unchanged_config_points_at_the_data(workdir):
    saved = {"params.conv.kernel": ((3, 3, 3, 5), "float32")}
    with pytest.raises(resume.ResumeRefusedError, match="did the data change"):
        check(workdir, config(), saved=saved)
