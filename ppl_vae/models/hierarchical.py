"""A VAE with several stochastic layers (Burda et al. 2015, arXiv:1509.00519, section 5).

The generative model is ``p(z_L) p(z_{L-1} | z_L) ... p(z_1 | z_2) p(x | z_1)`` and the guide
``q(z_1 | x) q(z_2 | z_1) ... q(z_L | z_{L-1})``, each a Pyro program with one latent site
per layer, ``"z1"`` (next to the data) up to ``"zL"`` (the top), inside plate ``"data"``.
Each layer of the guide is a registry guide (:data:`ppl_vae.guides.registry.GUIDES`) on its own
encoder, so an IAF guide can sit on every layer; the top layer's prior comes from the prior
registry (:data:`ppl_vae.priors.registry.PRIORS`).

Burda et al.'s two-layer architecture for MNIST, as their paper describes it, is the default of
``--model hierarchical``: x -> two tanh layers of 100 -> z1 (100) -> two tanh layers of 50 -> z2 (50),
and the generative networks mirror it. Their released code (github.com/yburda/iwae) uses layers of
200 and 100 instead: ``--layer-widths 200 100``.
"""

import math
from collections.abc import Callable, Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torchvision.utils import make_grid

from ppl_vae.guides import make_guide
from ppl_vae.guides.base import AmortizedGuide
from ppl_vae.guides.registry import FLOW_GUIDES
from ppl_vae.models.base import Model
from ppl_vae.models.conditional import GaussianNet
from ppl_vae.models.vae import reconstruction_grid
from ppl_vae.nn.likelihoods import make_likelihood
from ppl_vae.nn.networks import MLPEncoder, make_networks
from ppl_vae.nn.registration import register, registration_skipped
from ppl_vae.priors import Prior, make_prior


def site_names(num_layers: int) -> list[str]:
    """``["z1", ..., "zL"]``, from the data up."""
    return [f"z{i}" for i in range(1, num_layers + 1)]


class HierarchicalGuide(nn.Module):
    """q(z_1 | x) q(z_2 | z_1) ... q(z_L | z_{L-1}): one amortized guide per layer.

    :param layers: the guides from the data up; layer ``i``'s encoder takes ``z_{i-1}``
        (``x`` for the first), and its :meth:`~ppl_vae.guides.base.AmortizedGuide.distribution`
        is q of site ``"z<i>"``.
    """

    def __init__(self, layers: Sequence[AmortizedGuide]) -> None:
        super().__init__()
        if not layers:
            raise ValueError("a hierarchical guide needs at least one layer")
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The Pyro guide. :returns: ``z1`` ``(batch, z1_dim)``, the layer the decoder reads."""
        register("guide", self)
        h, first = x, None
        with pyro.plate("data", x.shape[0]):
            for name, layer in zip(site_names(len(self.layers)), self.layers):
                h = pyro.sample(name, layer.distribution(h))
                first = h if first is None else first
        return first


class HierarchicalVAE(Model):
    """p(z_L) prod_i p(z_i | z_{i+1}) p(x | z_1), with Gaussian conditionals between the layers.

    :param decoder: a network from ``z1`` ``(batch, z_dims[0])`` to the likelihood's parameters.
    :param conditionals: ``conditionals[i]`` maps ``z_{i+2}`` to ``(loc, scale)`` of p(z_{i+1} | z_{i+2});
        one fewer than the layers.
    :param prior: p(z_L) over the top layer.
    :param event_shape: the shape of one datapoint.
    :param likelihood: the likelihood's name.

    Example::

        model, guide = build_pair(ModelConfig(model="hierarchical"))
        svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
    """

    def __init__(self, decoder: nn.Module, conditionals: Sequence[nn.Module], prior: Prior,
                 event_shape: Sequence[int], likelihood: str = "bernoulli") -> None:
        super().__init__()
        self.decoder = decoder
        self.conditionals = nn.ModuleList(conditionals)
        self.z_prior = prior
        self.event_shape = tuple(event_shape)
        self.likelihood = make_likelihood(likelihood, event_shape)
        self.sites = site_names(len(conditionals) + 1)

    @property
    def observed_dims(self) -> int:
        return math.prod(self.event_shape)

    def layers(self, z_top: torch.Tensor, sample: Callable) -> torch.Tensor:
        """Walk down from the top layer: ``sample(name, p(z_i | z_{i+1}))`` for each lower layer.

        :returns: ``z1``.
        """
        z = z_top
        for name, conditional in zip(reversed(self.sites[:-1]), reversed(self.conditionals)):
            loc, scale = conditional(z)
            z = sample(name, dist.Normal(loc, scale).to_event(1))
        return z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The Pyro model. :param x: ``(batch, *event_shape)``, observed at ``"x"``. :returns: the decoder output."""
        register("model", self)
        with pyro.plate("data", x.shape[0]):
            z_top = pyro.sample(self.sites[-1], self.z_prior(x.shape[0], x))
            out = self.decoder(self.layers(z_top, pyro.sample))
            pyro.sample("x", self.likelihood(out), obs=x)
        return out

    @torch.no_grad()
    def generate(self, num_samples: int, like: torch.Tensor) -> torch.Tensor:
        """Mean images ``E[x | z1]`` for ancestral draws from the model: ``(num_samples, *event_shape)``."""
        z1 = self.layers(self.z_prior(num_samples, like).sample(), lambda name, fn: fn.sample())
        return self.likelihood(self.decoder(z1)).mean

    @torch.no_grad()
    def figures(self, guide: Callable, images: torch.Tensor, labels: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """``samples.png`` (64 draws) and ``reconstructions.png`` (through z1 ~ q(z1|x))."""
        with registration_skipped():
            z1 = guide(images)
        recon = self.likelihood(self.decoder(z1)).mean
        return {"samples.png": make_grid(self.generate(64, images).clamp(0, 1), nrow=8),
                "reconstructions.png": reconstruction_grid(images, recon)}


def build_hierarchical_pair(config) -> tuple[HierarchicalVAE, HierarchicalGuide]:
    """The hierarchical VAE of a :class:`~ppl_vae.models.config.ModelConfig` and its guide.

    Layer ``i`` has latent size ``config.z_dims[i]`` and two deterministic layers of width
    ``config.layer_widths[i]`` below it (as Burda et al.), in the guide and, mirrored, in the
    model; ``config.layer_guides[i]`` (default ``config.guide``) is its guide, and the flow
    options of ``config.guide_options`` go to the layers with flow guides.
    """
    z_dims, widths = config.z_dims, config.layer_widths
    if len(widths) != len(z_dims):
        raise ValueError(f"--layer-widths gives {len(widths)} widths for {len(z_dims)} stochastic layers (--z-dims)")
    names = config.layer_guides or (config.guide,) * len(z_dims)
    if len(names) != len(z_dims):
        raise ValueError(f"--layer-guides names {len(names)} guides for {len(z_dims)} stochastic layers (--z-dims)")

    def layer_guide(name: str, encoder: nn.Module, size: int) -> AmortizedGuide:  # the flow options go to flow layers
        options = {k: v for k, v in config.guide_options.items() if name == "iaf" or (name == "planar" and k != "stable")}
        return make_guide(name, encoder, size, **(options if name in FLOW_GUIDES else {}))

    depth = 2
    encoder, decoder = make_networks(config.network, config.event_shape, z_dims[0], (widths[0],) * depth,
                                     config.activation)
    guides = [layer_guide(names[0], encoder, z_dims[0])]
    conditionals = []
    for below, size, width, name in zip(z_dims, z_dims[1:], widths[1:], names[1:]):
        guides.append(layer_guide(name, MLPEncoder((below,), (width,) * depth, config.activation), size))
        conditionals.append(GaussianNet(size, below, (width,) * depth, config.activation))
    prior = make_prior(config.prior, z_dims[-1], guides[-1], **config.prior_options)
    model = HierarchicalVAE(decoder, conditionals, prior, config.event_shape, config.likelihood)
    return model, HierarchicalGuide(guides)
