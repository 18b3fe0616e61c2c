"""The ELBO in closed form: an independent check on Pyro's estimators.

For a Gaussian guide q(z|x) = N(m, S) and the standard normal prior, the KL term has
the closed form

.. math::

    KL(q \\| p) = \\tfrac12 \\left( \\operatorname{tr} S + m^\\top m - d - \\log\\det S \\right),

which for a diagonal S = diag(s^2) is ``0.5 * sum(m^2 + s^2 - log s^2 - 1)``. The
expected log-likelihood ``E_q[log p(x|z)]`` is exact for the linear-Gaussian decoder
p(x|z) = N(Wz + b, sigma^2 I):

.. math::

    -\\tfrac{D}{2} \\log(2\\pi\\sigma^2)
    - \\frac{1}{2\\sigma^2} \\left( \\|x - Wm - b\\|^2 + \\operatorname{tr}(W S W^\\top) \\right),

and is otherwise a Monte Carlo mean over reparameterized draws, returned with its
standard error. The formulas are written here by hand, on purpose, and do not call
Pyro's ``kl_divergence`` registry, so that agreement with Pyro is a real check.
"""

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn


def kl_diagonal_standard(loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """KL(N(loc, diag scale^2) || N(0, I)) per datapoint.

    :param loc: ``(..., d)``.
    :param scale: ``(..., d)``, positive.
    :returns: ``(...,)``.
    """
    return kl_diagonal_standard_per_dim(loc, scale).sum(-1)


def kl_diagonal_standard_per_dim(loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The KL of :func:`kl_diagonal_standard`, one term per latent dimension: ``(..., d)``."""
    variance = scale * scale
    return 0.5 * (loc * loc + variance - variance.log() - 1.0)


def kl_diagonal_diagonal(
    loc_q: torch.Tensor, scale_q: torch.Tensor, loc_p: torch.Tensor, scale_p: torch.Tensor
) -> torch.Tensor:
    """KL(N(loc_q, diag scale_q^2) || N(loc_p, diag scale_p^2)) per datapoint, for learned priors.

    :returns: ``(...,)``, the sum over the last dimension of
        ``log(scale_p/scale_q) + (scale_q^2 + (loc_q - loc_p)^2) / (2 scale_p^2) - 1/2``.
    """
    return kl_diagonal_diagonal_per_dim(loc_q, scale_q, loc_p, scale_p).sum(-1)


def kl_diagonal_diagonal_per_dim(
    loc_q: torch.Tensor, scale_q: torch.Tensor, loc_p: torch.Tensor, scale_p: torch.Tensor
) -> torch.Tensor:
    """The KL of :func:`kl_diagonal_diagonal`, one term per latent dimension: ``(..., d)``."""
    ratio = (scale_q / scale_p) ** 2
    return 0.5 * (ratio + ((loc_q - loc_p) / scale_p) ** 2 - 1.0 - ratio.log())


def kl_full_rank_standard(loc: torch.Tensor, scale_tril: torch.Tensor) -> torch.Tensor:
    """KL(N(loc, L L^T) || N(0, I)) per datapoint.

    :param loc: ``(..., d)``.
    :param scale_tril: ``(..., d, d)`` lower-triangular with positive diagonal.
    :returns: ``(...,)``.
    """
    trace = (scale_tril * scale_tril).sum((-2, -1))
    log_det = 2.0 * scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return 0.5 * (trace + (loc * loc).sum(-1) - loc.shape[-1] - log_det)


def expected_log_linear_gaussian(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, sigma: torch.Tensor,
    loc: torch.Tensor, scale_tril: torch.Tensor,
) -> torch.Tensor:
    """E_{z ~ N(loc, L L^T)}[log N(x; W z + b, sigma^2 I)], exactly, per datapoint.

    :param x: ``(batch, D)``.
    :param weight: ``W``, ``(D, d)``.
    :param bias: ``b``, ``(D,)``.
    :param sigma: the noise scale, a scalar tensor.
    :param loc: ``(batch, d)``.
    :param scale_tril: ``(batch, d, d)``.
    :returns: ``(batch,)``.
    """
    residual = x - loc @ weight.T - bias
    trace = ((weight @ scale_tril) ** 2).sum((-2, -1))  # tr(W L L^T W^T)
    variance = sigma * sigma
    dim = x.shape[-1]
    return -0.5 * dim * torch.log(2 * math.pi * variance) - ((residual**2).sum(-1) + trace) / (2 * variance)


class ELBOEstimate(NamedTuple):
    """A per-datapoint ELBO with its Monte Carlo standard error (0 where exact)."""

    elbo: torch.Tensor
    std_error: torch.Tensor
    kl: torch.Tensor
    expected_log_likelihood: torch.Tensor


def guide_gaussian(guide: nn.Module, x: torch.Tensor, *condition) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loc, scale_tril)`` of a Gaussian guide's q(z|x), read from its distribution.

    :raises TypeError: if q(z|x) is not Gaussian (flow guides have no closed-form KL).
    """
    import pyro.distributions as dist

    q = guide.distribution(x, *condition)
    base = q.base_dist if isinstance(q, dist.Independent) else q
    if isinstance(base, dist.Normal) and not isinstance(q, dist.TransformedDistribution):
        return base.loc, torch.diag_embed(base.scale)
    if isinstance(base, dist.MultivariateNormal):
        return base.loc, base.scale_tril
    raise TypeError(f"{type(guide).__name__} is not Gaussian: its KL has no closed form; use a Monte Carlo reference")


def gaussian_prior(model: nn.Module, x: torch.Tensor, *condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loc, scale)`` of the model's diagonal Gaussian prior p(z) (or p(z|condition)), each ``(batch, d)``.

    :raises TypeError: if the prior is not a diagonal Gaussian (a mixture, a VampPrior, a flow),
        or the model has no single latent site ``"z"`` with a ``prior``: no closed-form KL.
    """
    import pyro.distributions as dist

    if not callable(getattr(model, "prior", None)):
        raise TypeError(f"{type(model).__name__} has no single Gaussian prior: its KL has no closed form")
    prior = model.prior(len(x), x, *condition)  # the model's arguments are (x, *condition)
    prior = prior.base_dist if isinstance(prior, dist.Independent) else prior
    if not isinstance(prior, dist.Normal):
        raise TypeError(f"the prior {type(prior).__name__} is not Gaussian: its KL has no closed form")
    return prior.loc, prior.scale


def closed_form_kl(model: nn.Module, loc: torch.Tensor, scale_tril: torch.Tensor, x: torch.Tensor,
                   *condition: torch.Tensor) -> torch.Tensor:
    """KL(N(loc, L L^T) || p(z)) per datapoint and latent dimension ``(batch, d)`` for the model's
    Gaussian prior (for a full-rank guide, the total sits in the last column, the rest are 0).

    :raises TypeError: where no closed form exists (:func:`gaussian_prior`), or for a full-rank
        guide against a learned prior.
    """
    prior_loc, prior_scale = gaussian_prior(model, x, *condition)
    scale = scale_tril.diagonal(dim1=-2, dim2=-1)
    diagonal = torch.equal(scale_tril, torch.diag_embed(scale))
    standard = bool((prior_loc == 0).all() and (prior_scale == 1).all())
    if diagonal:
        if standard:
            return kl_diagonal_standard_per_dim(loc, scale)
        return kl_diagonal_diagonal_per_dim(loc, scale, prior_loc, prior_scale)
    if not standard:
        raise TypeError("a learned prior is supported for diagonal guides only")
    total = kl_full_rank_standard(loc, scale_tril)
    return torch.cat([torch.zeros_like(loc[..., :-1]), total.unsqueeze(-1)], dim=-1)


def closed_form_elbo(
    model: nn.Module, guide: nn.Module, x: torch.Tensor, *condition: torch.Tensor, num_samples: int = 1000,
    noise: Callable[[int, torch.Tensor], torch.Tensor] | None = None, chunk_size: int | None = None,
) -> ELBOEstimate:
    """The ELBO per datapoint with the KL in closed form.

    The prior is the model's: N(0, I), or a learned conditional diagonal Gaussian
    p(z|condition), for which the Gaussian-vs-Gaussian KL is used. The expected
    log-likelihood is exact when the model is linear-Gaussian (its
    ``linear_gaussian_params()`` is not None), and otherwise a Monte Carlo mean over ``num_samples``
    reparameterized draws of z, with its standard error.

    :param model: a model of the library: ``prior(batch_size, *args)`` and
        ``log_likelihood(z, *args)`` for its arguments ``args = (x, *condition)``.
    :param guide: a Gaussian guide (diagonal or full-rank).
    :param x: ``(batch, *event_shape)``.
    :param condition: the condition of conditional models, passed to model and guide.
    :param num_samples: draws of z for the Monte Carlo expected log-likelihood.
    :param noise: ``noise(n, loc)``: ``n`` standard-normal draws ``(n, *loc.shape)`` (default ``torch.randn``).
    :param chunk_size: draws per pass (default all): memory grows with ``chunk_size * batch``.
    :returns: :class:`ELBOEstimate` of tensors ``(batch,)``.

    A model whose guide sums a discrete site out (the semi-supervised model's label) names its
    values with :meth:`~ppl_vae.models.base.Model.enumerated_values`; the ELBO is then
    ``sum_y q(y|x) [log p(y) - log q(y|x) + ELBO(x | y)]``, each ``ELBO(x | y)`` in closed form as above.
    """
    values = getattr(model, "enumerated_values", lambda *args: None)(guide, x, *condition)
    if values is not None:
        parts = [(log_p, log_q, closed_form_elbo(model, guide, *arguments, num_samples=num_samples, noise=noise,
                                                 chunk_size=chunk_size)) for log_p, log_q, arguments in values]
        q = [log_q.exp() for _, log_q, _ in parts]
        return ELBOEstimate(
            sum(w * (log_p - log_q + part.elbo) for w, (log_p, log_q, part) in zip(q, parts)),
            sum((w * part.std_error) ** 2 for w, (_, _, part) in zip(q, parts)).sqrt(),
            sum(w * (log_q - log_p + part.kl) for w, (log_p, log_q, part) in zip(q, parts)),
            sum(w * part.expected_log_likelihood for w, (_, _, part) in zip(q, parts)),
        )
    loc, scale_tril = guide_gaussian(guide, x, *condition)
    kl = closed_form_kl(model, loc, scale_tril, x, *condition).sum(-1)
    linear_gaussian = getattr(model, "linear_gaussian_params", lambda: None)()
    if linear_gaussian is not None:
        weight, bias, sigma = linear_gaussian
        ell = expected_log_linear_gaussian(x.reshape(len(x), -1), weight, bias, sigma, loc, scale_tril)
        std_error = torch.zeros_like(ell)
    else:
        noise = noise or (lambda n, like: torch.randn((n,) + like.shape, dtype=like.dtype, device=like.device))
        total, total_sq = 0.0, 0.0
        for start in range(0, num_samples, chunk_size or num_samples):
            eps = noise(min(chunk_size or num_samples, num_samples - start), loc)
            z = loc + (scale_tril @ eps.unsqueeze(-1)).squeeze(-1)
            log_lik = model.log_likelihood(z, x, *condition).double()  # (draws, batch)
            total, total_sq = total + log_lik.sum(0), total_sq + log_lik.square().sum(0)
        mean = total / num_samples
        variance = (total_sq / num_samples - mean.square()).clamp_min(0) * num_samples / max(num_samples - 1, 1)
        ell, std_error = mean.to(loc.dtype), (variance / num_samples).sqrt().to(loc.dtype)
    return ELBOEstimate(ell - kl, std_error, kl, ell)
