"""A model family's hyper-parameters: the fields of one frozen dataclass, its config group generated.

Each default is written once, on the dataclass field. `config_group(Settings)` makes the
`config.model.<group>` ConfigDict from the fields (so `--config.model.ssd.iou_threshold=0.6` is
type-checked by ml_collections, and a field whose default is None becomes a typed placeholder);
`settings_from_config(Settings, group, where)` reads it back, refusing an unknown key by name,
converting lists to tuples and ints to floats as the annotations say, and calling the dataclass'
`check()` so that a bad value is refused with its full key (`config.model.ssd.nms_threshold=1.5
must be in [0, 1]`), before anything is built.

Adding a hyper-parameter to a family is one edit: a field with its default and comment on the
family's Settings class, read where it is used.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

import ml_collections
from ml_collections import config_dict

S = TypeVar("S")


class SettingsError(ValueError):
    """A family setting with a bad value; the message names the setting's field."""


def require(condition: bool, field: str, value: Any, why: str) -> None:
    """Raises SettingsError('<field>=<value> <why>') unless condition holds (for Settings.check())."""
    if not condition:
        raise SettingsError(f"{field}={value!r} {why}")


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _optional_inner(hint):
    """X for `X | None` / Optional[X], else None."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0]
    return None


def _placeholder_type(hint):
    inner = _optional_inner(hint)
    hint = inner if inner is not None else hint
    origin = typing.get_origin(hint)
    return origin if origin is not None else hint


def config_group(cls) -> ml_collections.ConfigDict:
    """The ConfigDict of `cls`'s fields with their defaults (None defaults as typed placeholders)."""
    group = ml_collections.ConfigDict()
    hints = _hints(cls)
    for field in dataclasses.fields(cls):
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            raise TypeError(f"{cls.__name__}.{field.name} needs a default to be a config key")
        if default is None:
            group[field.name] = config_dict.placeholder(_placeholder_type(hints[field.name]))
        else:
            group[field.name] = default
    return group


def _coerce(value, hint, key: str):
    """value (from a ConfigDict: lists, ints for floats...) as the annotation `hint` says."""
    if value is None:
        return None
    inner = _optional_inner(hint)
    if inner is not None:
        return _coerce(value, inner, key)
    origin = typing.get_origin(hint)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, (tuple, list)):
            raise SettingsError(f"{key}={value!r} must be a tuple")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], key) for v in value)
        if args and len(args) != len(value):
            raise SettingsError(f"{key}={value!r} must have {len(args)} values")
        return tuple(_coerce(v, a, key) for v, a in zip(value, args)) if args else tuple(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SettingsError(f"{key}={value!r} must be a number")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingsError(f"{key}={value!r} must be an integer")
        return int(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise SettingsError(f"{key}={value!r} must be True or False")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise SettingsError(f"{key}={value!r} must be a string")
        return value
    return value


def settings_from_config(cls: type[S], group: ml_collections.ConfigDict | None, where: str) -> S:
    """An instance of the Settings dataclass `cls` from the config group at `where` (e.g.
    'config.model.ssd'). Missing keys keep their defaults; unknown keys and bad values raise
    ValueError naming `where.<key>`."""
    if group is None:
        raise ValueError(f"{where} is missing: build the config with the model's group (base_config(task, model=...))")
    values = group.to_dict() if isinstance(group, ml_collections.ConfigDict) else dict(group)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{where} has unknown key(s) {unknown}; known: {sorted(names)}")
    hints = _hints(cls)
    try:
        kwargs = {name: _coerce(value, hints[name], name) for name, value in values.items()}
        settings = cls(**kwargs)
        check = getattr(settings, "check", None)
        if check is not None:
            check()
    except SettingsError as error:
        raise ValueError(f"{where}.{error}") from None
    return settings
