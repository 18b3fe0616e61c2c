"""Pyro's JIT-compiled ELBOs, compiled once per model, guide and input shape.

:class:`pyro.infer.JitTrace_ELBO` traces ``Trace_ELBO``'s loss with ``torch.jit.trace``
and replays the recorded graph on later calls, which skips Pyro's per-step Python work
(messengers, traces, log-prob bookkeeping) but computes the same estimator on the same
draws. Pyro keys the compiled graph by the number of arguments only, so a batch of another
size (an epoch's last, partial batch) would replay a graph recorded for the old shape.
The subclasses here compile once per ``(model, guide, shapes, dtypes, devices)`` instead,
compile on a fork of torch's RNG (so that a compiled run draws what an uncompiled one
would), and mend two things in Pyro 1.9: ``JitTrace_ELBO.differentiable_loss`` has twice
the ELBO's gradient, and ``JitTraceMeanField_ELBO`` recompiles at every call.

As with Pyro's, the model and guide must have a static structure and take every tensor
they depend on as an argument, and their parameters must be in Pyro's param store
(``pyro.module``), from which the compiled graph reads them on every call.
:class:`ppl_vae.SVIStep` gives the networks of each training run a param store of its
own, so that two runs with the same module names do not share parameters.

Example::

    step = SVIStep(model, guide, make_elbo("trace", jit=True))
    step(x)  # compiles for x.shape, then replays
"""

import warnings

import pyro.infer
import torch
from pyro.infer import ELBO
from pyro.util import warn_if_nan


class _CompiledPerShape:
    """Keep Pyro's compiled loss per model, guide and argument shapes."""

    _compiled_attribute = "_loss_and_surrogate_loss"  # where Pyro's class keeps its compiled loss

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        key = (id(model), id(guide), *((tuple(a.shape), a.dtype, a.device) if torch.is_tensor(a) else a for a in args))
        compiled = self.__dict__.setdefault("_compiled_per_key", {})
        if key not in compiled:
            self._loss_and_surrogate_loss = self._differentiable_loss = None  # Pyro builds a new one
            # compiling runs the model and guide twice; it draws from a fork of torch's RNG,
            # so that the compiled loss sees the draws the uncompiled one would have seen
            cuda = sorted({a.device.index or 0 for a in args if torch.is_tensor(a) and a.device.type == "cuda"})
            with torch.random.fork_rng(devices=cuda), warnings.catch_warnings():
                # the user asked for torch.jit.trace, which torch 2.x deprecates
                warnings.filterwarnings("ignore", message=".*torch.jit.trace. is deprecated", category=FutureWarning)
                self._compiled_loss(model, guide, *args, **kwargs)
            compiled[key] = getattr(self, self._compiled_attribute)
        # Pyro's JitTraceMeanField_ELBO (1.9) keeps its loss in ``_differentiable_loss`` but
        # recompiles whenever ``_loss_and_surrogate_loss`` is None, so both are set
        self._loss_and_surrogate_loss = self._differentiable_loss = compiled[key]
        return self._compiled_loss(model, guide, *args, **kwargs)

    def _compiled_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        return super().differentiable_loss(model, guide, *args, **kwargs)


class JitTrace_ELBO(_CompiledPerShape, pyro.infer.JitTrace_ELBO):
    """:class:`pyro.infer.JitTrace_ELBO`, compiled once per model, guide and input shape."""

    def _compiled_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        # Pyro 1.9's JitTrace_ELBO.differentiable_loss returns ``loss + (surrogate - surrogate.detach())``
        # with gradients through both terms: twice the ELBO's gradient. The value of the loss
        # with the gradient of the surrogate is what Trace_ELBO.differentiable_loss returns.
        loss, surrogate_loss = self.loss_and_surrogate_loss(model, guide, *args, **kwargs)
        loss = warn_if_nan(loss.detach(), "loss")
        return loss + (surrogate_loss - surrogate_loss.detach())


class JitTraceMeanField_ELBO(_CompiledPerShape, pyro.infer.JitTraceMeanField_ELBO):
    """:class:`pyro.infer.JitTraceMeanField_ELBO`, compiled once per model, guide and input shape."""

    _compiled_attribute = "_differentiable_loss"


_PYRO_JIT_ELBOS = (pyro.infer.JitTrace_ELBO, pyro.infer.JitTraceMeanField_ELBO, pyro.infer.JitTraceGraph_ELBO,
                   pyro.infer.JitTraceEnum_ELBO)


def is_jit(elbo: ELBO) -> bool:
    """Whether ``elbo`` is one of Pyro's JIT-compiled ELBOs, which read the parameters from the param store."""
    return isinstance(elbo, _PYRO_JIT_ELBOS)
