"""One walk over Pyro traces: the sample sites, and the log-density of a guide's draws under the model.

The importance weights of the evaluator (:mod:`ppl_vae.infer.importance`), the IWAE bound
(:mod:`ppl_vae.infer.iwae`) and the search for a non-finite site (:mod:`ppl_vae.infer.diagnose`)
all read the same sites of a guide trace and of the model replayed on it.
"""

from collections.abc import Callable, Iterator

import pyro.poutine as poutine
import torch
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import site_is_subsample


def sample_sites(trace: Trace) -> Iterator[tuple[str, dict]]:
    """The trace's sample sites, ``(name, site)`` in order, subsampling sites left out."""
    for name, site in trace.nodes.items():
        if site["type"] == "sample" and not site_is_subsample(site):
            yield name, site


def is_enumerated(site: dict) -> bool:
    """Whether a guide site was enumerated (its values summed over, not sampled)."""
    return site["infer"].get("_enumerate_dim") is not None


def traces(model: Callable, guide: Callable, *args, first_available_dim: int | None = None,
           **kwargs) -> tuple[Trace, Trace]:
    """``(guide_trace, model_trace)``: the guide run on the arguments, the model replayed on its draws.

    :param first_available_dim: enumerate the guide's sites marked ``infer={"enumerate": "parallel"}``
        in parallel from this dimension leftwards (Pyro's ``poutine.enum``); None: sample them.
    """
    if first_available_dim is not None:
        guide = poutine.enum(guide, first_available_dim=first_available_dim)
    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    return guide_trace, model_trace


def site_log_prob(name: str, site: dict) -> torch.Tensor:
    """A site's log-density of its value, per batch element."""
    return site["fn"].log_prob(site["value"])


def log_weight(model_trace: Trace, guide_trace: Trace,
               log_prob: Callable[[str, dict], torch.Tensor] = site_log_prob) -> torch.Tensor:
    """``log p(x, z) - log q(z|x)``: the model's sites' log-densities minus the guide's.

    :param log_prob: a site's log-density (by default ``fn.log_prob(value)`` per batch element;
        the IWAE bound sums its trace's ``log_prob`` over the plates the weights do not keep).
    """
    total = 0.0
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        for name, site in sample_sites(trace):
            total = total + sign * log_prob(name, site)
    return total
