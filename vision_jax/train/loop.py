"""The one train loop, for every task.

`train_and_evaluate(config, workdir)` trains `config.train.num_steps` steps, evaluating every
`eval_every` steps and at the end, checkpointing every `checkpoint_every` steps, at the end
and on SIGTERM. Started in a workdir that holds checkpoints, it resumes from the latest one,
input position included, so a resumed run ends where an uninterrupted one would.
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any, Iterator

import jax
import ml_collections
import numpy as np

from vision_jax import tasks
from vision_jax.data import datasets, pipeline
from vision_jax.train import checkpoints, parallel
from vision_jax.train.config import validate
from vision_jax.train.optimizers import build_optimizer
from vision_jax.train.pictures import write_pictures
from vision_jax.train.state import TrainState, create_train_state
from vision_jax.train.steps import make_predict_step, make_train_step
from vision_jax.train.writers import MetricWriter


class NonFiniteLossError(FloatingPointError):
    pass


class Experiment:
    """What the train, evaluate and predict scripts share: task, data, model, state, steps."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: str):
        parallel.initialize_distributed(config)
        validate(config)
        self.config, self.workdir = config, workdir
        self.task = tasks.get_task(config)
        self.mesh = parallel.make_mesh()
        self.process_count = jax.process_count()
        self.train_ds, self.info = self._load(config.data.train_split)
        self.model = self.task.build_model(self.info)
        self.tx, self.schedule = build_optimizer(config.optimizer, config.train.num_steps)
        state = create_train_state(self.model, self.task.init_inputs(self.info), self.tx, config.seed)
        self.state: TrainState = parallel.replicate(state, self.mesh)
        self.manager = checkpoints.make_manager(workdir, config.train.keep_checkpoints)
        restored = checkpoints.restore_latest(self.manager, self.state)
        if restored is not None:
            self.state = restored
        self.predict_step = make_predict_step(self.task, self.model, self.mesh)

    def _load(self, split: str):
        return datasets.load(
            self.config.data, split, process_index=jax.process_index(), process_count=self.process_count
        )

    @property
    def step(self) -> int:
        return int(parallel.replicated_to_host(self.state.step))

    def eval_batches(self) -> Iterator[dict[str, np.ndarray]]:
        """This process's eval batches; every process yields the same number of batches
        (shards may differ by an example), the extra ones fully padded, so that collectives
        in the predict step stay in step across hosts."""
        eval_ds, _ = self._load(self.config.data.eval_split)
        local_batch = self.config.train.eval_batch_size // self.process_count
        preprocess = self.task.preprocess(self.info, False)
        num_batches = None
        if self.process_count > 1:
            from jax.experimental import multihost_utils

            local_examples = pipeline.count_examples(eval_ds)
            local_num = -(-local_examples // local_batch)
            num_batches = int(np.max(multihost_utils.process_allgather(np.array(local_num))))
        yield from pipeline.eval_batches(eval_ds, preprocess, batch_size=local_batch, num_batches=num_batches)

    def evaluate(self, pictures_dir: str | None = None, artifacts_dir: str | None = None) -> dict[str, float]:
        """Runs the task's evaluator over the eval split with the current parameters; writes the
        evaluator's artifacts (if it has any) into `artifacts_dir`, prefixed by the step."""
        evaluator = self.task.make_evaluator(self.info)
        variables = self.state.variables
        drawn = False
        for local in self.eval_batches():
            predictions = parallel.to_host(self.predict_step(variables, parallel.global_batch(local, self.mesh)))
            batch = parallel.to_host(parallel.global_batch(local, self.mesh))
            evaluator.update(predictions, batch)
            if pictures_dir and not drawn and jax.process_index() == 0:
                n = self.config.train.num_pictures
                pictures = self.task.draw(
                    {k: v[:n] for k, v in batch.items()}, {k: v[:n] for k, v in predictions.items()}, self.info
                )
                write_pictures(pictures_dir, pictures)
                drawn = True
        results = evaluator.result()
        if artifacts_dir and hasattr(evaluator, "artifacts") and jax.process_index() == 0:
            os.makedirs(artifacts_dir, exist_ok=True)
            for name, content in evaluator.artifacts().items():
                with open(os.path.join(artifacts_dir, f"step_{self.step:08d}_{name}"), "w") as f:
                    json.dump(content, f)
        return results


def require_writable_workdir(workdir: str) -> None:
    """Creates `workdir` and writes a probe file there, so that a path that cannot hold checkpoints
    is refused before minutes of data loading and compilation, not at the first save."""
    try:
        os.makedirs(workdir, exist_ok=True)
        probe = os.path.join(workdir, f".write_probe_{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as error:
        raise ValueError(f"--workdir {workdir!r} cannot be written: {error.strerror or error}") from error


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """Trains (or resumes) a run in `workdir`; returns the final evaluation metrics, or {} when
    SIGTERM stopped it before the last step (its checkpoint saved; the same call resumes it)."""
    require_writable_workdir(workdir)
    exp = Experiment(config, workdir)
    t = config.train
    start_step = exp.step
    is_main = jax.process_index() == 0
    if is_main:
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))
    writer = MetricWriter(workdir)
    if start_step >= t.num_steps:
        print(f"Workdir {workdir} holds a finished run (step {start_step}); evaluating it.")
        results = exp.evaluate(os.path.join(workdir, "pictures"), os.path.join(workdir, "eval"))
        writer.write(start_step, "eval", results)
        _write_eval_json(workdir, start_step, results, is_main)
        return results

    train_step = make_train_step(exp.task, exp.model, exp.tx, exp.mesh, exp.schedule)
    train_batches = pipeline.train_batches(
        exp.train_ds,
        exp.task.preprocess(exp.info, True),
        batch_size=t.batch_size // exp.process_count,
        seed=config.seed,
        start_step=start_step,
        cache=config.data.cache,
    )
    stop = {"sigterm": False}
    previous_handler = _install_sigterm(stop)
    progress = _progress_bar(config, start_step) if is_main else None
    pending: list[dict[str, jax.Array]] = []
    last_check: tuple[int, Any] | None = None
    tick, tick_step = time.perf_counter(), start_step
    results: dict[str, float] = {}
    try:
        for step in range(start_step + 1, t.num_steps + 1):
            batch = parallel.global_batch(next(train_batches), exp.mesh)
            exp.state, metrics = train_step(exp.state, batch)
            # Check the previous step's loss now that this one is dispatched: the device is
            # never idle waiting for the host, and a bad step never reaches a checkpoint.
            if last_check is not None:
                _raise_if_not_finite(*last_check, exp.manager)
            last_check = (step, metrics)
            pending.append(metrics)
            if progress is not None:
                progress.update(1)
            last = step == t.num_steps
            if step % t.log_every == 0 or last:
                _raise_if_not_finite(*last_check, exp.manager)
                now = time.perf_counter()
                summary = _mean_metrics(pending)
                summary["images_per_second"] = (step - tick_step) * t.batch_size / (now - tick)
                tick, tick_step, pending = now, step, []
                writer.write(step, "train", summary)
                if progress is not None:
                    progress.set_postfix(loss=f"{summary['loss']:.4f}", img_s=f"{summary['images_per_second']:.0f}")
            if step % t.checkpoint_every == 0 or last or stop["sigterm"]:
                _raise_if_not_finite(*last_check, exp.manager)
                checkpoints.save(exp.manager, exp.state)
            if step % t.eval_every == 0 or last:
                results = exp.evaluate(os.path.join(workdir, "pictures"), os.path.join(workdir, "eval"))
                writer.write(step, "eval", results)
                _write_eval_json(workdir, step, results, is_main)
                if is_main:
                    print(f"\nstep {step} eval: " + ", ".join(f"{k}={v:.4f}" for k, v in results.items()))
            if stop["sigterm"] and not last:
                print(f"SIGTERM: checkpoint saved at step {step}; stopping.")
                results = {}  # an earlier evaluation is not the run's final one
                break
    finally:
        exp.manager.wait_until_finished()
        writer.close()
        if progress is not None:
            progress.close()
        signal.signal(signal.SIGTERM, previous_handler)
    return results


def _raise_if_not_finite(step: int, metrics: dict, manager) -> None:
    if float(parallel.replicated_to_host(metrics["finite"])) == 0.0:
        manager.wait_until_finished()
        raise NonFiniteLossError(
            f"Non-finite loss or gradient at step {step} (loss={float(parallel.replicated_to_host(metrics['loss']))}); "
            f"the update was not applied and the last checkpoint ({manager.latest_step()}) is kept."
        )


def _mean_metrics(pending: list[dict[str, jax.Array]]) -> dict[str, float]:
    host = parallel.replicated_to_host(pending)
    return {k: float(np.mean([m[k] for m in host])) for k in host[0] if k != "finite"}


def _write_eval_json(workdir: str, step: int, results: dict[str, float], is_main: bool) -> None:
    if not is_main:
        return
    os.makedirs(os.path.join(workdir, "eval"), exist_ok=True)
    with open(os.path.join(workdir, "eval", f"step_{step:08d}.json"), "w") as f:
        json.dump({"step": step, **{k: float(v) for k, v in results.items()}}, f, indent=2)


def _install_sigterm(stop: dict):
    def handler(signum, frame):
        stop["sigterm"] = True

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        return signal.getsignal(signal.SIGTERM)


def _progress_bar(config, start_step: int):
    if not config.train.progress_bar:
        return None
    from tqdm import tqdm

    return tqdm(total=config.train.num_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True)
