"""Evaluates the latest checkpoint of a workdir with the config it was trained with.

    python scripts/evaluate.py --workdir DIR [--split test] [--config.key=value ...]

The config is the one saved in DIR (config.json), with any `--config.key=value` applied on top;
`--config=configs/<family>/<name>.py` starts from a config file instead. It prints the metrics as JSON
and writes the evaluator's artifacts (COCO: the detections) into DIR/eval/step_<N>_<name>.

R-CNN (model 'rcnn', trained in stages by scripts/train.py): its evaluate stage's metrics on the split
(the detector, and the softmax_* / svm_* ablations) from the latest checkpoint and the run's SVMs and box
regressors (vision_jax/models/rcnn/rcnn_evaluation.py, evaluate_rcnn); the stage's own record
(metrics.jsonl, rcnn/evaluation.json, pictures) is left as it is.
"""

import json
import os

from absl import flags, logging

from vision_jax.train import cli

flags.DEFINE_string("workdir", None, "The run's directory (its latest checkpoint is evaluated).")
flags.DEFINE_string("split", None, "Split to evaluate (default: config.data.eval_split).")
flags.mark_flag_as_required("workdir")


def main(argv):
    from vision_jax.models.table import staged_function
    from vision_jax.train.loop import Experiment

    logging.set_verbosity(logging.WARNING)  # orbax and tfds log every step at INFO
    config = flags.FLAGS.config
    if flags.FLAGS.split:
        config.data.eval_split = flags.FLAGS.split
    artifacts_dir = os.path.join(flags.FLAGS.workdir, "eval")
    staged = staged_function(config, "evaluator")  # a model trained in stages (R-CNN) evaluates as its stage does
    if staged:
        try:
            step, results = staged(config, flags.FLAGS.workdir, artifacts_dir)
        except FileNotFoundError as error:
            cli.fail(str(error), code=1)
    else:
        exp = Experiment(config, flags.FLAGS.workdir)
        if exp.manager.latest_step() is None:
            raise SystemExit(f"No checkpoint in {os.path.join(flags.FLAGS.workdir, 'checkpoints')}: train first.")
        step, results = exp.step, exp.evaluate(artifacts_dir=artifacts_dir)
    print(json.dumps({"step": step, "split": config.data.eval_split, **results}, indent=2))


if __name__ == "__main__":
    cli.run(main, config_from_workdir=True)
