"""The contract every prior of the library follows.

A prior is an ``nn.Module`` that holds the learnable parameters of p(z), if any, and
builds the distribution of the model's latent site from them. Models sample their
latent site from ``prior(batch_size, like)``; a prior swaps in by name
(:func:`ppl_vae.priors.registry.make_prior`) with no change to the model.
"""

import pyro.distributions as dist
import torch
from torch import nn


class Prior(nn.Module):
    """Base class: p(z) over ``z_dim`` coordinates, as a Pyro distribution.

    Subclasses implement :meth:`distribution`; ``forward`` expands it to the batch.

    :param z_dim: the latent dimension.
    """

    def __init__(self, z_dim: int) -> None:
        super().__init__()
        if z_dim < 1:
            raise ValueError(f"z_dim must be at least 1, got {z_dim}")
        self.z_dim = z_dim

    def distribution(self, like: torch.Tensor) -> dist.TorchDistribution:
        """p(z) with batch shape ``()`` and event shape ``(z_dim,)``, on ``like``'s device and dtype."""
        raise NotImplementedError

    def forward(self, batch_size: int, like: torch.Tensor) -> dist.TorchDistribution:
        """p(z) for a batch: batch shape ``(batch_size,)``, event shape ``(z_dim,)``.

        :param batch_size: the number of datapoints.
        :param like: a tensor whose device and dtype the distribution follows.
        """
        return self.distribution(like).expand((batch_size,))
