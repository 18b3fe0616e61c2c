"""Pyro's ELBO estimators checked against the closed-form ELBO, in standard errors."""

import math

import pandas as pd
import pyro
import torch
from torch import nn

from ppl_vae.elbo import closed_form_elbo
from ppl_vae.registration import registration_skipped
from ppl_vae.train import make_elbo


@torch.no_grad()
def estimator_mean(model: nn.Module, guide: nn.Module, x: torch.Tensor, elbo_name: str,
                   num_particles: int = 100, repeats: int = 20) -> tuple[float, float]:
    """Pyro's ELBO estimate per datapoint and its standard error.

    The estimator (``"trace"`` or ``"mean-field"``) is run ``repeats`` times with
    ``num_particles`` vectorized particles each; the standard error is the spread of the
    repeats over ``sqrt(repeats)``.

    :returns: ``(mean ELBO per datapoint, standard error)``.
    """
    elbo = make_elbo(elbo_name, num_particles)
    with registration_skipped():
        values = torch.tensor([-elbo.loss(model, guide, x) / len(x) for _ in range(repeats)], dtype=torch.float64)
    return values.mean().item(), (values.std() / math.sqrt(repeats)).item()


def elbo_agreement(model: nn.Module, guide: nn.Module, x: torch.Tensor, num_particles: int = 100,
                   repeats: int = 20, num_samples: int = 1000) -> pd.DataFrame:
    """Compare Trace_ELBO and TraceMeanField_ELBO with the closed-form ELBO on the data ``x``.

    :param num_particles: particles per run of Pyro's estimators.
    :param repeats: runs of each estimator (for its standard error).
    :param num_samples: draws for the closed form's Monte Carlo likelihood term (unless exact).
    :returns: one row per estimator: ``estimate``, ``std_error``, ``closed_form``,
        ``closed_form_std_error``, ``difference`` and ``z`` (the difference in combined
        standard errors; |z| < 4 is agreement).
    """
    with torch.no_grad(), registration_skipped(), pyro.validation_enabled(False):
        reference = closed_form_elbo(model, guide, x, num_samples=num_samples)
    closed = reference.elbo.mean().item()
    closed_se = (reference.std_error.pow(2).sum().sqrt() / len(x)).item()
    rows = []
    for name, label in (("trace", "Trace_ELBO"), ("mean-field", "TraceMeanField_ELBO")):
        estimate, se = estimator_mean(model, guide, x, name, num_particles, repeats)
        # an exact guide makes both errors vanish: floor them at float rounding
        rounding = 100 * torch.finfo(x.dtype).eps * max(1.0, abs(closed))
        combined = max(math.hypot(se, closed_se), rounding)
        difference = estimate - closed
        rows.append({
            "estimator": label, "estimate": estimate, "std_error": se, "closed_form": closed,
            "closed_form_std_error": closed_se, "difference": difference,
            "z": difference / combined,
            "num_datapoints": len(x), "num_particles": num_particles * repeats,
        })
    return pd.DataFrame(rows)
