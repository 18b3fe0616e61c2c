"""The importance-weighted bound (IWAE) of Burda et al. as a differentiable Pyro ELBO.

.. math::

    \\mathcal{L}_K(x) = \\mathbb{E}_{z_1, \\dots, z_K \\sim q(z|x)}
        \\log \\frac{1}{K} \\sum_{k=1}^K \\frac{p(x, z_k)}{q(z_k|x)}
    \\;\\le\\; \\log p(x)

It is the ELBO at ``K = 1``, grows with ``K``, and tends to ``log p(x)`` (Burda et al.
2015, "Importance weighted autoencoders", arXiv:1509.00519, Theorem 1). Pyro computes it
as :class:`~pyro.infer.RenyiELBO` at ``alpha = 0`` (Li & Turner 2016, arXiv:1602.02311),
but only through ``loss`` and ``loss_and_grads``; :class:`IWAE_ELBO` adds the
``differentiable_loss`` that :class:`ppl_vae.infer.svi_step.SVIStep` differentiates, and leaves
everything else to Pyro.
"""

import math
from functools import partial

import torch
from pyro.infer import RenyiELBO
from pyro.infer.util import get_dependent_plate_dims, torch_sum

from ppl_vae.infer.traces import log_weight as trace_log_weight


class IWAE_ELBO(RenyiELBO):
    """:class:`~pyro.infer.RenyiELBO` at ``alpha = 0`` with a ``differentiable_loss``.

    The ``num_particles`` importance samples of each datapoint are the ``K`` of the
    bound; the weights are formed per datapoint (the plates every site shares, such as
    the data plate, are kept apart). The gradient of :meth:`differentiable_loss` is
    Pyro's ``RenyiELBO(alpha=0).loss_and_grads`` gradient, the self-normalized
    importance-weighted sum of the particles' reparameterized gradients.

    Example::

        elbo = IWAE_ELBO(num_particles=50, vectorize_particles=True, max_plate_nesting=1)
        loss = elbo.differentiable_loss(vae.model, vae.guide, x)  # -sum of L_50(x) over the batch

    :param num_particles: K, the importance samples per datapoint.
    :param max_plate_nesting: as for every Pyro ELBO.
    :param vectorize_particles: draw the K samples in one vectorized pass.
    """

    def __init__(self, num_particles: int = 2, max_plate_nesting: float = float("inf"),
                 vectorize_particles: bool = False, strict_enumeration_warning: bool = True) -> None:
        super().__init__(alpha=0, num_particles=num_particles, max_plate_nesting=max_plate_nesting,
                         vectorize_particles=vectorize_particles,
                         strict_enumeration_warning=strict_enumeration_warning)

    def log_weights(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """``log p(x, z_k) - log q(z_k|x)`` per particle and datapoint.

        :returns: ``(num_particles, *shared plates)``, e.g. ``(K, batch)`` for a VAE.
        """
        log_weights = []
        for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
            sum_dims = get_dependent_plate_dims(model_trace.nodes.values())
            log_weights_of = partial(_summed_log_prob, guide_trace, sum_dims)
            log_weight = trace_log_weight(model_trace, guide_trace, log_weights_of)
            log_weights.append(log_weight)
        if self.vectorize_particles and self.num_particles > 1:
            return log_weights[0]
        return torch.stack(log_weights)

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        """``-sum_x L_K(x)``, a scalar with gradients."""
        log_weights = self.log_weights(model, guide, *args, **kwargs)
        return -(torch.logsumexp(log_weights, dim=0) - math.log(self.num_particles)).sum()


def _summed_log_prob(guide_trace, sum_dims, name: str, site: dict) -> torch.Tensor:
    """A site's ``log_prob`` (computed by Pyro's ``_get_traces``) summed over the plates the weights do not keep."""
    if name in guide_trace.nodes and site is guide_trace.nodes[name] and not site["fn"].has_rsample:
        raise NotImplementedError(f"IWAE_ELBO needs reparameterized guide sites; {name!r} is not")
    return torch_sum(site["log_prob"], sum_dims)
