"""Objectives and estimators: the ELBOs, the SVI step, the compiled step, importance sampling, the closed form."""

from ppl_vae.infer.compiled import (
           CompiledIWAE_ELBO,
           CompiledTrace_ELBO,
           CompiledTraceMeanField_ELBO,
)
from ppl_vae.infer.elbos import make_elbo
from ppl_vae.infer.iwae import IWAE_ELBO
from ppl_vae.infer.latent_scale import LatentScaleMessenger
from ppl_vae.infer.svi_step import SVIStep

__all__ = ["CompiledIWAE_ELBO", "CompiledTraceMeanField_ELBO", "CompiledTrace_ELBO", "IWAE_ELBO",
           "LatentScaleMessenger", "SVIStep", "make_elbo"]
