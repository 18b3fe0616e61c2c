"""Guides q(z|x): every one samples site ``"z"`` inside plate ``"data"``."""

from ppl_vae.guides.base import AmortizedGuide
from ppl_vae.guides.diagonal import DiagonalNormalGuide
from ppl_vae.guides.flow import FlowGuide
from ppl_vae.guides.full_rank import FullRankGuide
from ppl_vae.guides.iaf import IAFGuide
from ppl_vae.guides.planar import PlanarFlowGuide
from ppl_vae.guides.registry import GUIDES, make_guide

__all__ = [
    "AmortizedGuide", "DiagonalNormalGuide", "FlowGuide", "FullRankGuide", "GUIDES", "IAFGuide",
    "PlanarFlowGuide", "make_guide",
]
