"""Draws the predictions of a workdir's latest checkpoint onto eval images as PNG files.

    python scripts/predict.py --workdir DIR [--num_images 16] [--out DIR/predictions] [--config.key=value ...]

The config is the one saved in DIR (config.json), with any `--config.key=value` applied on top;
`--config=configs/<family>/<name>.py` starts from a config file instead.
"""

import itertools
import os

import numpy as np
from absl import flags, logging

from vision_jax.train import cli, parallel
from vision_jax.train.pictures import sheet_path, write_pictures

flags.DEFINE_string("workdir", None, "The run's directory (its latest checkpoint is used).")
flags.DEFINE_integer("num_images", 16, "How many images of the eval split to draw.")
flags.DEFINE_string("out", None, "Output folder (default: WORKDIR/predictions).")
flags.mark_flag_as_required("workdir")


def main(argv):
    from vision_jax.train.loop import Experiment

    logging.set_verbosity(logging.WARNING)  # orbax and tfds log every step at INFO
    exp = Experiment(flags.FLAGS.config, flags.FLAGS.workdir)
    if exp.manager.latest_step() is None:
        raise SystemExit(f"No checkpoint in {os.path.join(flags.FLAGS.workdir, 'checkpoints')}: train first.")
    out = flags.FLAGS.out or os.path.join(flags.FLAGS.workdir, "predictions")
    wanted = flags.FLAGS.num_images
    pictures = []
    for local in itertools.islice(exp.eval_batches(), -(-wanted // exp.config.train.eval_batch_size)):
        batch = parallel.global_batch(local, exp.mesh)
        predictions = parallel.to_host(exp.predict_step(exp.state.variables, batch))
        host_batch = parallel.to_host(batch)
        keep = np.asarray(host_batch["example_valid"], bool)
        pictures += exp.task.draw(
            {k: v[keep] for k, v in host_batch.items()}, {k: v[keep] for k, v in predictions.items()}, exp.info
        )
    paths = write_pictures(out, pictures[:wanted], prefix="prediction")
    print(f"wrote {len(paths)} pictures to {out}, all of them on one contact sheet: {sheet_path(out, 'prediction')}")


if __name__ == "__main__":
    cli.run(main, config_from_workdir=True)
