"""What R-CNN's stages share (rcnn_stages.py trains them, rcnn_evaluation.py evaluates a finished run):

  RCNNRun        the run's state: config, data, model (the region CNN), mesh, the optimizer, the proposal
                 tables of each split (computed once and cached, vision_jax/data/proposals.py) and the
                 fine-tuned CNN's variables (the latest checkpoint in W/checkpoints, loaded once)
  StageLog       W/rcnn/stages.json, the record of the finished stages (minutes, finish time, details);
                 `require_trained_stages` refuses a run whose training stages have not all finished
  write_atomically / write_json   every file of W/rcnn/ (and the evaluation's W/eval/step_<N>.json) is
                 written into a temporary file beside it and renamed onto it, so an interrupted stage leaves
                 either its whole output or none

STAGES names the stages in the order they run. A run is single process: the CNN stages use every local
device through vision_jax.train's data-parallel step; the SVM and regression stages are NumPy/scikit-learn.
"""

from __future__ import annotations

import datetime
import json
import os
import tempfile

import jax
import jax.numpy as jnp
import ml_collections

from vision_jax.data import datasets, small_data
from vision_jax.data import proposals as proposal_data
from vision_jax.data.detection_inputs import make_detection_preprocess
from vision_jax.models.rcnn.region_cnn import rcnn_settings_from_config, region_cnn_init_inputs
from vision_jax.models.table import build_model
from vision_jax.train import checkpoints, parallel
from vision_jax.train.config import ConfigError, validate
from vision_jax.train.optimizers import build_optimizer
from vision_jax.train.state import create_train_state

STAGES = ("proposals", "finetune", "features", "svm", "box_regression", "evaluate")
FOLDER = "rcnn"


def say(text: str) -> None:
    """A stage's progress line on stdout, flushed (the tests read it back)."""
    print(text, flush=True)


def write_atomically(path: str, write) -> None:
    """write(file object) into a temporary file beside `path`, then renamed onto it."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(handle, "wb") as f:
            write(f)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def write_json(path: str, content: dict) -> None:
    write_atomically(path, lambda f: f.write(json.dumps(content, indent=2).encode()))


class StageLog:
    """W/rcnn/stages.json: {stage: {'minutes': float, 'finished': iso time, ...}} of the finished stages."""

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, FOLDER, "stages.json")
        self.stages = json.load(open(self.path)) if os.path.exists(self.path) else {}

    def done(self, stage: str) -> bool:
        return stage in self.stages

    def finish(self, stage: str, minutes: float, **details) -> None:
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        self.stages[stage] = {"minutes": round(minutes, 3), "finished": now, **details}
        write_json(self.path, self.stages)


def require_trained_stages(workdir: str) -> None:
    """FileNotFoundError naming the stages before 'evaluate' that `workdir` has not finished, and the command
    that runs them."""
    log = StageLog(workdir)
    missing = [stage for stage in STAGES[: STAGES.index("evaluate")] if not log.done(stage)]
    if missing:
        raise FileNotFoundError(
            f"model 'rcnn': {workdir} has not finished the stages {missing} (recorded in {log.path}); "
            f"`python scripts/train.py --workdir {workdir} --config CONFIG` runs the missing stages and evaluates")


class RCNNRun:
    """The state the stages share: config, data, model, proposal tables, the fine-tuned variables."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: str):
        validate(config)
        if jax.process_count() > 1:
            raise ConfigError("model 'rcnn' trains in one process (its SVM and regression stages are NumPy)")
        if not config.data.get("proposals"):
            raise ConfigError("model 'rcnn' needs region proposals: set config.data.proposals to "
                              "'selective_search' or a proposal file (vision_jax/data/proposals.py)")  # fmt: skip
        self.config, self.workdir = config, workdir
        self.settings = rcnn_settings_from_config(config)
        self.folder = os.path.join(workdir, FOLDER)
        self.train_ds, self.info = datasets.load(config.data, config.data.train_split)
        small_data.fit_config_to_data(config, self.train_ds, self.info, device_count=jax.device_count(), process_count=1)
        self.num_classes = self.info.num_classes
        self.model = build_model(config, self.num_classes)
        self.mesh = parallel.make_mesh()
        self.canvas = int(config.data.image_size)
        self._tables: dict[str, proposal_data.ProposalTable] = {}
        self._variables = None
        self.checkpoint_step: int | None = None  # the step of the variables, once loaded
        self.tx, self.schedule = build_optimizer(config.optimizer, config.train.num_steps)

    def path(self, name: str) -> str:
        return os.path.join(self.folder, name)

    def table(self, split: str) -> proposal_data.ProposalTable:
        if split not in self._tables:
            self._tables[split] = proposal_data.proposal_table(self.config.data, split)
        return self._tables[split]

    def preprocess(self, split: str, train: bool):
        return make_detection_preprocess(self.config, self.info, train, split=split, proposal_table=self.table(split))

    def init_state(self):
        return create_train_state(self.model, region_cnn_init_inputs(self.settings), self.tx, self.config.seed)

    def restore(self, manager, step: int):
        sharding = parallel.replicated(self.mesh)
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                                jax.eval_shape(self.init_state))  # fmt: skip
        return checkpoints.restore(manager, step, abstract)

    def variables(self):
        """The fine-tuned CNN's variables (the last checkpoint of the finetune stage)."""
        if self._variables is None:
            manager = checkpoints.make_manager(self.workdir, self.config.train.keep_checkpoints)
            step = manager.latest_step()
            if step is None:
                raise FileNotFoundError(f"{self.workdir}/checkpoints holds no checkpoint: the finetune stage has not run")
            self._variables, self.checkpoint_step = self.restore(manager, step).variables, step
            manager.close()
        return self._variables

    def regions_of(self, batch):
        images = jnp.asarray(batch["image"])
        from vision_jax.tasks.detection import image_sizes

        return images, image_sizes(jnp.asarray(batch["image_info"]), self.canvas)
