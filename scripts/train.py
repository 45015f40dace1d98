"""Trains (or resumes) a run.

    python scripts/train.py --config configs/<family>/<name>.py --workdir DIR [--config.key=value ...]

Started again with the same workdir, it resumes from the latest checkpoint there (a changed config
that the checkpoint cannot hold is refused; other changes are recorded in DIR/config_history.jsonl).
Ctrl-C (SIGINT) or SIGTERM during training saves a checkpoint and stops (exit code 0); the same
command resumes.
"""

from absl import app, flags, logging

from vision_jax.train import cli

flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics, pictures (resumed if it has checkpoints).")
flags.mark_flag_as_required("workdir")


def main(argv):
    from vision_jax.models.table import staged_trainer
    from vision_jax.train.loop import train_and_evaluate

    logging.set_verbosity(logging.WARNING)  # orbax and tfds log every step at INFO
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    # A model with stages of its own (R-CNN) names its trainer in the model table; the others use the loop.
    train = staged_trainer(flags.FLAGS.config) or train_and_evaluate
    results = train(flags.FLAGS.config, flags.FLAGS.workdir)
    if results:  # empty: stopped by a signal before the last step, as the loop has said
        print("final eval: " + ", ".join(f"{k}={v:.4f}" for k, v in results.items()))


if __name__ == "__main__":
    cli.run(main, config_from_workdir=False)
