"""ppl_vae: variational autoencoders written as Pyro programs.

The model p(z) p(x|z) and the guide q(z|x) are ``nn.Module``s whose ``forward`` is a
Pyro program; they train with ``pyro.infer.SVI`` and ``Trace_ELBO`` or with the
library's faster, equivalent :func:`ppl_vae.fit` (or the resumable :class:`ppl_vae.Trainer`).
"""

from ppl_vae.build import ModelConfig, build_pair
from ppl_vae.checkpoint import load_pair, save_checkpoint
from ppl_vae.data import Dataset, load_dataset
from ppl_vae.evaluate import evaluate_elbo
from ppl_vae.guides import GUIDES, AmortizedGuide, DiagonalNormalGuide, make_guide
from ppl_vae.iwae import IWAE_ELBO
from ppl_vae.jit import (
    CompiledIWAE_ELBO,
    CompiledTrace_ELBO,
    CompiledTraceMeanField_ELBO,
)
from ppl_vae.kl_scale import LatentScaleMessenger
from ppl_vae.likelihoods import LIKELIHOODS, make_likelihood
from ppl_vae.models import VAE
from ppl_vae.nets import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder, make_networks
from ppl_vae.train import SVIStep, TrainConfig, make_elbo
from ppl_vae.trainer import Trainer, fit

__version__ = "0.1.0"

__all__ = [
    "AmortizedGuide", "CompiledIWAE_ELBO", "CompiledTraceMeanField_ELBO", "CompiledTrace_ELBO", "ConvDecoder", "ConvEncoder", "Dataset",
    "DiagonalNormalGuide", "GUIDES", "IWAE_ELBO", "LIKELIHOODS", "LatentScaleMessenger", "MLPDecoder", "MLPEncoder", "ModelConfig", "SVIStep",
    "TrainConfig", "Trainer", "VAE", "build_pair", "evaluate_elbo", "fit", "load_dataset", "load_pair",
    "make_elbo", "make_guide", "make_likelihood", "make_networks", "save_checkpoint",
]
