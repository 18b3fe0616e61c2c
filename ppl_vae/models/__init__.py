"""The Pyro models p(z) p(x|z), and the config that rebuilds a model/guide pair."""

from ppl_vae.models.config import ModelConfig, build_pair
from ppl_vae.models.vae import VAE

__all__ = ["ModelConfig", "VAE", "build_pair"]
