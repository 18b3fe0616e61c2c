"""Every guide of the registry: contract, identity initialization, exact log q, training, checkpoints."""

import math

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import Trace_ELBO
from torch.autograd.functional import jacobian

from ppl_vae import (
    GUIDES,
    DiagonalNormalGuide,
    ModelConfig,
    SVIStep,
    build_pair,
    load_pair,
    make_guide,
    save_checkpoint,
)
from ppl_vae.data.datasets import load_dataset
from ppl_vae.guides import FlowGuide, FullRankGuide
from ppl_vae.infer.agreement import elbo_agreement
from ppl_vae.nn.networks import MLPEncoder
from ppl_vae.training.evaluation import evaluation_table

CONFIG = ModelConfig(event_shape=(1, 28, 28), z_dim=4, hidden_dims=(32,))


@pytest.fixture
def x():
    return torch.bernoulli(torch.full((6, 1, 28, 28), 0.3), generator=torch.Generator().manual_seed(0))


def pair(name, **options):
    return build_pair(ModelConfig(**{**CONFIG.to_dict(), "guide": name, "guide_options": options}))


@pytest.mark.parametrize("name", list(GUIDES))
def test_guide_samples_the_models_latent_site(name, x):
    model, guide = pair(name)
    guide_trace = poutine.trace(guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    site = guide_trace.nodes["z"]
    assert site["value"].shape == (6, 4) and site["fn"].batch_shape == (6,) and site["fn"].event_shape == (4,)
    assert model_trace.nodes["z"]["value"] is site["value"]
    assert [f.name for f in site["cond_indep_stack"]] == ["data"]


@pytest.mark.parametrize("name, options", [("iaf", {}), ("iaf", {"num_flows": 3, "permutation": "random"}),
                                           ("planar", {})], ids=["iaf", "iaf-3-random", "planar"])
def test_identity_initialization_is_the_diagonal_guide(name, options, x):
    model, flow_guide = pair(name, **options)
    diagonal = DiagonalNormalGuide(flow_guide.encoder, 4)
    diagonal.loc_head, diagonal.log_scale_head = flow_guide.loc_head, flow_guide.log_scale_head
    traces = []
    for guide in (flow_guide, diagonal):
        pyro.set_rng_seed(3)
        trace = poutine.trace(guide).get_trace(x)
        trace.compute_log_prob()
        traces.append(trace)
    torch.testing.assert_close(traces[0].nodes["z"]["value"], traces[1].nodes["z"]["value"], rtol=0, atol=1e-6)
    torch.testing.assert_close(traces[0].nodes["z"]["log_prob"], traces[1].nodes["z"]["log_prob"], rtol=0, atol=1e-5)
    losses = []
    for guide in (flow_guide, diagonal):
        pyro.set_rng_seed(4)
        losses.append(Trace_ELBO().loss(model, guide, x))
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)


def fresh_log_q(guide, x, seed):
    """log q(z|x) of the guide's draw under ``seed``, by change of variables with autograd Jacobians."""
    torch.set_default_dtype(torch.float64)
    try:
        guide = guide.double()
        x = x.double()
        h = guide.features(x)
        if isinstance(guide, FullRankGuide):
            loc, tril = guide.loc_scale_tril(x)
            pyro.set_rng_seed(seed)
            z = dist.MultivariateNormal(loc, scale_tril=tril).sample()
            white = torch.linalg.solve_triangular(tril, (z - loc).unsqueeze(-1), upper=False).squeeze(-1)
            log_q = (-0.5 * white.pow(2).sum(-1) - tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
                     - 2 * math.log(2 * math.pi))
            return z, log_q
        loc, scale = guide.loc_head(h), guide.log_scale_head(h).exp()
        pyro.set_rng_seed(seed)
        z0 = dist.Normal(loc, scale).sample()
        log_q = (-0.5 * ((z0 - loc) / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
        if isinstance(guide, FlowGuide):
            context = guide.context_head(h)
            z = []
            for i in range(len(x)):
                transforms = guide.transforms(context[i])

                def flow(v, transforms=transforms):
                    for transform in transforms:
                        v = transform(v)
                    return v

                log_q[i] = log_q[i] - torch.linalg.slogdet(jacobian(flow, z0[i])).logabsdet
                z.append(flow(z0[i]))
            return torch.stack(z), log_q
        return z0, log_q
    finally:
        torch.set_default_dtype(torch.float32)


@pytest.mark.parametrize("name", list(GUIDES))
def test_log_q_in_the_trace_is_exact(name, x):
    _, guide = pair(name)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # away from the identity, so that the flows matter
        for param in guide.parameters():
            param.add_(0.3 * torch.randn(param.shape, generator=generator))
        guide = guide.double()
        pyro.set_rng_seed(5)
        trace = poutine.trace(guide).get_trace(x.double())
        trace.compute_log_prob()
    z, log_q = fresh_log_q(guide, x, seed=5)
    torch.testing.assert_close(trace.nodes["z"]["value"], z, rtol=0, atol=1e-8)
    torch.testing.assert_close(trace.nodes["z"]["log_prob"], log_q, rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def sample():
    return load_dataset("binarized-mnist-sample")


@pytest.mark.parametrize("name", list(GUIDES))
def test_every_guide_trains_with_the_same_model(name, sample):
    torch.manual_seed(0)
    model, guide = build_pair(ModelConfig(z_dim=8, hidden_dims=(200,), guide=name))
    step = SVIStep(model, guide, Trace_ELBO(), lr=1e-3)
    x_test = torch.bernoulli(sample.test[:500], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = -Trace_ELBO(num_particles=5).loss(model, guide, x_test) / 500
    losses = [step(x) for x, _ in zip(sample.batches("train", 100, shuffle=True), range(200))]
    with torch.no_grad():
        after = -Trace_ELBO(num_particles=5).loss(model, guide, x_test) / 500
    assert all(math.isfinite(v) for v in losses)
    assert after > before + 150, (before, after)  # from about -543 nats to below -250


@pytest.mark.parametrize("name, options", [("iaf", {"permutation": "random", "num_flows": 3}), ("planar", {}),
                                           ("full-rank", {}), ("diag", {})])
def test_checkpoint_round_trip_reproduces_log_q(name, options, x, tmp_path):
    config = ModelConfig(**{**CONFIG.to_dict(), "guide": name, "guide_options": options})
    model, guide = build_pair(config)
    with torch.no_grad():
        for param in guide.parameters():
            param.add_(0.1 * torch.randn(param.shape))
    save_checkpoint(tmp_path / "checkpoint.pt", model, guide, config)
    torch.manual_seed(123)  # a different random permutation would be drawn on rebuilding
    _, loaded, _ = load_pair(tmp_path)
    for a, b in zip(guide.buffers(), loaded.buffers()):
        assert torch.equal(a, b)
    traces = []
    for g in (guide, loaded):  # planar flows have no inverse: score each guide's own draw, same seed
        pyro.set_rng_seed(9)
        traces.append(poutine.trace(g).get_trace(x))
        traces[-1].compute_log_prob()
    torch.testing.assert_close(traces[1].nodes["z"]["value"], traces[0].nodes["z"]["value"], rtol=0, atol=1e-7)
    torch.testing.assert_close(traces[1].nodes["z"]["log_prob"], traces[0].nodes["z"]["log_prob"], rtol=0, atol=1e-7)


@pytest.mark.parametrize("name", ["iaf", "planar"])
def test_gradients_reach_every_flow_parameter(name, x):
    model, guide = pair(name)
    step = SVIStep(model, guide, Trace_ELBO(), lr=1e-2)
    step(x)  # leaves the identity: the flows' output layers start at zero
    step.optimizer.zero_grad()
    step.loss(x).backward()
    flow_params = [(n, p) for n, p in guide.named_parameters() if n.startswith("flows.")]
    assert flow_params
    for name_, param in flow_params:
        assert param.grad is not None and param.grad.abs().sum() > 0, name_


@pytest.mark.parametrize("name", ["planar", "iaf"])
def test_flow_guides_work_with_the_evaluator_and_the_check(name, x):
    model, guide = pair(name)
    row = evaluation_table(model, guide, x, num_samples=20, chunk_size=7)
    assert math.isfinite(row["nll"]) and math.isnan(row["kl"])  # no closed-form KL for flows
    table = elbo_agreement(model, guide, x, num_particles=50, repeats=10, num_samples=2000)
    assert (table["reference_kind"] == "monte-carlo").all()
    assert (table["z"].abs() < 4).all(), table.to_string()


def test_a_user_written_guide_trains_and_evaluates(sample):
    """Any callable that samples "z" works with the library's training and evaluation."""
    from ppl_vae.infer.importance import estimate_log_likelihood

    torch.manual_seed(0)
    model, _ = build_pair(ModelConfig(z_dim=2, hidden_dims=(64,)))

    def my_guide(x):
        loc = pyro.param("my_loc", torch.zeros(2))
        scale = pyro.param("my_scale", torch.ones(2), constraint=dist.constraints.positive)
        with pyro.plate("data", x.shape[0]):
            return pyro.sample("z", dist.Normal(loc, scale).expand([x.shape[0], 2]).to_event(1))

    step = SVIStep(model, my_guide, Trace_ELBO(), lr=1e-2)
    batches = sample.batches("train", 100)
    first = step(next(batches))
    scale_before = pyro.param("my_scale").detach().clone()
    for x, _ in zip(batches, range(50)):
        last = step(x)
    assert last < first
    assert not torch.equal(pyro.param("my_scale").detach(), scale_before)  # the guide's params are optimized
    result, _ = estimate_log_likelihood(model, my_guide, sample.test[:5].bernoulli(), num_samples=10)
    assert torch.isfinite(result.log_likelihood).all()


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: make_guide("iaf", MLPEncoder((4,), (8,)), 1), "needs z_dim >= 2"),
        (lambda: make_guide("iaf", MLPEncoder((4,), (8,)), 3, num_flows=0), "num_flows must be at least 1"),
        (lambda: make_guide("planar", MLPEncoder((4,), (8,)), 3, permutation="sorted"), "unknown permutation"),
        (lambda: make_guide("iaf", MLPEncoder((4,), (8,)), 3, context_dim=0), "context_dim must be at least 1"),
    ],
    ids=["z-dim", "num-flows", "permutation", "context-dim"],
)
def test_bad_guide_options(call, message):
    with pytest.raises(ValueError, match=message):
        call()
