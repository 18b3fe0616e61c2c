"""The semi-supervised VAE of Kingma et al. (2014, arXiv:1406.5298), "M2", with the label enumerated.

The model is p(y) p(z) p(x | y, z): y ~ Categorical(uniform) over the classes (one-hot), z
from the prior registry, and a decoder of ``(z, y)``. The guide is q(y | x) q(z | x, y): a
classifier and any registry guide whose encoder also takes y. On a labelled batch y is
observed in the model and the guide samples z alone; on an unlabelled batch the guide's y
is marked ``infer={"enumerate": "parallel"}``, so that ``TraceEnum_ELBO`` sums it out
exactly, all classes at once, as in Pyro's ``examples/vae/ss_vae_M2.py``. The model adds
Kingma et al.'s auxiliary classification term on labelled batches,
``aux_loss_multiplier * log q(y|x)`` (site ``"y_aux"``, observed, scaled with
``poutine.scale``; Pyro's example uses 46, the paper ``0.1 N``); it reads the guide's
classifier, which stays the guide's (a reference, not a submodule).

Example::

    model, guide = build_pair(ModelConfig(model="semi-supervised", num_classes=10))
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 3e-4}), TraceEnum_ELBO(max_plate_nesting=1))
    svi.step(x_unlabelled)                   # y summed out
    svi.step(x_labelled, one_hot(y, 10))     # y observed, plus the auxiliary term
"""

import math
from collections.abc import Callable, Sequence

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from torch import nn
from torchvision.utils import make_grid

from ppl_vae.guides import make_guide
from ppl_vae.guides.base import AmortizedGuide
from ppl_vae.models.conditional import LabelConditionalVAE, one_hot
from ppl_vae.models.vae import reconstruction_grid
from ppl_vae.nn.networks import MLPEncoder, make_networks
from ppl_vae.nn.registration import register, registration_skipped
from ppl_vae.priors import Prior, make_prior


class SemiSupervisedGuide(nn.Module):
    """q(y | x) q(z | x, y): a classifier and an amortized guide for z given x and y.

    :param classifier: a network from ``x`` to class logits ``(batch, num_classes)``.
    :param z_guide: a registry guide whose encoder takes ``(x, y_onehot)``.
    """

    def __init__(self, classifier: nn.Module, z_guide: AmortizedGuide) -> None:
        super().__init__()
        self.classifier = classifier
        self.z_guide = z_guide

    def label_distribution(self, x: torch.Tensor) -> dist.TorchDistribution:
        """q(y | x), one-hot over the classes, batch shape ``(batch,)``."""
        return dist.OneHotCategorical(logits=self.classifier(x))

    def distribution(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dist.TorchDistribution:
        """q(z | x, y); y is required (the closed-form check calls it once per class)."""
        if y is None:
            raise TypeError("q(z|x, y) needs the label y")
        return self.z_guide.distribution(x, y)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The Pyro guide: y enumerated when it is not given, then z. :returns: z."""
        register("guide", self)
        with pyro.plate("data", x.shape[0]):
            if y is None:
                y = pyro.sample("y", self.label_distribution(x), infer={"enumerate": "parallel"})
            return pyro.sample("z", self.z_guide.distribution(x, y))

    @torch.no_grad()
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """The most probable class under q(y | x): ``(batch,)``."""
        return self.classifier(x).argmax(-1)


class SemiSupervisedVAE(LabelConditionalVAE):
    """p(y) p(z) p(x | y, z) with a uniform p(y); y is observed when given and latent otherwise.

    :param decoder: a network ``decoder(z, y_onehot)``.
    :param z_dim: the latent dimension.
    :param event_shape: the shape of one datapoint.
    :param num_classes: the number of classes.
    :param likelihood: the likelihood's name.
    :param prior: p(z) (default N(0, I)).
    :param classifier: the guide's classifier, for the auxiliary term (None: no auxiliary term).
    :param aux_loss_multiplier: the weight of ``log q(y|x)`` on labelled batches.
    """

    def __init__(self, decoder: nn.Module, z_dim: int, event_shape: Sequence[int], num_classes: int,
                 likelihood: str = "bernoulli", prior: Prior | None = None, classifier: nn.Module | None = None,
                 aux_loss_multiplier: float = 46.0) -> None:
        super().__init__(decoder, z_dim, event_shape, num_classes, likelihood, prior=prior)
        self.aux_loss_multiplier = aux_loss_multiplier
        object.__setattr__(self, "classifier", classifier)  # the guide's: a reference, not a submodule

    def arguments(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """``(x,)`` for an unlabelled batch (labels None), ``(x, one_hot(labels))`` for a labelled one."""
        return (images,) if labels is None else (images, one_hot(labels, self.num_classes, images.dtype))

    def label_prior(self, batch_size: int, like: torch.Tensor) -> dist.TorchDistribution:
        """p(y): uniform over the classes, one-hot, batch shape ``(batch_size,)``."""
        return dist.OneHotCategorical(logits=like.new_zeros(batch_size, self.num_classes))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The Pyro model. :param y: one-hot labels ``(batch, num_classes)``, or None (then y is latent)."""
        register("model", self)
        batch = x.shape[0]
        with pyro.plate("data", batch):
            z = pyro.sample("z", self.prior(batch, x))
            label = pyro.sample("y", self.label_prior(batch, x), obs=y)
            out = self.decoder(z, label)
            pyro.sample("x", self.likelihood(out), obs=x)
            if y is not None and self.classifier is not None and self.aux_loss_multiplier > 0:
                with poutine.scale(scale=self.aux_loss_multiplier):
                    pyro.sample("y_aux", dist.OneHotCategorical(logits=self.classifier(x)), obs=y)
        return out

    def enumerated_values(self, guide: Callable, *arguments: torch.Tensor) -> list[tuple] | None:
        """Each class: ``(log p(y), log q(y|x), (x, y))`` for the closed-form check."""
        x, *labels = arguments
        if labels:
            return None
        log_q = guide.classifier(x).log_softmax(-1)
        log_p = torch.full_like(log_q[:, 0], -math.log(self.num_classes))
        classes = torch.eye(self.num_classes, dtype=x.dtype, device=x.device)
        return [(log_p, log_q[:, c], (x, classes[c].expand(len(x), -1))) for c in range(self.num_classes)]

    @torch.no_grad()
    def accuracy(self, guide: Callable, x: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
        """The classifier's accuracy on ``(x, labels)``."""
        correct = sum(int((guide.classify(x[i:i + batch_size]) == labels[i:i + batch_size]).sum())
                      for i in range(0, len(x), batch_size))
        return correct / len(x)

    @torch.no_grad()
    def epoch_metrics(self, guide: Callable, data) -> dict[str, float]:
        """``test_accuracy`` (and ``valid_accuracy``) of the classifier q(y|x), on those splits only."""
        row = {"test_accuracy": self.accuracy(guide, data.test, data.test_labels)}
        if data.valid is not None:
            row["valid_accuracy"] = self.accuracy(guide, data.valid, data.valid_labels)
        return row

    @torch.no_grad()
    def extra_metrics(self, *arguments: torch.Tensor, guide=None, labels=None) -> dict[str, float]:
        """The classifier's ``accuracy`` on the evaluated split, given its true labels."""
        return {} if guide is None or labels is None else {"accuracy": self.accuracy(guide, arguments[0], labels)}

    @torch.no_grad()
    def figures(self, guide: Callable, images: torch.Tensor, labels: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """``samples.png`` (a row per class), ``reconstructions.png`` (through the predicted class)
        and, for a 2-D latent, ``style.png`` (a row per class, z_1 from -2 to 2 with z_2 = 0)."""
        predicted = one_hot(guide.classify(images), self.num_classes, images.dtype)
        with registration_skipped():
            z = guide(images, predicted)
        figures = {"samples.png": self.sample_grid(images),
                   "reconstructions.png": reconstruction_grid(images, self.observation(z, predicted).mean)}
        if self.z_dim == 2:
            sweep = torch.linspace(-2, 2, 10, dtype=images.dtype, device=images.device)
            z = torch.stack([sweep, torch.zeros_like(sweep)], -1).repeat(self.num_classes, 1)
            y = torch.eye(self.num_classes, dtype=images.dtype, device=images.device).repeat_interleave(10, 0)
            figures["style.png"] = make_grid(self.observation(z, y).mean.clamp(0, 1), nrow=10)
        return figures


def build_semi_supervised_pair(config) -> tuple[SemiSupervisedVAE, SemiSupervisedGuide]:
    """The semi-supervised model of a :class:`~ppl_vae.models.config.ModelConfig` and its guide."""
    if config.num_classes < 2:
        raise ValueError(f"the semi-supervised model needs at least 2 classes, got {config.num_classes}")
    encoder, decoder = make_networks(config.network, config.event_shape, config.z_dim, config.hidden_dims,
                                     config.activation, condition_dim=config.num_classes)
    classifier_body = MLPEncoder(config.event_shape, config.hidden_dims, config.activation)
    classifier = nn.Sequential(classifier_body, nn.Linear(classifier_body.out_dim, config.num_classes))
    guide = SemiSupervisedGuide(classifier, make_guide(config.guide, encoder, config.z_dim, **config.guide_options))
    prior = None if config.prior == "standard" else make_prior(config.prior, config.z_dim, guide.z_guide,
                                                                **config.prior_options)
    model = SemiSupervisedVAE(decoder, config.z_dim, config.event_shape, config.num_classes, config.likelihood, prior,
                              classifier, config.aux_loss_multiplier)
    return model, guide



def check_semi_supervised_data(data) -> None:
    """The semi-supervised model draws its labelled images from a dataset with labels."""
    if data.num_classes == 0:
        raise ValueError(f"--conditional semi-supervised needs a dataset with labels; {data.name!r} has none "
                         "(choose from mnist-sample, mnist, fashion-mnist, cifar10 and their binarized forms)")
