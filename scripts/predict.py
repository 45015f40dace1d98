"""Predictions of a trained (or pretrained) model, drawn or written as files.

On a folder of your own images (any size, JPEG or PNG), no dataset needed:

    python scripts/predict.py --config CONFIG [--workdir DIR] --images IMAGES --output OUT [--min_score S]

runs the model on every image of IMAGES with its task's evaluation preprocessing and writes
OUT/predictions.jsonl (one JSON object per image: the top 5 classes of a classifier, the detections
of a detector in the image's original pixels with an RLE mask each from an instance-segmentation
model), a label map PNG per image for a segmenter, and one picture per image
(vision_jax/train/folder_predictions.py). The weights: DIR's latest checkpoint, with the config
saved in DIR (config.json; differences of --config are listed and not applied), or without
--workdir the weights of the config's `config.init`, e.g. the ImageNet classifier of
configs/classification/imagenet_mobilenet_v2.py.

A detector on outside proposals (Fast R-CNN, R-CNN: config.data.proposals) gets selective search on each
file of IMAGES with the config's settings (data.selective_search_strategy, data.max_proposals), also
when data.proposals names a proposal file (its ids are a dataset's images, not the folder's: a warning
says so). R-CNN needs --workdir (its SVMs and box regressors); scored, regressed and suppressed as its
evaluate stage does.

On the eval split of the run's dataset (the behaviour without --images):

    python scripts/predict.py --workdir DIR [--num_images 16] [--out DIR/predictions] [--config.key=value ...]

draws the predictions of DIR's latest checkpoint onto eval images as PNG files. The config is the
one saved in DIR (config.json), with any `--config.key=value` applied on top;
`--config=configs/<family>/<name>.py` starts from a config file instead. Not for R-CNN (model 'rcnn',
trained in stages): its evaluate stage draws eval pictures into DIR/pictures (scripts/train.py runs the
stages left, scripts/evaluate.py re-evaluates); use --images for its predictions on your images.
"""

import itertools
import os

import numpy as np
from absl import flags, logging

from vision_jax.train import cli, parallel
from vision_jax.train.pictures import sheet_path, write_pictures

flags.DEFINE_string("workdir", None, "The run's directory (its latest checkpoint is used).")
flags.DEFINE_integer("num_images", 16, "How many images of the eval split to draw (without --images).")
flags.DEFINE_string("out", None, "Output folder without --images (default: WORKDIR/predictions).")
flags.DEFINE_string("images", None, "A folder of JPEG/PNG images to predict on (any size).")
flags.DEFINE_string("output", None, "Output folder of --images: predictions.jsonl, label maps, pictures.")
flags.DEFINE_float("min_score", None, "--images, detection: detections scoring below this are not written "
                   "(default: all the detector returns; R-CNN's SVM scores are margins, negative ones included).")


def predict_images(config, workdir):
    from vision_jax.train import run_config
    from vision_jax.train.folder_predictions import predict_folder

    if not flags.FLAGS.output:
        cli.fail("--images needs --output (the folder for predictions.jsonl and the pictures)")
    if config is None:
        cli.fail("--images needs --config (a config file) or --workdir (a run's directory)")
    if workdir and os.path.exists(os.path.join(workdir, run_config.CONFIG_FILE)):
        saved = run_config.load_saved_config(workdir)  # the config the checkpoint was trained with
        changes = run_config.changed_keys(run_config.as_dict(saved), run_config.as_dict(config))
        changes = {k: v for k, v in changes.items() if not k.startswith(("init.", "train.", "optimizer."))}
        if changes:
            print(f"note: using the config saved in {workdir}; --config differs in (not applied): "
                  f"{run_config.describe_changes(changes)}")
        config = saved
    try:
        summary = predict_folder(config, workdir, flags.FLAGS.images, flags.FLAGS.output, flags.FLAGS.min_score)
    except (ValueError, FileNotFoundError) as error:
        cli.fail(str(error))
    print(f"{summary['images']} images: {os.path.join(summary['output'], 'predictions.jsonl')} and a picture each; "
          f"weights: {summary['weights']}; class names: {summary['class_names']}"
          + (f"; proposals: {summary['proposals']}" if "proposals" in summary else ""))


def main(argv):
    from vision_jax.train.loop import Experiment

    logging.set_verbosity(logging.WARNING)  # orbax and tfds log every step at INFO
    if flags.FLAGS.images:
        return predict_images(flags.FLAGS.config, flags.FLAGS.workdir)
    if not flags.FLAGS.workdir:
        cli.fail("--workdir is required (or --images with --config)")
    from vision_jax.models.table import staged_function

    if staged_function(flags.FLAGS.config, "evaluator"):
        cli.fail(f"model {flags.FLAGS.config.model.name!r} is trained and evaluated in stages: its evaluate stage drew "
                 f"the eval pictures into {os.path.join(flags.FLAGS.workdir, 'pictures')} (scripts/evaluate.py "
                 f"re-evaluates); --images DIR --output OUT predicts on your images")
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
