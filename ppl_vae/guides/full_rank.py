"""A Gaussian guide with a full covariance matrix."""

import pyro.distributions as dist
import torch
from torch import nn

from ppl_vae.guides.diagonal import DiagonalNormalGuide


class FullRankGuide(DiagonalNormalGuide):
    """q(z|x) = N(loc(x), L(x) L(x)^T) with a lower-triangular ``L`` from the encoder.

    The diagonal guide's heads give ``loc`` and the diagonal of ``L``; one more head gives
    its ``z_dim (z_dim - 1) / 2`` strictly-lower entries, initialized at zero, so training
    starts from the diagonal guide.

    :param encoder: a network from ``x`` to features ``(batch, encoder.out_dim)``.
    :param z_dim: the latent dimension.
    """

    def __init__(self, encoder: nn.Module, z_dim: int) -> None:
        super().__init__(encoder, z_dim)
        self.tril_head = nn.Linear(encoder.out_dim, z_dim * (z_dim - 1) // 2)
        nn.init.zeros_(self.tril_head.weight)
        nn.init.zeros_(self.tril_head.bias)
        self.register_buffer("tril_indices", torch.tril_indices(z_dim, z_dim, offset=-1), persistent=False)

    def loc_scale_tril(
        self, x: torch.Tensor, condition: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:returns: ``(loc, scale_tril)``: ``(batch, z_dim)`` and ``(batch, z_dim, z_dim)``."""
        h = self.features(x, condition)
        rows, cols = self.tril_indices
        lower = h.new_zeros(h.shape[:-1] + (self.z_dim, self.z_dim))
        lower[..., rows, cols] = self.tril_head(h)
        return self.loc_head(h), lower + torch.diag_embed(self.log_scale_head(h).exp())

    def distribution(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> dist.TorchDistribution:
        loc, scale_tril = self.loc_scale_tril(x, condition)
        return dist.MultivariateNormal(loc, scale_tril=scale_tril)
