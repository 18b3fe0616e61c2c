"""The IWAE bound against the exact log-likelihood, Trace_ELBO and Pyro's RenyiELBO."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import RenyiELBO, Trace_ELBO

from ppl_vae import IWAE_ELBO, make_elbo
from ppl_vae.infer.compiled import CompiledIWAE_ELBO
from ppl_vae.models.linear_gaussian import ExactPosteriorGuide

pytestmark = pytest.mark.usefixtures("float64")


@pytest.mark.parametrize("k, vectorize", [(1, False), (5, False), (5, True)], ids=["k1", "k5-loop", "k5-vectorized"])
def test_exact_posterior_gives_the_exact_log_likelihood(linear_gaussian, k, vectorize):
    """With q(z|x) = p(z|x) every importance weight is p(x): the bound is log p(x) with no noise."""
    model, _, x = linear_gaussian
    elbo = IWAE_ELBO(num_particles=k, vectorize_particles=vectorize, max_plate_nesting=1)
    log_weights = elbo.log_weights(model, ExactPosteriorGuide(model), x)
    assert log_weights.shape == (k, len(x))
    torch.testing.assert_close(log_weights, model.log_marginal(x).expand(k, -1), rtol=0, atol=1e-9)
    loss = elbo.differentiable_loss(model, ExactPosteriorGuide(model), x)
    torch.testing.assert_close(loss, -model.log_marginal(x).sum(), rtol=0, atol=1e-8)


def test_one_particle_is_trace_elbo_on_the_same_draws(linear_gaussian):
    model, guide, x = linear_gaussian
    pyro.set_rng_seed(3)
    iwae = IWAE_ELBO(num_particles=1, max_plate_nesting=1).differentiable_loss(model, guide, x)
    pyro.set_rng_seed(3)
    trace = Trace_ELBO(max_plate_nesting=1).differentiable_loss(model, guide, x)
    torch.testing.assert_close(iwae, trace, rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("vectorize", [False, True], ids=["loop", "vectorized"])
def test_loss_and_gradient_are_pyros_renyi_elbo_at_alpha_0(linear_gaussian, vectorize):
    model, guide, x = linear_gaussian
    params = [*model.parameters(), *guide.parameters()]
    options = {"num_particles": 4, "vectorize_particles": vectorize, "max_plate_nesting": 1}
    pyro.set_rng_seed(5)
    loss = IWAE_ELBO(**options).differentiable_loss(model, guide, x)
    ours = torch.autograd.grad(loss, params)
    pyro.set_rng_seed(5)
    renyi_loss = RenyiELBO(alpha=0, **options).loss_and_grads(model, guide, x)
    torch.testing.assert_close(loss.item(), renyi_loss, rtol=1e-12, atol=1e-9)
    for mine, theirs in zip(ours, (p.grad for p in params)):
        torch.testing.assert_close(mine, theirs, rtol=1e-9, atol=1e-9)


def test_the_bound_grows_with_k_and_stays_below_log_p_x(linear_gaussian):
    """E L_1 < E L_10 < log p(x) for a poor guide (Burda et al. 2015, Theorem 1), within 4 standard errors."""
    model, guide, x = linear_gaussian
    exact = model.log_marginal(x).sum().item()
    means = []
    for k in (1, 10):
        elbo = IWAE_ELBO(num_particles=k, vectorize_particles=k > 1, max_plate_nesting=1)
        with torch.no_grad():
            values = torch.tensor([-elbo.differentiable_loss(model, guide, x).item() for _ in range(200)])
        std_error = (values.std() / len(values) ** 0.5).item()
        assert values.mean().item() < exact + 4 * std_error, (k, values.mean(), exact)
        means.append((values.mean().item(), std_error))
    (low, low_error), (high, high_error) = means
    assert high - low > 4 * (low_error**2 + high_error**2) ** 0.5, means


def test_non_reparameterized_guide_sites_are_refused():
    def model():
        pyro.sample("c", dist.Bernoulli(0.3))

    def guide():
        pyro.sample("c", dist.Bernoulli(0.5))

    with pytest.raises(NotImplementedError, match="reparameterized guide sites; 'c'"):
        IWAE_ELBO(num_particles=2).differentiable_loss(model, guide)


def test_make_elbo_builds_it_and_its_compiled_version():
    for jit in (False, True):
        elbo = make_elbo("iwae", num_particles=5, jit=jit)
        assert isinstance(elbo, IWAE_ELBO) and elbo.num_particles == 5 and elbo.vectorize_particles
        assert isinstance(elbo, CompiledIWAE_ELBO) == jit
