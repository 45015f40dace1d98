"""Evaluates the latest checkpoint of a workdir with the same config used to train it.

    python scripts/evaluate.py --config configs/<family>/<name>.py --workdir DIR [--split test]
"""

import json
import os

from absl import app, flags, logging
from ml_collections import config_flags

from vision_jax.train.loop import Experiment

config_flags.DEFINE_config_file("config", None, "Path to the config file the run used.", lock_config=True)
flags.DEFINE_string("workdir", None, "The run's directory (its latest checkpoint is evaluated).")
flags.DEFINE_string("split", None, "Split to evaluate (default: config.data.eval_split).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    logging.set_verbosity(logging.WARNING)  # orbax and tfds log every step at INFO
    config = flags.FLAGS.config
    if flags.FLAGS.split:
        config.data.eval_split = flags.FLAGS.split
    exp = Experiment(config, flags.FLAGS.workdir)
    if exp.manager.latest_step() is None:
        raise SystemExit(f"No checkpoint in {os.path.join(flags.FLAGS.workdir, 'checkpoints')}: train first.")
    results = exp.evaluate(artifacts_dir=os.path.join(flags.FLAGS.workdir, "eval"))
    print(json.dumps({"step": exp.step, "split": config.data.eval_split, **results}, indent=2))


if __name__ == "__main__":
    app.run(main)
