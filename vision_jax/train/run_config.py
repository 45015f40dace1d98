"""The workdir's record of the config it ran with, and the way back from it.

- `config.json`: the config of the latest start (what evaluate.py and predict.py use by default).
- `config_history.jsonl`: one line per start of the run, never rewritten:
  `{"step": the step it started from, "time": ..., "changed": {key: {"from": old, "to": new}},
  "config": the whole config, "placeholder_types": {key: type name}}`; `changed` is relative to
  the previous start, so the history says which config ran from which step.

JSON has no types for unset values (`config_dict.placeholder(str)` is written as `null`); the
history keeps them (`placeholder_types`) so that a saved config read back still takes
`--config.data.root=DIR` on the command line.
"""

from __future__ import annotations

import datetime
import json
import os
from typing import Any

import ml_collections
from ml_collections import config_dict

CONFIG_FILE = "config.json"
HISTORY_FILE = "config_history.jsonl"
ABSENT = "<absent>"  # the value of a key one of two configs lacks
_PLACEHOLDER_TYPES = {"str": str, "int": int, "float": float, "bool": bool}


def as_dict(config: ml_collections.ConfigDict) -> dict:
    """The config as `config.json` holds it (tuples as lists, unset values as None)."""
    return json.loads(config.to_json_best_effort())


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """{"optimizer": {"learning_rate": 0.1}} -> {"optimizer.learning_rate": 0.1}; an empty group
    stays a key of its own (value {})."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def changed_keys(saved: dict, new: dict) -> dict[str, tuple[Any, Any]]:
    """Dotted key -> (saved value, new value) for every leaf that differs (ABSENT where one lacks it)."""
    a, b = flatten(saved), flatten(new)
    pairs = {key: (a.get(key, ABSENT), b.get(key, ABSENT)) for key in sorted(a.keys() | b.keys())}
    return {key: (old, new) for key, (old, new) in pairs.items() if old != new}


def describe_changes(changes: dict[str, tuple[Any, Any]]) -> str:
    """"optimizer.learning_rate 0.003 -> 0.001, train.num_steps 10 -> 20"."""
    return ", ".join(f"{key} {old!r} -> {new!r}" for key, (old, new) in changes.items())


def read_saved(workdir: str) -> dict | None:
    """The workdir's `config.json` as a dict, or None when there is none."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def read_history(workdir: str) -> list[dict]:
    path = os.path.join(workdir, HISTORY_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def record_start(workdir: str, config: ml_collections.ConfigDict, step: int) -> dict[str, tuple[Any, Any]]:
    """Appends this start to the history and makes `config` the workdir's `config.json`; returns
    the keys changed since the previous start. A `config.json` from before the history existed is
    first copied into the history (`"step": null`), so no version is lost."""
    previous = read_saved(workdir)
    history_path = os.path.join(workdir, HISTORY_FILE)
    entries = []
    if previous is not None and not os.path.exists(history_path):
        entries.append({"step": None, "note": f"{CONFIG_FILE} found without a history", "config": previous})
    new = as_dict(config)
    changes = changed_keys(previous, new) if previous is not None else {}
    entries.append(
        {
            "step": int(step),
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "changed": {key: {"from": old, "to": value} for key, (old, value) in changes.items()},
            "config": new,
            "placeholder_types": placeholder_types(config),
        }
    )
    with open(history_path, "a") as f:
        f.writelines(json.dumps(entry) + "\n" for entry in entries)
    tmp = os.path.join(workdir, f".{CONFIG_FILE}.tmp")
    with open(tmp, "w") as f:
        f.write(config.to_json_best_effort(indent=2))
    os.replace(tmp, os.path.join(workdir, CONFIG_FILE))
    return changes


def placeholder_types(config: ml_collections.ConfigDict, prefix: str = "") -> dict[str, str]:
    """Dotted key -> type name ('str', 'int', 'float', 'bool') of every unset typed value."""
    types = {}
    for key, value in config.items():
        if isinstance(value, config_dict.ConfigDict):
            types.update(placeholder_types(value, f"{prefix}{key}."))
        elif value is None:
            field_type = config.get_type(key)
            if field_type.__name__ in _PLACEHOLDER_TYPES and field_type is _PLACEHOLDER_TYPES[field_type.__name__]:
                types[f"{prefix}{key}"] = field_type.__name__
    return types


def load_saved_config(workdir: str) -> ml_collections.ConfigDict:
    """The workdir's `config.json` as a ConfigDict that takes command-line overrides as the
    config file's own did: lists back to tuples, unset values typed from the history."""
    saved = read_saved(workdir)
    if saved is None:
        raise FileNotFoundError(
            f"{os.path.join(workdir, CONFIG_FILE)} not found: "
            f"is {workdir!r} the --workdir of a run of scripts/train.py?"
        )
    types: dict[str, str] = {}
    for entry in read_history(workdir):
        types.update(entry.get("placeholder_types", {}))
    config = _config_dict(saved, types, "")
    _add_missing_defaults(config, saved)
    return config


def _add_missing_defaults(config: ml_collections.ConfigDict, saved: dict) -> None:
    """Keys the code added after the run was saved (e.g. config.init, data.mask_crop_size) get their
    defaults, from base_config of the saved task and model: the run never set them, so it ran as
    those defaults say. Keys the run has are left as saved."""
    from vision_jax.train.config import base_config  # local: it imports the model table

    try:
        defaults = base_config(saved.get("task"), model=saved.get("model", {}).get("name"))
    except (KeyError, ValueError):  # an unknown task or model: validate() will name it
        return

    def fill(target: ml_collections.ConfigDict, source: ml_collections.ConfigDict) -> None:
        for key in source.keys():
            if key not in target:
                target[key] = source[key]
            elif isinstance(target[key], ml_collections.ConfigDict) and isinstance(source[key], ml_collections.ConfigDict):
                fill(target[key], source[key])

    fill(config, defaults)


def _config_dict(tree: dict, types: dict[str, str], prefix: str) -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            config[key] = _config_dict(value, types, name + ".")
        elif value is None and name in types:
            config[key] = config_dict.placeholder(_PLACEHOLDER_TYPES[types[name]])
        else:
            config[key] = as_tuples(value)
    return config


def as_tuples(value: Any) -> Any:
    """JSON lists (a config's tuples, written by `to_json`) back to tuples, nested ones too."""
    return tuple(as_tuples(v) for v in value) if isinstance(value, list) else value
