"""Priors p(z): every one is a module building the distribution of a model's latent site."""

from ppl_vae.priors.base import Prior
from ppl_vae.priors.flow import FlowPrior
from ppl_vae.priors.mixture import MixturePrior
from ppl_vae.priors.registry import PRIORS, make_prior
from ppl_vae.priors.standard import StandardNormalPrior
from ppl_vae.priors.vamp import VampPrior

__all__ = ["PRIORS", "FlowPrior", "MixturePrior", "Prior", "StandardNormalPrior", "VampPrior", "make_prior"]
