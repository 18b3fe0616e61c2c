"""The ELBO of a dataset split, as the training loop reports it every epoch."""

import torch
from pyro.infer import ELBO, Trace_ELBO
from torch import nn

from ppl_vae.data import Dataset
from ppl_vae.models.base import model_arguments
from ppl_vae.nn.registration import registration_skipped
from ppl_vae.training.distributed import shard_batch


@torch.no_grad()
def evaluate_elbo(
    model: nn.Module, guide: nn.Module, data: Dataset, split: str = "test", batch_size: int = 1000,
    elbo: ELBO | None = None, distributed=None,
) -> float:
    """The mean ELBO per datapoint on a split, in nats.

    It draws from a fork of torch's RNG, so evaluating leaves the training stream as it was.

    :param elbo: the estimator (default ``Trace_ELBO()``, one particle).
    :param distributed: shard every batch over the ranks (:mod:`ppl_vae.training.distributed`) and
        sum the results; the value is the single-process one.
    """
    elbo = elbo or Trace_ELBO()
    arguments = model_arguments(model)
    total, count = 0.0, 0
    devices = [data.train.device] if data.train.device.type == "cuda" else []
    with registration_skipped(), torch.random.fork_rng(devices=devices):
        for x, labels in data.batches(split, batch_size, labels=True):
            size = len(x)
            x, labels, noise = shard_batch(distributed, x, labels)
            with noise:
                total -= elbo.differentiable_loss(model, guide, *arguments(x, labels)).item() if len(x) else 0.0
            count += size
    if distributed is not None:
        total = distributed.sum_scalars(total)[0]
    return total / count
