"""The models by name: what ``ModelConfig.conditional`` (``--conditional``) chooses.

Adding a model is one file holding its Pyro program (a :class:`~ppl_vae.models.base.Model`)
and a builder, plus one entry here.
"""

from collections.abc import Callable
from typing import NamedTuple

from torch import nn

from ppl_vae.models.conditional import build_label_pair, check_label_data
from ppl_vae.models.quadrants import build_quadrant_pair, check_quadrant_data
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
    """

    build: Callable[..., tuple[nn.Module, nn.Module]]
    options: tuple[str, ...] = ()
    defaults: dict | None = None
    check_data: Callable[..., None] = any_data
    grayscale_likelihood: str = "continuous-bernoulli"
    from_data: Callable[..., dict] = nothing_from_data


#: The models by their ``ModelConfig.conditional`` name.
MODELS: dict[str, ModelEntry] = {
    "none": ModelEntry(build_vae_pair),
    "label": ModelEntry(build_label_pair, ("num_classes", "learned_prior"), check_data=check_label_data,
                        from_data=lambda data: {"num_classes": data.num_classes}),
    "quadrants": ModelEntry(build_quadrant_pair, ("visible_quadrants", "quadrant_layout"), {"visible_quadrants": 2},
                            check_quadrant_data, "bce-grayscale"),
}
