"""Trains (or resumes) a run.

    python scripts/train.py --config configs/<family>/<name>.py --workdir DIR [--config.key=value ...]

Started again with the same workdir, it resumes from the latest checkpoint there.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from vision_jax.train.loop import train_and_evaluate

config_flags.DEFINE_config_file("config", None, "Path to a config file (configs/...).", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, pictures (resumed if it has checkpoints).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    logging.set_verbosity(logging.WARNING)  # orbax and tfds log every step at INFO
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    results = train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir)
    if not results:  # stopped by SIGTERM before the last step
        print("Stopped before the last step; run the same command again to resume from the checkpoint.")
        return
    print("final eval: " + ", ".join(f"{k}={v:.4f}" for k, v in results.items()))


if __name__ == "__main__":
    app.run(main)
