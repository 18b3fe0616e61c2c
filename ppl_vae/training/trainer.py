"""The resumable SVI training loop: periodic atomic checkpoints, resume, NaN policy, stop requests.

A training checkpoint holds everything the loop needs to go on as if it had never
stopped: model and guide state_dicts (buffers included), the optimizer's state, the RNG
states (Python, NumPy, torch CPU and CUDA, and the shuffling generator as it was at the
start of the epoch), the position in the epoch, the running sums and the metrics so far.
On the CPU a resumed run is bitwise identical to an uninterrupted one (only the
``seconds`` column differs). Files are data only (``torch.load(weights_only=True)``),
written atomically; the newest ``keep`` are kept.
"""

import json
import math
import time
from pathlib import Path
from typing import Callable

import pandas as pd
import pyro
import torch
from torch import nn
from torch.optim.lr_scheduler import ReduceLROnPlateau
from tqdm.auto import tqdm

from ppl_vae.data.datasets import Dataset
from ppl_vae.infer.auto_compile import make_svi_step
from ppl_vae.infer.diagnose import nonfinite_site
from ppl_vae.infer.elbos import make_elbo
from ppl_vae.infer.latent_scale import warmup_scale
from ppl_vae.models.base import model_arguments
from ppl_vae.training.checkpoints import TRAIN_FORMAT, atomic_save
from ppl_vae.training.config import CheckpointOptions, TrainConfig, check_trainable, initialize_output_bias
from ppl_vae.training.distributed import process_group
from ppl_vae.training.evaluation import evaluate_elbo
from ppl_vae.training.nan_policy import NanPolicy, PendingStep, readback_interval
from ppl_vae.training.rng_state import rng_state, set_rng_state
from ppl_vae.training.schedules import scheduled_lr
from ppl_vae.training.tensorboard import TensorBoardLog, chain, test_batch


class StopRequested(Exception):
    """Training stopped at a stop request (SIGTERM, Ctrl-C) after writing a checkpoint."""


class Trainer:
    """Train a model/guide pair with SVI and Trace_ELBO, checkpointing as it goes.

    :param model: the Pyro model, on the data's device (``arguments(images, labels)`` is used
        when it has one).
    :param guide: the Pyro guide.
    :param data: the dataset.
    :param config: the optimization settings.
    :param checkpoint_dir: where training checkpoints go (None: none are written).
    :param checkpoints: how often checkpoints are written and how many kept, and the NaN
        policy (:class:`~ppl_vae.training.config.CheckpointOptions`; its defaults when None).
    :param extra: JSON-able data stored in every checkpoint (e.g. the run's config).
    :param distributed: data-parallel training (:mod:`ppl_vae.training.distributed`): ``batch_size``
        is the global batch, each rank steps on its shard, and only rank 0 writes checkpoints.
    """

    def __init__(self, model: nn.Module, guide, data: Dataset, config: TrainConfig,
                 checkpoint_dir: Path | None = None, checkpoints: CheckpointOptions | None = None,
                 extra: dict | None = None, distributed=None) -> None:
        check_trainable(config, data, distributed)
        if config.init_output_bias:  # a resumed run then loads its own weights over it
            initialize_output_bias(model, data)
        self.model, self.guide, self.data, self.config = model, guide, data, config
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.checkpoints = checkpoints or CheckpointOptions()
        self.extra = extra or {}
        self.distributed = process_group(distributed)
        pyro.set_rng_seed(config.seed)
        self.shuffle = torch.Generator().manual_seed(config.seed)
        self.step = make_svi_step(model, guide, config.elbo, config.num_particles, config.compile, config.lr, config.beta,
                                  self.distributed)
        self.arguments = model_arguments(model)
        self.steps_per_epoch = data.num_batches("train", config.batch_size)
        self.evaluation_elbo = make_elbo("enum") if config.elbo == "enum" else None  # a split's ELBO each epoch
        self.warmup_steps = round(config.warmup_epochs * self.steps_per_epoch)
        # the loop's position and running sums: all of it goes into checkpoints
        self.epoch, self.step_in_epoch, self.global_step, self.total, self.seen, self.seconds = 1, 0, 0, 0.0, 0, 0.0
        self.nan = NanPolicy(self.checkpoints.on_nan, self.checkpoints.max_skipped,
                             lambda *args: nonfinite_site(model, guide, *args), readback_interval(data.train.device))
        self.best_valid, self.best_epoch = -math.inf, 0
        # early stopping and the plateau schedule follow the validation value of the objective trained
        self.selection = "valid_iwae" if config.elbo == "iwae" else "valid_elbo"
        self.best_weights: dict[str, dict] = {}
        self.scheduler: ReduceLROnPlateau | None = None  # made with the optimizer, when lr_decay < 1
        self.rows: list[dict] = []
        self.epoch_shuffle_state = self.shuffle.get_state()
        self.last_checkpoint = time.monotonic()

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        if self.step.optimizer is None:
            raise RuntimeError("no optimizer yet: checkpoint after the first step")
        counters = {**{name: getattr(self, name) for name in (
            "epoch", "step_in_epoch", "global_step", "total", "seen", "seconds", "best_valid", "best_epoch")},
            **{name: getattr(self.nan, name) for name in NanPolicy.COUNTERS}}
        return {
            "format": TRAIN_FORMAT, "model": self.model.state_dict(),
            "guide": self.guide.state_dict() if isinstance(self.guide, nn.Module) else {},
            "optimizer": self.step.optimizer.state_dict(), "rng": rng_state(),
            "epoch_shuffle_state": self.epoch_shuffle_state, "counters": json.dumps(counters),
            "rows": json.dumps(self.rows), "train_config": json.dumps(self.config.to_dict()),
            "extra": json.dumps(self.extra), "best_weights": self.best_weights, "step": json.dumps(self.step.state_dict()),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else {},
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        if isinstance(self.guide, nn.Module):
            self.guide.load_state_dict(state["guide"])
        self.step.optimizer.load_state_dict(state["optimizer"])
        if state.get("scheduler"):
            self._scheduler().load_state_dict(state["scheduler"])
        self.step.load_state_dict(json.loads(state.get("step", "{}")))  # also marks its arguments validated
        for name, value in json.loads(state["counters"]).items():
            setattr(self.nan if name in NanPolicy.COUNTERS else self, name, value)
        self.rows = json.loads(state["rows"])
        self.best_weights = state.get("best_weights", {})
        self.epoch_shuffle_state = state["epoch_shuffle_state"]
        set_rng_state(state["rng"])

    def save(self) -> Path | None:
        """Write a checkpoint atomically and drop all but the newest ``keep``."""
        self._read_back()  # the counters and sums, complete
        if self.checkpoint_dir is None or not self.distributed.is_main:
            return None
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        path = self.checkpoint_dir / f"train-{self.global_step:09d}.pt"
        state = self.state_dict()
        atomic_save(path, state)
        for old in sorted(self.checkpoint_dir.glob("train-*.pt"))[: -self.checkpoints.keep]:
            old.unlink()
        self.last_checkpoint = time.monotonic()
        return path

    # ----------------------------------------------------------------- early stopping
    @property
    def stopped_early(self) -> bool:
        """Whether the validation bound has not improved for ``config.patience`` epochs."""
        return bool(self.config.patience) and self.epoch - 1 - self.best_epoch >= self.config.patience

    def _track_best(self, row: dict) -> None:
        """Keep a copy of the weights of the epoch with the best validation bound (``self.selection``)."""
        if self.selection not in row or not row[self.selection] > self.best_valid:
            return
        self.best_valid, self.best_epoch = row[self.selection], row["epoch"]
        modules = {"model": self.model, "guide": self.guide}
        self.best_weights = {name: {key: value.detach().clone() for key, value in module.state_dict().items()}
                             for name, module in modules.items() if isinstance(module, nn.Module)}

    def _scheduler(self) -> ReduceLROnPlateau:
        """The learning-rate schedule on the validation bound (made once the optimizer exists)."""
        if self.scheduler is None:
            self.scheduler = ReduceLROnPlateau(self.step.optimizer, mode="max", factor=self.config.lr_decay,
                                               patience=self.config.lr_patience, threshold=0.0)
        return self.scheduler

    def restore_best(self) -> dict | None:
        """Load the best epoch's weights (early stopping). :returns: that epoch's metrics row."""
        if not (self.config.patience and self.best_weights):
            return None
        self.model.load_state_dict(self.best_weights["model"])
        if "guide" in self.best_weights:
            self.guide.load_state_dict(self.best_weights["guide"])
        return next(row for row in self.rows if row["epoch"] == self.best_epoch)

    # ----------------------------------------------------------------- the loop
    def _batches(self):
        self.shuffle.set_state(self.epoch_shuffle_state)
        return self.data.batches("train", self.config.batch_size, shuffle=True, generator=self.shuffle,
                                 labels=True, start=self.step_in_epoch)

    def _take_step(self, x: torch.Tensor, labels) -> None:
        size = len(x)
        x, labels, noise = self.distributed.shard_batch(x, labels)  # this rank's rows and noise
        args = self.arguments(x, labels)
        self.step.kl.scale = warmup_scale(self.config.beta, self.global_step, self.warmup_steps)
        if self.config.lr_schedule != "constant":
            self.step.set_lr(scheduled_lr(self.config.lr_schedule, self.config.lr, self.global_step,
                                          self.config.epochs * self.steps_per_epoch))
        try:
            with noise:
                result = self.step.take(*args)
        except ValueError:  # argument validation (the first step) met a non-finite value?
            if all(torch.isfinite(t).all() for t in [*args, *self.step_parameters()] if torch.is_tensor(t)):
                raise
            self.nan.non_finite("a distribution got non-finite parameters", self.global_step + 1, self.epoch, args)
        else:
            if self.nan.add(PendingStep(result, size, self.global_step + 1, self.epoch, args)):
                self._read_back()
        self.global_step += 1
        self.step_in_epoch += 1

    def _read_back(self) -> None:
        """Read the steps' results back (one transfer) and apply the NaN policy (:mod:`~ppl_vae.training.nan_policy`)."""
        total, seen = self.nan.read_back()
        self.total, self.seen = self.total + total, self.seen + seen

    def step_parameters(self) -> list[torch.Tensor]:
        return [p for group in self.step.optimizer.param_groups for p in group["params"]] if self.step.optimizer else []

    def run(self, on_epoch: Callable[[dict], None] | None = None, progress: bool = True,
            stop_requested: Callable[[], bool] = lambda: False,
            after_step: Callable[[int], None] | None = None) -> pd.DataFrame:
        """Train to ``config.epochs`` from wherever the trainer stands.

        With ``config.patience`` set, training stops once the validation bound has not improved
        for that many epochs; :meth:`restore_best` then loads the best epoch's weights. The
        bound is the ELBO, or with ``config.elbo == "iwae"`` the IWAE bound with the training
        ``num_particles`` (column ``valid_iwae``), since IWAE training need not raise the ELBO.

        :param on_epoch: called with each epoch's metrics row (``epoch``, ``train_elbo``,
            ``valid_elbo`` (and ``valid_iwae``) when there is a validation split, ``test_elbo``, ``beta``, ``lr``,
            ``skipped_steps``, ``seconds``).
        :param stop_requested: polled after each step; when true, a checkpoint is written
            and :class:`~ppl_vae.training.trainer.StopRequested` raised.
        :param after_step: called with the global step after each step (fault injection in tests).
        :returns: the metrics of all epochs so far.
        """
        main = self.distributed.is_main
        local_stop_requested = stop_requested
        stop_requested = lambda: self.distributed.any(local_stop_requested())  # noqa: E731 (every rank stops together)
        while self.epoch <= self.config.epochs and not self.stopped_early:
            start = time.perf_counter()
            bar = tqdm(self._batches(), total=self.steps_per_epoch, initial=self.step_in_epoch,
                       desc=f"epoch {self.epoch}", disable=not (progress and main), leave=False)
            for x, labels in bar:
                self._take_step(x, labels)
                if self.global_step % 20 == 0 and not bar.disable:  # the running ELBO, images/s
                    self._read_back()
                    if self.seen:
                        bar.set_postfix(elbo=f"{-self.total / self.seen:.2f}",
                                        img_s=f"{self.seen / max(time.perf_counter() - start, 1e-9):.0f}")
                if after_step is not None:
                    after_step(self.global_step)
                if stop_requested():
                    self.seconds += time.perf_counter() - start
                    self.save()
                    raise StopRequested(f"stopped at step {self.global_step} (epoch {self.epoch})")
                every_steps, every_seconds = self.checkpoints.every_steps, self.checkpoints.every_seconds
                due_steps = every_steps and self.global_step % every_steps == 0
                due_time = every_seconds and time.monotonic() - self.last_checkpoint >= every_seconds
                if (due_steps or due_time) and self.step_in_epoch < self.steps_per_epoch:
                    self.seconds += time.perf_counter() - start
                    start = time.perf_counter()
                    self.save()
            self._read_back()
            self.seconds += time.perf_counter() - start
            row = {"epoch": self.epoch, "train_elbo": -self.total / max(self.seen, 1)}
            if self.data.valid is not None:
                row["valid_elbo"] = evaluate_elbo(self.model, self.guide, self.data, "valid", elbo=self.evaluation_elbo,
                                                  distributed=self.distributed)
                if self.selection != "valid_elbo":
                    row[self.selection] = evaluate_elbo(self.model, self.guide, self.data, "valid",
                                                        elbo=make_elbo(self.config.elbo, self.config.num_particles),
                                                        distributed=self.distributed)
            row |= {"test_elbo": evaluate_elbo(self.model, self.guide, self.data, "test", elbo=self.evaluation_elbo,
                                               distributed=self.distributed),
                    "beta": self.step.kl.scale, "lr": self.step.optimizer.param_groups[0]["lr"],
                    "skipped_steps": self.nan.skipped, "seconds": self.seconds,
                    **getattr(self.model, "epoch_metrics", lambda *args: {})(self.guide, self.data)}  # the model's own
            finite = self.nan.check_evaluation(row, ("valid_elbo", self.selection, "test_elbo"), self.epoch)
            self.rows.append(row)
            self._track_best(row)
            if self.config.lr_decay < 1:
                self._scheduler().step(row[self.selection])
            self.epoch, self.step_in_epoch, self.total, self.seen = self.epoch + 1, 0, 0.0, 0
            self.epoch_shuffle_state = self.shuffle.get_state()
            if finite:  # else the last good checkpoint stays the newest
                self.save()
            if on_epoch is not None:
                on_epoch(row)
        return pd.DataFrame(self.rows)


def fit(model: nn.Module, guide, data: Dataset, config: TrainConfig,
        on_epoch: Callable[[dict], None] | None = None, progress: bool = True, distributed=None,
        tensorboard: str | Path | None = None) -> pd.DataFrame:
    """Train a model/guide pair with SVI and Trace_ELBO (no checkpoints; see :class:`Trainer`).

    With ``config.patience`` set (early stopping), the pair ends with the weights of the
    epoch with the best validation bound (the ELBO; for ``"iwae"``, the IWAE bound).

    :param model: the Pyro model, on the data's device. If it has ``arguments(images, labels)``
        (conditional models do), each batch is turned into its arguments with it.
    :param guide: the Pyro guide, on the data's device.
    :param data: the dataset.
    :param config: the optimization settings.
    :param on_epoch: called with each epoch's metrics row.
    :param progress: show a tqdm progress bar with the running loss.
    :returns: one row per epoch: ``epoch``, ``train_elbo`` (the training objective per
        datapoint, averaged over the epoch's steps), ``test_elbo`` (the ELBO per datapoint
        on the test split after the epoch), ``beta``, ``lr`` (Adam's learning rate in the
        epoch), ``skipped_steps`` and ``seconds``
        (cumulative training time).
    :param distributed: data-parallel training over a process group (see
        :func:`ppl_vae.training.distributed.init_distributed`); ``config.batch_size`` is the global batch.
    :param tensorboard: a folder for TensorBoard event files (:mod:`ppl_vae.training.tensorboard`;
        needs ``pip install "ppl_vae[tensorboard]"``), or None.
    """
    trainer = Trainer(model, guide, data, config, distributed=distributed)
    log = None if tensorboard is None else TensorBoardLog(tensorboard, model, guide, test_batch(data))
    metrics = trainer.run(chain(on_epoch, log), progress)
    if log is not None:
        log.close()
    trainer.restore_best()  # with config.patience: the weights of the best validation epoch
    return metrics
