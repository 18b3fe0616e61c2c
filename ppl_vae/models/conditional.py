"""The label-conditional VAE p(z | y) p(x | z, y) (Sohn et al. 2015, NeurIPS, "Learning
Structured Output Representation using Deep Conditional Generative Models").

``forward(x, y_onehot)`` is the Pyro model; any registry guide takes the same arguments
(the one-hot label goes into its encoder). The prior is N(0, I) or, learned, N(loc(y), scale(y)).
"""

from typing import Sequence

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.utils import make_grid

from ppl_vae.guides import make_guide
from ppl_vae.models.vae import VAE
from ppl_vae.nn.networks import make_networks, mlp
from ppl_vae.priors import Prior, make_prior


def one_hot(labels: torch.Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One-hot rows ``(batch, num_classes)`` for integer labels.

    :raises ValueError: for labels outside ``[0, num_classes)``.
    """
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)][0].item()
        raise ValueError(f"label {bad} is outside [0, {num_classes})")
    return F.one_hot(labels.long(), num_classes).to(dtype)


class GaussianNet(nn.Module):
    """An MLP from an input vector to ``(loc, scale)`` of a diagonal Gaussian over ``z_dim``."""

    def __init__(self, in_dim: int, z_dim: int, hidden_dims: Sequence[int] = (), activation: str = "relu") -> None:
        super().__init__()
        self.net = mlp((in_dim, *hidden_dims, 2 * z_dim), activation)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, log_scale = self.net(h).chunk(2, dim=-1)
        return loc, log_scale.exp()


class LabelConditionalVAE(VAE):
    """p(z | y) p(x | z, y) for class labels y, given as one-hot rows.

    :param decoder: a network ``decoder(z, y_onehot)`` (built with ``condition_dim=num_classes``).
    :param z_dim: the latent dimension.
    :param event_shape: the shape of one datapoint.
    :param num_classes: the number of classes.
    :param likelihood: the likelihood's name.
    :param learned_prior: learn p(z | y) = N(loc(y), scale(y)) instead of the prior p(z).
    :param prior: p(z) when the prior is not learned per class (default N(0, I)).
    """

    def __init__(self, decoder: nn.Module, z_dim: int, event_shape: Sequence[int], num_classes: int,
                 likelihood: str = "bernoulli", learned_prior: bool = False, prior: Prior | None = None) -> None:
        super().__init__(decoder, z_dim, event_shape, likelihood, condition_dim=num_classes, prior=prior)
        if learned_prior and prior is not None:
            raise ValueError("a learned p(z|y) replaces the prior p(z): give one of them")
        self.num_classes = num_classes
        self.prior_net = GaussianNet(num_classes, z_dim) if learned_prior else None

    def arguments(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """``(x, one_hot(labels))``; labels are required."""
        if labels is None:
            raise ValueError("label conditioning needs a dataset with labels")
        return images, one_hot(labels, self.num_classes, images.dtype)

    def prior(self, batch_size: int, like: torch.Tensor, *condition: torch.Tensor) -> dist.TorchDistribution:
        if self.prior_net is None:
            return super().prior(batch_size, like)
        loc, scale = self.prior_net(condition[0])
        return dist.Normal(loc, scale).to_event(1)

    @torch.no_grad()
    def sample_grid(self, like: torch.Tensor) -> torch.Tensor:
        """Eight draws from p(x | y) per class, one row per class."""
        classes = torch.arange(self.num_classes, device=like.device).repeat_interleave(8)
        samples = self.generate(len(classes), like, one_hot(classes, self.num_classes, like.dtype))
        return make_grid(samples.clamp(0, 1), nrow=8)


def build_label_pair(config) -> tuple[LabelConditionalVAE, nn.Module]:
    """The label-conditional model of a :class:`~ppl_vae.models.config.ModelConfig` and its guide,
    whose encoder takes the one-hot label too."""
    if config.num_classes < 2:
        raise ValueError(f"label conditioning needs at least 2 classes, got {config.num_classes}")
    encoder, decoder = make_networks(config.network, config.event_shape, config.z_dim, config.hidden_dims,
                                     config.activation, condition_dim=config.num_classes)
    guide = make_guide(config.guide, encoder, config.z_dim, **config.guide_options)
    if config.learned_prior and config.prior != "standard":
        raise ValueError(f"--learned-prior learns p(z|y) per class; it does not combine with --prior {config.prior}")
    prior = None if config.prior == "standard" else make_prior(config.prior, config.z_dim, guide, **config.prior_options)
    model = LabelConditionalVAE(decoder, config.z_dim, config.event_shape, config.num_classes, config.likelihood,
                                config.learned_prior, prior)
    return model, guide


def check_label_data(data) -> None:
    """The label model needs a dataset with labels."""
    if data.num_classes == 0:
        raise ValueError(f"--conditional label needs a dataset with labels; {data.name!r} has none "
                         "(choose from mnist-sample, mnist, fashion-mnist, cifar10 and their binarized forms)")
