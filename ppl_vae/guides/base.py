"""The contract every guide of the library follows."""

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from ppl_vae.nn.registration import register


class AmortizedGuide(nn.Module):
    """An amortized guide q(z|x): an encoder body plus a distribution built from its features.

    Subclasses implement :meth:`distribution`. ``forward`` is the Pyro guide: it samples
    site ``"z"`` inside the plate ``"data"``, the names the library's models use, so any
    subclass pairs with any model.

    :param encoder: a network from ``x`` to features ``(batch, encoder.out_dim)``.
    :param z_dim: the latent dimension.
    """

    def __init__(self, encoder: nn.Module, z_dim: int) -> None:
        super().__init__()
        if z_dim < 1:
            raise ValueError(f"z_dim must be at least 1, got {z_dim}")
        self.encoder = encoder
        self.z_dim = z_dim

    def features(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """The encoder's features ``(batch, encoder.out_dim)``; the condition, if any, goes in too."""
        return self.encoder(x) if condition is None else self.encoder(x, condition)

    def distribution(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> dist.TorchDistribution:
        """q(z|x) for a batch: batch shape ``(batch,)``, event shape ``(z_dim,)``."""
        raise NotImplementedError

    def base_distribution(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> dist.TorchDistribution:
        """The Gaussian part of q(z|x): q itself for Gaussian guides, the base before the flow
        steps for flow guides (what the VampPrior mixes, :class:`~ppl_vae.priors.vamp.VampPrior`)."""
        return self.distribution(x, condition)

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        """The Pyro guide. :returns: the sampled ``z``, ``(batch, z_dim)``."""
        register("guide", self)
        with pyro.plate("data", x.shape[0]):
            return pyro.sample("z", self.distribution(x, condition))
