import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample
from torch.distributions import kl_divergence

from ppl_vae import VAE, DiagonalNormalGuide, ModelConfig, build_pair, make_guide
from ppl_vae.distributions.standard_normal import StandardNormal
from ppl_vae.nn.likelihoods import LIKELIHOODS

SHAPES = {"mlp": (1, 28, 28), "conv": (3, 32, 32)}


def latent_sites(trace):
    return [n for n, s in trace.iter_stochastic_nodes() if not site_is_subsample(s)]


def traces(model, guide, x):
    guide_trace = poutine.trace(guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    return model_trace, guide_trace


@pytest.mark.parametrize("network", list(SHAPES))
@pytest.mark.parametrize("likelihood", list(LIKELIHOODS))
def test_model_and_guide_sites_match(network, likelihood):
    shape = SHAPES[network]
    model, guide = build_pair(ModelConfig(event_shape=shape, z_dim=3, network=network, hidden_dims=(16,),
                                          likelihood=likelihood))
    x = torch.bernoulli(torch.full((5, *shape), 0.3))
    model_trace, guide_trace = traces(model, guide, x)
    z_model, z_guide = model_trace.nodes["z"], guide_trace.nodes["z"]
    assert z_model["value"] is z_guide["value"]
    assert z_guide["value"].shape == (5, 3)
    for site in (z_model, z_guide):
        assert site["fn"].batch_shape == (5,) and site["fn"].event_shape == (3,)
        assert [f.name for f in site["cond_indep_stack"]] == ["data"]
    x_site = model_trace.nodes["x"]
    assert x_site["is_observed"] and x_site["value"] is x
    assert x_site["fn"].batch_shape == (5,) and x_site["fn"].event_shape == shape
    model_trace.compute_log_prob()
    assert torch.isfinite(model_trace.nodes["x"]["log_prob"]).all()
    # the latent sites are exactly these: a guide needs to sample "z" and nothing else
    assert latent_sites(model_trace) == latent_sites(guide_trace) == ["z"]


def test_prior_is_standard_normal_on_the_data_device_and_dtype():
    model, _ = build_pair(ModelConfig(event_shape=(4,), z_dim=2, hidden_dims=(8,)))
    model = model.double()
    x = torch.zeros(3, 4, dtype=torch.float64)
    trace = poutine.trace(model).get_trace(x)
    prior = trace.nodes["z"]["fn"]
    assert prior.base_dist.loc.dtype == torch.float64
    torch.testing.assert_close(prior.base_dist.loc, torch.zeros(3, 2, dtype=torch.float64), rtol=0, atol=0)
    torch.testing.assert_close(prior.base_dist.scale, torch.ones(3, 2, dtype=torch.float64), rtol=0, atol=0)


@pytest.mark.parametrize("value_shape,batch_shape", [((4, 3), (4, 3)), ((7, 4, 3), (4, 3)), ((3,), (4, 3)),
                                                     ((5, 1, 3), (4, 3))], ids=["same", "particles", "broadcast", "both"])
def test_standard_normal_log_prob_and_gradient_equal_normal(value_shape, batch_shape):
    value = torch.randn(value_shape, dtype=torch.float64, requires_grad=True)
    loc = torch.zeros(batch_shape, dtype=torch.float64)
    fast, reference = StandardNormal(loc, torch.ones_like(loc)), dist.Normal(loc, torch.ones_like(loc))
    log_prob = fast.log_prob(value)
    expected = reference.log_prob(value)
    torch.testing.assert_close(log_prob, expected, rtol=1e-12, atol=1e-12)
    (grad,) = torch.autograd.grad(log_prob.sum(), value)
    (expected_grad,) = torch.autograd.grad(expected.sum(), value)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-12, atol=1e-12)


def test_standard_normal_expands_as_itself_and_has_normal_kl():
    loc = torch.zeros(4, 3)
    prior = StandardNormal(loc, torch.ones_like(loc)).expand((2, 4, 3))
    assert type(prior) is StandardNormal and prior.batch_shape == (2, 4, 3)
    q = dist.Normal(torch.randn(4, 3), torch.rand(4, 3) + 0.5)
    torch.testing.assert_close(kl_divergence(q, prior), kl_divergence(q, dist.Normal(0.0, 1.0)).expand(2, 4, 3),
                               rtol=1e-6, atol=1e-6)


def test_guide_is_diagonal_normal_from_encoder_heads():
    encoder, _ = __import__("ppl_vae").make_networks("mlp", (4,), 2, (8,))
    guide = DiagonalNormalGuide(encoder, 2)
    x = torch.rand(3, 4)
    loc, scale = guide.loc_scale(x)
    q = poutine.trace(guide).get_trace(x).nodes["z"]["fn"]
    torch.testing.assert_close(q.base_dist.loc, loc, rtol=0, atol=0)
    torch.testing.assert_close(q.base_dist.scale, scale, rtol=0, atol=0)
    assert (scale > 0).all()


def test_pyro_module_registers_parameters_for_plain_svi():
    model, guide = build_pair(ModelConfig(event_shape=(4,), z_dim=2, hidden_dims=(8,), likelihood="gaussian"))
    x = torch.rand(3, 4)
    traces(model, guide, x)
    names = set(pyro.get_param_store().keys())
    assert "model$$$likelihood.log_scale" in names
    assert any(n.startswith("guide$$$encoder.") for n in names)
    assert len(names) == len(list(model.parameters())) + len(list(guide.parameters()))


def test_generate_gives_images_in_the_support():
    model, _ = build_pair(ModelConfig(event_shape=(1, 28, 28), z_dim=2, hidden_dims=(8,)))
    images = model.generate(4, torch.zeros(1))
    assert images.shape == (4, 1, 28, 28)
    assert ((images >= 0) & (images <= 1)).all()


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: make_guide("flowy", torch.nn.Identity(), 2), "unknown guide 'flowy'; choose from diag, full-rank, planar, iaf"),
        (lambda: VAE(torch.nn.Identity(), 0, (4,)), "z_dim must be at least 1"),
        (lambda: build_pair(ModelConfig(z_dim=0)), "z_dim must be at least 1"),
    ],
    ids=["guide-name", "model-z-dim", "config-z-dim"],
)
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()
