"""Plain torch parts of the Pyro programs: encoder and decoder networks, likelihoods, registration."""

from ppl_vae.nn.likelihoods import LIKELIHOODS, Likelihood, make_likelihood
from ppl_vae.nn.networks import (
           ConvDecoder,
           ConvEncoder,
           MLPDecoder,
           MLPEncoder,
           make_networks,
)
from ppl_vae.nn.registration import register, registration_skipped

__all__ = ["ConvDecoder", "ConvEncoder", "LIKELIHOODS", "Likelihood", "MLPDecoder", "MLPEncoder", "make_likelihood",
           "make_networks", "register", "registration_skipped"]
