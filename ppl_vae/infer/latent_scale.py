"""The KL weight (beta) of the beta-VAE, applied with Pyro's ``poutine.scale``.

The beta-VAE objective (Higgins et al. 2017) is
``E_q[log p(x|z)] - beta * KL(q(z|x) || p(z))``. In a Pyro program the KL term is
``E_q[log p(z) - log q(z|x)]``, the latent sites of the model and of the guide, so
beta scales exactly the *latent* sites of both programs and leaves the observed
site alone. :class:`LatentScaleMessenger` is ``poutine.scale`` restricted to
latent sites; wrap model and guide with the same one::

    kl = LatentScaleMessenger(beta)
    svi = SVI(kl(model), kl(guide), Adam({"lr": 1e-3}), Trace_ELBO())

KL warm-up (Bowman et al. 2016, arXiv:1511.06349; Sønderby et al. 2016,
arXiv:1602.02282) changes ``kl.scale`` between steps; :func:`warmup_scale` gives the
linear schedule.
"""

from pyro.poutine.scale_messenger import ScaleMessenger


class LatentScaleMessenger(ScaleMessenger):
    """``poutine.scale`` that scales only unobserved (latent) sample sites.

    :param scale: a positive factor, the KL weight beta.
    """

    def _process_message(self, msg) -> None:
        if not msg["is_observed"]:
            super()._process_message(msg)


def warmup_scale(beta: float, step: int, warmup_steps: int) -> float:
    """The linear KL warm-up: ``beta * min(1, (step + 1) / warmup_steps)``.

    It starts at ``beta / warmup_steps`` rather than 0 because ``poutine.scale``
    needs a positive factor.

    :param beta: the final KL weight.
    :param step: the 0-based optimization step.
    :param warmup_steps: the number of steps to reach ``beta``; 0 disables warm-up.
    """
    if warmup_steps <= 0:
        return beta
    return beta * min(1.0, (step + 1) / warmup_steps)
