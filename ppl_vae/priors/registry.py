"""Priors by name, so that a prior swaps in with one word, like a guide.

Adding a prior is one file holding a :class:`~ppl_vae.priors.base.Prior` plus one entry here.
"""

from collections.abc import Callable
from typing import NamedTuple

from torch import nn

from ppl_vae.priors.base import Prior
from ppl_vae.priors.flow import FlowPrior
from ppl_vae.priors.mixture import MixturePrior
from ppl_vae.priors.standard import StandardNormalPrior
from ppl_vae.priors.vamp import VampPrior


class PriorEntry(NamedTuple):
    """How to build one prior.

    :param build: ``build(z_dim, guide, **options) -> Prior``.
    :param options: the options it takes (keys of ``ModelConfig.prior_options``).
    :param counts: those of its options that are whole numbers of at least 1.
    :param needs_guide: it is built on the guide of its latent site (the VampPrior).
    """

    build: Callable[..., Prior]
    options: tuple[str, ...] = ()
    counts: tuple[str, ...] = ()
    needs_guide: bool = False


#: The priors by name.
PRIORS: dict[str, PriorEntry] = {
    "standard": PriorEntry(lambda z_dim, guide: StandardNormalPrior(z_dim)),
    "mixture": PriorEntry(lambda z_dim, guide, **options: MixturePrior(z_dim, **options),
                          ("num_components",), ("num_components",)),
    "vamp": PriorEntry(lambda z_dim, guide, **options: VampPrior(guide, **options),
                       ("num_pseudo_inputs",), ("num_pseudo_inputs",), needs_guide=True),
    "flow": PriorEntry(lambda z_dim, guide, **options: FlowPrior(z_dim, **options),
                       ("num_flows", "hidden_dims"), ("num_flows",)),
}


def make_prior(name: str, z_dim: int, guide: nn.Module | None = None, **options) -> Prior:
    """Build a prior by name.

    :param name: one of :data:`~ppl_vae.priors.registry.PRIORS`.
    :param z_dim: the latent dimension.
    :param guide: the guide of the latent site, which the VampPrior shares (the others ignore it).
    :param options: the prior's own options (e.g. ``num_components`` for the mixture).
    :raises ValueError: for an unknown name or option, listing the valid ones.
    """
    if name not in PRIORS:
        raise ValueError(f"unknown prior {name!r}; choose from {', '.join(PRIORS)}")
    entry = PRIORS[name]
    for option in options:
        if option not in entry.options:
            raise ValueError(f"the {name} prior has no option {option!r}; "
                             f"its options are {', '.join(entry.options) or 'none'}")
    if entry.needs_guide and guide is None:
        raise ValueError(f"the {name} prior is built on a guide; pass the guide of its latent site")
    prior = entry.build(z_dim, guide, **options)
    if prior.z_dim != z_dim:
        raise ValueError(f"the {name} prior has z_dim {prior.z_dim}, the model {z_dim}")
    return prior
