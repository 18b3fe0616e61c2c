"""The amortized planar-flow guide (Rezende & Mohamed 2015, arXiv:1505.05770)."""

import math
from typing import Sequence

import torch
from pyro.distributions.transforms import ConditionalPlanar
from pyro.nn import DenseNN
from torch import nn

from ppl_vae.guides.flow import FlowGuide

# softplus(a) - 1 = 0 here, which makes Pyro's invertibility-constrained u_hat vanish.
_IDENTITY_ALPHA = math.log(math.e - 1.0)


class PlanarFlowGuide(FlowGuide):
    """q(z|x): a diagonal Gaussian followed by ``num_flows`` planar flows with amortized parameters.

    Each step is ``z_t = z_{t-1} + \\hat u \\tanh(w^T z_{t-1} + b)``, Pyro's
    :class:`~pyro.distributions.transforms.ConditionalPlanar`, whose ``(b, u, w)`` come
    from a :class:`~pyro.nn.DenseNN` on the encoder's context ``h(x)``, as in the paper's
    amortized flows. The DenseNN's output layer starts with zero weights and a bias that
    makes ``\\hat u = 0``, so every step starts as the identity.

    :param encoder: a network from ``x`` to features ``(batch, encoder.out_dim)``.
    :param z_dim: the latent dimension.
    :param num_flows: the number of planar steps (the paper's K).
    :param hidden_dims: hidden widths of each step's DenseNN (default ``(2 * z_dim,)``).
    :param context_dim: width of ``h(x)`` (default ``z_dim``).
    """

    def __init__(
        self,
        encoder: nn.Module,
        z_dim: int,
        num_flows: int = 8,
        hidden_dims: Sequence[int] | None = None,
        context_dim: int | None = None,
        permutation: str = "none",
    ) -> None:
        if num_flows < 1:
            raise ValueError(f"num_flows must be at least 1, got {num_flows}")
        context_dim = z_dim if context_dim is None else context_dim
        super().__init__(encoder, z_dim, context_dim, permutation)
        hidden_dims = list(hidden_dims or (2 * z_dim,))
        w = torch.full((z_dim,), 1.0 / math.sqrt(z_dim))
        flows = []
        for _ in range(num_flows):
            hypernet = DenseNN(context_dim, hidden_dims, param_dims=[1, z_dim, z_dim])
            output = hypernet.layers[-1]
            nn.init.zeros_(output.weight)
            with torch.no_grad():
                output.bias.copy_(torch.cat([torch.zeros(1), _IDENTITY_ALPHA * w, w]))  # b, u, w
            flows.append(ConditionalPlanar(hypernet))
        self.add_flows(flows)
