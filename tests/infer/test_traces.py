"""The one walk over traces: the log weight is log p(x, z) - log q(z|x), computed by hand here."""

import pyro
import torch

from ppl_vae import ModelConfig, build_pair
from ppl_vae.infer.traces import log_weight, sample_sites, traces


def test_log_weight_is_the_model_log_joint_minus_the_guide_log_density() -> None:
    model, guide = build_pair(ModelConfig(event_shape=(1, 28, 28), z_dim=3, hidden_dims=(16,)))
    x = torch.bernoulli(torch.full((5, 1, 28, 28), 0.3))
    with pyro.get_param_store().scope():
        guide_trace, model_trace = traces(model, guide, x)
    z = guide_trace.nodes["z"]["value"]
    by_hand = (model.prior(5, x).log_prob(z) + model.observation(z).log_prob(x)
               - guide.distribution(x).log_prob(z))
    torch.testing.assert_close(log_weight(model_trace, guide_trace), by_hand, rtol=1e-5, atol=1e-3)
    assert [name for name, _ in sample_sites(model_trace)] == ["z", "x"]  # the data plate's site is left out
