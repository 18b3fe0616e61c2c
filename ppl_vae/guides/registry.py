"""Guides by name, so that a guide swaps in with one word."""

from typing import Callable

from torch import nn

from ppl_vae.guides.base import AmortizedGuide
from ppl_vae.guides.diagonal import DiagonalNormalGuide
from ppl_vae.guides.full_rank import FullRankGuide
from ppl_vae.guides.iaf import IAFGuide
from ppl_vae.guides.planar import PlanarFlowGuide

#: The guides by name.
GUIDES: dict[str, Callable[..., AmortizedGuide]] = {
    "diag": DiagonalNormalGuide,
    "full-rank": FullRankGuide,
    "planar": PlanarFlowGuide,
    "iaf": IAFGuide,
}

#: The guides that take the flow options (``num_flows``, ``hidden_dims``, ``context_dim``,
#: ``permutation``; ``stable`` is the IAF's only).
FLOW_GUIDES = ("planar", "iaf")


def make_guide(name: str, encoder: nn.Module, z_dim: int, **options) -> AmortizedGuide:
    """Build a guide by name.

    :param name: one of :data:`~ppl_vae.guides.registry.GUIDES`.
    :param encoder: a network from ``x`` to features ``(batch, encoder.out_dim)``.
    :param z_dim: the latent dimension.
    :param options: the guide's own options (e.g. ``num_flows`` for flow guides).
    :raises ValueError: for an unknown name, listing the valid ones.
    """
    if name not in GUIDES:
        raise ValueError(f"unknown guide {name!r}; choose from {', '.join(GUIDES)}")
    return GUIDES[name](encoder, z_dim, **options)
