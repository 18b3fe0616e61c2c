"""The VAE's generative model p(z) p(x|z) as a Pyro program.

The model is an ``nn.Module`` whose ``forward(x)`` is the Pyro model, in the style
of Pyro's ``examples/vae/vae.py``: a plate ``"data"`` over the batch, a latent site
``"z"`` with prior N(0, I) and event dimension ``z_dim``, and an observed site
``"x"``. Any guide that samples site ``"z"`` from ``forward(x)`` pairs with it.

A model may take a *condition* (a float tensor ``(batch, condition_dim)``, e.g. one-hot
labels) after ``x``: ``forward(x, condition)`` passes it to the decoder and, for the
conditional models of :mod:`ppl_vae.models.cvae`, to a learned prior. Guides take the same
arguments.
"""

import math
from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from ppl_vae.nn.likelihoods import Likelihood, make_likelihood
from ppl_vae.nn.registration import register

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class StandardNormal(dist.Normal):
    """Pyro's :class:`~pyro.distributions.Normal` with ``loc = 0`` and ``scale = 1``, whose
    ``log_prob`` skips the arithmetic with them: ``-z^2 / 2 - log sqrt(2 pi)``.

    Everything else (sampling, ``expand``, KL divergences, Pyro's handlers) is Normal's;
    the prior's log-density is then 3 tensor operations instead of 8, a few percent of the
    work an ELBO step or an evaluation pass does besides the decoder.

    :param loc: zeros of the batch shape (they fix shape, dtype and device).
    :param scale: ones of the batch shape.
    """

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        log_prob = value.square().mul_(-0.5).sub_(LOG_SQRT_2PI)
        if value.shape == self.batch_shape:  # the usual case; broadcast_shapes costs 0.1 ms
            return log_prob
        return log_prob.expand(torch.broadcast_shapes(value.shape, self.batch_shape))


class VAE(nn.Module):
    """The VAE model ``p(z) p(x|z)`` (Kingma & Welling 2013, arXiv:1312.6114).

    :param decoder: a network from ``z`` of shape ``(batch, z_dim)`` to the raw likelihood
        parameters of shape ``(batch, *event_shape)``.
    :param z_dim: the latent dimension.
    :param event_shape: the shape of one datapoint, e.g. ``(1, 28, 28)``.
    :param likelihood: a name from :data:`ppl_vae.nn.likelihoods.LIKELIHOODS` or a
        :class:`~ppl_vae.nn.likelihoods.Likelihood`.
    :param condition_dim: width of the condition the decoder takes (0: unconditional).

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
    ) -> None:
        super().__init__()
        if z_dim < 1:
            raise ValueError(f"z_dim must be at least 1, got {z_dim}")
        self.decoder = decoder
        self.z_dim = z_dim
        self.event_shape = tuple(event_shape)
        self.condition_dim = condition_dim
        self.likelihood = make_likelihood(likelihood, event_shape) if isinstance(likelihood, str) else likelihood

    def arguments(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """The model's (and guide's) arguments for a batch of a dataset: ``(x,)`` here."""
        return (images,)

    def check_condition(self, condition: tuple) -> None:
        """Raise ValueError if a condition is missing, superfluous or of the wrong width."""
        if self.condition_dim and not condition:
            raise ValueError(f"this model needs a condition of width {self.condition_dim} after x")
        if not self.condition_dim and condition:
            raise ValueError("this model is unconditional but was given a condition")
        if condition and condition[0].shape[-1] != self.condition_dim:
            raise ValueError(f"the condition has width {condition[0].shape[-1]}, the model expects {self.condition_dim}")

    def prior(self, batch_size: int, like: torch.Tensor, *condition: torch.Tensor) -> dist.TorchDistribution:
        """The prior N(0, I) over ``(batch_size, z_dim)``, on ``like``'s device and dtype."""
        loc = like.new_zeros(batch_size, self.z_dim)
        return StandardNormal(loc, torch.ones_like(loc)).to_event(1)

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
