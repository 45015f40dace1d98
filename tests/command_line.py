"""The config exactly as scripts/train.py builds it from a command line, for in-process end-to-end tests."""

import os

from absl import flags
from ml_collections import config_flags


def command_line_config(repo_root: str, config_file: str, *overrides: str):
    """Loads `config_file` (relative to the repository) with `--config.key=value` overrides applied and
    type-checked by ml_collections' config_flags, as the train script does."""
    argv = ["train.py", f"--config={os.path.join(repo_root, config_file)}", *overrides]
    flag_values = flags.FlagValues()
    # config_flags finds the override flags in the argv it is given at definition time.
    config_flags.DEFINE_config_file("config", None, "", flag_values=flag_values, lock_config=True, sys_argv=argv)
    flag_values(argv)
    return flag_values.config
