"""The training loop and its state: configs, the resumable Trainer and fit, checkpoints, RNG state, devices."""

from ppl_vae.training.checkpoints import load_pair, save_checkpoint
from ppl_vae.training.trainer import Trainer, fit

__all__ = ["Trainer", "fit", "load_pair", "save_checkpoint"]
