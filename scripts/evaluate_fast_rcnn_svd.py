"""Fast R-CNN's test-time truncated SVD (Girshick, 2015, section 3.1): AP and inference time per image of a
trained run, without and with its FC layers factorised.

    python scripts/evaluate_fast_rcnn_svd.py --workdir DIR [--ranks 0,0 --ranks 64,32 ...] [--repeats 10]

Each `--ranks` is one rank per FC layer of the box head (0 = that layer kept whole; '0,0' = no SVD):
the latest checkpoint's parameters are factorised by `fast_rcnn.truncated_svd_variables` and evaluated
by the run's evaluator on its eval split, with a model built with `config.model.fast_rcnn.svd_ranks`.
Time: the jitted predict step (forward, box head on every given proposal, decoding, NMS) on the first
eval images at batch 1 and at the eval batch size, median of `--repeats` calls after a warm-up call
(scripts/timing.py), reported as seconds per image. Prints one markdown table and the load average.
"""

from __future__ import annotations

import json
import os
import sys

import jax
from absl import flags, logging

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import median_seconds  # noqa: E402

from vision_jax.train import cli  # noqa: E402

flags.DEFINE_string("workdir", None, "The Fast R-CNN run's directory (its latest checkpoint is used).")
flags.DEFINE_multi_string("ranks", ["0,0"], "Ranks per FC layer, comma-separated; repeat the flag to compare.")
flags.DEFINE_integer("repeats", 10, "Timed calls per measurement (median).")
flags.mark_flag_as_required("workdir")


def parse_ranks(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def main(argv):
    from vision_jax.models.rcnn.fast_rcnn import truncated_svd_variables
    from vision_jax.train.loop import Experiment

    logging.set_verbosity(logging.WARNING)
    config = flags.FLAGS.config
    if config.model.name != "fast_rcnn":
        raise SystemExit(f"--workdir holds a {config.model.name!r} run; this script measures model 'fast_rcnn'")
    exp = Experiment(config, flags.FLAGS.workdir)
    if exp.manager.latest_step() is None:
        raise SystemExit(f"No checkpoint in {os.path.join(flags.FLAGS.workdir, 'checkpoints')}: train first.")
    batches = list(exp.eval_batches())
    print(f"load average before: {os.getloadavg()}; {os.cpu_count()} CPUs; jax {jax.__version__}; step {exp.step}")
    rows = []
    for text in flags.FLAGS.ranks:
        ranks = parse_ranks(text)
        svd = any(ranks)
        with config.unlocked():
            config.model.fast_rcnn.svd_ranks = ranks if svd else ()
        model = exp.task.build_model(exp.info)
        variables = truncated_svd_variables(exp.state.variables, ranks) if svd else exp.state.variables
        predict = jax.jit(lambda v, b, model=model: exp.task.predict(model, v, b))
        evaluator = exp.task.make_evaluator(exp.info)
        for batch in batches:
            evaluator.update(jax.device_get(predict(variables, batch)), batch)
        results = evaluator.result()
        seconds = {}
        for size in (1, len(batches[0]["image"])):
            inputs = {k: v[:size] for k, v in batches[0].items()}
            seconds[size] = median_seconds(lambda: predict(variables, inputs), flags.FLAGS.repeats) / size
        params = sum(x.size for x in jax.tree.leaves(variables["params"]["box_head"]))
        rows.append((text, results, seconds, params))
        print(json.dumps({"ranks": text, "box_head_parameters": params, "seconds_per_image": seconds, **results}))
    sizes = sorted(rows[0][2])
    print("| ranks (fc1,fc2) | box-head parameters | AP | AP50 | AP75 | "
          + " | ".join(f"ms/image, batch {s}" for s in sizes) + " |")
    print("|---" * (5 + len(sizes)) + "|")
    for text, r, seconds, params in rows:
        print(f"| {text} | {params} | {r['AP']:.3f} | {r['AP50']:.3f} | {r['AP75']:.3f} | "
              + " | ".join(f"{1000 * seconds[s]:.1f}" for s in sizes) + " |")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    cli.run(main, config_from_workdir=True)
