"""load_state_dict: one reader for .safetensors, .npz and .pth, with checkpoints unwrapped."""

import numpy as np
import pytest

import torch_file_writer as writer
from vision_jax.weights import load_state_dict


def _arrays(seed):
    rng = np.random.default_rng(seed)
    return {
        "layer.weight": rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
        "layer.bias": rng.normal(size=(4,)).astype(np.float16),
        "bn.num_batches_tracked": np.array(7, np.int64),
    }


def test_safetensors_file_is_read_with_names_dtypes_and_values(tmp_path, seed):
    from safetensors.numpy import save_file

    arrays = _arrays(seed)
    save_file(arrays, str(tmp_path / "w.safetensors"))
    loaded = load_state_dict(str(tmp_path / "w.safetensors"))
    assert set(loaded) == set(arrays)
    for name, array in arrays.items():
        assert loaded[name].dtype == array.dtype, f"seed={seed}"
        np.testing.assert_array_equal(loaded[name], array, err_msg=f"seed={seed}: {name}")


def test_npz_file_is_read_without_pickle(tmp_path, seed):
    arrays = _arrays(seed)
    np.savez(tmp_path / "w.npz", **arrays)
    loaded = load_state_dict(str(tmp_path / "w.npz"))
    for name, array in arrays.items():
        np.testing.assert_array_equal(loaded[name], array, err_msg=f"seed={seed}: {name}")
    np.savez(tmp_path / "objects.npz", bad=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):
        load_state_dict(str(tmp_path / "objects.npz"))


def test_a_training_checkpoint_is_unwrapped_to_its_state_dict(tmp_path, seed):
    """{'state_dict': {...}, 'epoch': 3}: the weights, nested names joined with '.', counters dropped."""
    arrays = _arrays(seed)
    nested = {
        "backbone": {"weight": writer.tensor(arrays["layer.weight"], "0")},
        "bias": writer.tensor(arrays["layer.bias"], "1"),
    }
    writer.write_zip(tmp_path / "ckpt.pth", {"state_dict": nested, "epoch": 3, "optimizer": "sgd"})
    loaded = load_state_dict(str(tmp_path / "ckpt.pth"), reader="restricted")
    assert sorted(loaded) == ["backbone.weight", "bias"]
    np.testing.assert_array_equal(loaded["backbone.weight"], arrays["layer.weight"])


def test_unknown_formats_missing_files_and_readers_are_refused(tmp_path):
    (tmp_path / "w.h5").write_bytes(b"\x89HDF")
    with pytest.raises(ValueError, match="unknown weights format"):
        load_state_dict(str(tmp_path / "w.h5"))
    with pytest.raises(FileNotFoundError, match="not found"):
        load_state_dict(str(tmp_path / "absent.pth"))
    with pytest.raises(ValueError, match="unknown reader 'pickle'"):
        load_state_dict(str(tmp_path / "w.h5"), reader="pickle")


def test_torch_reader_gives_the_same_arrays_as_the_restricted_one(tmp_path, seed):
    """Where torch is installed (it is not in this project's requirements), torch.load(weights_only=True)."""
    pytest.importorskip("torch", reason="torch is not installed; the restricted reader is used")
    arrays = _arrays(seed)
    writer.write_zip(tmp_path / "w.pth", {name: writer.tensor(a, str(i)) for i, (name, a) in enumerate(arrays.items())})
    by_torch = load_state_dict(str(tmp_path / "w.pth"), reader="torch")
    by_us = load_state_dict(str(tmp_path / "w.pth"), reader="restricted")
    for name in arrays:
        np.testing.assert_array_equal(by_torch[name], by_us[name], err_msg=f"seed={seed}: {name}")
