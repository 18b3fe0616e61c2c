"""Distributions the models are built from: the Bernoulli with the fused log-density."""

from ppl_vae.distributions.bernoulli import LogSigmoidBernoulli, bernoulli_log_prob

__all__ = ["LogSigmoidBernoulli", "bernoulli_log_prob"]
