"""The evaluation of a trained pair over a process group: the ELBO of a split (which the
training loop reports every epoch) and the importance-sampled table of ``ppl-vae evaluate``."""

import math
import time

import pyro
import torch
from pyro.infer import ELBO, Trace_ELBO, TraceEnum_ELBO
from torch import nn

from ppl_vae.data import Dataset
from ppl_vae.infer.importance import (
    PerDatapoint,
    Summary,
    active_units,
    estimate_log_likelihood,
    mean_kl,
)
from ppl_vae.models.base import model_arguments
from ppl_vae.nn.registration import registration_skipped
from ppl_vae.training.distributed import process_group


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
    elbo, group = elbo or Trace_ELBO(), process_group(distributed)
    arguments = model_arguments(model)
    total, count = 0.0, 0
    devices = [data.train.device] if data.train.device.type == "cuda" else []
    # no argument validation: non-finite parameters give a non-finite ELBO, for the NaN policy to judge
    with registration_skipped(), torch.random.fork_rng(devices=devices), pyro.validation_enabled(False):
        for x, labels in data.batches(split, batch_size, labels=True):
            size = len(x)
            x, labels, noise = group.shard_batch(x, labels)
            with noise:
                total -= loss(elbo, model, guide, *arguments(x, labels)) if len(x) else 0.0
            count += size
    return group.sum_scalars(total)[0] / count


def loss(elbo: ELBO, model: nn.Module, guide: nn.Module, *args) -> float:
    """The estimator's loss as a number, without gradients (``TraceEnum_ELBO``'s
    ``differentiable_loss`` insists on them; its ``loss`` is the same estimate)."""
    if isinstance(elbo, TraceEnum_ELBO):
        return elbo.loss(model, guide, *args)
    return elbo.differentiable_loss(model, guide, *args).item()


def evaluation_table(
    model: nn.Module, guide: nn.Module, x: torch.Tensor, *args, num_samples: int = 5000,
    batch_size: int | None = None, chunk_size: int | None = None, seed: int = 0, progress=None, distributed=None,
) -> dict[str, float]:
    """Everything ``ppl-vae evaluate`` reports, as one flat row.

    ``nll`` and ``bits_per_dim`` (the IWAE bound with K samples), ``elbo`` (K-sample
    estimate), their standard errors over datapoints, the number of active units and,
    for Gaussian guides, the mean closed-form KL and the KL per latent dimension.

    :param distributed: shard the datapoints over the ranks of a process group
        (:class:`~ppl_vae.training.distributed.Distributed`) and gather the per-datapoint results; each datapoint
        keeps its own noise (keyed on its index), so the row equals the single-process one.
    """

    group = process_group(distributed)
    start = time.perf_counter()
    first, size = group.shard_bounds(len(x))
    per_datapoint, means = estimate_log_likelihood(
        model, guide, x[first:first + size], *[a[first:first + size] for a in args], num_samples=num_samples,
        batch_size=batch_size, chunk_size=chunk_size, seed=seed, progress=progress, first_index=first,
    )
    sites = list(means)
    log_likelihood, elbo, *site_means = group.gather_rows([*per_datapoint, *means.values()])  # every rank's rows
    per_datapoint = PerDatapoint(log_likelihood, elbo)
    seconds = time.perf_counter() - start
    nll, elbo = Summary.of(-per_datapoint.log_likelihood), Summary.of(per_datapoint.elbo)
    dims = getattr(model, "observed_dims", None) or math.prod(x.shape[1:])  # a Model says; else every pixel
    active = {site: active_units(mean) for site, mean in zip(sites, site_means)}
    row = {
        "num_datapoints": len(x), "num_samples": num_samples,
        "nll": nll.mean, "nll_std_error": nll.std_error,
        "bits_per_dim": nll.mean / (dims * math.log(2)), "elbo": elbo.mean, "elbo_std_error": elbo.std_error,
        "active_units": sum(int(mask.sum()) for mask in active.values()),
        "z_dim": sum(mask.numel() for mask in active.values()),
        "kl": math.nan, "seconds": seconds,
        "pairs_per_s": len(x) * num_samples / seconds,
    }
    if len(sites) > 1:  # several latent layers: active units per layer too
        row.update({f"active_units_{site}": int(mask.sum()) for site, mask in active.items()})
        row.update({f"{site}_dim": mask.numel() for site, mask in active.items()})
    row.update(mean_kl(model, guide, x, *args, **({} if batch_size is None else {"batch_size": batch_size})))
    return row
