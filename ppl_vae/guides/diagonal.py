"""The mean-field Gaussian guide of the original VAE."""

import pyro.distributions as dist
import torch
from torch import nn

from ppl_vae.guides.base import AmortizedGuide


class DiagonalNormalGuide(AmortizedGuide):
    """q(z|x) = N(loc(x), diag(scale(x)^2)) (Kingma & Welling 2013, arXiv:1312.6114).

    Two linear heads on the encoder's features give ``loc`` and ``log scale``.

    :param encoder: a network from ``x`` to features ``(batch, encoder.out_dim)``.
    :param z_dim: the latent dimension.
    """

    def __init__(self, encoder: nn.Module, z_dim: int) -> None:
        super().__init__(encoder, z_dim)
        self.loc_head = nn.Linear(encoder.out_dim, z_dim)
        self.log_scale_head = nn.Linear(encoder.out_dim, z_dim)

    def loc_scale(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """:returns: ``(loc, scale)``, each ``(batch, z_dim)``."""
        h = self.features(x, condition)
        return self.loc_head(h), self.log_scale_head(h).exp()

    def distribution(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> dist.TorchDistribution:
        loc, scale = self.loc_scale(x, condition)
        return dist.Normal(loc, scale).to_event(1)
