"""The VAE's generative model p(z) p(x|z) as a Pyro program.

The model is an ``nn.Module`` whose ``forward(x)`` is the Pyro model, in the style
of Pyro's ``examples/vae/vae.py``: a plate ``"data"`` over the batch, a latent site
``"z"`` with prior N(0, I) and event dimension ``z_dim``, and an observed site
``"x"``. Any guide that samples site ``"z"`` from ``forward(x)`` pairs with it.

A model may take a *condition* (a float tensor ``(batch, condition_dim)``, e.g. one-hot
labels) after ``x``: ``forward(x, condition)`` passes it to the decoder and, for the
conditional models of :mod:`ppl_vae.models.conditional`, to a learned prior. Guides take the same
arguments.
"""

import math
from collections.abc import Callable, Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torchvision.utils import make_grid

from ppl_vae.guides import make_guide
from ppl_vae.models.base import Model
from ppl_vae.nn.likelihoods import Likelihood, make_likelihood
from ppl_vae.nn.networks import make_networks
from ppl_vae.nn.registration import register, registration_skipped
from ppl_vae.priors import Prior, StandardNormalPrior, make_prior


class VAE(Model):
    """The VAE model ``p(z) p(x|z)`` (Kingma & Welling 2013, arXiv:1312.6114).

    :param decoder: a network from ``z`` of shape ``(batch, z_dim)`` to the raw likelihood
        parameters of shape ``(batch, *event_shape)``.
    :param z_dim: the latent dimension.
    :param event_shape: the shape of one datapoint, e.g. ``(1, 28, 28)``.
    :param likelihood: a name from :data:`ppl_vae.nn.likelihoods.LIKELIHOODS` or a
        :class:`~ppl_vae.nn.likelihoods.Likelihood`.
    :param condition_dim: width of the condition the decoder takes (0: unconditional).
    :param prior: p(z), a :class:`~ppl_vae.priors.base.Prior` (default N(0, I)).

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
        condition_dim: int = 0,
        prior: Prior | None = None,
    ) -> None:
        super().__init__()
        if z_dim < 1:
            raise ValueError(f"z_dim must be at least 1, got {z_dim}")
        self.decoder = decoder
        self.z_dim = z_dim
        self.event_shape = tuple(event_shape)
        self.condition_dim = condition_dim
        self.likelihood = make_likelihood(likelihood, event_shape) if isinstance(likelihood, str) else likelihood
        self.z_prior = StandardNormalPrior(z_dim) if prior is None else prior
        if self.z_prior.z_dim != z_dim:
            raise ValueError(f"the prior is over {self.z_prior.z_dim} dimensions, the model's z_dim is {z_dim}")

    def arguments(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """The model's (and guide's) arguments for a batch of a dataset: ``(x,)`` here."""
        return (images,)

    @property
    def observed_dims(self) -> int:
        """Every pixel of a datapoint is observed."""
        return math.prod(self.event_shape)

    def check_condition(self, condition: tuple) -> None:
        """Raise ValueError if a condition is missing, superfluous or of the wrong width."""
        if self.condition_dim and not condition:
            raise ValueError(f"this model needs a condition of width {self.condition_dim} after x")
        if not self.condition_dim and condition:
            raise ValueError("this model is unconditional but was given a condition")
        if condition and condition[0].shape[-1] != self.condition_dim:
            raise ValueError(f"the condition has width {condition[0].shape[-1]}, the model expects {self.condition_dim}")

    def prior(self, batch_size: int, like: torch.Tensor, *condition: torch.Tensor) -> dist.TorchDistribution:
        """p(z) over ``(batch_size, z_dim)`` (the module ``z_prior``), on ``like``'s device and dtype."""
        return self.z_prior(batch_size, like)

    def observation(self, z: torch.Tensor, *condition: torch.Tensor) -> dist.TorchDistribution:
        """p(x|z) (given the condition, if any): the likelihood of the decoder's output."""
        return self.likelihood(self.decoder(z, *condition) if condition else self.decoder(z))

    def log_likelihood(self, z: torch.Tensor, x: torch.Tensor, *condition: torch.Tensor) -> torch.Tensor:
        """log p(x | z, condition) for the model's arguments; ``z`` may carry extra leading dimensions."""
        return self.observation(z, *condition).log_prob(x)

    def forward(self, x: torch.Tensor, *condition: torch.Tensor) -> torch.Tensor:
        """The Pyro model.

        :param x: a batch of data ``(batch, *event_shape)``, observed at site ``"x"``.
        :param condition: for conditional models, ``(batch, condition_dim)``.
        :returns: the decoder output ``(batch, *event_shape)``.
        """
        register("model", self)
        self.check_condition(condition)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", self.prior(x.shape[0], x, *condition))
            out = self.decoder(z, *condition) if condition else self.decoder(z)
            pyro.sample("x", self.likelihood(out), obs=x)
        return out

    @torch.no_grad()
    def generate(self, num_samples: int, like: torch.Tensor, *condition: torch.Tensor) -> torch.Tensor:
        """Mean images ``E[x|z]`` for ``num_samples`` draws of z from the prior.

        :param like: a tensor whose device and dtype the samples follow.
        :param condition: for conditional models, ``(num_samples, condition_dim)``.
        :returns: ``(num_samples, *event_shape)``.
        """
        z = self.prior(num_samples, like, *condition).sample()
        return self.observation(z, *condition).mean

    @torch.no_grad()
    def reconstruct(self, guide: Callable, x: torch.Tensor, *condition: torch.Tensor) -> torch.Tensor:
        """Mean images ``E[x|z]`` for ``z ~ q(z|x)``: ``(batch, *event_shape)``."""
        with registration_skipped():
            z = guide(x, *condition)
        return self.observation(z, *condition).mean

    @torch.no_grad()
    def figures(self, guide: Callable, images: torch.Tensor, labels: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """``samples.png`` (:meth:`sample_grid`) and ``reconstructions.png`` (the batch above
        its reconstructions)."""
        _, *condition = self.arguments(images, labels)
        recon = self.reconstruct(guide, images, *condition)
        return {"samples.png": self.sample_grid(images), "reconstructions.png": reconstruction_grid(images, recon)}

    @torch.no_grad()
    def sample_grid(self, like: torch.Tensor) -> torch.Tensor:
        """64 mean images from the prior, 8 a row, on ``like``'s device."""
        return make_grid(self.generate(64, like).clamp(0, 1), nrow=8)


def reconstruction_grid(images: torch.Tensor, reconstructions: torch.Tensor) -> torch.Tensor:
    """A batch of images above its reconstructions, 8 a row."""
    return make_grid(torch.cat([images, reconstructions]).clamp(0, 1), nrow=8)


def build_vae_pair(config) -> tuple[VAE, nn.Module]:
    """The VAE of a :class:`~ppl_vae.models.config.ModelConfig` and its guide, with fresh weights.

    The guide is built first and the prior on it (the VampPrior shares the guide's encoder),
    so loading the run's two state dicts restores both.
    """
    encoder, decoder = make_networks(config.network, config.event_shape, config.z_dim, config.hidden_dims,
                                     config.activation)
    guide = make_guide(config.guide, encoder, config.z_dim, **config.guide_options)
    prior = make_prior(config.prior, config.z_dim, guide, **config.prior_options)
    return VAE(decoder, config.z_dim, config.event_shape, config.likelihood, prior=prior), guide
