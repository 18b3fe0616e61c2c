"""The standard normal prior N(0, I) of the original VAE."""

import pyro.distributions as dist
import torch

from ppl_vae.distributions.standard_normal import StandardNormal
from ppl_vae.priors.base import Prior


class StandardNormalPrior(Prior):
    """p(z) = N(0, I) (Kingma & Welling 2013, arXiv:1312.6114); no parameters.

    Its KL to a Gaussian guide has a closed form, which ``TraceMeanField_ELBO`` and the
    closed-form check (:mod:`ppl_vae.infer.closed_form`) use.

    :param z_dim: the latent dimension.
    """

    def distribution(self, like: torch.Tensor) -> dist.TorchDistribution:
        loc = like.new_zeros(self.z_dim)
        return StandardNormal(loc, torch.ones_like(loc)).to_event(1)

    def forward(self, batch_size: int, like: torch.Tensor) -> dist.TorchDistribution:
        loc = like.new_zeros(batch_size, self.z_dim)  # built at its batch shape: no expand on the hot path
        return StandardNormal(loc, torch.ones_like(loc)).to_event(1)
