"""The amortized inverse autoregressive flow guide (Kingma et al. 2016, arXiv:1606.04934)."""

from typing import Sequence

import torch
from pyro.distributions.transforms import ConditionalAffineAutoregressive
from pyro.nn import ConditionalAutoRegressiveNN
from torch import nn

from ppl_vae.guides.flow import FlowGuide


class IAFGuide(FlowGuide):
    """q(z|x): a diagonal Gaussian followed by ``num_flows`` conditional IAF steps.

    Each step is Pyro's :class:`~pyro.distributions.transforms.ConditionalAffineAutoregressive`
    on a :class:`~pyro.nn.ConditionalAutoRegressiveNN` (MADE) fed ``z`` and the
    encoder's context ``h(x)``:

    .. math::

        z_t = \\mu_t(z_{t-1}, h) + \\sigma_t(z_{t-1}, h) \\odot z_{t-1},

    or, with ``stable=True``, eq. (14) of the paper,
    ``z_t = s_t \\odot z_{t-1} + (1 - s_t) \\odot m_t`` with ``s_t = sigmoid(.)``.
    The MADE's output layer starts at zero, so at initialization every step is the
    identity (``stable=False``) or a contraction by ``sigmoid(2) = 0.88`` (``stable=True``),
    and training starts from the diagonal guide. Consecutive steps see the coordinates in
    reversed (or random) order.

    :param encoder: a network from ``x`` to features ``(batch, encoder.out_dim)``.
    :param z_dim: the latent dimension (at least 2).
    :param num_flows: the number of IAF steps T.
    :param hidden_dims: hidden widths of each MADE (default ``(3 * z_dim + 1,) * 2``).
    :param context_dim: width of ``h(x)`` (default ``z_dim``).
    :param stable: use the sigmoid ("stable") update.
    :param permutation: ``"reverse"``, ``"random"`` or ``"none"`` between steps.

    Example::

        guide = IAFGuide(MLPEncoder((1, 28, 28), (400,)), z_dim=20, num_flows=2)
        z = guide(x)   # samples site "z"; log q(z|x) is exact
    """

    def __init__(
        self,
        encoder: nn.Module,
        z_dim: int,
        num_flows: int = 2,
        hidden_dims: Sequence[int] | None = None,
        context_dim: int | None = None,
        stable: bool = False,
        permutation: str = "reverse",
    ) -> None:
        if z_dim < 2:
            raise ValueError(f"the IAF guide needs z_dim >= 2 (an autoregressive flow of one variable is affine), got {z_dim}")
        if num_flows < 1:
            raise ValueError(f"num_flows must be at least 1, got {num_flows}")
        context_dim = z_dim if context_dim is None else context_dim
        super().__init__(encoder, z_dim, context_dim, permutation)
        hidden_dims = tuple(hidden_dims or (3 * z_dim + 1,) * 2)
        flows = []
        for _ in range(num_flows):
            made = ConditionalAutoRegressiveNN(z_dim, context_dim, list(hidden_dims), permutation=torch.arange(z_dim))
            nn.init.zeros_(made.layers[-1].weight)
            nn.init.zeros_(made.layers[-1].bias)
            flows.append(ConditionalAffineAutoregressive(made, stable=stable))
        self.add_flows(flows)
