"""The VampPrior: the guide's own posteriors at learned pseudo-inputs, mixed."""

import pyro.distributions as dist
import torch
from torch import nn

from ppl_vae.priors.base import Prior


class VampPrior(Prior):
    """p(z) = (1/K) sum_k q(z | u_k): the variational mixture of posteriors (Tomczak & Welling 2017,
    arXiv:1705.07120), with K learned pseudo-inputs u_k.

    .. math::

        \\log p(z) = \\operatorname{logsumexp}_k \\log q_0(z \\mid u_k) - \\log K

    q_0 is the *guide's own* Gaussian posterior
    (:meth:`~ppl_vae.guides.base.AmortizedGuide.base_distribution`): its encoder and heads, so
    the prior shares the guide's encoder and training the guide moves the prior. For the
    diagonal and full-rank guides q_0 is q. For the flow guides it is the Gaussian before
    the flow steps: planar flows have no inverse, so q(z|u_k) could not be scored at a
    guide's draw, and the IAF's inverse costs ``z_dim`` sequential passes per pseudo-input.

    The prior holds a reference to the guide, not a copy, and does not make it a submodule:
    the guide's parameters stay the guide's (in its state dict and its ``pyro.module``
    registration), and the prior's own parameters are the pseudo-inputs. A run directory
    rebuilds it like every pair: the builder makes the guide, then the prior on it, and
    loads both state dicts (:func:`ppl_vae.models.vae.build_vae_pair`).

    :param guide: an amortized guide whose encoder takes inputs of shape ``guide.encoder.in_shape``.
    :param num_pseudo_inputs: K.
    :param pseudo_inputs: their initial values ``(K, *in_shape)`` (default ``0.5 + 0.01 * noise``,
        gray images).
    :raises ValueError: for K < 1 or pseudo-inputs of another shape than the encoder's input.
    """

    def __init__(self, guide: nn.Module, num_pseudo_inputs: int = 500, pseudo_inputs: torch.Tensor | None = None) -> None:
        super().__init__(guide.z_dim)
        if num_pseudo_inputs < 1:
            raise ValueError(f"num_pseudo_inputs must be at least 1, got {num_pseudo_inputs}")
        in_shape = tuple(guide.encoder.in_shape)
        if pseudo_inputs is None:
            pseudo_inputs = 0.5 + 0.01 * torch.randn(num_pseudo_inputs, *in_shape)
        if tuple(pseudo_inputs.shape) != (num_pseudo_inputs, *in_shape):
            raise ValueError(f"the VampPrior's pseudo-inputs have shape {tuple(pseudo_inputs.shape)}, but the guide's "
                             f"encoder takes {in_shape}: expected {(num_pseudo_inputs, *in_shape)}")
        self.num_pseudo_inputs = num_pseudo_inputs
        self.pseudo_inputs = nn.Parameter(pseudo_inputs.clone())
        object.__setattr__(self, "guide", guide)  # a reference: not a submodule

    def distribution(self, like: torch.Tensor) -> dist.TorchDistribution:
        components = self.guide.base_distribution(self.pseudo_inputs.to(like.dtype))  # batch (K,)
        mixing = dist.Categorical(logits=like.new_zeros(self.num_pseudo_inputs))
        return dist.MixtureSameFamily(mixing, components)
