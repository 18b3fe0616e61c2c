"""Likelihoods p(x|z) by name: decoder output -> Pyro distribution over one datapoint.

Each likelihood is an ``nn.Module`` (so learned scales live in the model's
``state_dict``) that turns the decoder's raw output of shape ``(batch, *event_shape)``
into a distribution with ``event_shape`` as its event shape.

========================  =================================================  ==============
name                      distribution                                       data support
========================  =================================================  ==============
``bernoulli``             Bernoulli(logits)                                   {0, 1}
``continuous-bernoulli``  ContinuousBernoulli(logits) (Loaiza-Ganem &         [0, 1]
                          Cunningham 2019, arXiv:1907.06845)
``gaussian``              Normal(loc, scale), one learned global scale        real
``gaussian-pixel``        Normal(loc, scale), a learned scale per pixel       real
``bce-grayscale``         Bernoulli cross-entropy on grayscale targets, the  [0, 1]
                          objective of pytorch/examples' VAE and Pyro's
                          examples/vae. **Not a normalized density** on
                          [0, 1]: its "ELBO" is comparable with those
                          examples, not with likelihoods.
========================  =================================================  ==============
"""

from typing import Sequence

import pyro.distributions as dist
import torch
from torch import nn
from torch.distributions import constraints

from ppl_vae.distributions.bernoulli import LogSigmoidBernoulli


class GrayscaleBernoulli(LogSigmoidBernoulli):
    """Bernoulli cross-entropy evaluated at targets in [0, 1] (the "BCE on grayscale" objective).

    ``log_prob(x) = x log p + (1 - x) log(1 - p)``. For x in {0, 1} it is the Bernoulli
    log-probability; for grayscale x it is not normalized, which is why this is kept
    as an explicitly named option rather than a default.
    """

    support = constraints.unit_interval


class Likelihood(nn.Module):
    """Base class: ``forward(out)`` returns the distribution of one batch of datapoints.

    :param event_shape: the shape of one datapoint.
    """

    name = ""

    def __init__(self, event_shape: Sequence[int]) -> None:
        super().__init__()
        self.event_shape = tuple(event_shape)

    def forward(self, out: torch.Tensor) -> dist.TorchDistribution:
        """:param out: decoder output ``(batch, *event_shape)``. :returns: a distribution with that event shape."""
        return self.base_distribution(out).to_event(len(self.event_shape))

    def base_distribution(self, out: torch.Tensor) -> dist.TorchDistribution:
        raise NotImplementedError

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        """The mean of x given the decoder output, for pictures of reconstructions and samples."""
        return self.base_distribution(out).mean

    def output_for_mean(self, mean: torch.Tensor) -> torch.Tensor:
        """The decoder output whose distribution has mean ``mean`` (the inverse of the link).

        :param mean: ``event_shape``, e.g. the training images' mean.
        :returns: a tensor of the same shape.
        :raises NotImplementedError: for a likelihood whose mean has no closed-form inverse.
        """
        raise NotImplementedError(f"the {self.name!r} likelihood has no closed-form inverse of its mean")

    def support_problem(self, x: torch.Tensor) -> str | None:
        """Describe why ``x`` lies outside this likelihood's support, or return None if it does not."""
        if not torch.isfinite(x).all():
            return "the data contain NaN or infinite values"
        return None


def mean_logits(mean: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """The logits of probabilities ``mean``, clamped to ``[eps, 1 - eps]`` by ``torch.logit``
    (pixels that are always 0 in the data get a finite logit, about -6.9)."""
    return torch.logit(mean, eps)


class BernoulliLikelihood(Likelihood):
    """Bernoulli with logits from the decoder, for binary data."""

    name = "bernoulli"

    def output_for_mean(self, mean: torch.Tensor) -> torch.Tensor:
        return mean_logits(mean)

    def base_distribution(self, out: torch.Tensor) -> dist.TorchDistribution:
        return LogSigmoidBernoulli(logits=out)

    def support_problem(self, x: torch.Tensor) -> str | None:
        problem = super().support_problem(x)
        if problem is None and not ((x == 0) | (x == 1)).all():
            problem = (
                "the 'bernoulli' likelihood needs binary data but the data are not all 0 or 1; "
                "use a binarized dataset or the 'continuous-bernoulli' or 'bce-grayscale' likelihood"
            )
        return problem


class UnitIntervalLikelihood(Likelihood):
    """Shared support check for likelihoods of data in [0, 1]."""

    def support_problem(self, x: torch.Tensor) -> str | None:
        problem = super().support_problem(x)
        if problem is None and not ((x >= 0) & (x <= 1)).all():
            problem = f"the {self.name!r} likelihood needs data in [0, 1]; use 'gaussian' for real-valued data"
        return problem


class ContinuousBernoulliLikelihood(UnitIntervalLikelihood):
    """The continuous Bernoulli, a normalized density on [0, 1] (arXiv:1907.06845)."""

    name = "continuous-bernoulli"

    def base_distribution(self, out: torch.Tensor) -> dist.TorchDistribution:
        return dist.ContinuousBernoulli(logits=out)


class GrayscaleBCELikelihood(UnitIntervalLikelihood):
    """The "BCE on grayscale" objective of pytorch/examples and Pyro's examples/vae."""

    name = "bce-grayscale"

    def output_for_mean(self, mean: torch.Tensor) -> torch.Tensor:
        return mean_logits(mean)

    def base_distribution(self, out: torch.Tensor) -> dist.TorchDistribution:
        return GrayscaleBernoulli(logits=out)


class GaussianLikelihood(Likelihood):
    """Normal(loc(z), scale) with a learned scale, global or one per pixel.

    :param event_shape: the shape of one datapoint.
    :param per_pixel: learn one scale per element of the event instead of a single one.
    :param init_scale: the initial scale.
    """

    name = "gaussian"

    def __init__(self, event_shape: Sequence[int], per_pixel: bool = False, init_scale: float = 1.0) -> None:
        super().__init__(event_shape)
        shape = self.event_shape if per_pixel else ()
        self.log_scale = nn.Parameter(torch.full(shape, float(init_scale)).log())
        if per_pixel:
            self.name = "gaussian-pixel"

    def base_distribution(self, out: torch.Tensor) -> dist.TorchDistribution:
        return dist.Normal(out, self.log_scale.exp().expand(out.shape))

    def output_for_mean(self, mean: torch.Tensor) -> torch.Tensor:
        return mean.clone()


#: The likelihoods p(x|z) by name.
LIKELIHOODS = {
    "bernoulli": BernoulliLikelihood,
    "continuous-bernoulli": ContinuousBernoulliLikelihood,
    "gaussian": GaussianLikelihood,
    "gaussian-pixel": lambda event_shape: GaussianLikelihood(event_shape, per_pixel=True),
    "bce-grayscale": GrayscaleBCELikelihood,
}


def make_likelihood(name: str, event_shape: Sequence[int]) -> Likelihood:
    """Build a likelihood by name.

    :param name: one of :data:`~ppl_vae.nn.likelihoods.LIKELIHOODS`.
    :param event_shape: the shape of one datapoint.
    :raises ValueError: for an unknown name, listing the valid ones.
    """
    if name not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {name!r}; choose from {', '.join(LIKELIHOODS)}")
    return LIKELIHOODS[name](event_shape)
