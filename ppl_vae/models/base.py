"""The model contract: everything shared code may ask of a model.

The training loop, the evaluator, ``check``, the figures and the command line talk to a
model only through the hooks of :class:`Model`, and never name a particular model. A new
model subclasses :class:`Model`, writes ``forward`` (the Pyro program) and overrides the
hooks it needs; the defaults fit a model of one datapoint ``x`` with no stages and no
extra figures or metrics.

Example::

    class MyModel(Model):
        def forward(self, x):                      # the Pyro program
            register("model", self)
            with pyro.plate("data", x.shape[0]):
                z = pyro.sample("z", dist.Normal(x.new_zeros(len(x), 2), 1.0).to_event(1))
                pyro.sample("x", dist.Bernoulli(logits=self.net(z)).to_event(1), obs=x)

        @property
        def observed_dims(self) -> int:
            return 784
"""

from collections.abc import Callable, Iterator
from typing import NamedTuple

import torch
from torch import nn


class Stage(NamedTuple):
    """A fit that runs before the main one, on the same data and training settings.

    :param name: the stage's name; the command line writes its metrics to ``<name>_metrics.csv``.
    :param model: the Pyro model of the stage.
    :param guide: its guide (for a model without latent variables, one that does nothing).
    """

    name: str
    model: nn.Module
    guide: Callable


def empty_guide(*args, **kwargs) -> None:
    """The guide of a model without latent variables."""


class Model(nn.Module):
    """Base class of the library's Pyro models: ``forward(*arguments)`` is the Pyro model.

    The hooks below are the model's whole contract with shared code.
    """

    def arguments(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """The model's (and the guide's) arguments for a batch of a dataset.

        :param images: ``(batch, *event_shape)``.
        :param labels: ``(batch,)`` class labels, or None for a dataset without them.
        :returns: the arguments of ``forward``: ``(x,)`` by default.
        """
        return (images,)

    @torch.no_grad()
    def initialize_from_data(self, images: torch.Tensor) -> None:
        """Start p(x|z) at the data's mean: set the decoder's output bias to the likelihood's
        output for the mean training image (for Bernoulli pixels, their log-odds).

        Without it, the first steps' largest gradient asks every image's output to move
        towards the mean image, and the quickest way there is to shift every latent code
        together. A learned prior (VampPrior, flow) follows such a shift instead of resisting
        it, and with tanh layers the shifted codes saturate the decoder's first layer
        (docs/guide/priors.md has the measurements). The default works for a model with a
        ``decoder`` that has ``set_output_bias`` and a ``likelihood`` that has ``output_for_mean``
        (:mod:`ppl_vae.nn`); other models override it.

        :param images: the training split ``(N, *event_shape)``.
        :raises NotImplementedError: for a model or likelihood with no such bias.
        """
        decoder, likelihood = getattr(self, "decoder", None), getattr(self, "likelihood", None)
        if not hasattr(decoder, "set_output_bias") or likelihood is None:
            raise NotImplementedError(f"the {type(self).__name__} model has no decoder output bias to start at the data's mean")
        decoder.set_output_bias(likelihood.output_for_mean(images.mean(0)))

    @property
    def observed_dims(self) -> int:
        """The number of observed dimensions per datapoint (for bits per dimension)."""
        raise NotImplementedError(f"{type(self).__name__} does not say how many dimensions it observes")

    def pretraining_stages(self) -> Iterator[Stage]:
        """The fits to run, in order, before the main fit of a new run (none by default).

        A generator: the code after each ``yield`` runs once that stage has been trained
        (to freeze what it trained, for example).
        """
        yield from ()

    @torch.no_grad()
    def figures(self, guide: Callable, images: torch.Tensor, labels: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The pictures of a trained pair, as image grids by file name (none by default).

        :param guide: the trained guide.
        :param images: a test batch ``(batch, *event_shape)``; ``labels`` its labels or None.
        :returns: ``{"samples.png": grid, ...}``, each grid ``(channels, height, width)`` in [0, 1]
            (:func:`torchvision.utils.make_grid`).
        """
        return {}

    @torch.no_grad()
    def extra_metrics(self, *arguments: torch.Tensor, guide: Callable | None = None,
                      labels: torch.Tensor | None = None) -> dict[str, float]:
        """Further figures that ``ppl-vae evaluate`` reports for the model's arguments (none by default).

        :param guide: the trained guide.
        :param labels: the split's true labels ``(N,)``, or None, even where the model does not
            see them (the semi-supervised model's test accuracy).
        """
        return {}

    @torch.no_grad()
    def epoch_metrics(self, guide: Callable, data) -> dict[str, float]:
        """Further columns of each epoch's row in ``metrics.csv`` (none by default).

        :param data: the :class:`~ppl_vae.data.datasets.Dataset` being trained on.
        """
        return {}

    def enumerated_values(self, guide: Callable, *arguments: torch.Tensor) -> list[tuple] | None:
        """For a guide that sums a discrete site out: each of its values as ``(log p(value), log
        q(value | arguments), the model's arguments with the value observed)``, the log-densities
        ``(batch,)``; None (the default) for a model without one. The closed-form check
        (:func:`ppl_vae.infer.closed_form.closed_form_elbo`) sums over them."""
        return None

    def linear_gaussian_params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """``(W, b, sigma)`` if p(x|z) = N(W z + b, sigma^2 I), for which the closed-form ELBO is
        exact; None (the default) otherwise."""
        return None


def model_arguments(model: Callable) -> Callable:
    """``model.arguments`` for a :class:`Model`; ``(images,)`` for any other Pyro model."""
    return getattr(model, "arguments", lambda images, labels=None: (images,))
