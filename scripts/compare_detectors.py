"""The R-CNN lineage and the one-stage detectors on the same generated shapes: COCO AP, inference seconds
per image split into proposals / features / per-region heads / post-processing, and training minutes.

    python scripts/compare_detectors.py [--workdir_root runs] [--only rcnn,fast_rcnn] [--images 4]
        [--repeats 5] [--json lineage.json] [--plot lineage.png] [--reported_ap ssd=0.616,0.853,0.725] [--train]

Detectors (`LINEAGE`): sliding window, R-CNN, Fast R-CNN without and with truncated SVD of its FC layers
(`--svd_ranks`, config.model.fast_rcnn.svd_ranks), Faster R-CNN, SSD, YOLOv3; each reads its run from
`<workdir_root>/shapes_<name>` (Fast R-CNN with SVD: the Fast R-CNN run; `--workdir NAME=DIR` overrides).
All configs read the same dataset (shapes 'multi', 128x128, the same 500 test scenes).

Nothing is trained unless `--train` is given (then a missing or unfinished run is trained or resumed
first, as scripts/train.py would). For each detector:
* AP, AP50, AP75 (pycocotools on the test split) from the run: the last eval row of W/metrics.jsonl (R-CNN:
  W/rcnn/evaluation.json), with the step it was measured at; for Fast R-CNN with SVD, computed here with the
  run's latest checkpoint factorised (`fast_rcnn.truncated_svd_variables`); otherwise the figures of
  `--reported_ap` / `README_AP` (the README's table, an earlier run), labelled as such; else '—'.
* Inference seconds per image at batch 1 on the first `--images` test images: each part timed on its own
  (scripts/inference_parts.py: one jitted function per part, fed the previous part's outputs), median of
  `--repeats` calls after a warm-up call, averaged over the images; 'total' = the parts' sum; 'whole' = the
  contract's inference in one jit (R-CNN: its three steps in a row) plus selective search, to check the
  split. Selective search (R-CNN, Fast R-CNN) is timed per image in NumPy/OpenCV, one process.
* Training minutes: W/metrics.jsonl's last step x batch over the median logged images/s (idle time
  excluded); R-CNN: the sum of W/rcnn/stages.json's stage minutes.
A run without a checkpoint is timed with randomly initialised weights ('random weights' in the table):
every shape is static (proposal counts padded, NMS over fixed top-k), so the time hardly depends on the
weights, except through how many boxes pass the score threshold into NMS and R-CNN's real proposal count.

Prints a markdown table and the load average (the machine may be shared: all times depend on it);
`--json PATH` writes the rows, `--plot PATH` a speed-versus-AP50 scatter plot (matplotlib, from
requirements-test.txt: only this option needs it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time

import jax
import numpy as np
from absl import logging

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from inference_parts import PARTS, detector_parts, rcnn_parts  # noqa: E402
from timing import median_seconds  # noqa: E402

from vision_jax.train import parallel, run_config  # noqa: E402
from vision_jax.train.config import load_config_file  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Entry:
    family: str
    config: str
    run: str  # the workdir's name under --workdir_root: shapes_<run>
    svd: bool = False


LINEAGE = {
    "sliding_window": Entry("sliding window (2013)", "configs/detection/shapes_sliding_window.py", "sliding_window"),
    "rcnn": Entry("R-CNN (2014)", "configs/detection/shapes_rcnn.py", "rcnn"),
    "fast_rcnn": Entry("Fast R-CNN (2015)", "configs/detection/shapes_fast_rcnn.py", "fast_rcnn"),
    "fast_rcnn_svd": Entry("Fast R-CNN + SVD (2015)", "configs/detection/shapes_fast_rcnn.py", "fast_rcnn", svd=True),
    "faster_rcnn": Entry("Faster R-CNN (2015)", "configs/detection/shapes_faster_rcnn.py", "faster_rcnn"),
    "ssd": Entry("SSD (2016)", "configs/detection/shapes_ssd.py", "ssd"),
    "yolov3": Entry("YOLOv3 (2018)", "configs/detection/shapes_yolov3.py", "yolov3"),
}
# The README's detection table (earlier runs of the same configs), used when a workdir has no eval row.
README_AP = {"faster_rcnn": (0.764, 0.932, 0.879), "ssd": (0.616, 0.853, 0.725), "yolov3": (0.563, 0.884, 0.648)}
ROW_KEYS = ("name", "family", "config", "workdir", "weights", "step", "AP", "AP50", "AP75", "ap_source",
            "seconds_per_image", "whole_seconds_per_image", "train_minutes", "train_steps")  # fmt: skip


def read_eval_row(workdir: str) -> dict | None:
    """The last eval row of W/metrics.jsonl (R-CNN: W/rcnn/evaluation.json), or None."""
    evaluation = os.path.join(workdir, "rcnn", "evaluation.json")
    if os.path.exists(evaluation):
        with open(evaluation) as f:
            return json.load(f)["metrics"]
    row = None
    if os.path.exists(os.path.join(workdir, "metrics.jsonl")):
        with open(os.path.join(workdir, "metrics.jsonl")) as f:
            for line in f:
                record = json.loads(line)
                if record.get("split") == "eval":
                    row = record
    return row


def training_minutes(workdir: str, batch_size: int) -> tuple[int | None, float | None]:
    """(last step, minutes of training): R-CNN's stages.json sum; else metrics.jsonl's last step x batch over
    the median logged images/s (the median, not the sum of intervals: a paused or resumed run would count
    its idle time; evaluation, checkpointing and compilation are left out the same way). (None, None) without
    a log or for an R-CNN run whose last stage has not finished."""
    stages = os.path.join(workdir, "rcnn", "stages.json")
    if os.path.exists(stages):
        with open(stages) as f:
            recorded = json.load(f)
        if "evaluate" not in recorded:  # still running: the finished stages are not its training time
            return None, None
        return None, sum(stage["minutes"] for stage in recorded.values())
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return None, None
    last_step, speeds = 0, []
    with open(path) as f:
        for line in f:
            record = json.loads(line)
            if record.get("split") == "train" and record["step"] > last_step and "images_per_second" in record:
                speeds.append(record["images_per_second"])
                last_step = record["step"]
    if not speeds:
        return None, None
    return last_step, last_step * batch_size / statistics.median(speeds) / 60.0


def has_checkpoint(workdir: str) -> bool:
    folder = os.path.join(workdir, "checkpoints")
    return os.path.isdir(folder) and any(name.isdigit() for name in os.listdir(folder))


def load_config(entry: Entry, workdir: str):
    """The run's saved config (W/config.json) when there is one, else the config file (the SVD is set on
    the model built for timing, `svd_model`: the run's checkpoint holds the unfactorised layers)."""
    if os.path.exists(os.path.join(workdir, run_config.CONFIG_FILE)):
        config = run_config.load_saved_config(workdir)
    else:
        config = load_config_file(os.path.join(REPO, entry.config))
    config.train.progress_bar = False
    return config


def svd_model(exp, variables, ranks: tuple[int, ...]):
    """(Fast R-CNN built with svd_ranks = ranks, its variables factorised by truncated_svd_variables)."""
    from vision_jax.models.rcnn.fast_rcnn import truncated_svd_variables

    with exp.config.unlocked():
        exp.config.model.fast_rcnn.svd_ranks = ranks
    model = exp.task.build_model(exp.info)
    with exp.config.unlocked():
        exp.config.model.fast_rcnn.svd_ranks = ()
    return model, truncated_svd_variables(variables, ranks)


def test_images(config, count: int) -> list[np.ndarray]:
    """The first `count` test images as stored (uint8 [H, W, 3]), for selective search."""
    import tensorflow_datasets as tfds

    from vision_jax.data import datasets

    ds, _ = datasets.load(config.data, config.data.eval_split)
    return [ex["image"] for ex in tfds.as_numpy(ds.take(count).map(lambda e: {"image": e["image"]}))]


def selective_search_seconds(config, images: list[np.ndarray], repeats: int) -> float:
    """Mean over the images of the median seconds of selective search with the config's settings."""
    from vision_jax.data.selective_search import selective_search

    strategy, limit = config.data.selective_search_strategy, int(config.data.max_proposals)
    run = lambda image: selective_search(image, strategy=strategy, max_proposals=limit)
    return float(np.mean([median_seconds(lambda: run(image), max(1, repeats // 2)) for image in images]))


def time_calls(parts: dict, whole, repeats: int) -> tuple[dict[str, float], float]:
    return {name: median_seconds(call, repeats) for name, call in parts.items()}, median_seconds(whole, repeats)


def time_detector(entry: Entry, config, workdir: str, trained: bool, args) -> tuple[dict, float, int | None]:
    """({part: seconds per image}, whole seconds per image, step of the weights) at batch 1 (module docstring)."""
    from vision_jax.models.detector import proposals_from_batch
    from vision_jax.tasks.detection import image_sizes
    from vision_jax.train.loop import Experiment

    with tempfile.TemporaryDirectory() as scratch:  # random weights: an empty workdir, nothing written to W
        exp = Experiment(config, workdir if trained else scratch)
        step = exp.step if trained else None
        batch = parallel.to_host(next(iter(exp.eval_batches())))
        model, variables = exp.model, exp.state.variables
        if entry.svd:
            model, variables = svd_model(exp, variables, parse_ranks(args.svd_ranks))
        sums, whole_sum = {}, 0.0
        for i in range(args.images):
            one = {k: v[i : i + 1] for k, v in batch.items()}
            sizes = image_sizes(one["image_info"], config.data.image_size)
            parts, whole = detector_parts(model, variables, one["image"], sizes, proposals_from_batch(one))
            seconds, whole_seconds = time_calls(parts, whole, args.repeats)
            for name, value in seconds.items():
                sums[name] = sums.get(name, 0.0) + value
            whole_sum += whole_seconds
        exp.manager.close()
    return {k: v / args.images for k, v in sums.items()}, whole_sum / args.images, step


def time_rcnn(config, workdir: str, trained: bool, args) -> tuple[dict, float, int | None]:
    """R-CNN's split (inference_parts.rcnn_parts) with the fine-tuned CNN, SVMs and regressors of the run,
    or random ones (the SVM and regressor arrays drawn at their trained shapes)."""
    import jax.numpy as jnp

    from vision_jax.models.rcnn.rcnn_inference import RCNNHeads, Variant, heads_for
    from vision_jax.models.rcnn.rcnn_regions import batch_regions
    from vision_jax.models.rcnn.rcnn_run import RCNNRun
    from vision_jax.data import pipeline, datasets

    with tempfile.TemporaryDirectory() as scratch:
        run = RCNNRun(config, workdir if trained else scratch)
        s = run.settings
        variables = run.variables() if trained else run.init_state().variables
        eval_ds, _ = datasets.load(config.data, config.data.eval_split)
        batches = pipeline.eval_batches(eval_ds.take(args.images), run.preprocess(config.data.eval_split, False),
                                        batch_size=1)  # fmt: skip
        variant = Variant(s.test_scorer, s.test_box_regression)
        heads = None
        if trained and os.path.exists(run.path("svm.npz")) and os.path.exists(run.path("box_regression.npz")):
            heads = heads_for(RCNNHeads.load(run.path("svm.npz"), run.path("box_regression.npz")), variant)
        sums, whole_sum, count = {}, 0.0, 0
        for batch in batches:
            images, sizes = run.regions_of(batch)
            regions = batch_regions(batch, include_ground_truth=False)
            if heads is None:  # random SVMs and regressors at the shapes the CNN's outputs give
                probe = rcnn_parts(run.model, variables, s, images, sizes, regions, {}, Variant("softmax", False))
                outputs = probe[0]["features"]()
                rng = np.random.default_rng(0)
                dim, pooled, classes = outputs["features"].shape[1], outputs["pooled"].shape[1], run.num_classes
                heads = heads_for(RCNNHeads(rng.normal(size=(dim, classes)).astype(np.float32) * 0.01,
                                            np.zeros(classes, np.float32),
                                            rng.normal(size=(classes, pooled, 4)).astype(np.float32) * 1e-3,
                                            np.zeros((classes, 4), np.float32)), variant)  # fmt: skip
            arrays = {k: jnp.asarray(v) for k, v in heads.items()}
            parts, whole = rcnn_parts(run.model, variables, s, images, sizes, regions, arrays, variant)
            seconds, whole_seconds = time_calls(parts, whole, args.repeats)
            for name, value in seconds.items():
                sums[name] = sums.get(name, 0.0) + value
            whole_sum += whole_seconds
            count += 1
        step = int(config.train.num_steps) if trained else None
    return {k: v / count for k, v in sums.items()}, whole_sum / count, step


def svd_ap(config, workdir: str, ranks: tuple[int, ...]) -> dict:
    """COCO metrics of the run's latest checkpoint with its FC layers factorised to `ranks`."""
    from vision_jax.train.loop import Experiment

    exp = Experiment(config, workdir)
    model, variables = svd_model(exp, exp.state.variables, ranks)
    predict = jax.jit(lambda v, b: exp.task.predict(model, v, b))
    evaluator = exp.task.make_evaluator(exp.info)
    for batch in exp.eval_batches():
        evaluator.update(jax.device_get(predict(variables, batch)), batch)
    exp.manager.close()
    return {**evaluator.result(), "step": exp.step}


def measure(name: str, entry: Entry, workdir: str, args, reported: dict) -> dict:
    """One row of the table (ROW_KEYS)."""
    svd_ranks = parse_ranks(args.svd_ranks)
    config = load_config(entry, workdir)
    if args.train:
        from vision_jax.models.table import staged_trainer
        from vision_jax.train.loop import train_and_evaluate

        train = staged_trainer(config) or train_and_evaluate
        if not train(config, workdir):
            raise SystemExit(f"{name}: stopped by SIGTERM before its last step; run the same command to resume")
    trained = has_checkpoint(workdir)
    if name == "rcnn":
        trained = trained and os.path.exists(os.path.join(workdir, "rcnn", "svm.npz"))
        seconds, whole, step = time_rcnn(config, workdir, trained, args)
    else:
        seconds, whole, step = time_detector(entry, config, workdir, trained, args)
    if config.data.get("proposals") == "selective_search":
        seconds["proposals"] = selective_search_seconds(config, test_images(config, args.images), args.repeats)
        whole += seconds["proposals"]
    metrics, source = None, "—"
    if trained and entry.svd:
        metrics = svd_ap(config, workdir, svd_ranks)
        source = f"this run, step {metrics['step']}, SVD ranks {svd_ranks} computed here"
    elif trained or read_eval_row(workdir):
        metrics = read_eval_row(workdir)
        if metrics:
            source = f"this run, eval at step {metrics.get('step', step)}"
    if metrics is None and name in reported:
        metrics = dict(zip(("AP", "AP50", "AP75"), reported[name]))
        source = "from README (earlier run)" if name in README_AP and reported[name] == README_AP[name] else "--reported_ap"
    steps, minutes = training_minutes(workdir, config.train.batch_size)
    return make_row(name, entry, workdir, "trained" if trained else "random weights", step, metrics, source,
                    seconds, whole, steps, minutes)


def make_row(name: str, entry: Entry, workdir: str, weights: str, step: int | None, metrics: dict | None,
             source: str, seconds: dict[str, float], whole: float, steps: int | None, minutes: float | None) -> dict:
    """One JSON row (ROW_KEYS): seconds_per_image has every part of PARTS (None where the family has none)
    and 'total', their sum."""
    return {
        "name": name, "family": entry.family, "config": entry.config, "workdir": workdir, "weights": weights,
        "step": step, "AP": metrics and metrics.get("AP"), "AP50": metrics and metrics.get("AP50"),
        "AP75": metrics and metrics.get("AP75"), "ap_source": source,
        "seconds_per_image": {**{part: seconds.get(part) for part in PARTS}, "total": float(sum(seconds.values()))},
        "whole_seconds_per_image": whole, "train_minutes": minutes, "train_steps": steps,
    }  # fmt: skip


def markdown_table(rows: list[dict]) -> str:
    number = lambda v, f="{:.3f}": "—" if v is None else f.format(v)
    ms = lambda v: "—" if v is None else f"{1000 * v:.1f}"
    lines = ["| detector | AP | AP50 | AP75 | AP from | proposals ms | features ms | heads ms | post ms | total ms "
             "| whole ms | weights timed | train min |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        t = r["seconds_per_image"]
        lines.append(f"| {r['family']} | {number(r['AP'])} | {number(r['AP50'])} | {number(r['AP75'])} | "
                     f"{r['ap_source']} | {ms(t['proposals'])} | {ms(t['features'])} | {ms(t['heads'])} | "
                     f"{ms(t['postprocess'])} | {ms(t['total'])} | {ms(r['whole_seconds_per_image'])} | "
                     f"{r['weights']} | {number(r['train_minutes'], '{:.1f}')} |")  # fmt: skip
    return "\n".join(lines)


def write_plot(rows: list[dict], path: str, load: tuple[float, ...]) -> None:
    """Seconds per image (log scale) against AP50, one labelled point per detector with an AP50."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError as error:
        raise SystemExit(f"--plot needs matplotlib (pip install -r requirements-test.txt): {error}")
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        if r["AP50"] is None:
            continue
        seconds = r["seconds_per_image"]["total"]
        marker = "o" if r["weights"] == "trained" else "s"
        axes.scatter(seconds * 1000, r["AP50"], marker=marker)
        axes.annotate(r["family"], (seconds * 1000, r["AP50"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    axes.set_xscale("log")
    axes.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    axes.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())  # 2, 5, 10 ms, not 2 x 10^0
    axes.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes.margins(x=0.25, y=0.1)  # room for the labels right of the points
    axes.set_xlabel("inference ms per image, batch 1 (log scale; squares: timed with random weights)")
    axes.set_ylabel("AP50, shapes test split")
    axes.set_title(f"R-CNN lineage on shapes ({os.cpu_count()} CPUs, load {load[0]:.1f})", fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def parse_ranks(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def parse_pairs(values: list[str], flag: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or name not in LINEAGE:
            raise SystemExit(f"{flag} {value!r}: expected NAME=... with NAME one of {sorted(LINEAGE)}")
        pairs[name] = rest
    return pairs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir_root", default=os.path.join(REPO, "runs"), help="holds shapes_<name> run folders")
    parser.add_argument("--workdir", action="append", default=[], help="NAME=DIR, overrides the root's folder")
    parser.add_argument("--only", default="", help="comma-separated subset of " + ",".join(LINEAGE))
    parser.add_argument("--images", type=int, default=4, help="test images timed, batch 1 each")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per part and image (median)")
    parser.add_argument("--svd_ranks", default="64,32", help="Fast R-CNN + SVD: rank per FC layer of the box head")
    parser.add_argument("--reported_ap", action="append", default=[], help="NAME=AP,AP50,AP75 for a run not here")
    parser.add_argument("--train", action="store_true", help="train (or resume) a missing or unfinished run first")
    parser.add_argument("--json", default="", help="write the rows to this JSON file")
    parser.add_argument("--plot", default="", help="write a speed-versus-AP50 scatter plot (PNG) here")
    args = parser.parse_args()
    logging.set_verbosity(logging.WARNING)  # orbax and tfds log every step at INFO
    names = [n for n in args.only.split(",") if n] or list(LINEAGE)
    unknown = sorted(set(names) - set(LINEAGE))
    if unknown:
        raise SystemExit(f"--only: unknown detectors {unknown}; known: {sorted(LINEAGE)}")
    workdirs = {n: os.path.join(args.workdir_root, f"shapes_{e.run}") for n, e in LINEAGE.items()}
    workdirs.update(parse_pairs(args.workdir, "--workdir"))
    reported = dict(README_AP)
    for name, text in parse_pairs(args.reported_ap, "--reported_ap").items():
        values = tuple(float(v) for v in text.split(","))
        if len(values) != 3:
            raise SystemExit(f"--reported_ap {name}={text}: expected three numbers AP,AP50,AP75")
        reported[name] = values
    load_before = os.getloadavg()
    print(f"load average before: {load_before}; {os.cpu_count()} CPUs; jax {jax.__version__} on {jax.devices()[0].platform}")
    start = time.perf_counter()
    rows = [measure(name, LINEAGE[name], workdirs[name], args, reported) for name in names]
    load_after = os.getloadavg()
    print(f"\nshapes 'multi' test split (500 scenes, 128x128, 5 classes); COCO metrics by pycocotools; inference ms per "
          f"image at batch 1, median of {args.repeats} calls per part on {args.images} test images "
          f"(total = sum of the parts; whole = one jit of the contract's inference + selective search)")
    print(markdown_table(rows))
    print(f"load average after: {load_after} ({(time.perf_counter() - start) / 60:.1f} min)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"load_average": {"before": load_before, "after": load_after}, "cpus": os.cpu_count(),
                       "platform": jax.devices()[0].platform, "images": args.images, "repeats": args.repeats,
                       "rows": rows}, f, indent=1)  # fmt: skip
    if args.plot:
        write_plot(rows, args.plot, load_after)


if __name__ == "__main__":
    main()
