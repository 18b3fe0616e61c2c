import logging

import pyro
import pyro.distributions as dist
import pytest
import torch
from conftest import requires_cuda
from test_compiled import BASE, CASES, batch

import ppl_vae.infer.compiled
from ppl_vae import ModelConfig, build_pair, make_elbo
from ppl_vae.infer.auto_compile import CheckedCompiledStep, CompiledStepMismatch, check_agreement, make_svi_step
from ppl_vae.infer.compiled import CompiledELBO, DataDependentStructureError
from ppl_vae.infer.graph_backends import replay_function
from ppl_vae.infer.svi_step import SVIStep
from ppl_vae.models.base import model_arguments
from ppl_vae.training.distributed import Distributed


def losses(compile: str, model_options: dict = {}, step_options: dict = {}, sizes=(32, 32, 7, 32)):
    pyro.set_rng_seed(0)
    model, guide = build_pair(ModelConfig(**BASE, **model_options))
    step = make_svi_step(model, guide, step_options.get("elbo", "trace"), step_options.get("num_particles", 1),
                         compile, lr=1e-2, beta=step_options.get("beta", 1.0))
    args = model_arguments(model)(*batch())
    return [step(*(a[:n] for a in args)) for n in sizes], step


@pytest.mark.parametrize("name", ["diag", "diag-beta", "iaf-iwae-3-particles", "label-cvae", "hierarchical-iaf-iwae"])
def test_auto_is_fx_and_agrees_with_off(name, caplog):
    model_options, step_options = CASES[name]
    with caplog.at_level(logging.WARNING, logger="ppl_vae"):
        auto, step = losses("auto", model_options, step_options)
    fx, _ = losses("fx", model_options, step_options)
    off, _ = losses("off", model_options, step_options)
    assert isinstance(step, CheckedCompiledStep) and step.fallback_reason is None and not caplog.records
    assert isinstance(step.elbo, CompiledELBO) and step.elbo.num_graphs == 2  # batch 32 and batch 7
    assert auto == fx  # bitwise: auto replays the fx graph once it is checked
    # the same draws and gradients as Pyro's ELBO; Pyro sums the reported loss in Python floats, the graph in float32
    torch.testing.assert_close(torch.tensor(auto), torch.tensor(off), rtol=1e-5, atol=0)


def value_dependent_guide(x):
    weight = pyro.param("weight", torch.ones(2))
    loc = weight * x if x.sum() > 0 else -weight * x  # Python control flow on a tensor's value
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(loc, 1.0).to_event(1))


def toy_model(x):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(torch.zeros_like(x), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)


def test_auto_falls_back_on_a_structure_that_depends_on_values(caplog):
    x = torch.randn(16, 2) + 1.0
    pyro.set_rng_seed(0)
    with caplog.at_level(logging.WARNING, logger="ppl_vae"):
        step = make_svi_step(toy_model, value_dependent_guide, compile="auto", lr=0.05)
        auto = [step(x) for _ in range(3)]
    assert "structure depends on tensor values" in step.fallback_reason
    assert [r.getMessage() for r in caplog.records] == [f"compile auto: {step.fallback_reason}; training uncompiled"]
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    off = make_svi_step(toy_model, value_dependent_guide, compile="off", lr=0.05)
    assert auto == [off(x) for _ in range(3)]  # the uncompiled step's losses, draws included


def test_fx_refuses_to_record_a_structure_that_depends_on_values():
    step = make_svi_step(toy_model, value_dependent_guide, compile="fx")
    with pytest.raises(DataDependentStructureError, match=r"reads a tensor's value \(__bool__\)"):
        step(torch.randn(16, 2))


def test_a_wrong_compiled_gradient_fails_the_check_loudly(monkeypatch, caplog):
    def wrong(graph, parameters, arguments, backend="fx", cuda_graphs=True):
        replay = replay_function(graph, parameters, arguments, backend, cuda_graphs)

        def replay_with_a_wrong_gradient(*inputs):
            loss, first, *grads = replay(*inputs)
            return [loss, first * 1.01, *grads]  # 1% off: far beyond float rounding

        return replay_with_a_wrong_gradient

    monkeypatch.setattr(ppl_vae.infer.compiled, "replay_function", wrong)
    with caplog.at_level(logging.WARNING, logger="ppl_vae"):
        auto, step = losses("auto")
    assert "compiled gradient of parameter 0" in step.fallback_reason and "differs" in step.fallback_reason
    assert len(caplog.records) == 1 and not isinstance(step.elbo, CompiledELBO)
    monkeypatch.undo()
    off, _ = losses("off")
    assert auto == off  # the first step already took the uncompiled gradient


def test_check_agreement_tolerates_rounding_only():
    param = torch.ones(100)
    grad = torch.linspace(-1, 1, 100)
    loss = torch.tensor(1234.5)
    check_agreement(loss, [(param, grad)], loss * (1 + 1e-7), (grad * (1 + 1e-6),), rtol=1e-4)
    with pytest.raises(CompiledStepMismatch, match="compiled loss"):
        check_agreement(loss, [(param, grad)], loss * 1.01, (grad,), rtol=1e-4)
    with pytest.raises(CompiledStepMismatch, match="gradient of parameter 0"):
        check_agreement(loss, [(param, grad)], loss, (-grad,), rtol=1e-4)
    with pytest.raises(CompiledStepMismatch, match="gradient of parameter 0"):
        check_agreement(loss, [(param, None)], loss, (grad,), rtol=1e-4)  # a gradient the graph lost


def test_auto_falls_back_when_shapes_keep_changing(caplog):
    with caplog.at_level(logging.WARNING, logger="ppl_vae"):
        _, step = losses("auto", sizes=(32, 31, 30, 29, 28))
    assert step.fallback_reason is None
    step.max_graphs = 3
    model, _ = build_pair(ModelConfig(**BASE))
    x, _ = batch()
    for n in (27, 26, 25):
        step(x[:n])
    assert step.fallback_reason == "the argument shapes keep changing (5 recorded)"
    assert not isinstance(step.elbo, CompiledELBO) and len(caplog.records) == 1


@pytest.mark.parametrize("elbo, distributed, reason", [
    ("enum", None, "the enum ELBO has no compiled version"),
    ("trace", Distributed(0, 2, torch.device("cpu"), "gloo"), "data-parallel training"),
], ids=["enum", "data-parallel"])
def test_auto_trains_uncompiled_where_no_graph_applies(elbo, distributed, reason, caplog):
    model, guide = build_pair(ModelConfig(**BASE))
    with caplog.at_level(logging.WARNING, logger="ppl_vae"):
        step = make_svi_step(model, guide, elbo, compile="auto", distributed=distributed)
    assert type(step) is SVIStep and reason in step.fallback_reason
    assert len(caplog.records) == 1 and reason in caplog.records[0].getMessage()


def test_explicit_compilation_of_an_uncompilable_objective_is_refused():
    model, guide = build_pair(ModelConfig(**BASE))
    for compile in ("fx", "inductor"):
        with pytest.raises(ValueError, match="the enum ELBO has no compiled version"):
            make_svi_step(model, guide, "enum", compile=compile)


def test_inductor_sees_the_same_draws_and_agrees_to_rounding():
    """Inductor draws with torch's generator (fallback_random): the same noise as the uncompiled
    step; fused arithmetic changes only the float rounding."""
    inductor, step = losses("inductor", sizes=(32, 32, 32))
    off, _ = losses("off", sizes=(32, 32, 32))
    assert step.elbo.backend == "inductor" and len(step.elbo.compile_seconds) == 1
    torch.testing.assert_close(torch.tensor(inductor), torch.tensor(off), rtol=1e-5, atol=0)


def cuda_losses(compile: str, cuda_graphs: bool = True, steps: int = 4) -> list[float]:
    pyro.set_rng_seed(0)
    model, guide = build_pair(ModelConfig(**BASE))
    model, guide = model.cuda(), guide.cuda()
    elbo = make_elbo("trace", compile=compile, cuda_graphs=cuda_graphs)
    step = SVIStep(model, guide, elbo, lr=1e-2)
    x = batch()[0].cuda()
    return [step(x) for _ in range(steps)]


@pytest.mark.gpu
@requires_cuda
def test_the_cuda_graph_step_replays_the_uncaptured_step():
    """Captured and replayed, the fx step sees the draws and takes the steps of the uncaptured one."""
    captured, uncaptured, off = cuda_losses("fx"), cuda_losses("fx", cuda_graphs=False), cuda_losses("off")
    torch.testing.assert_close(torch.tensor(captured), torch.tensor(uncaptured), rtol=1e-5, atol=0)
    torch.testing.assert_close(torch.tensor(captured), torch.tensor(off), rtol=1e-4, atol=0)


@pytest.mark.gpu
@requires_cuda
def test_auto_and_inductor_on_cuda_agree_with_off():
    off = cuda_losses("off")
    for compile in ("inductor",):
        torch.testing.assert_close(torch.tensor(cuda_losses(compile)), torch.tensor(off), rtol=1e-4, atol=0)
    pyro.set_rng_seed(0)
    model, guide = build_pair(ModelConfig(**BASE))
    step = make_svi_step(model.cuda(), guide.cuda(), compile="auto", lr=1e-2)
    x = batch()[0].cuda()
    auto = [step(x) for _ in range(4)]
    assert step.fallback_reason is None
    torch.testing.assert_close(torch.tensor(auto), torch.tensor(off), rtol=1e-4, atol=0)


def test_a_non_finite_first_step_leaves_the_check_for_the_next_step(caplog):
    """A NaN batch says nothing about the graph: the step raises as the uncompiled one would,
    and the next batch of that shape is checked and compiled."""
    from ppl_vae.infer.svi_step import NonFiniteLossError

    pyro.set_rng_seed(0)
    model, guide = build_pair(ModelConfig(**BASE))
    step = make_svi_step(model, guide, compile="auto", lr=1e-2)
    x = batch()[0]
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with caplog.at_level(logging.WARNING, logger="ppl_vae"), pyro.validation_enabled(False):
        with pytest.raises(NonFiniteLossError):
            step(bad)
        assert step.fallback_reason is None and step.elbo.graph_key(model, guide, x) not in step.checked
        step(x)
    assert step.fallback_reason is None and step.elbo.graph_key(model, guide, x) in step.checked and not caplog.records
