"""The VAE's generative model p(z) p(x|z) as a Pyro program.

The model is an ``nn.Module`` whose ``forward(x)`` is the Pyro model, in the style
of Pyro's ``examples/vae/vae.py``: a plate ``"data"`` over the batch, a latent site
``"z"`` with prior N(0, I) and event dimension ``z_dim``, and an observed site
``"x"``. Any guide that samples site ``"z"`` from ``forward(x)`` pairs with it.
"""

from typing import Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from ppl_vae.likelihoods import Likelihood, make_likelihood
from ppl_vae.registration import register


class VAE(nn.Module):
    """The VAE model ``p(z) p(x|z)`` (Kingma & Welling 2013, arXiv:1312.6114).

    :param decoder: a network from ``z`` of shape ``(batch, z_dim)`` to the raw likelihood
        parameters of shape ``(batch, *event_shape)``.
    :param z_dim: the latent dimension.
    :param event_shape: the shape of one datapoint, e.g. ``(1, 28, 28)``.
    :param likelihood: a name from :data:`ppl_vae.likelihoods.LIKELIHOODS` or a
        :class:`~ppl_vae.likelihoods.Likelihood`.

    Example::

        encoder, decoder = make_networks("mlp", (1, 28, 28), z_dim=20)
        model = VAE(decoder, z_dim=20, event_shape=(1, 28, 28), likelihood="bernoulli")
        guide = DiagonalNormalGuide(encoder, z_dim=20)
        svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
    """

    def __init__(
        self,
        decoder: nn.Module,
        z_dim: int,
        event_shape: Sequence[int],
        likelihood: str | Likelihood = "bernoulli",
    ) -> None:
        super().__init__()
        if z_dim < 1:
            raise ValueError(f"z_dim must be at least 1, got {z_dim}")
        self.decoder = decoder
        self.z_dim = z_dim
        self.event_shape = tuple(event_shape)
        self.likelihood = make_likelihood(likelihood, event_shape) if isinstance(likelihood, str) else likelihood

    def prior(self, batch_size: int, like: torch.Tensor) -> dist.TorchDistribution:
        """The prior N(0, I) over ``(batch_size, z_dim)``, on ``like``'s device and dtype."""
        loc = like.new_zeros(batch_size, self.z_dim)
        return dist.Normal(loc, torch.ones_like(loc)).to_event(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The Pyro model.

        :param x: a batch of data ``(batch, *event_shape)``, observed at site ``"x"``.
        :returns: the decoder output ``(batch, *event_shape)``.
        """
        register("model", self)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", self.prior(x.shape[0], x))
            out = self.decoder(z)
            pyro.sample("x", self.likelihood(out), obs=x)
        return out

    @torch.no_grad()
    def generate(self, num_samples: int, like: torch.Tensor) -> torch.Tensor:
        """Mean images ``E[x|z]`` for ``num_samples`` draws of z from the prior.

        :param like: a tensor whose device and dtype the samples follow.
        :returns: ``(num_samples, *event_shape)``.
        """
        z = self.prior(num_samples, like).sample()
        return self.likelihood.mean(self.decoder(z))
