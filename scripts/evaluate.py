"""Evaluates the latest checkpoint of a workdir with the config it was trained with.

    python scripts/evaluate.py --workdir DIR [--split test] [--config.key=value ...]

The config is the one saved in DIR (config.json), with any `--config.key=value` applied on top;
`--config=configs/<family>/<name>.py` starts from a config file instead.
"""

import json
import os

from absl import flags, logging

from vision_jax.train import cli

flags.DEFINE_string("workdir", None, "The run's directory (its latest checkpoint is evaluated).")
flags.DEFINE_string("split", None, "Split to evaluate (default: config.data.eval_split).")
flags.mark_flag_as_required("workdir")


def main(argv):
    from vision_jax.train.loop import Experiment

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
    cli.run(main, config_from_workdir=True)
