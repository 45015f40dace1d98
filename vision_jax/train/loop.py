"""The one train loop, for every task.

`train_and_evaluate(config, workdir)` trains `config.train.num_steps` steps, evaluating every
`eval_every` steps and at the end, checkpointing every `checkpoint_every` steps, at the end
and on SIGTERM or SIGINT (Ctrl-C). Started in a workdir that holds checkpoints, it resumes from
the latest one, input position included, so a resumed run ends where an uninterrupted one would;
a config that changes the saved state's shapes is refused before anything is restored
(vision_jax.train.resume), other changes are warned about and recorded (run_config).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from typing import Any, Iterator

import jax
import ml_collections
import numpy as np

from vision_jax import tasks
from vision_jax.data import datasets, pipeline, small_data
from vision_jax.data.info_without_data import write_info
from vision_jax.train import checkpoints, parallel, resume, run_config
from vision_jax.train.config import validate
from vision_jax.train.freezing import train_optimizer
from vision_jax.train.initialization import apply_loaded, load_init
from vision_jax.train.pictures import write_pictures
from vision_jax.train.progress import Progress
from vision_jax.train.state import TrainState, create_train_state
from vision_jax.train.steps import make_predict_step, make_train_step
from vision_jax.train.writers import MetricWriter

logger = logging.getLogger(__name__)


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
        small_data.fit_config_to_data(
            config, self.train_ds, self.info, device_count=jax.device_count(), process_count=self.process_count
        )
        self.model = self.task.build_model(self.info)
        self.tx, self.schedule, self.frozen = train_optimizer(config, self.model, self.task.init_inputs(self.info))
        self.manager = checkpoints.make_manager(workdir, config.train.keep_checkpoints)
        self.config_changes: dict = {}  # resuming: keys changed since the workdir's config.json
        self.origin = ""  # where the state came from, one line for the run's log
        self.state: TrainState = self._restore_or_init()
        self.predict_step = make_predict_step(self.task, self.model, self.mesh)

    def _restore_or_init(self) -> TrainState:
        """Resume before init: the latest checkpoint, once this config's state is known to fit it
        (resume.check, on traced shapes), or else a freshly initialised state with `config.init`'s
        weights in it (vision_jax.train.initialization); `self.origin` says which."""
        init = lambda: create_train_state(self.model, self.task.init_inputs(self.info), self.tx, self.config.seed)
        step = self.manager.latest_step()
        if step is None:
            state = init()
            self.origin = f"Initialised from config.seed={self.config.seed}"
            if self.config.init.weights:
                state, self.origin = initialise_from(self.config, state, self.tx)
            return parallel.replicate(state, self.mesh)
        self.origin = f"Resumed from the checkpoint of {self.workdir} at step {step}" + (
            f" (config.init.weights={self.config.init.weights!r} not applied: a run resumes from its own weights)"
            if self.config.init.weights
            else ""
        )
        abstract = jax.eval_shape(init)
        structure_for = lambda config: checkpoints.structure(
            abstract if config is self.config else _abstract_state(config, self.info)
        )
        try:
            self.config_changes = resume.check(
                self.workdir, step, checkpoints.saved_structure(self.manager, step), self.config, structure_for
            )
        except resume.ResumeRefusedError:
            self.manager.close()
            raise
        sharding = parallel.replicated(self.mesh)
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), abstract)
        return checkpoints.restore(self.manager, step, abstract)

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
        if artifacts_dir and jax.process_index() == 0:
            write_artifacts(evaluator, artifacts_dir, self.step)
        return results


def write_artifacts(evaluator, artifacts_dir: str, step: int) -> None:
    """The evaluator's artifacts (if it has any, e.g. COCO's detections) as JSON files
    `artifacts_dir/step_<step, 8 digits>_<name>`."""
    if not hasattr(evaluator, "artifacts"):
        return
    os.makedirs(artifacts_dir, exist_ok=True)
    for name, content in evaluator.artifacts().items():
        with open(os.path.join(artifacts_dir, f"step_{step:08d}_{name}"), "w") as f:
            json.dump(content, f)


def initialise_from(config: ml_collections.ConfigDict, state: TrainState, tx) -> tuple[TrainState, str]:
    """`state` (freshly initialised) with `config.init`'s weights in place, its optimizer state
    made anew for them, and the sentence that says what was loaded."""
    loaded = load_init(config, state.variables)
    variables = apply_loaded(jax.device_get(state.variables), loaded)
    params = variables.pop("params")
    return state.replace(params=params, model_state=variables, opt_state=tx.init(params)), loaded.summary


def _abstract_state(config: ml_collections.ConfigDict, info) -> TrainState:
    """The train state that `config` builds for data described by `info`, traced: shapes and
    dtypes only, nothing computed."""
    task = tasks.get_task(config)
    model = task.build_model(info)
    tx, _, _ = train_optimizer(config, model, task.init_inputs(info))
    return jax.eval_shape(lambda: create_train_state(model, task.init_inputs(info), tx, config.seed))


class WorkdirError(ValueError):
    pass


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
        raise WorkdirError(f"--workdir {workdir!r} cannot be written: {error.strerror or error}") from error


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
    """Trains (or resumes) a run in `workdir`; returns the final evaluation metrics, or {} when
    SIGTERM or SIGINT stopped it before the last step (its checkpoint saved; the same call resumes
    it). A resume whose config changes the saved state's shapes raises resume.ResumeRefusedError
    before anything is restored or written; other changes are warned about and recorded in the
    workdir's config_history.jsonl."""
    require_writable_workdir(workdir)
    exp = Experiment(config, workdir)
    t = config.train
    start_step = exp.step
    is_main = jax.process_index() == 0
    if is_main:
        print(exp.origin + ".", flush=True)  # resume before init: say which happened
        if exp.config_changes:
            logger.warning(
                "Resuming %s at step %d with a changed config: %s (recorded in %s)",
                workdir,
                start_step,
                run_config.describe_changes(exp.config_changes),
                run_config.HISTORY_FILE,
            )
        run_config.record_start(workdir, config, start_step)
        write_info(workdir, exp.info)  # class names for predict.py --images, which reads no data
    finished = start_step >= t.num_steps
    writer = MetricWriter(workdir, start_step, rewrite_eval_at_start=finished)
    say = (lambda text: print(text, flush=True)) if is_main else (lambda text: None)
    if finished:
        say(f"Workdir {workdir} holds a finished run (step {start_step}); evaluating it.")
        results = exp.evaluate(os.path.join(workdir, "pictures"), os.path.join(workdir, "eval"))
        writer.write(start_step, "eval", results)
        writer.close()
        _write_eval_json(workdir, start_step, results, is_main)
        return results

    train_step = make_train_step(exp.task, exp.model, exp.tx, exp.mesh, exp.schedule, exp.frozen.batch_stats)
    train_batches = pipeline.train_batches(
        exp.train_ds,
        exp.task.preprocess(exp.info, True),
        batch_size=t.batch_size // exp.process_count,
        seed=config.seed,
        start_step=start_step,
        cache=config.data.cache,
    )
    stop = StopRequest()
    stop.install()
    progress = Progress(t.num_steps, start_step, bar=t.progress_bar) if is_main else None
    if progress is not None:
        say = progress.message
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
                progress.update()
            last = step == t.num_steps
            if step % t.log_every == 0 or last:
                _raise_if_not_finite(*last_check, exp.manager)
                now = time.perf_counter()
                summary = _mean_metrics(pending)
                summary["images_per_second"] = (step - tick_step) * t.batch_size / (now - tick)
                seconds_per_step = (now - tick) / (step - tick_step)
                tick, tick_step, pending = now, step, []
                writer.write(step, "train", summary)
                if progress is not None:
                    progress.log(step, summary, seconds_per_step)
            if step % t.checkpoint_every == 0 or last or stop.requested:
                _raise_if_not_finite(*last_check, exp.manager)
                checkpoints.save(exp.manager, exp.state)
            if step % t.eval_every == 0 or last:
                results = exp.evaluate(os.path.join(workdir, "pictures"), os.path.join(workdir, "eval"))
                writer.write(step, "eval", results)
                _write_eval_json(workdir, step, results, is_main)
                say(f"step {step} eval: " + ", ".join(f"{k}={v:.4f}" for k, v in results.items()))
            if stop.requested and not last:
                exp.manager.wait_until_finished()
                say(f"{stop.signal_name}: checkpoint saved at step {step}; run the same command again to resume.")
                results = {}  # an earlier evaluation is not the run's final one
                break
    finally:
        exp.manager.wait_until_finished()
        writer.close()
        if progress is not None:
            progress.close()
        stop.uninstall()
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


class StopRequest:
    """SIGTERM (preemption) and SIGINT (Ctrl-C) ask the loop to stop after the current step, with
    a checkpoint. Later signals are ignored: a second Ctrl-C that interrupted the save would leave
    no checkpoint of the steps since the last one (and orbax's writer threads dying mid-write)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.signal_name: str | None = None
        self._previous: dict = {}

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def _handle(self, signum, frame) -> None:
        if self.signal_name is None:
            self.signal_name = signal.Signals(signum).name

    def install(self) -> None:
        for signum in self.SIGNALS:
            try:
                if signal.getsignal(signum) == signal.SIG_IGN:  # e.g. SIGINT of a background job: stays ignored
                    continue
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
