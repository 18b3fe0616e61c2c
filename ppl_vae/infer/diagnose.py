"""Where a non-finite value first appears in a training step, for a one-line error."""

import pyro
import torch

from ppl_vae.infer.traces import sample_sites, site_log_prob, traces
from ppl_vae.nn.registration import registration_skipped


def nonfinite_site(model, guide, *args) -> str:
    """Name where a non-finite value first appears: the batch, a parameter, or the first
    sample site whose log-probability is not finite (from Pyro traces of guide and model)."""
    for i, arg in enumerate(args):
        if torch.is_tensor(arg) and not torch.isfinite(arg).all():
            return f"the batch (argument {i} of model and guide)"
    with torch.no_grad(), registration_skipped(), pyro.validation_enabled(False):
        for name, param in [*model.named_parameters(), *getattr(guide, "named_parameters", lambda: [])()]:
            if not torch.isfinite(param).all():
                return f"parameter {name!r}"
        guide_trace, model_trace = traces(model, guide, *args)
        for where, trace in (("guide", guide_trace), ("model", model_trace)):
            for name, site in sample_sites(trace):
                if not torch.isfinite(site_log_prob(name, site)).all():
                    return f"{where} site {name!r}"
    return "no site (the non-finite value arose in the gradients)"
