"""A learned mixture of diagonal Gaussians as the prior."""

import math

import pyro.distributions as dist
import torch
from torch import nn

from ppl_vae.priors.base import Prior


class MixturePrior(Prior):
    """p(z) = sum_k pi_k N(z; mu_k, diag sigma_k^2), every part learned.

    .. math::

        \\log p(z) = \\operatorname{logsumexp}_k \\left( \\log \\pi_k + \\log \\mathcal{N}(z; \\mu_k, \\sigma_k^2) \\right)

    Built on Pyro's :class:`~pyro.distributions.MixtureSameFamily`. The KL to a guide has
    no closed form: ``TraceMeanField_ELBO`` falls back to its Monte Carlo estimate, and
    ``ppl-vae check`` compares with a Monte Carlo reference. (A mixture-of-Gaussians prior
    as in Dilokthanakul et al. 2016, arXiv:1611.02648; Tomczak & Welling 2017,
    arXiv:1705.07120, use it as a baseline of the VampPrior.)

    :param z_dim: the latent dimension.
    :param num_components: K, the number of Gaussians.
    """

    def __init__(self, z_dim: int, num_components: int = 10) -> None:
        super().__init__(z_dim)
        if num_components < 1:
            raise ValueError(f"num_components must be at least 1, got {num_components}")
        self.num_components = num_components
        self.logits = nn.Parameter(torch.zeros(num_components))
        self.loc = nn.Parameter(torch.randn(num_components, z_dim) / math.sqrt(z_dim))  # spread, so they differ
        self.log_scale = nn.Parameter(torch.zeros(num_components, z_dim))

    def distribution(self, like: torch.Tensor) -> dist.TorchDistribution:
        components = dist.Normal(self.loc.to(like.dtype), self.log_scale.to(like.dtype).exp()).to_event(1)
        return dist.MixtureSameFamily(dist.Categorical(logits=self.logits.to(like.dtype)), components)
