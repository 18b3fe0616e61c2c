"""Each prior's log-density against an independent computation, sampling against the
log-density, Pyro's estimators against the reference ELBO, and checkpoint round trips."""

import math

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO

from ppl_vae import ModelConfig, build_pair
from ppl_vae.guides import DiagonalNormalGuide, IAFGuide
from ppl_vae.infer.agreement import elbo_agreement
from ppl_vae.infer.importance import estimate_log_likelihood
from ppl_vae.nn.networks import MLPEncoder
from ppl_vae.priors import PRIORS, FlowPrior, MixturePrior, StandardNormalPrior, VampPrior, make_prior

GUIDES = {"diag": {}, "full-rank": {}, "planar": {"num_flows": 2}, "iaf": {"num_flows": 2}}
PRIOR_OPTIONS = {"standard": {}, "mixture": {"num_components": 3}, "vamp": {"num_pseudo_inputs": 4}, "flow": {"num_flows": 2}}


def gaussian_log_density(z, loc, scale):
    """log N(z; loc, diag scale^2), summed over the last dimension, written out."""
    return (-0.5 * ((z - loc) / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)).sum(-1)


def test_mixture_log_prob_is_a_hand_written_logsumexp(float64):
    prior = MixturePrior(3, num_components=4).double()
    with torch.no_grad():
        prior.logits.copy_(torch.randn(4))
        prior.log_scale.copy_(0.3 * torch.randn(4, 3))
    z = torch.randn(7, 3)
    log_weights = prior.logits - prior.logits.logsumexp(0)
    terms = [log_weights[k] + gaussian_log_density(z, prior.loc[k], prior.log_scale[k].exp()) for k in range(4)]
    expected = torch.stack(terms).exp().sum(0).log()
    torch.testing.assert_close(prior(7, z).log_prob(z), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("guide_class", [DiagonalNormalGuide, IAFGuide])
def test_vamp_log_prob_is_the_mean_over_pseudo_inputs(guide_class, float64):
    guide = guide_class(MLPEncoder((5,), (8,)), z_dim=3).double()
    prior = VampPrior(guide, num_pseudo_inputs=6, pseudo_inputs=torch.randn(6, 5))
    z = torch.randn(4, 3)
    densities = []
    for u in prior.pseudo_inputs:  # an explicit loop: q_0(z | u_k) from the guide's own heads
        loc, scale = guide.loc_scale(u.unsqueeze(0))
        densities.append(gaussian_log_density(z, loc, scale).exp())
    expected = torch.stack(densities).mean(0).log()
    torch.testing.assert_close(prior(4, z).log_prob(z), expected, rtol=1e-10, atol=1e-12)
    assert not any(p is q for p in prior.parameters() for q in guide.parameters())  # the guide's stay the guide's
    assert [name for name, _ in prior.named_parameters()] == ["pseudo_inputs"]


def test_flow_prior_log_prob_is_the_change_of_variables_with_the_autograd_jacobian(float64):
    prior = FlowPrior(3, num_flows=3, hidden_dims=(10,)).double()
    for flow in prior.flows:  # away from the identity initialization
        for p in flow.parameters():
            torch.nn.init.normal_(p, std=0.3)

    def to_base(z):  # z -> u: each step's forward pass (parallel), the reversal between steps
        for i, flow in enumerate(prior.flows):
            if i:
                z = z.flip(-1)
            z = flow(z)
        return z

    for z in torch.randn(5, 3):
        jacobian = torch.autograd.functional.jacobian(to_base, z)
        u = to_base(z)
        expected = gaussian_log_density(u, torch.zeros(3), torch.ones(3)) + torch.linalg.slogdet(jacobian)[1]
        torch.testing.assert_close(prior(1, z).log_prob(z.unsqueeze(0))[0], expected, rtol=1e-10, atol=1e-10)


def prior_for_sampling(name: str):
    torch.manual_seed(3)
    guide = DiagonalNormalGuide(MLPEncoder((4,), (8,)), z_dim=2)
    prior = make_prior(name, 2, guide, **PRIOR_OPTIONS[name])
    with torch.no_grad():
        for p in prior.parameters():
            p.add_(0.5 * torch.randn_like(p))
    return prior


@pytest.mark.parametrize("name", list(PRIORS))
def test_draws_follow_the_log_density(name):
    """E_{z ~ p}[q(z) / p(z)] = 1 for any density q, here N(0, 0.7^2 I): the draws come from the
    distribution whose log_prob is scored. The tolerance is 4 standard errors of the mean."""
    prior = prior_for_sampling(name)
    with torch.no_grad():
        p = prior(1, torch.zeros(1)).expand((40_000,))
        z = p.sample()
        log_q = gaussian_log_density(z, torch.zeros(2), torch.full((2,), 0.7))
        ratio = (log_q - p.log_prob(z)).exp().double()
    mean, std_error = ratio.mean().item(), (ratio.std() / math.sqrt(len(ratio))).item()
    assert abs(mean - 1) < 4 * std_error, (mean, std_error)
    assert std_error < 0.05  # the test has power


@pytest.mark.parametrize("guide_name", list(GUIDES))
@pytest.mark.parametrize("prior", list(PRIORS))
def test_trace_elbo_agrees_with_the_reference_for_every_prior_and_guide(prior, guide_name):
    torch.manual_seed(1)
    model, guide = build_pair(ModelConfig(z_dim=3, hidden_dims=(16,), guide=guide_name, guide_options=GUIDES[guide_name],
                                          prior=prior, prior_options=PRIOR_OPTIONS[prior]))
    x = torch.bernoulli(torch.full((6, 1, 28, 28), 0.3), generator=torch.Generator().manual_seed(2))
    table = elbo_agreement(model, guide, x, num_particles=20, repeats=8, num_samples=400).set_index("estimator")
    assert (table["z"].abs() < 4).all(), table
    analytic = prior == "standard" and guide_name in ("diag", "full-rank")
    assert set(table["reference_kind"]) == {"closed-form" if analytic else "monte-carlo"}


@pytest.mark.parametrize("prior", list(PRIORS))
def test_the_importance_sampled_bound_is_at_least_the_elbo(prior):
    model, guide = build_pair(ModelConfig(z_dim=3, hidden_dims=(16,), prior=prior, prior_options=PRIOR_OPTIONS[prior]))
    x = torch.bernoulli(torch.full((5, 1, 28, 28), 0.3), generator=torch.Generator().manual_seed(2))
    result, means = estimate_log_likelihood(model, guide, x, num_samples=64, chunk_size=16)
    assert (result.log_likelihood >= result.elbo).all()
    assert set(means) == {"z"} and means["z"].shape == (5, 3)


@pytest.mark.parametrize("prior", list(PRIORS))
def test_checkpoint_round_trip_reproduces_log_p_and_log_q_exactly(prior, tmp_path):
    config = ModelConfig(z_dim=3, hidden_dims=(16,), guide="iaf", prior=prior, prior_options=PRIOR_OPTIONS[prior])
    model, guide = build_pair(config)
    x = torch.bernoulli(torch.full((8, 1, 28, 28), 0.4), generator=torch.Generator().manual_seed(2))
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
    for _ in range(3):
        svi.step(x)
    torch.save({"model": model.state_dict(), "guide": guide.state_dict()}, tmp_path / "pair.pt")
    torch.manual_seed(123)  # other initial weights, then the saved ones
    loaded_model, loaded_guide = build_pair(config)
    state = torch.load(tmp_path / "pair.pt")
    loaded_model.load_state_dict(state["model"])
    loaded_guide.load_state_dict(state["guide"])
    with torch.no_grad():
        z = guide.distribution(x).sample()
        for a, b in ((model, loaded_model), (guide, loaded_guide)):
            dist_a = a.prior(8, x) if a is model else a.distribution(x)
            dist_b = b.prior(8, x) if b is loaded_model else b.distribution(x)
            assert torch.equal(dist_a.log_prob(z), dist_b.log_prob(z))


def test_make_prior_names_the_valid_choices():
    with pytest.raises(ValueError, match="unknown prior 'gauss'; choose from standard, mixture, vamp, flow"):
        make_prior("gauss", 3)
    with pytest.raises(ValueError, match="the mixture prior has no option 'num_flows'"):
        make_prior("mixture", 3, num_flows=2)
    with pytest.raises(ValueError, match="built on a guide"):
        make_prior("vamp", 3)
    assert isinstance(make_prior("standard", 3), StandardNormalPrior)


@pytest.mark.parametrize("build, message", [
    (lambda: MixturePrior(3, num_components=0), "num_components must be at least 1, got 0"),
    (lambda: VampPrior(DiagonalNormalGuide(MLPEncoder((4,), (8,)), 2), num_pseudo_inputs=0),
     "num_pseudo_inputs must be at least 1, got 0"),
    (lambda: VampPrior(DiagonalNormalGuide(MLPEncoder((1, 28, 28), (8,)), 2), 3, torch.rand(3, 1, 32, 32)),
     r"pseudo-inputs have shape \(3, 1, 32, 32\), but the guide's encoder takes \(1, 28, 28\)"),
    (lambda: FlowPrior(3, num_flows=0), "num_flows must be at least 1, got 0"),
    (lambda: FlowPrior(1), "the flow prior needs z_dim >= 2"),
], ids=["mixture-0", "vamp-0", "vamp-shape", "flow-0", "flow-1d"])
def test_bad_prior_arguments(build, message):
    with pytest.raises(ValueError, match=message):
        build()
