"""Writes files in torch.save's two formats without torch, for the reader's tests.

Follows torch/serialization.py: the zip format (`<root>/data.pkl`, `<root>/data/<key>` raw
storages, `<root>/byteorder`, `<root>/version`) and the legacy format (pickled magic number,
protocol version 1001, system info, the object with storages as persistent ids, the list of
storage keys, then each storage as an int64 element count and its bytes). Tensors pickle as
torch does: `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad,
OrderedDict())`, storages as persistent ids ('storage', torch.<Type>Storage, key, 'cpu', numel
[, view_metadata]).

The pure-Python pickler is used so that a stand-in object can write any GLOBAL opcode; that is
also how the tests craft malicious files (`Global('posix', 'system')`).
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict

import ml_dtypes
import numpy as np

STORAGE_NAMES = {
    np.dtype(np.float32): "FloatStorage",
    np.dtype(np.float64): "DoubleStorage",
    np.dtype(np.float16): "HalfStorage",
    np.dtype(ml_dtypes.bfloat16): "BFloat16Storage",
    np.dtype(np.int64): "LongStorage",
    np.dtype(np.int32): "IntStorage",
    np.dtype(np.uint8): "ByteStorage",
    np.dtype(np.bool_): "BoolStorage",
}


class Global:
    """Pickles as the GLOBAL opcode `module name`, whatever that names."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle wants a callable in a reduce tuple; it is never called
        raise NotImplementedError(f"{self.module}.{self.name} is only written, never called")


class Call:
    """Pickles as `module.name(*args)` (GLOBAL + args + REDUCE)."""

    def __init__(self, module: str, name: str, *args):
        self.function, self.args = Global(module, name), args

    def __reduce__(self):
        return (self.function, self.args)


class Storage:
    """A flat storage: `data` 1-d array; `key` is its name in the file."""

    def __init__(self, key: str, data: np.ndarray):
        self.key, self.data = key, np.ascontiguousarray(data).reshape(-1)


class Tensor:
    """A tensor view of `storage`: offset, size, stride in elements (as torch pickles them)."""

    def __init__(self, storage: Storage, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def __reduce__(self):
        rebuild = Global("torch._utils", "_rebuild_tensor_v2")
        return (rebuild, (self.storage, self.offset, self.size, self.stride, False, OrderedDict()))


def tensor(array: np.ndarray, key: str) -> Tensor:
    """A contiguous tensor with its own storage."""
    array = np.array(array, order="C")  # (np.ascontiguousarray would make a 0-d array 1-d)
    strides = tuple(s // array.itemsize for s in array.strides)
    return Tensor(Storage(key, array), 0, array.shape, strides)


class _Pickler(pickle._Pickler):
    dispatch = pickle._Pickler.dispatch.copy()

    def __init__(self, file, legacy: bool):
        super().__init__(file, protocol=2)
        self.legacy = legacy
        self.storages: dict[str, Storage] = {}

    def save_stand_in_global(self, obj: Global):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())

    dispatch[Global] = save_stand_in_global

    def persistent_id(self, obj):
        if not isinstance(obj, Storage):
            return None
        self.storages[obj.key] = obj
        storage_type = Global("torch", STORAGE_NAMES[obj.data.dtype])
        if self.legacy:
            return ("storage", storage_type, obj.key, "cpu", obj.data.size, None)
        return ("storage", storage_type, obj.key, "cpu", obj.data.size)


def dumps_object(obj, legacy: bool) -> tuple[bytes, dict[str, Storage]]:
    buffer = io.BytesIO()
    pickler = _Pickler(buffer, legacy)
    pickler.dump(obj)
    return buffer.getvalue(), pickler.storages


def write_zip(path, obj, root: str = "archive") -> None:
    """torch.save(obj, path) in the zip format (torch >= 1.6)."""
    data, storages = dumps_object(obj, legacy=False)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{root}/data.pkl", data)
        archive.writestr(f"{root}/byteorder", "little")
        for key, storage in storages.items():
            archive.writestr(f"{root}/data/{key}", storage.data.astype(storage.data.dtype.newbyteorder("<")).tobytes())
        archive.writestr(f"{root}/version", "3\n")


def write_legacy(path, obj, header: object = None) -> None:
    """torch.save(obj, path, _use_new_zipfile_serialization=False). `header` replaces the
    system-info pickle (to test that it is unpickled with the same restrictions)."""
    data, storages = dumps_object(obj, legacy=True)
    sys_info = (
        header
        if header is not None
        else {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    )
    with open(path, "wb") as file:
        for item in (0x1950A86A20F9469CFC6C, 1001):
            file.write(pickle.dumps(item, protocol=2))
        file.write(dumps_object(sys_info, legacy=True)[0])
        file.write(data)
        keys = sorted(storages)
        file.write(pickle.dumps(keys, protocol=2))
        for key in keys:
            file.write(np.int64(storages[key].data.size).tobytes())
            file.write(storages[key].data.tobytes())
