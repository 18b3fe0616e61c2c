"""Normalizing-flow guides: a diagonal Gaussian pushed through conditional transforms.

q(z|x) is the distribution of ``z = f_T o ... o f_1(z_0; h(x))`` with
``z_0 ~ N(loc(x), diag scale(x)^2)`` and each ``f_t`` one of Pyro's conditional
transforms, conditioned on a context vector ``h(x)`` from the encoder. The density is
exact: ``log q(z|x) = log N(z_0) - sum_t log |det df_t/dz_{t-1}|``, computed by
Pyro's :class:`~pyro.distributions.TransformedDistribution`.
"""

from typing import Sequence

import pyro.distributions as dist
import torch
from pyro.distributions.transforms import Permute
from torch import nn

from ppl_vae.guides.diagonal import DiagonalNormalGuide

PERMUTATIONS = ("reverse", "random", "none")


class FlowGuide(DiagonalNormalGuide):
    """Base class: a diagonal Gaussian base, a context head and a list of conditional transforms.

    Subclasses fill ``flows`` (a list of ``ConditionalTransformModule`` objects). Between consecutive
    flows a fixed permutation of the latent coordinates may be inserted; permutations
    are buffers, so checkpoints keep them.

    :param encoder: a network from ``x`` to features ``(batch, encoder.out_dim)``.
    :param z_dim: the latent dimension.
    :param context_dim: width of the context vector ``h(x)`` given to every flow.
    :param permutation: ``"reverse"``, ``"random"`` (drawn once from torch's RNG) or ``"none"``.
    """

    def __init__(self, encoder: nn.Module, z_dim: int, context_dim: int, permutation: str = "none") -> None:
        super().__init__(encoder, z_dim)
        if permutation not in PERMUTATIONS:
            raise ValueError(f"unknown permutation {permutation!r}; choose from {', '.join(PERMUTATIONS)}")
        if context_dim < 1:
            raise ValueError(f"context_dim must be at least 1, got {context_dim}")
        self.context_head = nn.Linear(encoder.out_dim, context_dim)
        self.flows = nn.ModuleList()
        self.permutation = permutation

    def add_flows(self, flows: Sequence[nn.Module]) -> None:
        """Install the flows, a permutation buffer between each consecutive pair and, after the
        last flow, the permutation that restores the original order (so that flows at their
        identity initialization make the whole guide the diagonal one)."""
        self.flows.extend(flows)
        composed = torch.arange(self.z_dim)
        for i in range(len(flows) - 1):
            if self.permutation == "reverse":
                order = torch.arange(self.z_dim - 1, -1, -1)
            elif self.permutation == "random":
                order = torch.randperm(self.z_dim)
            else:
                continue
            self.register_buffer(f"permutation_{i}", order)
            composed = composed[order]
        if self.permutation != "none" and len(flows) > 1:  # always, so the buffers do not depend on the draw
            self.register_buffer(f"permutation_{len(flows) - 1}", torch.argsort(composed))

    def transforms(self, context: torch.Tensor) -> list:
        """The flows conditioned on ``context``, with the permutations in between and after."""
        transforms = []
        for i, flow in enumerate(self.flows):
            transforms.append(flow.condition(context))
            order = getattr(self, f"permutation_{i}", None)
            if order is not None:
                transforms.append(Permute(order))
        return transforms

    def base_distribution(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> dist.TorchDistribution:
        """The diagonal Gaussian q_0(z_0|x) before the flow steps."""
        loc, scale = self.loc_scale(x, condition)
        return dist.Normal(loc, scale).to_event(1)

    def distribution(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> dist.TorchDistribution:
        h = self.features(x, condition)
        base = dist.Normal(self.loc_head(h), self.log_scale_head(h).exp()).to_event(1)
        return dist.TransformedDistribution(base, self.transforms(self.context_head(h)))
