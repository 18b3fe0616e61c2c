import copy

import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO

from ppl_vae import (
    LatentScaleMessenger,
    ModelConfig,
    SVIStep,
    TrainConfig,
    build_pair,
    evaluate_elbo,
    fit,
    make_elbo,
)
from ppl_vae.data.datasets import load_dataset
from ppl_vae.infer.latent_scale import warmup_scale

SMALL = ModelConfig(event_shape=(1, 28, 28), z_dim=10, hidden_dims=(200,), likelihood="bernoulli")


@pytest.fixture(scope="module")
def sample():
    return load_dataset("binarized-mnist-sample")


def test_a_few_steps_reduce_the_loss(sample):
    model, guide = build_pair(SMALL)
    x = torch.bernoulli(sample.train[:64])
    step = SVIStep(model, guide, Trace_ELBO(), lr=1e-3)
    losses = [step(x) / len(x) for _ in range(60)]
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    # at initialization the loss is about 784 * log 2 = 543 nats; 60 steps at lr 1e-3 cut it far below
    assert last < first - 150, (first, last)


def test_two_epochs_raise_the_test_elbo_by_a_clear_margin(sample):
    model, guide = build_pair(SMALL)
    before = evaluate_elbo(model, guide, sample)
    metrics = fit(model, guide, sample, TrainConfig(epochs=2, batch_size=100), progress=False)
    after = evaluate_elbo(model, guide, sample)
    assert before < -500  # a random decoder is close to 784 * log 1/2 = -543 nats
    assert after > before + 300, (before, after)
    assert metrics["test_elbo"].iloc[1] > metrics["test_elbo"].iloc[0]
    assert list(metrics.columns) == ["epoch", "train_elbo", "test_elbo", "beta", "lr", "skipped_steps", "seconds"]


def test_same_seed_same_loss_sequence(sample):
    data = copy.copy(sample)
    data.train, data.test = sample.train[:1000], sample.test[:200]
    runs = []
    for _ in range(2):
        torch.manual_seed(123)  # the initial weights
        model, guide = build_pair(SMALL)
        runs.append((fit(model, guide, data, TrainConfig(epochs=2, batch_size=50, seed=7), progress=False), model))
    (m1, model1), (m2, model2) = runs
    assert m1[["train_elbo", "test_elbo"]].equals(m2[["train_elbo", "test_elbo"]])
    for p1, p2 in zip(model1.parameters(), model2.parameters()):
        torch.testing.assert_close(p1, p2, rtol=0, atol=0)


def test_step_matches_pyro_svi_on_the_same_draws(sample):
    model, guide = build_pair(SMALL)
    model2, guide2 = copy.deepcopy(model), copy.deepcopy(guide)
    x = torch.bernoulli(sample.train[:32])
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())
    step = SVIStep(model2, guide2, Trace_ELBO(), lr=1e-3)
    for seed in range(3):
        pyro.set_rng_seed(seed)
        expected = svi.step(x)
        pyro.set_rng_seed(seed)
        actual = step(x)
        assert actual == pytest.approx(expected, rel=1e-6)
    for p, q in zip([*model.parameters(), *guide.parameters()], [*model2.parameters(), *guide2.parameters()]):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_latent_scale_messenger_scales_only_latent_sites():
    model, guide = build_pair(ModelConfig(event_shape=(6,), z_dim=2, hidden_dims=(8,)))
    x = torch.bernoulli(torch.full((4, 6), 0.5))
    kl = LatentScaleMessenger(2.5)
    guide_trace = poutine.trace(kl(guide)).get_trace(x)
    model_trace = poutine.trace(poutine.replay(kl(model), trace=guide_trace)).get_trace(x)
    assert guide_trace.nodes["z"]["scale"] == 2.5
    assert model_trace.nodes["z"]["scale"] == 2.5
    assert model_trace.nodes["x"]["scale"] == 1.0
    # the Trace_ELBO loss is then -(log p(x|z) + beta * (log p(z) - log q(z|x)))
    model_trace.compute_log_prob()
    guide_trace.compute_log_prob()
    nodes, q = model_trace.nodes, guide_trace.nodes
    expected = -(
        nodes["x"]["unscaled_log_prob"].sum()
        + 2.5 * (nodes["z"]["unscaled_log_prob"].sum() - q["z"]["unscaled_log_prob"].sum())
    )
    loss = Trace_ELBO().differentiable_loss(
        poutine.replay(kl(model), trace=guide_trace), poutine.replay(kl(guide), trace=guide_trace), x
    )
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-5)


def test_warmup_schedule_is_linear_and_positive():
    assert warmup_scale(2.0, 0, 0) == 2.0
    values = [warmup_scale(2.0, step, 4) for step in range(6)]
    assert values == [0.5, 1.0, 1.5, 2.0, 2.0, 2.0]


def test_warmup_is_recorded_per_epoch(sample):
    data = copy.copy(sample)
    data.train, data.test = sample.train[:500], sample.test[:100]
    model, guide = build_pair(SMALL)
    metrics = fit(model, guide, data, TrainConfig(epochs=3, batch_size=100, warmup_epochs=2), progress=False)
    assert metrics["beta"].tolist() == [0.5, 1.0, 1.0]


@pytest.mark.parametrize("name", ["trace", "mean-field"])
def test_vectorized_particles_estimate_the_same_elbo(name, sample):
    model, guide = build_pair(SMALL)
    x = torch.bernoulli(sample.test[:20])
    with torch.no_grad():
        many = make_elbo(name, num_particles=2000).differentiable_loss(model, guide, x).item()
        single = [make_elbo(name).differentiable_loss(model, guide, x).item() for _ in range(200)]
    mean = sum(single) / len(single)
    variance = sum((s - mean) ** 2 for s in single) / (len(single) - 1)
    # both sides are Monte Carlo means of the same per-particle loss: 200 and 2000 draws
    std_error = (variance / 200 + variance / 2000) ** 0.5
    assert abs(many - mean) < 4 * std_error


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: make_elbo("renyi"), "unknown ELBO 'renyi'; choose from trace, mean-field"),
        (lambda: make_elbo("trace", 0), "num_particles must be at least 1"),
    ],
    ids=["elbo-name", "particles"],
)
def test_bad_elbo_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("field, value, message", [
    ("batch_size", 0, "batch_size must be at least 1"), ("beta", 0.0, "beta must be positive"),
    ("lr", float("inf"), "lr must be positive and finite"), ("warmup_epochs", float("inf"), "warmup_epochs must be finite"),
    ("epochs", 2.5, "epochs must be an integer"), ("elbo", "renyi", "elbo is 'renyi', not a known ELBO"),
])
def test_bad_train_config(field, value, message):
    """A TrainConfig refuses a bad value when it is built, before fit or the CLI sees it."""
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{"epochs": 1, field: value})


def test_adam_step_is_torch_adams_step_bitwise():
    from ppl_vae.infer.svi_step import adam_step, make_adam

    torch.manual_seed(0)
    params = [torch.randn(30, 20, requires_grad=True), torch.randn(20, requires_grad=True),
              torch.randn(5, requires_grad=True)]
    copies = [p.detach().clone().requires_grad_() for p in params]
    ours, torchs = make_adam(params, 1e-2), make_adam(copies, 1e-2)
    for step in range(5):
        grads = [torch.randn_like(p) for p in params]
        for p, q, g in zip(params, copies, grads):
            p.grad, q.grad = g.clone(), g.clone()
        params[2].grad = copies[2].grad = None if step in (0, 3) else params[2].grad  # no gradient on some steps
        if step == 2:
            for optimizer in (ours, torchs):
                optimizer.param_groups[0]["lr"] = 3e-3  # a schedule's change is seen
        adam_step(ours)
        torchs.step()
    for p, q in zip(params, copies):
        assert torch.equal(p, q)
    for p, q in zip(params, copies):
        assert all(torch.equal(a, b) for a, b in zip(ours.state[p].values(), torchs.state[q].values()))


def optimizer_state(step: SVIStep) -> list[torch.Tensor]:
    params = [p for group in step.optimizer.param_groups for p in group["params"]]
    return [t.clone() for p in params for t in (p.detach(), *step.optimizer.state.get(p, {}).values())]


@pytest.mark.parametrize("compile", ["off", "fx", "inductor"])
def test_take_skips_a_non_finite_step_on_the_device(compile):
    """A non-finite loss (for inductor, flagged in its graph) leaves every parameter and Adam's
    state bitwise as they were, the first step (whose state torch creates) included."""
    from ppl_vae.infer.svi_step import is_fused

    model, guide = build_pair(ModelConfig(event_shape=(1, 28, 28), z_dim=4, hidden_dims=(16,)))
    step = SVIStep(model, guide, make_elbo("trace", compile=compile), lr=1e-2)
    x = torch.bernoulli(torch.full((8, 1, 28, 28), 0.3))
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    initial = optimizer_state(step)  # the parameters; no state yet
    with pyro.validation_enabled(False):
        result = step.take(bad)
        assert result.dtype == torch.float64 and result.shape == (2,) and result[1] == 1
        assert is_fused(step.optimizer) and all(s["step"] == 0 for s in step.optimizer.state.values())
        assert all(torch.equal(a, p) for a, p in zip(initial, step.optimizer.param_groups[0]["params"]))
        loss, non_finite = step.take(x).tolist()
        assert non_finite == 0 and loss > 0 and all(s["step"] == 1 for s in step.optimizer.state.values())
        after = optimizer_state(step)
        assert not torch.equal(after[0], initial[0])
        assert step.take(bad)[1] == 1
        assert all(torch.equal(a, b) for a, b in zip(after, optimizer_state(step)))


def test_the_compiled_take_reads_no_value_back():
    """No ``item``, ``tolist`` or ``bool`` of a tensor once a shape is recorded: nothing makes the
    host wait for the device inside the step."""
    from ppl_vae.infer.recording_guards import values_not_read

    model, guide = build_pair(ModelConfig(event_shape=(1, 28, 28), z_dim=4, hidden_dims=(16,)))
    step = SVIStep(model, guide, make_elbo("trace", compile="fx"), lr=1e-2)
    x = torch.bernoulli(torch.full((8, 1, 28, 28), 0.3))
    step(x)
    step(x)
    with values_not_read():
        results = [step.take(x) for _ in range(3)]
    assert all(r[1] == 0 for r in results) and results[0][0] != results[2][0]
