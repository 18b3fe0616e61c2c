"""The models by name: what ``ModelConfig.model`` (``--model``, or ``--conditional`` for the
conditional ones) chooses.

Adding a model is one file holding its Pyro program (a :class:`~ppl_vae.models.base.Model`)
and a builder, plus one entry here.
"""

from collections.abc import Callable
from typing import NamedTuple

from torch import nn

from ppl_vae.models.conditional import build_label_pair, check_label_data
from ppl_vae.models.hierarchical import build_hierarchical_pair
from ppl_vae.models.quadrants import build_quadrant_pair, check_quadrant_data
from ppl_vae.models.semi_supervised import build_semi_supervised_pair, check_semi_supervised_data
from ppl_vae.models.vae import build_vae_pair


def any_data(data) -> None:
    """A model that fits every dataset."""


def nothing_from_data(data) -> dict:
    """A model whose options do not depend on the dataset."""
    return {}


class ModelEntry(NamedTuple):
    """How to build one model, and what it asks of its options and data.

    :param build: ``build(config) -> (model, guide)`` with fresh weights; raises ValueError
        for options the model cannot take.
    :param options: the :class:`~ppl_vae.models.config.ModelConfig` fields only this model reads.
    :param defaults: values of those fields when the model is chosen and they are not given.
    :param check_data: raises ValueError, naming the dataset, if the model cannot fit it.
    :param grayscale_likelihood: the likelihood ``--likelihood auto`` picks for grayscale data.
    :param from_data: the options the dataset fixes, e.g. the number of classes.
    :param priors: the priors (:data:`ppl_vae.priors.registry.PRIORS`) it takes; None: all of them.
    :param unused: the common fields it does not read (giving them on the command line is an error).
    :param conditional: chosen with ``--conditional`` rather than ``--model``.
    :param elbos: the objectives (:data:`ppl_vae.infer.elbos.ELBOS` names) valid for it, its
        default first. ``mean-field`` is left out where a guide's site depends on a draw that the
        model's prior of that site conditions on (the hierarchical model's q(z2|z1) against
        p(z1|z2)), which biases its analytic KL; ``enum`` is the semi-supervised model's.
    :param labelled_subset: it trains on the labels of ``num_labels`` training images only
        (:func:`ppl_vae.data.semi_supervised.semi_supervised`).
    """

    build: Callable[..., tuple[nn.Module, nn.Module]]
    options: tuple[str, ...] = ()
    defaults: dict | None = None
    check_data: Callable[..., None] = any_data
    grayscale_likelihood: str = "continuous-bernoulli"
    from_data: Callable[..., dict] = nothing_from_data
    priors: tuple[str, ...] | None = None
    unused: tuple[str, ...] = ()
    conditional: bool = False
    elbos: tuple[str, ...] = ("trace", "mean-field", "iwae")
    labelled_subset: bool = False


#: The models by their ``ModelConfig.model`` name.
MODELS: dict[str, ModelEntry] = {
    "vae": ModelEntry(build_vae_pair),
    "hierarchical": ModelEntry(build_hierarchical_pair, ("z_dims", "layer_widths", "layer_guides"),
                               {"activation": "tanh"}, unused=("z_dim", "hidden_dims"), elbos=("trace", "iwae")),
    "label": ModelEntry(build_label_pair, ("num_classes", "learned_prior"), check_data=check_label_data,
                        from_data=lambda data: {"num_classes": data.num_classes}, priors=("standard", "mixture", "flow"),
                        conditional=True),
    "quadrants": ModelEntry(build_quadrant_pair, ("visible_quadrants", "quadrant_layout"), {"visible_quadrants": 2},
                            check_quadrant_data, "bce-grayscale", priors=("standard",), conditional=True),
    "semi-supervised": ModelEntry(build_semi_supervised_pair, ("num_classes", "num_labels", "labelled_every",
                                                                "aux_loss_multiplier"),
                                  {"num_labels": 3000, "z_dim": 50, "hidden_dims": (500,), "activation": "softplus"},
                                  check_semi_supervised_data, "bce-grayscale", lambda data: {"num_classes": data.num_classes},
                                  priors=("standard", "mixture", "flow"), conditional=True, elbos=("enum",),
                                  labelled_subset=True),
}
