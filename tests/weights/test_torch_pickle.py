"""The restricted .pth reader: both torch formats round-trip, and a file that would call any
function is refused before anything runs (files written by torch_file_writer, no torch)."""

from collections import OrderedDict

import ml_dtypes
import numpy as np
import pytest

import torch_file_writer as writer
from vision_jax.weights import UnsafePickleError, load_state_dict, read_torch_file

WRITERS = {"zip": writer.write_zip, "legacy": writer.write_legacy}


def _random_arrays(rng):
    return {
        "conv.weight": rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
        "half": rng.normal(size=(5,)).astype(np.float16),
        "bf16": rng.normal(size=(2, 3)).astype(ml_dtypes.bfloat16),
        "double": rng.normal(size=(2,)),
        "bn.num_batches_tracked": np.array(rng.integers(0, 10**6), np.int64),
        "ints": rng.integers(-9, 9, size=(3, 2)).astype(np.int32),
        "mask": rng.random(4) > 0.5,
    }


@pytest.mark.parametrize("file_format", sorted(WRITERS))
def test_state_dict_round_trips_every_dtype(file_format, tmp_path, seed):
    arrays = _random_arrays(np.random.default_rng(seed))
    obj = OrderedDict((name, writer.tensor(array, str(i))) for i, (name, array) in enumerate(arrays.items()))
    WRITERS[file_format](tmp_path / "w.pth", obj)
    loaded = load_state_dict(str(tmp_path / "w.pth"), reader="restricted")
    assert list(loaded) == list(arrays), f"seed={seed}"
    for name, array in arrays.items():
        assert loaded[name].dtype == array.dtype and loaded[name].shape == array.shape, f"seed={seed}: {name}"
        np.testing.assert_array_equal(loaded[name], array, err_msg=f"seed={seed}: {name}")


@pytest.mark.parametrize("file_format", sorted(WRITERS))
def test_views_sharing_one_storage_keep_offset_and_strides(file_format, tmp_path, seed):
    """A transposed view and an offset slice of one storage (as torch saves a tied or sliced weight)."""
    base = np.random.default_rng(seed).normal(size=(3, 4)).astype(np.float32)
    storage = writer.Storage("0", base)
    obj = {
        "whole": writer.Tensor(storage, 0, (3, 4), (4, 1)),
        "transposed": writer.Tensor(storage, 0, (4, 3), (1, 4)),
        "row1": writer.Tensor(storage, 4, (4,), (1,)),
        "column2": writer.Tensor(storage, 2, (3,), (4,)),
    }
    WRITERS[file_format](tmp_path / "v.pth", obj)
    loaded = read_torch_file(str(tmp_path / "v.pth"))
    np.testing.assert_array_equal(loaded["whole"], base)
    np.testing.assert_array_equal(loaded["transposed"], base.T)
    np.testing.assert_array_equal(loaded["row1"], base[1])
    np.testing.assert_array_equal(loaded["column2"], base[:, 2])
    assert loaded["transposed"].flags.c_contiguous


@pytest.mark.parametrize("file_format", sorted(WRITERS))
@pytest.mark.parametrize(
    "payload",
    [
        writer.Call("posix", "system", "touch {marker}"),
        writer.Call("os", "system", "touch {marker}"),
        writer.Call("builtins", "exec", "open('{marker}', 'w').close()"),
        writer.Call("subprocess", "check_call", ["touch", "{marker}"]),
        writer.Call("torch", "load", "{marker}"),  # a torch global, but not a tensor or storage
    ],
    ids=["posix.system", "os.system", "builtins.exec", "subprocess.check_call", "torch.load"],
)
def test_a_file_that_would_call_a_function_is_refused_naming_it(file_format, payload, tmp_path):
    marker = tmp_path / "marker"
    payload.args = tuple(
        [a.format(marker=marker) for a in arg] if isinstance(arg, list) else arg.format(marker=marker)
        for arg in payload.args
    )
    state = OrderedDict(weight=writer.tensor(np.ones(3, np.float32), "0"), evil=payload)
    WRITERS[file_format](tmp_path / "evil.pth", state)
    name = f"{payload.function.module}.{payload.function.name}"
    with pytest.raises(UnsafePickleError, match=rf"global {name}\b.*refusing"):
        load_state_dict(str(tmp_path / "evil.pth"), reader="restricted")
    assert not marker.exists()


def test_the_legacy_header_pickles_are_restricted_too(tmp_path):
    marker = tmp_path / "marker"
    writer.write_legacy(
        tmp_path / "evil.pth",
        {"w": writer.tensor(np.ones(2, np.float32), "0")},
        header=writer.Call("posix", "system", f"touch {marker}"),
    )
    with pytest.raises(UnsafePickleError, match="posix.system"):
        read_torch_file(str(tmp_path / "evil.pth"))
    assert not marker.exists()


@pytest.mark.parametrize("file_format", sorted(WRITERS))
def test_a_view_reaching_outside_its_storage_is_refused(file_format, tmp_path):
    """as_strided would read foreign memory; the reader checks every view against its storage."""
    storage = writer.Storage("0", np.zeros(6, np.float32))
    WRITERS[file_format](tmp_path / "oob.pth", {"w": writer.Tensor(storage, 2, (3, 2), (2, 1))})
    with pytest.raises(Exception, match="reads element 7 of a storage of 6"):
        read_torch_file(str(tmp_path / "oob.pth"))


class _TensorWithState(writer.Tensor):
    """Pickles with a BUILD opcode after the tensor: an attempt to change its stride once checked."""

    def __reduce__(self):
        return (*super().__reduce__(), {"stride": (-1000,)})


@pytest.mark.parametrize("file_format", sorted(WRITERS))
def test_a_file_may_not_rewrite_a_tensor_after_it_is_checked(file_format, tmp_path):
    storage = writer.Storage("0", np.zeros(6, np.float32))
    WRITERS[file_format](tmp_path / "build.pth", {"w": _TensorWithState(storage, 0, (6,), (1,))})
    with pytest.raises(Exception, match="may not set the state of a _PendingTensor"):
        read_torch_file(str(tmp_path / "build.pth"))


def test_a_truncated_legacy_file_is_refused(tmp_path):
    writer.write_legacy(tmp_path / "w.pth", {"w": writer.tensor(np.ones(100, np.float32), "0")})
    data = (tmp_path / "w.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[:-8])
    with pytest.raises(ValueError, match="truncated"):
        read_torch_file(str(tmp_path / "cut.pth"))
