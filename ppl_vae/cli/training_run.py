"""One training run into a run directory, new or resumed.

Used by ``ppl-vae train``: it writes ``metrics.csv`` every epoch, training checkpoints
under ``checkpoints/``, and at the end the figures and ``checkpoint.pt``. SIGTERM and
Ctrl-C write a checkpoint and stop cleanly.
"""

import json
import math
import signal
import sys
from pathlib import Path
from typing import Callable

import pandas as pd
from torch import nn

from ppl_vae.cli.figures import plot_curves, save_figures
from ppl_vae.data.datasets import Dataset
from ppl_vae.infer.svi_step import NonFiniteLossError
from ppl_vae.models.config import ModelConfig
from ppl_vae.training.checkpoints import (
    atomic_write,
    latest_checkpoint,
    save_checkpoint,
)
from ppl_vae.training.config import CheckpointOptions, TrainConfig
from ppl_vae.training.distributed import process_group
from ppl_vae.training.tensorboard import TensorBoardLog, chain, test_batch
from ppl_vae.training.trainer import StopRequested, Trainer, fit


class StopSignals:
    """Within this block, SIGTERM and SIGINT only set :attr:`received` (the loop polls it)."""

    def __enter__(self) -> "StopSignals":
        self.received = None
        self.previous = {s: signal.signal(s, self._handle) for s in (signal.SIGTERM, signal.SIGINT)}
        return self

    def _handle(self, signum, frame) -> None:
        self.received = signum

    def __exit__(self, *exc) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def epoch_logger(out: Path, name: str, label: str, rows: list, quiet: bool = False):
    def on_epoch(row: dict) -> None:
        rows.append(row)
        text = pd.DataFrame(rows).to_csv(index=False)
        atomic_write(out / name, lambda f: f.write(text.encode()))
        if not quiet:
            print(f"{label}epoch {row['epoch']}: train ELBO {row['train_elbo']:.2f}, test ELBO "
                  f"{row['test_elbo']:.2f} nats/image, {row['seconds']:.1f} s", file=sys.stderr)

    return on_epoch


def run_training(out: Path, model: nn.Module, guide: nn.Module, config: ModelConfig, data: Dataset,
                 train_config: TrainConfig, options: CheckpointOptions, progress: bool = True,
                 resume: bool = False, distributed=None, after_step: Callable[[int], None] | None = None,
                 tensorboard: bool = False, quiet: bool = False) -> int:
    """Train (or resume) into ``out``; returns the exit code (0, or 128 + signal when stopped).

    With ``distributed``, every rank trains and rank 0 alone writes files and prints.
    ``after_step`` is called with the global step after each step of the main fit (the
    fault-injection seam of ``tests/fault_injection.py``). ``quiet`` leaves out the line per
    epoch (metrics.csv still has them) and the closing messages; errors are still printed.
    """
    main = process_group(distributed).is_main
    with StopSignals() as signals:  # from here to the last write, a stop request ends in a resumable state

        def stopped(what: str) -> int:
            signum = signals.received or signal.SIGTERM  # (another rank was asked to stop)
            if main:
                print(f"ppl-vae train: {signal.Signals(signum).name}: {what}; resume with: ppl-vae train --resume {out}",
                      file=sys.stderr)
            return 128 + signum

        trainer = Trainer(model, guide, data, train_config, out / "checkpoints", options, distributed=distributed)
        if resume:
            state, path, problems = latest_checkpoint(out / "checkpoints",
                                                      map_location=next(model.parameters()).device,
                                                      load=trainer.load_state_dict)
            for problem in problems:
                print(f"ppl-vae train: passed over broken checkpoint {problem}", file=sys.stderr)
            if main:
                print(f"resuming from {path} (epoch {trainer.epoch}, step {trainer.global_step})", file=sys.stderr)
        else:  # a new run: the model's stages first (every rank trains the same, from the same draws)
            for stage in model.pretraining_stages():
                fit(stage.model, stage.guide, data, train_config, progress=progress and main,
                    on_epoch=epoch_logger(out, f"{stage.name}_metrics.csv", f"{stage.name} ", [], quiet) if main else None)
        if signals.received is not None:
            return stopped("stopped before the first step (nothing to keep)")
        on_epoch = epoch_logger(out, "metrics.csv", "", list(trainer.rows), quiet) if main else None
        if tensorboard and main:  # event files in RUN_DIR/tensorboard (a resumed run appends to them)
            on_epoch = chain(on_epoch, TensorBoardLog(out / "tensorboard", model, guide, test_batch(data)))
        try:
            metrics = trainer.run(on_epoch, progress, stop_requested=lambda: signals.received is not None,
                                  after_step=after_step)
        except StopRequested as stop:
            return stopped(f"{stop}; checkpoint written")
        final = trainer.restore_best() or trainer.rows[-1]  # early stopping keeps the best validation epoch
        if not math.isfinite(final["test_elbo"]):
            raise NonFiniteLossError(f"the final weights give a test ELBO of {final['test_elbo']} "
                                     f"({trainer.nan.nonfinite_evaluations} epochs evaluated to non-finite values); "
                                     "checkpoint.pt is not written; the training checkpoints of the epochs that "
                                     "evaluated finite are kept")
        if not main:
            return 0
        if trainer.config.patience and not quiet:
            bound = "IWAE bound" if trainer.selection == "valid_iwae" else "ELBO"
            print(f"kept epoch {final['epoch']} (best validation {bound} {final[trainer.selection]:.2f}; "
                  f"{'stopped early' if trainer.stopped_early else 'no early stop'})", file=sys.stderr)
        for write in (lambda: plot_curves(metrics, out / "loss_curve.png", ("train_elbo", "valid_elbo", "test_elbo")),
                      lambda: save_figures(model, guide, data, out),
                      lambda: save_checkpoint(out / "checkpoint.pt", model, guide, config, epoch=int(final["epoch"]),
                                              test_elbo=float(final["test_elbo"]))):
            if signals.received is not None:
                return stopped("stopped after the last epoch, before the final files; its checkpoint is written")
            write()
    if not quiet:
        print(f"wrote {out}", file=sys.stderr)
    return 0


def write_run_config(out: Path, run_config: dict) -> None:
    """Write ``out/config.json`` atomically (an interrupted write leaves the old file)."""
    text = json.dumps(run_config, indent=2) + "\n"
    atomic_write(out / "config.json", lambda f: f.write(text.encode()))


__all__ = ["CheckpointOptions", "run_training", "write_run_config"]
