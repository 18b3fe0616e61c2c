"""Quadrant completion: the structured-output CVAE of Sohn et al. (2015) and Pyro's ``examples/cvae``.

:class:`QuadrantCVAE` predicts the hidden quadrants of an MNIST digit from the visible
ones: a deterministic baseline network, a prior network p(z | x_visible, baseline
prediction), a generation network p(y | z) (or p(y | x_visible, z)) with a Bernoulli
likelihood on the hidden pixels only; the guide is the recognition network
q(z | x_visible, y), whose encoder (:class:`MergedQuadrantEncoder`) sees the digit with the
hidden pixels filled in, the same layout as the prior network's input. The baseline is
trained first (:meth:`QuadrantCVAE.pretraining_stages`).
"""

from collections.abc import Iterator
from typing import Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torchvision.utils import make_grid

from ppl_vae.guides import make_guide
from ppl_vae.models.base import Model, Stage, empty_guide
from ppl_vae.models.conditional import GaussianNet
from ppl_vae.nn.likelihoods import make_likelihood
from ppl_vae.nn.networks import MLPEncoder, mlp
from ppl_vae.nn.registration import register

VISIBLE_QUADRANTS = (1, 2, 3)
QUADRANT_LAYOUTS = ("pyro", "visible")  # generation net on z only / on (z, x_visible)


def quadrant_mask(visible_quadrants: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The visible pixels of a 28x28 digit, as in Pyro's ``examples/cvae``.

    1: the bottom-left quadrant; 2: the left half; 3: all but the bottom-right quadrant.

    :returns: a boolean mask ``(1, 28, 28)``, True where visible.
    """
    if visible_quadrants not in VISIBLE_QUADRANTS:
        raise ValueError(f"visible quadrants must be one of 1, 2, 3, got {visible_quadrants}")
    mask = torch.zeros(28, 28, dtype=torch.bool, device=device)
    mask[14:, :14] = True
    if visible_quadrants >= 2:
        mask[:, :14] = True
    if visible_quadrants == 3:
        mask[:14, :] = True
    return mask.unsqueeze(0)


class QuadrantTask(nn.Module):
    """Splits images into the visible input (hidden pixels set to -1) and the hidden pixels.

    :param visible_quadrants: 1, 2 or 3.
    """

    def __init__(self, visible_quadrants: int) -> None:
        super().__init__()
        self.visible_quadrants = visible_quadrants
        self.register_buffer("visible", quadrant_mask(visible_quadrants))

    @property
    def num_hidden(self) -> int:
        return int((~self.visible).sum())

    def split(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:param images: ``(batch, 1, 28, 28)``. :returns: ``(x_visible (batch, 1, 28, 28), y (batch, num_hidden))``."""
        return images.masked_fill(~self.visible, -1.0), images[..., ~self.visible]

    def merge(self, x_visible: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Put predicted hidden pixels ``y`` back into the visible input: full images."""
        images = x_visible.clone()
        images[..., ~self.visible] = y
        return images


class MergedQuadrantEncoder(nn.Module):
    """The recognition network's body: an MLP on the whole digit, the visible pixels with the
    hidden ones ``y`` filled in, as in Pyro's example; the prior network sees the same layout
    with the baseline's guess filled in.

    :param task: the quadrant split.
    :param hidden_dims: hidden widths; the last is ``out_dim``.
    :param activation: activation name.
    """

    def __init__(self, task: "QuadrantTask", hidden_dims: Sequence[int] = (500, 500), activation: str = "relu") -> None:
        super().__init__()
        self.task = task
        self.body = MLPEncoder((1, 28, 28), hidden_dims, activation)
        self.out_dim = self.body.out_dim

    def forward(self, x_visible: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """:param x_visible: ``(batch, 1, 28, 28)``. :param y: ``(batch, num_hidden)``. :returns: ``(batch, out_dim)``."""
        return self.body(self.task.merge(x_visible, y))


class QuadrantBaseline(Model):
    """The deterministic baseline p(y | x_visible) as a Pyro model with no latent variable.

    Trained with Trace_ELBO and an empty guide, its loss is exactly -log p(y | x_visible).

    :param visible_quadrants: 1, 2 or 3.
    :param hidden_dims: hidden widths (Pyro's example: 500, 500).
    :param likelihood: ``"bce-grayscale"`` (grayscale targets, Pyro's setting) or ``"bernoulli"``.
    """

    def __init__(self, visible_quadrants: int, hidden_dims: Sequence[int] = (500, 500),
                 likelihood: str = "bce-grayscale") -> None:
        super().__init__()
        self.task = QuadrantTask(visible_quadrants)
        self.net = mlp((784, *hidden_dims, self.task.num_hidden), "relu")
        self.likelihood = make_likelihood(likelihood, (self.task.num_hidden,))

    def arguments(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_visible, y)`` from a batch of images."""
        return self.task.split(images)

    @property
    def observed_dims(self) -> int:
        """Only the hidden pixels are observed."""
        return self.task.num_hidden

    def logits(self, x_visible: torch.Tensor) -> torch.Tensor:
        return self.net(x_visible.reshape(x_visible.shape[:-3] + (784,)))

    def forward(self, x_visible: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        register("baseline", self)
        logits = self.logits(x_visible)
        with pyro.plate("data", x_visible.shape[0]):
            pyro.sample("y", self.likelihood(logits), obs=y)
        return logits


@torch.no_grad()
def baseline_nll(baseline: QuadrantBaseline, x_visible: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The baseline's -log p(y | x_visible) per datapoint (exact: it has no latent variable)."""
    return -baseline.likelihood(baseline.logits(x_visible)).log_prob(y)


class QuadrantCVAE(Model):
    """The structured-output CVAE p(z | x_visible) p(y | x_visible, z) for quadrant completion.

    :param baseline: a trained :class:`QuadrantBaseline` (frozen here): its prediction
        fills the hidden pixels of the prior network's input, as in Sohn et al. (2015).
    :param z_dim: the latent dimension.
    :param hidden_dims: hidden widths of the prior and generation networks.
    :param decoder_sees_visible: the generation network takes ``(z, x_visible)`` rather than
        ``z`` alone (z alone is Pyro's example and the default, together with
        :class:`MergedQuadrantEncoder` as the guide's body; the README compares the two).
    """

    def __init__(self, baseline: QuadrantBaseline, z_dim: int = 200, hidden_dims: Sequence[int] = (500, 500),
                 decoder_sees_visible: bool = False) -> None:
        super().__init__()
        self.baseline = baseline.requires_grad_(False).eval()  # eval: frozen, and no warning from pyro.module
        self.task = baseline.task
        self.z_dim = z_dim
        self.decoder_sees_visible = decoder_sees_visible
        self.prior_net = GaussianNet(784, z_dim, hidden_dims)
        in_dim = z_dim + 784 if decoder_sees_visible else z_dim
        self.generation_net = mlp((in_dim, *hidden_dims, self.task.num_hidden), "relu")
        self.likelihood = baseline.likelihood

    def arguments(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_visible, y)`` from a batch of images."""
        return self.task.split(images)

    def prior(self, batch_size: int, x_visible: torch.Tensor, *condition) -> dist.TorchDistribution:
        """p(z | x_visible): the prior network on the input completed by the baseline."""
        with torch.no_grad():
            guess = torch.sigmoid(self.baseline.logits(x_visible))
        completed = self.task.merge(x_visible, guess).reshape(x_visible.shape[:-3] + (784,))
        loc, scale = self.prior_net(completed)
        return dist.Normal(loc, scale).to_event(1)

    def observation(self, z: torch.Tensor, x_visible: torch.Tensor, *condition) -> dist.TorchDistribution:
        """p(y | z) (or p(y | x_visible, z)) over the hidden pixels."""
        if not self.decoder_sees_visible:
            return self.likelihood(self.generation_net(z))
        flat = x_visible.reshape(x_visible.shape[:-3] + (784,))
        h = torch.cat([z, flat.expand(z.shape[:-1] + (784,))], dim=-1)
        return self.likelihood(self.generation_net(h))

    def log_likelihood(self, z: torch.Tensor, x_visible: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log p(y | x_visible, z) for the model's arguments."""
        return self.observation(z, x_visible).log_prob(y)

    def forward(self, x_visible: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The Pyro model; ``y`` (the hidden pixels) is observed at site ``"y"`` when given."""
        register("model", self)
        with pyro.plate("data", x_visible.shape[0]):
            z = pyro.sample("z", self.prior(x_visible.shape[0], x_visible))
            return pyro.sample("y", self.observation(z, x_visible), obs=y)

    @torch.no_grad()
    def predict(self, x_visible: torch.Tensor, num_samples: int = 1) -> torch.Tensor:
        """Completions: z from the prior network, the mean of p(y | x_visible, z), merged in.

        :returns: ``(num_samples, batch, 1, 28, 28)``.
        """
        z = self.prior(len(x_visible), x_visible).sample((num_samples,))
        y = self.observation(z, x_visible).mean
        return self.task.merge(x_visible.expand((num_samples,) + x_visible.shape), y)

    @property
    def observed_dims(self) -> int:
        """Only the hidden pixels are observed."""
        return self.task.num_hidden

    def pretraining_stages(self) -> Iterator[Stage]:
        """The baseline first: the prior network's input is completed by its prediction."""
        self.baseline.requires_grad_(True).train()
        yield Stage("baseline", self.baseline, empty_guide)
        self.baseline.requires_grad_(False).eval()

    @torch.no_grad()
    def figures(self, guide, images: torch.Tensor, labels: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """``completions.png`` for the first 12 digits of the batch (:meth:`completion_grid`)."""
        return {"completions.png": self.completion_grid(images[:12])}

    @torch.no_grad()
    def completion_grid(self, images: torch.Tensor, num_samples: int = 3) -> torch.Tensor:
        """Rows of inputs (hidden pixels grey), truths, the baseline's prediction and
        ``num_samples`` CVAE completions, one column per digit."""
        x_visible, _ = self.task.split(images)
        baseline = self.task.merge(x_visible, torch.sigmoid(self.baseline.logits(x_visible)))
        rows = [x_visible.clamp(min=0) + 0.5 * (x_visible < 0), images, baseline, *self.predict(x_visible, num_samples)]
        return make_grid(torch.cat(rows).clamp(0, 1), nrow=len(images), padding=2, pad_value=1.0)

    @torch.no_grad()
    def extra_metrics(self, x_visible: torch.Tensor, y: torch.Tensor, guide=None, labels=None) -> dict[str, float]:
        """``baseline_nll``: the baseline's exact -log p(y | x_visible), averaged over datapoints."""
        return {"baseline_nll": baseline_nll(self.baseline, x_visible, y).mean().item()}


def build_quadrant_pair(config) -> tuple[QuadrantCVAE, nn.Module]:
    """The quadrant-completion CVAE (its untrained baseline inside) and its recognition guide."""
    if tuple(config.event_shape) != (1, 28, 28) or config.network != "mlp":
        raise ValueError("quadrant completion needs 28x28x1 images and the mlp network")
    if config.quadrant_layout not in QUADRANT_LAYOUTS:
        raise ValueError(f"unknown quadrant layout {config.quadrant_layout!r}; choose from {', '.join(QUADRANT_LAYOUTS)}")
    baseline = QuadrantBaseline(config.visible_quadrants, config.hidden_dims, config.likelihood)
    pyro_layout = config.quadrant_layout == "pyro"
    model = QuadrantCVAE(baseline, config.z_dim, config.hidden_dims, decoder_sees_visible=not pyro_layout)
    if pyro_layout:
        encoder = MergedQuadrantEncoder(baseline.task, config.hidden_dims, config.activation)
    else:
        encoder = MLPEncoder(config.event_shape, config.hidden_dims, config.activation,
                             condition_dim=baseline.task.num_hidden)
    return model, make_guide(config.guide, encoder, config.z_dim, **config.guide_options)


def check_quadrant_data(data) -> None:
    """Quadrant completion needs 28x28 grayscale digits."""
    if data.event_shape != (1, 28, 28):
        raise ValueError(f"--conditional quadrants needs 28x28 grayscale digits; {data.name!r} has shape "
                         f"{data.event_shape}")
