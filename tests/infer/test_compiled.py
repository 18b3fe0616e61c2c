import gc
import json

import pyro
import pytest
import torch

from ppl_vae import IWAE_ELBO, ModelConfig, SVIStep, build_pair, make_elbo
from ppl_vae.cli.main import main
from ppl_vae.infer.compiled import (
    CompiledIWAE_ELBO,
    CompiledTrace_ELBO,
    CompiledTraceMeanField_ELBO,
    is_jit,
)
from ppl_vae.models.base import model_arguments
from ppl_vae.training.distributed import Distributed

BASE = {"event_shape": (1, 28, 28), "z_dim": 5, "hidden_dims": (32,)}
CASES = {
    "diag": ({}, {}),
    "diag-beta": ({}, {"beta": 0.5}),
    "diag-mean-field": ({}, {"elbo": "mean-field"}),
    "diag-3-particles": ({}, {"num_particles": 3}),
    "iaf-iwae-3-particles": ({"guide": "iaf", "guide_options": {"num_flows": 2}}, {"elbo": "iwae", "num_particles": 3}),
    "iaf": ({"guide": "iaf", "guide_options": {"num_flows": 2}}, {}),
    "planar": ({"guide": "planar", "guide_options": {"num_flows": 2}}, {}),
    "full-rank": ({"guide": "full-rank"}, {}),
    "conv": ({"network": "conv"}, {}),
    "label-cvae": ({"model": "label", "num_classes": 10, "learned_prior": True}, {}),
    "quadrant-cvae": ({"model": "quadrants", "visible_quadrants": 1}, {}),
    "mixture-prior": ({"prior": "mixture", "prior_options": {"num_components": 3}}, {}),
    "vamp-prior-iaf": ({"prior": "vamp", "prior_options": {"num_pseudo_inputs": 4}, "guide": "iaf"}, {}),
    "flow-prior-mean-field": ({"prior": "flow"}, {"elbo": "mean-field"}),
    "hierarchical-iaf-iwae": ({"model": "hierarchical", "z_dims": (6, 3), "layer_widths": (16, 8), "guide": "iaf"},
                              {"elbo": "iwae", "num_particles": 2}),
}


def batch(n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.bernoulli(torch.rand(n, 1, 28, 28, generator=generator), generator=generator), torch.arange(n) % 10


def train_losses(jit: bool, model_options: dict, step_options: dict, sizes=(32, 32, 7, 32)) -> list[float]:
    """Losses of SVIStep over batches of the given sizes (a 7 in the middle: a new shape)."""
    pyro.set_rng_seed(0)
    model, guide = build_pair(ModelConfig(**BASE, **model_options))
    elbo = make_elbo(step_options.get("elbo", "trace"), step_options.get("num_particles", 1), jit=jit)
    step = SVIStep(model, guide, elbo, lr=1e-2, beta=step_options.get("beta", 1.0))
    args = model_arguments(model)(*batch())
    return [step(*(a[:n] for a in args)) for n in sizes]


@pytest.mark.parametrize("model_options, step_options", CASES.values(), ids=CASES.keys())
def test_compiled_step_gives_the_uncompiled_loss_sequence(model_options, step_options):
    eager = train_losses(False, model_options, step_options)
    compiled = train_losses(True, model_options, step_options)
    # the same draws: only float rounding (a few ulps per step, compounded by the updates) differs
    torch.testing.assert_close(torch.tensor(compiled), torch.tensor(eager), rtol=1e-4, atol=0)
    assert len(pyro.get_param_store().keys()) == 0  # the steps' own stores, not the global one


@pytest.mark.parametrize("elbo_name, num_particles", [("trace", 1), ("mean-field", 1), ("iwae", 4)],
                         ids=["trace", "mean-field", "iwae-4"])
def test_compiled_gradients_match_on_the_same_draws(elbo_name, num_particles):
    """The recorded gradient is the estimator's (Pyro 1.9's own JitTrace_ELBO.differentiable_loss has twice it)."""
    model, guide = build_pair(ModelConfig(**BASE, guide="iaf", guide_options={"num_flows": 2}))
    x, _ = batch()
    elbo = make_elbo(elbo_name, num_particles, jit=True)
    params = [*model.parameters(), *guide.parameters()]
    with pyro.get_param_store().scope():
        elbo.differentiable_loss(model, guide, x)  # compiles
        pyro.set_rng_seed(5)
        compiled = elbo.differentiable_loss(model, guide, x)
        compiled_grads = torch.autograd.grad(compiled, params)
    pyro.set_rng_seed(5)
    eager = make_elbo(elbo_name, num_particles).differentiable_loss(model, guide, x)
    eager_grads = torch.autograd.grad(eager, params)
    torch.testing.assert_close(compiled, eager, rtol=1e-6, atol=0)
    for a, b in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_one_compilation_per_shape_not_per_call():
    model, guide = build_pair(ModelConfig(**BASE))
    step = SVIStep(model, guide, make_elbo(jit=True))
    x, _ = batch()
    for n in (32, 32, 7, 32, 7):
        step(x[:n])
    assert len(step.elbo._graphs) == 2


def test_compiled_graphs_are_dropped_with_their_model_and_guide():
    """Graphs are keyed by weak references: a collected pair takes its graph with it, so a
    new pair can never be handed a graph that reads another pair's parameters."""
    elbo = make_elbo(jit=True)
    x, _ = batch()
    model, guide = build_pair(ModelConfig(**BASE))
    with pyro.get_param_store().scope():
        elbo.differentiable_loss(model, guide, x)
    assert len(elbo._graphs) == 1
    del model, guide
    gc.collect()
    assert len(elbo._graphs) == 0


def test_bound_methods_share_one_graph():
    class Pair:  # Pyro's examples/vae style: model and guide as methods of one object
        def __init__(self):
            self.vae, self.enc = build_pair(ModelConfig(**BASE))

        def model(self, x):
            return self.vae(x)

        def guide(self, x):
            return self.enc(x)

    pair, elbo = Pair(), make_elbo(jit=True)
    x, _ = batch()
    with pyro.get_param_store().scope():
        for _ in range(3):
            elbo.differentiable_loss(pair.model, pair.guide, x)  # a new bound method object each time
    assert len(elbo._graphs) == 1


def test_two_runs_with_the_same_module_names_keep_their_own_parameters():
    (model1, guide1), (model2, guide2) = (build_pair(ModelConfig(**BASE)) for _ in range(2))
    step1 = SVIStep(model1, guide1, make_elbo(jit=True), lr=1e-2)
    step2 = SVIStep(model2, guide2, make_elbo(jit=True), lr=1e-2)
    x, _ = batch()
    for step, (trained, untouched) in ((step1, (guide1, guide2)), (step2, (guide2, guide1))):
        before = {name: [p.detach().clone() for p in g.parameters()] for name, g in (("trained", trained),
                                                                                     ("untouched", untouched))}
        for _ in range(2):
            step(x)
        assert all(not torch.equal(p, q) for p, q in zip(before["trained"], trained.parameters()))
        assert all(torch.equal(p, q) for p, q in zip(before["untouched"], untouched.parameters()))
    assert len(pyro.get_param_store().keys()) == 0


def test_kl_weight_changes_reach_the_compiled_loss_without_recompiling():
    losses = {}
    for jit in (False, True):
        pyro.set_rng_seed(0)
        model, guide = build_pair(ModelConfig(**BASE))
        step = SVIStep(model, guide, make_elbo(jit=jit), lr=1e-2, beta=0.1)
        x, _ = batch()
        losses[jit] = []
        for scale in (0.1, 0.4, 0.7):  # a warm-up
            step.kl.scale = scale
            losses[jit].append(step(x))
    torch.testing.assert_close(torch.tensor(losses[True]), torch.tensor(losses[False]), rtol=1e-5, atol=0)
    assert len(step.elbo._graphs) == 1
    assert losses[True][1] != pytest.approx(losses[True][0], rel=1e-3)  # the weight did change the loss


def test_make_elbo_jit_gives_the_compiled_estimators():
    assert isinstance(make_elbo("trace", jit=True), CompiledTrace_ELBO)
    assert isinstance(make_elbo("mean-field", jit=True), CompiledTraceMeanField_ELBO)
    assert isinstance(make_elbo("iwae", 2, jit=True), CompiledIWAE_ELBO)
    assert all(is_jit(make_elbo(name, jit=True)) for name in ("trace", "mean-field", "iwae"))
    assert not is_jit(make_elbo("trace")) and not is_jit(pyro.infer.TraceMeanField_ELBO())
    assert is_jit(pyro.infer.JitTrace_ELBO())


@pytest.mark.parametrize("flags, mode", [([], "auto"), (["--jit"], "fx"), (["--no-jit"], "off"),
                                         (["--compile", "fx"], "fx")], ids=["default", "jit", "no-jit", "fx"])
def test_cli_compile_flags_train_the_same_run(tmp_path, flags, mode):
    metrics = {}
    for run, run_flags in (("off", ["--compile", "off"]), ("given", flags)):
        out = tmp_path / run
        assert main(["train", "--dataset", "binarized-mnist-sample", "--epochs", "1", "--z-dim", "3", "--hidden-dims",
                     "32", "--batch-size", "500", "--out", str(out), "--no-progress", *run_flags]) == 0
        assert json.loads((out / "config.json").read_text())["train"]["compile"] == ("off" if run == "off" else mode)
        metrics[run] = (out / "metrics.csv").read_text().splitlines()[1].split(",")[1:3]  # train, test ELBO
    torch.testing.assert_close(torch.tensor([float(v) for v in metrics["given"]]),
                               torch.tensor([float(v) for v in metrics["off"]]), rtol=1e-4, atol=0)


def toy_model(x):
    loc = pyro.param("prior_loc", torch.zeros(2))
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", pyro.distributions.Normal(loc, 1.0).to_event(1))
        pyro.sample("x", pyro.distributions.Normal(z, 1.0).to_event(1), obs=x)


def toy_guide(x):
    weight = pyro.param("weight", torch.zeros(2))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", pyro.distributions.Normal(weight * x, 0.8).to_event(1))


def test_plain_callables_keep_their_params_in_the_global_store():
    x = torch.randn(16, 2) + 3.0
    losses = {}
    for jit in (False, True):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        step = SVIStep(toy_model, toy_guide, make_elbo(jit=jit), lr=0.05)
        losses[jit] = [step(x) for _ in range(5)]
        assert set(pyro.get_param_store().keys()) == {"prior_loc", "weight"}
        assert pyro.param("prior_loc").abs().sum() > 0  # the user's parameters were trained
    torch.testing.assert_close(torch.tensor(losses[True]), torch.tensor(losses[False]), rtol=1e-5, atol=0)


def test_data_parallel_training_is_refused():
    model, guide = build_pair(ModelConfig(**BASE))
    with pytest.raises(ValueError, match="does not support data-parallel training"):
        SVIStep(model, guide, make_elbo(jit=True), distributed=Distributed(0, 2, torch.device("cpu"), "gloo"))


@pytest.mark.parametrize("elbo_class", [CompiledTrace_ELBO, CompiledTraceMeanField_ELBO, CompiledIWAE_ELBO],
                         ids=["trace", "mean-field", "iwae"])
def test_compiled_elbo_trains_under_pyro_svi(elbo_class):
    """The pair under plain pyro.infer.SVI (pyro.module registration, pyro.optim.Adam); the
    uncompiled IWAE bound's step there is Pyro's RenyiELBO(alpha=0).loss_and_grads."""
    uncompiled = {CompiledTrace_ELBO: pyro.infer.Trace_ELBO,
                  CompiledTraceMeanField_ELBO: pyro.infer.TraceMeanField_ELBO,
                  CompiledIWAE_ELBO: IWAE_ELBO}
    x, _ = batch()
    losses = {}
    for elbo in (elbo_class(max_plate_nesting=1), uncompiled[elbo_class](max_plate_nesting=1)):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        model, guide = build_pair(ModelConfig(**BASE, guide="iaf", guide_options={"num_flows": 2}))
        svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), elbo)
        losses[type(elbo)] = [svi.step(x[:n]) for n in (32, 32, 7, 32)]
    compiled, eager = losses.values()
    torch.testing.assert_close(torch.tensor(compiled), torch.tensor(eager), rtol=1e-4, atol=0)
    assert eager[-1] < eager[0] - 1  # the parameters moved


def discrete_model(x):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", pyro.distributions.Bernoulli(0.3))
        pyro.sample("x", pyro.distributions.Normal(2.0 * z, 1.0), obs=x)


def discrete_guide(x):
    weight = pyro.param("weight", torch.tensor(0.5))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", pyro.distributions.Bernoulli(logits=weight * x))


def test_score_function_estimator_keeps_loss_and_surrogate_apart():
    """A non-reparameterized latent: the loss is the ELBO, the gradient the surrogate's (REINFORCE)."""
    x = torch.randn(64) + 1.0
    results = {}
    for elbo in (CompiledTrace_ELBO(), pyro.infer.Trace_ELBO()):
        pyro.clear_param_store()
        elbo.differentiable_loss(discrete_model, discrete_guide, x)  # compiles (or creates the param)
        pyro.set_rng_seed(3)
        loss = elbo.differentiable_loss(discrete_model, discrete_guide, x)
        results[type(elbo)] = (loss.detach(), torch.autograd.grad(loss, pyro.param("weight").unconstrained())[0])
    (loss, grad), (eager_loss, eager_grad) = results.values()
    torch.testing.assert_close(loss, eager_loss, rtol=1e-6, atol=0)
    torch.testing.assert_close(grad, eager_grad, rtol=1e-5, atol=0)
    assert grad.abs() > 0


def test_compiling_validates_the_data_like_the_uncompiled_step():
    model, guide = build_pair(ModelConfig(**BASE))  # Bernoulli likelihood
    step = SVIStep(model, guide, make_elbo(jit=True))
    x, _ = batch()
    with pytest.raises(ValueError, match="support"):
        step(x * 0.5)  # not binary
    step(x)  # binary data compiles and steps


@pytest.mark.parametrize("compile", ["fx", "inductor"])
def test_checked_loss_and_gradient_flags_a_non_finite_step(compile):
    """Inductor's graph computes the flag with the gradients; the fx graph's is computed after it."""
    model, guide = build_pair(ModelConfig(event_shape=(1, 28, 28), z_dim=4, hidden_dims=(16,)))
    elbo = make_elbo("trace", compile=compile)
    x = torch.bernoulli(torch.full((8, 1, 28, 28), 0.3))
    loss, gradients, flag = elbo.checked_loss_and_gradient(model, guide, x)
    assert (elbo._replay(model, guide, (x,), {})[2] is None) == (compile == "fx")
    assert flag.item() == 0 and torch.isfinite(loss)
    x[0, 0, 0, 0] = float("nan")
    with pyro.validation_enabled(False):
        loss, gradients, flag = elbo.checked_loss_and_gradient(model, guide, x)
    assert flag.item() == 1 and not torch.isfinite(loss)
