"""A config file, as `--config` takes one, that returns the config saved in a workdir.

    python scripts/evaluate.py --workdir DIR          # evaluate.py and predict.py use it by default
    python scripts/train.py --config vision_jax/train/saved_config.py:DIR --workdir NEW_DIR

The part after the colon is the workdir whose `config.json` is read (run_config.load_saved_config).
"""

from vision_jax.train.run_config import load_saved_config


def get_config(workdir: str):
    return load_saved_config(workdir)
