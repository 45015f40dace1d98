"""PyTorch `.pth` state dicts read without torch and without running any code from the file.

A `.pth` file is a pickle, and unpickling calls whatever global the file names (`os.system` as
readily as a tensor constructor). `read_torch_file` unpickles with `find_class` restricted to the
few globals a state dict needs, each mapped to a function of ours:

    collections.OrderedDict                      the state dict itself (and its `_metadata`)
    torch._utils._rebuild_tensor_v2              a tensor: (storage, offset, size, stride, ...)
    torch._utils._rebuild_parameter[_with_state] an nn.Parameter wrapping such a tensor
    torch.<Type>Storage                          storage types (float32, float16, bfloat16, int64...)
    _codecs.encode                               bytes in protocol-2 pickles (str -> latin-1 bytes)

Any other global raises `UnsafePickleError` naming it; the file's own code never runs. Storages
are raw little- (or big-) endian buffers, and each tensor view is bounds-checked against its
storage before `as_strided` (a crafted offset or stride cannot read outside the buffer).

Both of torch's formats are read:
  zip (torch >= 1.6 default): `<root>/data.pkl` + one record `<root>/data/<key>` per storage;
  legacy (torch < 1.6, `_use_new_zipfile_serialization=False`): five pickles in a row (magic
  number, protocol version 1001, system info, the object, the storage keys), then each storage
  as an int64 element count followed by its bytes, in the order of the keys.
"""

from __future__ import annotations

import codecs
import collections
import io
import pickle
import zipfile
from typing import Any, BinaryIO

import ml_dtypes
import numpy as np

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001

STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype(np.float32),
    "DoubleStorage": np.dtype(np.float64),
    "HalfStorage": np.dtype(np.float16),
    "BFloat16Storage": np.dtype(ml_dtypes.bfloat16),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
}


class UnsafePickleError(pickle.UnpicklingError):
    """The file names a global (function or class) that a weights file has no business calling."""


class _Sealed:
    """Refuses pickle's BUILD opcode, which would otherwise overwrite a checked attribute (an
    offset or stride) after construction."""

    def __setstate__(self, state):
        raise pickle.UnpicklingError(f"a weights file may not set the state of a {type(self).__name__}")


class _StorageType(_Sealed):
    """Stands for `torch.<name>`: only its element dtype matters."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = STORAGE_DTYPES[name]


class _Storage(_Sealed):
    """A storage named in the pickle; its bytes arrive later (legacy) or from a zip record."""

    def __init__(self, key: str, dtype: np.dtype, numel: int):
        self.key, self.dtype, self.numel = key, dtype, int(numel)
        self.data: np.ndarray | None = None


class _StorageView(_Sealed):
    """A legacy-format view into a storage: elements [offset, offset + size) of `base`."""

    def __init__(self, base: _Storage, offset: int, size: int):
        self.base, self.offset, self.size = base, int(offset), int(size)
        if self.offset < 0 or self.size < 0 or self.offset + self.size > base.numel:
            raise pickle.UnpicklingError(f"storage view [{offset}, {offset}+{size}) outside storage of {base.numel}")

    @property
    def dtype(self) -> np.dtype:
        return self.base.dtype

    @property
    def data(self) -> np.ndarray | None:
        if self.base.data is None:
            return None
        return self.base.data[self.offset : self.offset + self.size]


class _PendingTensor(_Sealed):
    """A tensor whose storage bytes are not read yet; becomes an ndarray in `_materialize`."""

    def __init__(self, storage, offset, size, stride):
        if not isinstance(storage, (_Storage, _StorageView)):
            raise pickle.UnpicklingError(f"tensor built on {type(storage).__name__}, not on a storage")
        self.storage = storage
        self.offset = _int(offset, "storage offset")
        self.size = tuple(_int(n, "size") for n in size)
        self.stride = tuple(_int(n, "stride") for n in stride)
        if len(self.size) != len(self.stride) or self.offset < 0 or min(self.size + self.stride, default=0) < 0:
            raise pickle.UnpicklingError(f"bad tensor layout: offset {offset}, size {size}, stride {stride}")

    def to_numpy(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise pickle.UnpicklingError("tensor on a storage that the file never fills")
        if self.offset < 0 or min(self.size + self.stride, default=0) < 0:
            raise pickle.UnpicklingError(
                f"bad tensor layout: offset {self.offset}, size {self.size}, stride {self.stride}"
            )
        if any(n == 0 for n in self.size):
            return np.zeros(self.size, self.storage.dtype)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if last >= data.size:
            raise pickle.UnpicklingError(
                f"tensor of size {self.size}, stride {self.stride}, offset {self.offset} reads element "
                f"{last} of a storage of {data.size}"
            )
        itemsize = data.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[self.offset :], self.size, tuple(s * itemsize for s in self.stride), writeable=False
        )
        return view.copy()  # C-contiguous, owns its data, keeps 0-d tensors 0-d


def _int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise pickle.UnpicklingError(f"tensor {what} must be an int, got {type(value).__name__}")
    return value


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    return _PendingTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    return data


def _codecs_encode(text, encoding="utf-8"):
    if not isinstance(text, str) or codecs.lookup(encoding).name not in ("latin-1", "iso8859-1", "utf-8"):
        raise pickle.UnpicklingError(f"_codecs.encode({type(text).__name__}, {encoding!r}) is not allowed")
    return codecs.encode(text, encoding)


ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("_codecs", "encode"): _codecs_encode,
    **{("torch", name): _StorageType(name) for name in STORAGE_DTYPES},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler whose globals are ALLOWED_GLOBALS only and whose persistent ids are storages."""

    def __init__(self, file: BinaryIO, storages: dict[str, _Storage], zip_format: bool):
        super().__init__(file, encoding="utf-8")
        self.storages = storages
        self.zip_format = zip_format

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED_GLOBALS:
            return ALLOWED_GLOBALS[(module, name)]
        raise UnsafePickleError(
            f"weights file refers to the global {module}.{name}, which is not a tensor, storage or "
            "container; refusing to load it (a weights file must not run code)"
        )

    def persistent_load(self, saved_id: Any) -> Any:
        if not isinstance(saved_id, tuple) or not saved_id or _ascii(saved_id[0]) != "storage":
            raise pickle.UnpicklingError(f"unsupported persistent id {saved_id!r} (only storages are read)")
        if self.zip_format:
            if len(saved_id) != 5:
                raise pickle.UnpicklingError(f"bad storage id {saved_id!r}")
            _, storage_type, key, _location, numel = saved_id
            view = None
        else:
            if len(saved_id) != 6:
                raise pickle.UnpicklingError(f"bad storage id {saved_id!r}")
            _, storage_type, key, _location, numel, view = saved_id
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"storage of unsupported type {storage_type!r}")
        key = _ascii(key)
        storage = self.storages.get(key)
        if storage is None:
            storage = self.storages[key] = _Storage(key, storage_type.dtype, _int(numel, "storage size"))
        if view is None:
            return storage
        _view_key, offset, size = view
        return _StorageView(storage, _int(offset, "view offset"), _int(size, "view size"))


def _ascii(value: Any) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else str(value)


def _materialize(obj: Any) -> Any:
    """Replaces every _PendingTensor in nested dicts/lists/tuples by its ndarray."""
    if isinstance(obj, _PendingTensor):
        return obj.to_numpy()
    if isinstance(obj, dict):
        out = type(obj)((k, _materialize(v)) for k, v in obj.items())
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialize(v) for v in obj)
    return obj


def _read_zip(path: str) -> Any:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise ValueError(f"{path}: a zip that is not a torch file (no single data.pkl among {names[:5]}...)")
        root = pickles[0][: -len("data.pkl")]
        byteorder = archive.read(root + "byteorder").decode() if root + "byteorder" in names else "little"
        storages: dict[str, _Storage] = {}
        with archive.open(pickles[0]) as stream:
            obj = _RestrictedUnpickler(io.BytesIO(stream.read()), storages, zip_format=True).load()
        for key, storage in storages.items():
            record = f"{root}data/{key}"
            if record not in names:
                raise ValueError(f"{path}: storage record {record!r} is missing")
            storage.data = _buffer(archive.read(record), storage, byteorder, path)
    return _materialize(obj)


def _read_legacy(path: str) -> Any:
    with open(path, "rb") as file:
        header = _RestrictedUnpickler(file, {}, zip_format=False)
        if header.load() != LEGACY_MAGIC_NUMBER:
            raise ValueError(f"{path}: neither a zip nor a legacy torch file (bad magic number)")
        if header.load() != LEGACY_PROTOCOL_VERSION:
            raise ValueError(f"{path}: unsupported legacy torch protocol version")
        sys_info = header.load()
        byteorder = "little" if not isinstance(sys_info, dict) or sys_info.get("little_endian", True) else "big"
        storages: dict[str, _Storage] = {}
        obj = _RestrictedUnpickler(file, storages, zip_format=False).load()
        keys = [_ascii(k) for k in _RestrictedUnpickler(file, {}, zip_format=False).load()]
        for key in keys:
            if key not in storages:
                raise ValueError(f"{path}: storage {key!r} listed but never used")
            storage = storages[key]
            numel = int.from_bytes(file.read(8), byteorder)
            if numel != storage.numel:
                raise ValueError(f"{path}: storage {key!r} holds {numel} elements, the pickle says {storage.numel}")
            storage.data = _buffer(file.read(numel * storage.dtype.itemsize), storage, byteorder, path)
        missing = sorted(set(storages) - set(keys))
        if missing:
            raise ValueError(f"{path}: storages {missing} have no data")
    return _materialize(obj)


def _buffer(raw: bytes, storage: _Storage, byteorder: str, path: str) -> np.ndarray:
    if len(raw) != storage.numel * storage.dtype.itemsize:
        raise ValueError(f"{path}: storage {storage.key!r} is truncated ({len(raw)} bytes)")
    dtype = storage.dtype.newbyteorder("<" if byteorder == "little" else ">")
    return np.frombuffer(raw, dtype).astype(storage.dtype, copy=False)


def read_torch_file(path: str) -> Any:
    """The object saved by `torch.save` at `path` (zip or legacy format), tensors as ndarrays.

    Accepts only tensors, storages, OrderedDicts and plain containers; raises UnsafePickleError
    naming any other global the file refers to. Never imports torch.
    """
    if zipfile.is_zipfile(path):
        return _read_zip(path)
    return _read_legacy(path)
