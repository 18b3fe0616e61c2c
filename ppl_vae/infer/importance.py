"""Importance-sampled log-likelihood (the IWAE bound), the ELBO of a split, active units and KL per dimension.

.. math::

    \\log p(x) \\approx \\log \\frac1K \\sum_{k=1}^K \\frac{p(x, z_k)}{q(z_k|x)}, \\quad z_k \\sim q(z|x)

(Burda, Grosse & Salakhutdinov 2015, arXiv:1509.00519). The weights are read from Pyro
traces of the guide and the replayed model, vectorized over a ``"particles"`` plate, so
any model/guide pair of the library works unchanged, flow guides and conditional models
included. Particles are drawn in chunks and combined with a running ``logsumexp``, so
memory stays bounded for any K.

Each datapoint's noise is a function of the seed, the site, the datapoint's index, the
particle and the coordinate (:class:`~ppl_vae.infer.noise.CounterNoise`), computed on the
data's device: the per-datapoint results do not depend on the batch or chunk size (common
random numbers), and no CPU generator is on the path.
"""

import math
from typing import NamedTuple

import pyro
import torch
from torch import nn

from ppl_vae.infer.noise import CounterNoise
from ppl_vae.infer.traces import is_enumerated, log_weight, sample_sites, site_log_prob, traces
from ppl_vae.nn.registration import registration_skipped


class Weights(NamedTuple):
    """The importance weights of :func:`log_importance_weights`, each ``(num_particles, batch)``."""

    log_weight: torch.Tensor  # log p(x, z_k) - log q(z_k|x), enumerated sites summed out exactly
    elbo: torch.Tensor  # the ELBO of each particle (the log weight, unless a site is enumerated)
    latents: dict[str, torch.Tensor]  # the guide's draws by site, (num_particles, batch, *event)


def log_importance_weights(
    model: nn.Module, guide: nn.Module, x: torch.Tensor, *args, num_particles: int = 1
) -> Weights:
    """``log p(x, z_k) - log q(z_k|x)`` for ``num_particles`` draws per datapoint.

    A discrete guide site marked for enumeration (``infer={"enumerate": "parallel"}``, the
    semi-supervised model's label) is summed over exactly rather than sampled: with its values
    y weighted by q(y|x), the weight is ``log sum_y p(x, y, z_k^y) / q(z_k^y|x, y)`` and the ELBO
    ``sum_y q(y|x) [log p(x, y, z_k^y) - log q(y|x) - log q(z_k^y|x, y)]``.

    :param x: ``(batch, *event_shape)``; further ``args`` go to model and guide.
    :returns: :class:`Weights`.
    """
    with pyro.plate("particles", num_particles, dim=-2):
        guide_trace, model_trace = traces(model, guide, x, *args, first_available_dim=-3)
    log_w = log_weight(model_trace, guide_trace)
    sites = [(name, site) for name, site in sample_sites(guide_trace) if not site["is_observed"]]
    enumerated = [site_log_prob(name, site) for name, site in sites if is_enumerated(site)]
    if not enumerated:
        return Weights(log_w, log_w, {name: site["value"] for name, site in sites})
    log_q = sum(enumerated)  # log q of the enumerated values, (*values, particles, batch)
    log_w, log_q = torch.broadcast_tensors(log_w, log_q)
    values = tuple(range(log_w.dim() - 2))
    q = log_q.exp()
    latents = {}
    for name, site in sites:  # the mean over the enumerated values, weighted by q
        if not is_enumerated(site):
            value = site["value"]
            weight = q.reshape(q.shape + (1,) * (value.dim() - q.dim()))
            latents[name] = (weight * value).sum(values) if value.dim() > 2 + len(site["fn"].event_shape) else value
    return Weights(torch.logsumexp(log_q + log_w, dim=values), (q * log_w).sum(values), latents)


class PerDatapoint(NamedTuple):
    """Per-datapoint results of :func:`estimate_log_likelihood`, each ``(N,)``."""

    log_likelihood: torch.Tensor  # the IWAE bound with K samples
    elbo: torch.Tensor  # the ELBO estimated with the same K samples


@torch.no_grad()
def estimate_log_likelihood(
    model: nn.Module, guide: nn.Module, x: torch.Tensor, *args, num_samples: int = 5000,
    batch_size: int | None = None, chunk_size: int | None = None, seed: int = 0, progress=None, first_index: int = 0,
) -> tuple[PerDatapoint, dict[str, torch.Tensor]]:
    """The importance-sampled log p(x) per datapoint, and the guide's mean of every latent site.

    :param x: ``(N, *event_shape)``; further ``args`` (conditions) are split alongside.
    :param num_samples: K, importance samples per datapoint.
    :param batch_size: datapoints per pass (None: :func:`pass_size` for ``x``'s device).
    :param chunk_size: particles per pass (memory grows with ``batch_size * chunk_size``; None:
        :func:`pass_size`).
    :param seed: seed of the per-datapoint noise.
    :param first_index: the index of ``x[0]`` in the whole set (a key of its noise), so that
        a shard of a set gets the same noise as the whole set.
    :returns: :class:`PerDatapoint` and, by site name (``"z"``, or ``"z1"``, ``"z2"``, ... for
        a hierarchical model), ``E_q[z|x]`` ``(N, site_dim)``, estimated from the same K draws.
    """
    default_batch, default_chunk = pass_size(x.device, num_samples, math.prod(x.shape[1:]))
    batch_size = default_batch if batch_size is None else batch_size
    chunk_size = default_chunk if chunk_size is None else chunk_size
    for name, value in (("num_samples", num_samples), ("batch_size", batch_size), ("chunk_size", chunk_size)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    log_px, elbo, means = [], [], {}
    with registration_skipped(), pyro.validation_enabled(False):
        for start in range(0, len(x), batch_size):
            stop = min(start + batch_size, len(x))
            noise = CounterNoise(seed, torch.arange(first_index + start, first_index + stop, device=x.device))
            batch_args = [a[start:stop] for a in args]
            log_sum = torch.full((stop - start,), -math.inf, dtype=x.dtype, device=x.device)
            weight_sum, sums = 0.0, {}
            for k in range(0, num_samples, chunk_size):
                particles = min(chunk_size, num_samples - k)
                with noise:
                    log_w, particle_elbo, latents = log_importance_weights(
                        model, guide, x[start:stop], *batch_args, num_particles=particles
                    )
                log_sum = torch.logaddexp(log_sum, torch.logsumexp(log_w, 0))
                weight_sum = weight_sum + particle_elbo.sum(0)
                for site, value in latents.items():
                    value = value.reshape(value.shape[:2] + (-1,))  # (particles, batch, site_dim)
                    sums[site] = sums.get(site, 0.0) + value.sum(0)
            log_px.append(log_sum - math.log(num_samples))
            elbo.append(weight_sum / num_samples)
            for site, total in sums.items():
                means.setdefault(site, []).append(total / num_samples)
            if progress is not None:
                progress.update(stop - start)
    return PerDatapoint(torch.cat(log_px), torch.cat(elbo)), {site: torch.cat(m) for site, m in means.items()}


def pass_size(device: torch.device, num_samples: int, data_dim: int) -> tuple[int, int]:
    """The evaluation pass, ``(batch_size, chunk_size)``, for a device.

    On the CPU, 4 datapoints by 2500 particles (10,000 pairs: fewer passes of Pyro's per-pass
    Python work than 2 by 2000, at the same arithmetic speed on a few cores,
    ``scripts/bench_evaluate.py``); on CUDA, up to 5000 particles and as many datapoints as
    a quarter of the free memory holds, at about 16 floats of activations per pair and data
    dimension, so that the GPU is not launch-bound.
    """
    if device.type != "cuda":
        return 4, 2500
    chunk = min(num_samples, 5000)
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, min(1000, free // 4 // (16 * 4 * data_dim * chunk))), chunk


def active_units(posterior_mean: torch.Tensor, threshold: float = 0.01) -> torch.Tensor:
    """Which latent dimensions are active: ``Cov_x(E_q[z_u|x]) > threshold`` (Burda et al. 2015).

    :param posterior_mean: ``(N, z_dim)``.
    :returns: a boolean mask ``(z_dim,)``.
    """
    return posterior_mean.var(0, unbiased=True) > threshold


class Summary(NamedTuple):
    """A mean over datapoints with its standard error."""

    mean: float
    std_error: float

    @classmethod
    def of(cls, values: torch.Tensor) -> "Summary":
        values = values.double()
        return cls(values.mean().item(), (values.std() / math.sqrt(len(values))).item() if len(values) > 1 else math.nan)


@torch.no_grad()
def mean_kl(model: nn.Module, guide: nn.Module, x: torch.Tensor, *args, batch_size: int = 100) -> dict[str, float]:
    """The closed-form KL(q(z|x) || p(z)) averaged over datapoints: ``{"kl": ...}``, plus
    ``kl_z0, kl_z1, ...`` per latent dimension for diagonal guides; ``{}`` where there is no
    closed form (flow guides; mixture, VampPrior and flow priors; several latent layers).
    """
    from ppl_vae.infer.closed_form import closed_form_kl, guide_gaussian

    totals, per_dim = [], []
    with registration_skipped():
        for i in range(0, len(x), batch_size):
            xs, conditions = x[i:i + batch_size], [a[i:i + batch_size] for a in args]
            try:
                loc, scale_tril = guide_gaussian(guide, xs, *conditions)
                kl = closed_form_kl(model, loc, scale_tril, xs, *conditions)
            except (TypeError, AttributeError):
                return {}
            totals.append(kl.sum(-1))
            if torch.equal(scale_tril, torch.diag_embed(scale_tril.diagonal(dim1=-2, dim2=-1))):
                per_dim.append(kl)
    result = {"kl": torch.cat(totals).mean().item()}
    if len(per_dim) == len(totals):
        result.update({f"kl_z{u}": value for u, value in enumerate(torch.cat(per_dim).mean(0).tolist())})
    return result
