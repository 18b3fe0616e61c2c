"""A normalizing-flow prior: N(0, I) pushed through masked autoregressive steps."""

from collections.abc import Sequence

import pyro.distributions as dist
import torch
from pyro.distributions.transforms import Permute, affine_autoregressive
from torch import nn

from ppl_vae.distributions.standard_normal import StandardNormal
from ppl_vae.priors.base import Prior


class FlowPrior(Prior):
    """p(z): a standard normal pushed through ``num_flows`` masked autoregressive steps (MAF).

    Each step is the inverse of Pyro's
    :class:`~pyro.distributions.transforms.AffineAutoregressive` (made by its factory
    :func:`~pyro.distributions.transforms.affine_autoregressive`), so that scoring a
    guide's draw, which the ELBO does every step, is one parallel pass per step:

    .. math::

        \\log p(z) = \\log \\mathcal{N}(u; 0, I) + \\sum_t \\log \\left| \\det \\frac{\\partial u_t}{\\partial u_{t-1}} \\right|,
        \\qquad u_0 = z,

    and sampling (for figures) is sequential. Each step starts at the identity (its MADE's
    output layer is zero), so training starts from the standard normal prior, as the flow
    guides start from the diagonal one. Consecutive steps see the coordinates in reversed
    order (Papamakarios et al. 2017, arXiv:1705.07057; as a VAE prior, Chen et al. 2017,
    arXiv:1611.02731).

    :param z_dim: the latent dimension (at least 2).
    :param num_flows: the number of autoregressive steps.
    :param hidden_dims: hidden widths of each step's MADE (default ``(3 * z_dim + 1,) * 2``).
    """

    def __init__(self, z_dim: int, num_flows: int = 2, hidden_dims: Sequence[int] | None = None) -> None:
        super().__init__(z_dim)
        if z_dim < 2:
            raise ValueError(f"the flow prior needs z_dim >= 2 (an autoregressive flow of one variable is affine), got {z_dim}")
        if num_flows < 1:
            raise ValueError(f"num_flows must be at least 1, got {num_flows}")
        hidden_dims = list(hidden_dims or (3 * z_dim + 1,) * 2)
        if min(hidden_dims) < 1:
            raise ValueError(f"hidden_dims must hold sizes of at least 1, got {tuple(hidden_dims)}")
        self.flows = nn.ModuleList(affine_autoregressive(z_dim, hidden_dims) for _ in range(num_flows))
        for flow in self.flows:  # each MADE's output layer starts at zero: every step is the identity
            nn.init.zeros_(flow.arn.layers[-1].weight)
            nn.init.zeros_(flow.arn.layers[-1].bias)
        self.register_buffer("reverse", torch.arange(z_dim - 1, -1, -1))

    def distribution(self, like: torch.Tensor) -> dist.TorchDistribution:
        loc = like.new_zeros(self.z_dim)
        base = StandardNormal(loc, torch.ones_like(loc)).to_event(1)
        transforms = []  # sampling applies them from the base out: the last MAF step's inverse first
        for i, flow in enumerate(reversed(self.flows)):
            if i:
                transforms.append(Permute(self.reverse))
            transforms.append(flow.inv)
        return dist.TransformedDistribution(base, transforms)
