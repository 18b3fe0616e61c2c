"""Guides q(z|x): every one samples site ``"z"`` inside plate ``"data"``."""

from ppl_vae.guides.base import AmortizedGuide
from ppl_vae.guides.diagonal import DiagonalNormalGuide
from ppl_vae.guides.registry import GUIDES, make_guide

__all__ = ["AmortizedGuide", "DiagonalNormalGuide", "GUIDES", "make_guide"]
