"""Pyro's ELBO estimators checked against the closed-form ELBO, in standard errors.

Which reference each guide gets:

==============  ===================================================================
guide           reference
==============  ===================================================================
``diag``        closed-form KL (+ exact likelihood term for the linear-Gaussian VAE,
                Monte Carlo otherwise)
``full-rank``   closed-form KL, likewise
``planar``,     no closed form exists: a Monte Carlo mean of ``log p(x, z) - log q(z|x)``
``iaf``         read from the library's own trace-based importance weights
                (:func:`ppl_vae.infer.importance.log_importance_weights`), with its standard error
==============  ===================================================================
"""

import math

import pandas as pd
import pyro
import pyro.poutine as poutine
import torch
from torch import nn

from ppl_vae.infer.closed_form import closed_form_elbo
from ppl_vae.infer.elbos import ELBOS
from ppl_vae.infer.importance import log_importance_weights
from ppl_vae.infer.noise import PerDatapointNoise, per_datapoint_normal
from ppl_vae.infer.traces import sample_sites, traces
from ppl_vae.nn.registration import registration_skipped

MAX_PAIRS = 8_000  # (datapoint, particle) pairs per pass: the 784-400-20 default run peaks under 2 GB


def blocks(num_rows: int, num_particles: int, max_pairs: int) -> tuple[int, int]:
    """``(rows, particles)`` per pass so that ``rows * particles <= max_pairs`` (at least one of each)."""
    rows = max(1, min(num_rows, max_pairs // num_particles))
    return rows, (num_particles if rows > 1 else min(num_particles, max_pairs))


def generators(seed: int, stream: int, first: int, last: int) -> list[torch.Generator]:
    """One generator per datapoint ``first..last-1`` of a stream (a repeat): the draws of a
    datapoint do not depend on how the data and particles are split into passes."""
    return [torch.Generator().manual_seed((seed * 1_000_003 + stream) * 1_000_003 + i) for i in range(first, last)]


def in_particles_plate(fn, num_particles: int):
    """``fn`` inside a plate of ``num_particles`` at dim -2, as Pyro's ``vectorize_particles`` does."""
    def particles(*args):
        with pyro.plate("particles", num_particles, dim=-2):
            return fn(*args)
    return particles


@torch.no_grad()
def estimator_mean(model: nn.Module, guide: nn.Module, x: torch.Tensor, *condition: torch.Tensor,
                   elbo_name: str = "trace", num_particles: int = 100, repeats: int = 20, seed: int = 0,
                   max_pairs: int = MAX_PAIRS) -> tuple[float, float]:
    """Pyro's ELBO estimate per datapoint and its standard error.

    The estimator (``"trace"`` or ``"mean-field"``) is run ``repeats`` times with
    ``num_particles`` vectorized particles each; the standard error is the spread of the
    repeats over ``sqrt(repeats)``. Datapoints and particles go in passes of at most
    ``max_pairs`` pairs, each datapoint's draws from its own generator, so memory is bounded
    and the result does not depend on ``max_pairs``.

    :returns: ``(mean ELBO per datapoint, standard error)``.
    """
    rows, particles = blocks(len(x), num_particles, max_pairs)
    elbo, values = ELBOS[elbo_name](max_plate_nesting=2), []
    with registration_skipped():
        for repeat in range(repeats):
            total = 0.0
            for start in range(0, len(x), rows):
                stop = min(start + rows, len(x))
                noise = PerDatapointNoise(generators(seed, repeat, start, stop))
                for k in range(0, num_particles, particles):
                    # the particles as an outer plate (Pyro's own vectorization skips it for one
                    # particle): the loss is then the sum over particles and datapoints
                    n = min(particles, num_particles - k)
                    with noise:
                        total -= elbo.loss(in_particles_plate(model, n), in_particles_plate(guide, n), x[start:stop],
                                           *[c[start:stop] for c in condition])
            values.append(total / num_particles / len(x))
    values = torch.tensor(values, dtype=torch.float64)
    return values.mean().item(), (values.std() / math.sqrt(repeats)).item()


@torch.no_grad()
def reference_elbo(
    model: nn.Module, guide: nn.Module, x: torch.Tensor, *condition: torch.Tensor, num_samples: int = 1000,
    seed: int = 0, max_pairs: int = MAX_PAIRS,
) -> tuple[float, float, str]:
    """The reference ELBO per datapoint: ``(mean, standard error, kind)``.

    Closed form for Gaussian guides; for flow guides, which have none, a Monte Carlo mean
    of the log importance weights over ``num_samples`` draws per datapoint. Both go in passes
    of at most ``max_pairs`` pairs, each datapoint's draws from its own generator.
    """
    rows, particles = blocks(len(x), num_samples, max_pairs)
    means, variances, kind = [], [], "closed-form"
    with registration_skipped(), pyro.validation_enabled(False):
        for start in range(0, len(x), rows):
            stop = min(start + rows, len(x))
            xs, cs = x[start:stop], [c[start:stop] for c in condition]
            streams = generators(seed, -1, start, stop)
            try:
                reference = closed_form_elbo(model, guide, xs, *cs, num_samples=num_samples, chunk_size=particles,
                                             noise=lambda n, like: per_datapoint_normal(streams, (n, *like.shape), like))
                means.append(reference.elbo.double())
                variances.append(reference.std_error.double().square())
            except (TypeError, AttributeError):
                kind = "monte-carlo"
                total, total_sq = 0.0, 0.0
                with PerDatapointNoise(streams):
                    for k in range(0, num_samples, particles):
                        _, log_w, _ = log_importance_weights(model, guide, xs, *cs,
                                                             num_particles=min(particles, num_samples - k))
                        total, total_sq = total + log_w.double().sum(0), total_sq + log_w.double().square().sum(0)
                mean = total / num_samples
                means.append(mean)
                variances.append((total_sq / num_samples - mean.square()).clamp_min(0) / max(num_samples - 1, 1))
    mean, variance = torch.cat(means), torch.cat(variances)
    return mean.mean().item(), (variance.sum().sqrt() / len(x)).item(), kind


def enumerates(guide: nn.Module, *args: torch.Tensor) -> bool:
    """Whether the guide marks a site for enumeration (``infer={"enumerate": "parallel"}``)."""
    with registration_skipped(), torch.no_grad():
        trace = poutine.trace(guide).get_trace(*(a[:1] for a in args))
    return any(site["infer"].get("enumerate") == "parallel" for _, site in sample_sites(trace))


def mean_field_applies(model: nn.Module, guide: nn.Module, *args: torch.Tensor) -> bool:
    """Whether ``TraceMeanField_ELBO`` is valid for the pair: the guide samples the latent sites in
    the model's order (Pyro's own criterion), so no analytic KL conditions on a draw that depends
    on its own site (the hierarchical model's q(z2|z1) against p(z1|z2) fails it)."""
    with registration_skipped(), torch.no_grad():
        guide_trace, model_trace = traces(model, guide, *(a[:1] for a in args))
    latent = [[name for name, site in sample_sites(trace) if not site["is_observed"]] for trace in (model_trace, guide_trace)]
    return latent[0] == latent[1]


def elbo_agreement(model: nn.Module, guide: nn.Module, x: torch.Tensor, *condition: torch.Tensor,
                   num_particles: int = 100, repeats: int = 20, num_samples: int = 1000, seed: int = 0,
                   max_pairs: int = MAX_PAIRS) -> pd.DataFrame:
    """Compare Trace_ELBO and TraceMeanField_ELBO with the reference ELBO on the data ``x``.

    :param num_particles: particles per run of Pyro's estimators.
    :param repeats: runs of each estimator (for its standard error).
    :param num_samples: draws for the closed form's Monte Carlo likelihood term (unless exact).
    :param seed: seed of the per-datapoint noise generators.
    :param max_pairs: (datapoint, particle) pairs per pass, which bounds memory; the result
        does not depend on it.
    :returns: one row per estimator (TraceMeanField_ELBO only where :func:`mean_field_applies`; TraceEnum_ELBO
        alone where the guide enumerates a site):
        ``estimate``, ``std_error``, ``reference``, ``reference_std_error``,
        ``reference_kind`` (``closed-form`` or ``monte-carlo``),
        ``difference`` and ``z`` (the difference in combined standard errors; ``|z| < 4`` is agreement).
    """
    closed, closed_se, kind = reference_elbo(model, guide, x, *condition, num_samples=num_samples, seed=seed,
                                             max_pairs=max_pairs)
    rows = []
    if enumerates(guide, x, *condition):  # a discrete site summed out: Pyro's estimator for it
        estimators = [("enum", "TraceEnum_ELBO")]
    else:
        estimators = [("trace", "Trace_ELBO")]
        if mean_field_applies(model, guide, x, *condition):
            estimators.append(("mean-field", "TraceMeanField_ELBO"))
    for name, label in estimators:
        estimate, se = estimator_mean(model, guide, x, *condition, elbo_name=name, num_particles=num_particles,
                                      repeats=repeats, seed=seed, max_pairs=max_pairs)
        # an exact guide makes both errors vanish: floor them at float rounding
        rounding = 100 * torch.finfo(x.dtype).eps * max(1.0, abs(closed))
        combined = max(math.hypot(se, closed_se), rounding)
        difference = estimate - closed
        rows.append({
            "estimator": label, "estimate": estimate, "std_error": se, "reference": closed,
            "reference_std_error": closed_se, "reference_kind": kind, "difference": difference,
            "z": difference / combined,
            "num_datapoints": len(x), "num_particles": num_particles * repeats,
        })
    return pd.DataFrame(rows)
