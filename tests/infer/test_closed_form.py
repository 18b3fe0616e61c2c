"""Pyro's ELBO estimators against the closed-form ELBO (float64, fixed seeds)."""

import pyro.distributions as dist
import pytest
import torch
from conftest import IdentityEncoder
from pyro.infer import Trace_ELBO
from torch import nn

from ppl_vae import VAE, DiagonalNormalGuide, MLPDecoder, MLPEncoder
from ppl_vae.infer.agreement import elbo_agreement
from ppl_vae.infer.closed_form import (
    closed_form_elbo,
    guide_gaussian,
    kl_diagonal_diagonal,
    kl_diagonal_standard,
    kl_full_rank_standard,
)
from ppl_vae.models.linear_gaussian import ExactPosteriorGuide, LinearGaussianVAE
from ppl_vae.nn.likelihoods import LIKELIHOODS
from ppl_vae.nn.registration import registration_skipped

pytestmark = pytest.mark.usefixtures("float64")



def test_kl_formulas_match_pyros_registry():
    torch.manual_seed(0)
    loc, scale = torch.randn(6, 3), torch.rand(6, 3) + 0.2
    loc_p, scale_p = torch.randn(6, 3), torch.rand(6, 3) + 0.2
    q = dist.Normal(loc, scale).to_event(1)
    expected = torch.distributions.kl_divergence(q, dist.Normal(torch.zeros(3), torch.ones(3)).to_event(1))
    torch.testing.assert_close(kl_diagonal_standard(loc, scale), expected, rtol=1e-12, atol=1e-12)
    expected = torch.distributions.kl_divergence(q, dist.Normal(loc_p, scale_p).to_event(1))
    torch.testing.assert_close(kl_diagonal_diagonal(loc, scale, loc_p, scale_p), expected, rtol=1e-12, atol=1e-12)
    tril = torch.randn(6, 3, 3).tril(-1) + torch.diag_embed(torch.rand(6, 3) + 0.3)
    expected = torch.distributions.kl_divergence(dist.MultivariateNormal(loc, scale_tril=tril),
                                  dist.MultivariateNormal(torch.zeros(3), torch.eye(3)))
    torch.testing.assert_close(kl_full_rank_standard(loc, tril), expected, rtol=1e-12, atol=1e-12)


def data_for(likelihood: str, n: int, dim: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    if likelihood == "bernoulli":
        return torch.bernoulli(torch.full((n, dim), 0.3), generator=generator)
    if likelihood.startswith("gaussian"):
        return torch.randn(n, dim, generator=generator)
    return torch.rand(n, dim, generator=generator)


@pytest.mark.parametrize("likelihood", list(LIKELIHOODS))
def test_pyro_estimators_agree_with_closed_form(likelihood):
    torch.manual_seed(0)
    model = VAE(MLPDecoder(3, (8,), (16,), "tanh"), 3, (8,), likelihood)
    guide = DiagonalNormalGuide(MLPEncoder((8,), (16,), "tanh"), 3)
    table = elbo_agreement(model, guide, data_for(likelihood, 10, 8), num_particles=200, repeats=20,
                           num_samples=4000)
    assert (table["z"].abs() < 4).all(), table.to_string()
    assert (table["std_error"] > 0).all() and (table["reference_std_error"] > 0).all()


def test_estimators_agree_with_exact_linear_gaussian_elbo():
    torch.manual_seed(0)
    model = LinearGaussianVAE(6, 2, init_sigma=0.7)
    guide = DiagonalNormalGuide(IdentityEncoder(6), 2)
    x = torch.randn(15, 6)
    table = elbo_agreement(model, guide, x, num_particles=200, repeats=20)
    assert (table["reference_std_error"] == 0).all()  # the expected log-likelihood is exact here
    assert (table["z"].abs() < 4).all(), table.to_string()


def test_agreement_check_has_power():
    """A closed form off by 0.25 nats per datapoint would be more than 4 standard errors away
    (60 datapoints; ``ppl-vae check`` uses 500 by default)."""
    torch.manual_seed(0)
    model = LinearGaussianVAE(6, 2, init_sigma=0.7)
    guide = DiagonalNormalGuide(IdentityEncoder(6), 2)
    x = torch.randn(60, 6)
    table = elbo_agreement(model, guide, x, num_particles=200, repeats=20)
    assert ((table["difference"] + 0.25).abs() / table["std_error"] > 4).all(), table.to_string()


def test_exact_posterior_makes_the_elbo_the_log_likelihood():
    torch.manual_seed(0)
    model = LinearGaussianVAE(5, 3, init_sigma=0.4)
    with torch.no_grad():
        model.decoder.weight.mul_(3.0)
    x = model.marginal().sample((20,))
    exact = model.log_marginal(x)
    torch.testing.assert_close(closed_form_elbo(model, ExactPosteriorGuide(model), x).elbo, exact,
                               rtol=0, atol=1e-6)
    other = closed_form_elbo(model, DiagonalNormalGuide(IdentityEncoder(5), 3), x).elbo
    assert (other < exact).all()


def test_trace_elbo_gradients_match_closed_form_gradients():
    torch.manual_seed(0)
    model = LinearGaussianVAE(4, 2, init_sigma=0.8)
    guide = DiagonalNormalGuide(IdentityEncoder(4), 2)
    x = torch.randn(10, 4)
    params = [*model.parameters(), *guide.parameters()]

    def flat_grad(loss):
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])

    exact = flat_grad(-closed_form_elbo(model, guide, x).elbo.sum())
    wrong = flat_grad(-(closed_form_elbo(model, guide, x).elbo - closed_form_elbo(model, guide, x).kl).sum())
    elbo = Trace_ELBO(num_particles=500, vectorize_particles=True, max_plate_nesting=1)
    with registration_skipped():
        draws = torch.stack([flat_grad(elbo.differentiable_loss(model, guide, x)) for _ in range(40)])
    mean, std_error = draws.mean(0), draws.std(0) / 40**0.5
    z = (mean - exact) / std_error
    assert z.abs().max() < 5, z  # 5 standard errors: ~1e-5 false-alarm rate over all elements
    assert ((mean - wrong) / std_error).abs().max() > 20  # and the test can tell a wrong KL weight


def test_guide_gaussian_refuses_non_gaussian_guides():
    class Uniform(nn.Module):
        def distribution(self, x):
            return dist.Uniform(torch.zeros(len(x), 2), torch.ones(len(x), 2)).to_event(1)

    with pytest.raises(TypeError, match="no closed form"):
        guide_gaussian(Uniform(), torch.zeros(3, 4))
