"""The objectives by name: Pyro's ELBOs, the IWAE bound, and their compiled versions."""

import warnings

from pyro.infer import ELBO, Trace_ELBO, TraceEnum_ELBO, TraceMeanField_ELBO

from ppl_vae.infer.compiled import (
    CompiledIWAE_ELBO,
    CompiledTrace_ELBO,
    CompiledTraceMeanField_ELBO,
)
from ppl_vae.infer.iwae import IWAE_ELBO


class QuietTraceEnum_ELBO(TraceEnum_ELBO):
    """Pyro's :class:`~pyro.infer.TraceEnum_ELBO`, without its warning for a batch with nothing to
    enumerate: the semi-supervised model's labelled batches observe the label that the
    unlabelled ones enumerate, and both go through the same estimator."""

    def _get_trace(self, model, guide, args, kwargs):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="TraceEnum_ELBO found no sample sites configured for enumeration")
            return super()._get_trace(model, guide, args, kwargs)


#: The objectives by name.
ELBOS = {"trace": Trace_ELBO, "mean-field": TraceMeanField_ELBO, "iwae": IWAE_ELBO, "enum": QuietTraceEnum_ELBO}
#: Their compiled versions (:mod:`ppl_vae.infer.compiled`).
JIT_ELBOS = {"trace": CompiledTrace_ELBO, "mean-field": CompiledTraceMeanField_ELBO, "iwae": CompiledIWAE_ELBO}
#: How a step may be compiled: ``"auto"`` (:mod:`ppl_vae.infer.auto_compile`: ``"fx"``, checked on
#: the first step, else uncompiled), ``"fx"``, ``"inductor"`` (:mod:`ppl_vae.infer.graph_backends`) or ``"off"``.
COMPILE_MODES = ("auto", "fx", "inductor", "off")


def make_elbo(name: str = "trace", num_particles: int = 1, jit: bool = False, compile: str = "off",
              cuda_graphs: bool = True) -> ELBO:
    """Build a Pyro ELBO by name; particles are vectorized over a leading dimension.

    :param name: ``"trace"`` (:class:`~pyro.infer.Trace_ELBO`), ``"mean-field"``
        (:class:`~pyro.infer.TraceMeanField_ELBO`, analytic KL where Pyro has one) or
        ``"iwae"`` (:class:`~ppl_vae.infer.iwae.IWAE_ELBO`, the importance-weighted bound with
        ``K = num_particles``) or ``"enum"`` (:class:`~pyro.infer.TraceEnum_ELBO`: discrete sites
        marked for enumeration are summed out exactly, the semi-supervised model's label).
    :param num_particles: samples of z per datapoint and step.
    :param jit: ``compile="fx"``.
    :param compile: ``"off"``, or the compiled version of the same estimator
        (:mod:`ppl_vae.infer.compiled`; trace, mean-field and iwae) on backend ``"fx"`` or
        ``"inductor"``, for :class:`~ppl_vae.infer.svi_step.SVIStep`: the same loss on the
        same draws, less Python work per step. (``"auto"`` is a policy of the step:
        :func:`~ppl_vae.infer.auto_compile.make_svi_step`.)
    :param cuda_graphs: a compiled ELBO on CUDA replays its graph as a captured CUDA graph.
    """
    compile = "fx" if jit else compile
    if name not in ELBOS:
        raise ValueError(f"unknown ELBO {name!r}; choose from {', '.join(ELBOS)}")
    if num_particles < 1:
        raise ValueError(f"num_particles must be at least 1, got {num_particles}")
    if compile not in ("off", "fx", "inductor"):
        raise ValueError(f"unknown compile mode {compile!r} for an ELBO; choose from off, fx, inductor")
    if compile != "off" and name not in JIT_ELBOS:
        raise ValueError(f"the {name} ELBO has no compiled version; compile one of {', '.join(JIT_ELBOS)}, "
                         "or train with --compile auto or off")
    options = {"num_particles": num_particles, "vectorize_particles": num_particles > 1, "max_plate_nesting": 1}
    if compile == "off":
        return ELBOS[name](**options)
    return JIT_ELBOS[name](backend=compile, cuda_graphs=cuda_graphs, **options)
