"""What scripts/train.py, evaluate.py and predict.py share on the command line.

- The `--config` flag (ml_collections' config file with `--config.key=value` overrides). For
  evaluate.py and predict.py it defaults to the config saved in `--workdir` (saved_config.py),
  overrides applied on top.
- A command line the config refuses (a misspelled or unknown key, a value of the wrong type, a
  missing file) is reported in one line with the fix, exit code 2, no traceback.
- The errors a user acts on rather than debugs (a resume the checkpoint cannot take, a
  non-finite loss, an unwritable workdir, Ctrl-C before training started) likewise, exit code 1
  (130 for Ctrl-C).
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import sys
from typing import Callable, NoReturn

from absl import app, flags
from ml_collections import config_dict, config_flags

SAVED_CONFIG_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "saved_config.py")
CONFIG_HELP = "Path to a config file (configs/<family>/<name>.py); keys overridden with --config.key=value."
SAVED_CONFIG_HELP = CONFIG_HELP + " Default: the config saved in --workdir (its config.json)."


def run(main: Callable, *, config_from_workdir: bool) -> None:
    """`absl.app.run(main)` for a script with `--workdir` (defined by the script) and `--config`
    (defined here). `config_from_workdir`: `--config` defaults to the config saved in the workdir."""
    app.run(_reporting(main), flags_parser=lambda argv: _parse(argv, config_from_workdir))


def fail(message: str, code: int = 2, skip_teardown: bool = False) -> NoReturn:
    """Ends the program with `error: message` as stderr's last line. `skip_teardown`: exit without
    the interpreter's teardown, during which TensorFlow's and orbax's threads, stopped mid-work,
    can crash the process (a segmentation fault, `ImportError: sys.meta_path is None`) after the
    message; only for states where nothing is left to write."""
    sys.stdout.flush()
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    if skip_teardown:
        logging.shutdown()
        os._exit(code)
    sys.exit(code)


def flag_value(argv: list[str], name: str) -> str | None:
    """The value of `--name=VALUE` or `--name VALUE` in `argv` (the last one given), or None."""
    value = None
    for i, arg in enumerate(argv[1:], 1):
        if arg == "--":
            break
        match = re.fullmatch(rf"--?{re.escape(name)}(=(.*))?", arg)
        if match:
            value = match.group(2) if match.group(1) else (argv[i + 1] if i + 1 < len(argv) else None)
    return value


def _parse(argv: list[str], config_from_workdir: bool) -> list[str]:
    from vision_jax.train import run_config

    config_path = flag_value(argv, "config")
    workdir = flag_value(argv, "workdir")
    default = None
    if config_from_workdir and config_path is None and workdir is not None:
        if not os.path.exists(os.path.join(workdir, run_config.CONFIG_FILE)):
            fail(
                f"--config not given, and {os.path.join(workdir, run_config.CONFIG_FILE)} (the config a run of "
                f"scripts/train.py saves) not found: pass --config=configs/<family>/<name>.py"
            )
        default = f"{SAVED_CONFIG_FILE}:{workdir}"
    try:
        config_flags.DEFINE_config_file(
            "config", default, SAVED_CONFIG_HELP if config_from_workdir else CONFIG_HELP, lock_config=True
        )
        if not config_from_workdir:
            flags.mark_flag_as_required("config")
        remaining = flags.FLAGS(argv)
        if flags.FLAGS.config is not None:  # None: neither --config nor --workdir (the script says what it needs)
            _ = flags.FLAGS.config.keys()  # a config file that could not be loaded raises here
        return remaining
    except flags.Error as error:
        fail(" ".join(str(error).split()))
    except (AttributeError, KeyError) as error:  # ml_collections: an override names a key the config lacks
        fail(_unknown_key_message(argv, config_path or default, error))
    except KeyboardInterrupt:  # Ctrl-C while the config file imports its modules
        fail("interrupted before anything ran", code=130, skip_teardown=True)
    except OSError as error:  # a config file that cannot be read
        reason = str(error).strip().splitlines()[-1].strip().strip('"') if str(error).strip() else repr(error)
        fail(f"--config={config_path}: {reason}")


def _unknown_key_message(argv: list[str], config_argument: str | None, error: BaseException) -> str:
    """`unknown config key --config.train.num_step: config.train has no key 'num_step'; did you
    mean --config.train.num_steps?`, found by walking each override's path in the config."""
    fallback = " ".join(str(error).strip("'\"").replace("\\n", " ").split())
    try:
        config = _load_config(config_argument)
    except Exception:  # noqa: BLE001 (the first error is the one to report)
        return f"--config: {fallback}"
    for arg in argv[1:]:
        match = re.match(r"--?(?:no)?config\.([^=]+)", arg)
        if match:
            message = _check_path(config, match.group(1))
            if message:
                return message
    return f"--config: {fallback}"


def _load_config(argument: str):
    """The config `--config=argument` names, loaded again (ml_collections keeps no copy of a
    config whose overrides failed): a config file, or saved_config.py:WORKDIR."""
    from vision_jax.train import run_config
    from vision_jax.train.config import load_config_file

    path, _, workdir = argument.partition(":")
    return run_config.load_saved_config(workdir) if path == SAVED_CONFIG_FILE else load_config_file(path)


def _check_path(config, path: str) -> str | None:
    node, walked = config, []
    for part in path.split("."):
        group = "config" + "".join(f".{w}" for w in walked)
        if not isinstance(node, (config_dict.ConfigDict, dict)):
            return f"--config.{path}: {group} is a value ({node!r}), not a group of keys"
        keys = sorted(node.keys())
        if part not in keys:
            suggestion = suggest(part, keys)
            hint = f"did you mean --{group}.{suggestion}?" if suggestion else f"its keys: {', '.join(keys)}"
            return f"unknown config key --config.{path}: {group} has no key {part!r}; {hint}"
        node = node[part]
        walked.append(part)
    return None


def suggest(name: str, keys: list[str]) -> str | None:
    """The key `name` most likely meant: its initials ('lr' -> 'learning_rate'), else the closest
    spelling, else the one key that contains it."""
    for key in keys:
        if len(name) > 1 and "".join(word[:1] for word in key.split("_")) == name.lower():
            return key
    close = difflib.get_close_matches(name, keys, n=1, cutoff=0.6)
    if close:
        return close[0]
    containing = [key for key in keys if name.lower() in key.lower()]
    return containing[0] if len(containing) == 1 else None


def _reporting(main: Callable) -> Callable:
    def wrapped(argv):
        from vision_jax.data.data_errors import DataFileError
        from vision_jax.train.config import ConfigError
        from vision_jax.train.loop import NonFiniteLossError, WorkdirError
        from vision_jax.train.resume import ResumeRefusedError

        try:
            return main(argv)
        # Each leaves nothing in flight: a refused resume closes the checkpoint manager, a non-finite
        # loss waits for the saves under way, Ctrl-C here comes before the loop's first save.
        except (ResumeRefusedError, NonFiniteLossError, WorkdirError) as error:
            fail(str(error), code=1, skip_teardown=True)
        except (ConfigError, DataFileError) as error:  # a bad value or a bad file, named by the message
            fail(str(error), code=2, skip_teardown=True)
        except KeyboardInterrupt:  # Ctrl-C before the train loop took over SIGINT (loading data, compiling)
            fail("interrupted; the workdir's checkpoints are as they were", code=130, skip_teardown=True)

    return wrapped
