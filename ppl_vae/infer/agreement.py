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
import torch
from torch import nn

from ppl_vae.infer.closed_form import closed_form_elbo
from ppl_vae.infer.importance import log_importance_weights
from ppl_vae.nn.registration import registration_skipped
from ppl_vae.infer.elbos import make_elbo


@torch.no_grad()
def estimator_mean(model: nn.Module, guide: nn.Module, x: torch.Tensor, *condition: torch.Tensor,
                   elbo_name: str = "trace", num_particles: int = 100, repeats: int = 20) -> tuple[float, float]:
    """Pyro's ELBO estimate per datapoint and its standard error.

    The estimator (``"trace"`` or ``"mean-field"``) is run ``repeats`` times with
    ``num_particles`` vectorized particles each; the standard error is the spread of the
    repeats over ``sqrt(repeats)``.

    :returns: ``(mean ELBO per datapoint, standard error)``.
    """
    elbo = make_elbo(elbo_name, num_particles)
    with registration_skipped():
        values = torch.tensor([-elbo.loss(model, guide, x, *condition) / len(x) for _ in range(repeats)],
                              dtype=torch.float64)
    return values.mean().item(), (values.std() / math.sqrt(repeats)).item()


@torch.no_grad()
def reference_elbo(
    model: nn.Module, guide: nn.Module, x: torch.Tensor, *condition: torch.Tensor, num_samples: int = 1000
) -> tuple[float, float, str]:
    """The reference ELBO per datapoint: ``(mean, standard error, kind)``.

    Closed form for Gaussian guides; for flow guides, which have none, a Monte Carlo mean
    of the log importance weights over ``num_samples`` draws per datapoint.
    """
    with registration_skipped(), pyro.validation_enabled(False):
        try:
            reference = closed_form_elbo(model, guide, x, *condition, num_samples=num_samples)
        except (TypeError, AttributeError):
            log_w, _ = log_importance_weights(model, guide, x, *condition, num_particles=num_samples)
            per_datapoint_se = log_w.std(0) / math.sqrt(num_samples)
            return log_w.mean().item(), (per_datapoint_se.pow(2).sum().sqrt() / len(x)).item(), "monte-carlo"
    se = (reference.std_error.pow(2).sum().sqrt() / len(x)).item()
    return reference.elbo.mean().item(), se, "closed-form"


def elbo_agreement(model: nn.Module, guide: nn.Module, x: torch.Tensor, *condition: torch.Tensor,
                   num_particles: int = 100, repeats: int = 20, num_samples: int = 1000) -> pd.DataFrame:
    """Compare Trace_ELBO and TraceMeanField_ELBO with the reference ELBO on the data ``x``.

    :param num_particles: particles per run of Pyro's estimators.
    :param repeats: runs of each estimator (for its standard error).
    :param num_samples: draws for the closed form's Monte Carlo likelihood term (unless exact).
    :returns: one row per estimator: ``estimate``, ``std_error``, ``reference``,
        ``reference_std_error``, ``reference_kind`` (``closed-form`` or ``monte-carlo``),
        ``difference`` and ``z`` (the difference in combined standard errors; |z| < 4 is agreement).
    """
    closed, closed_se, kind = reference_elbo(model, guide, x, *condition, num_samples=num_samples)
    rows = []
    for name, label in (("trace", "Trace_ELBO"), ("mean-field", "TraceMeanField_ELBO")):
        estimate, se = estimator_mean(model, guide, x, *condition, elbo_name=name, num_particles=num_particles,
                                      repeats=repeats)
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
