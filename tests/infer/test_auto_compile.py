import json
import logging

import pyro
import pyro.distributions as dist
import pytest
import torch
from conftest import requires_cuda
from test_compiled import BASE, CASES, batch

import ppl_vae.infer.compiled
import ppl_vae.infer.graph_backends
import ppl_vae.infer.graph_passes
from ppl_vae import ModelConfig, build_pair, make_elbo
from ppl_vae.infer.auto_compile import CheckedCompiledStep, CompiledStepMismatch, check_agreement, make_svi_step
from ppl_vae.infer.compiled import CompiledELBO
from ppl_vae.infer.graph_backends import replay_function
from ppl_vae.infer.recording_guards import DataDependentStructureError
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


def tiered_losses(promote_after: int, steps: int = 6, sizes=None):
    pyro.set_rng_seed(0)
    model, guide = build_pair(ModelConfig(**BASE))
    step = make_svi_step(model, guide, compile="auto", lr=1e-2)
    step.promote_after = promote_after
    x = batch()[0]
    return [step(x[:n]) for n in sizes or [32] * steps], step


def test_auto_compiles_a_hot_shape_with_inductor_and_checks_it(caplog):
    with caplog.at_level(logging.INFO, logger="ppl_vae"):
        auto, step = tiered_losses(promote_after=3, sizes=(32, 7, 32, 32, 32, 32, 7))
    fx, _ = losses("fx", sizes=(32, 7, 32, 32, 32, 32, 7))
    shape = repr(step.elbo.graph_key(step.model, step.guide, batch()[0])[2:])
    assert step.fallback_reason is None and step.promoted == {shape} and step.shape_steps[shape] == 5
    assert [r.getMessage() for r in caplog.records if r.name == "ppl_vae"] == [
        "compile auto: the graph for arguments (32, 1, 28, 28) compiled with inductor after 3 steps "
        f"({step.elbo.compile_seconds[-1]:.1f} s)"]
    assert len(step.elbo.compile_seconds) == 3 and step.elbo.num_graphs == 2  # batch 32 twice, batch 7 once
    assert auto[:4] == fx[:4]  # fx until the fourth step of batch 32 (the fifth step)
    torch.testing.assert_close(torch.tensor(auto), torch.tensor(fx), rtol=1e-5, atol=0)


def test_auto_stays_on_fx_where_inductor_cannot_compile(monkeypatch, caplog):
    def no_compiler(graph, example_inputs):
        raise RuntimeError("no C++ compiler\nmore detail")

    monkeypatch.setattr(ppl_vae.infer.graph_backends, "inductor_function", no_compiler)
    with caplog.at_level(logging.WARNING, logger="ppl_vae"):
        auto, step = tiered_losses(promote_after=2)
    fx, _ = losses("fx", sizes=[32] * 6)
    assert step.fallback_reason is None and len(step.promoted) == 1 and auto == fx
    assert [r.getMessage() for r in caplog.records if r.name == "ppl_vae"] == [
        "compile auto: inductor cannot compile the graph for arguments (32, 1, 28, 28) (no C++ compiler); staying on fx"]


def test_auto_stays_on_fx_where_inductors_graph_disagrees(monkeypatch, caplog):
    def wrong_inductor(graph, example_inputs):
        replay = ppl_vae.infer.graph_passes.as_python_function(graph)
        return lambda *inputs: [out * 1.01 for out in replay(*inputs)]

    monkeypatch.setattr(ppl_vae.infer.graph_backends, "inductor_function", wrong_inductor)
    with caplog.at_level(logging.WARNING, logger="ppl_vae"):
        auto, step = tiered_losses(promote_after=2)
    fx, _ = losses("fx", sizes=[32] * 6)
    key = step.elbo.graph_key(step.model, step.guide, batch()[0])
    assert step.fallback_reason is None and key in step.checked and isinstance(step.elbo, CompiledELBO)
    notices = [r.getMessage() for r in caplog.records if r.name == "ppl_vae"]
    assert len(notices) == 1 and notices[0].startswith("compile auto: inductor's graph for arguments (32, 1, 28, 28): ")
    assert "differs from the uncompiled" in notices[0] and notices[0].endswith("on the same draws; staying on fx")
    assert auto[:3] == fx[:3]  # the third step took the uncompiled result, then fx again
    torch.testing.assert_close(torch.tensor(auto), torch.tensor(fx), rtol=1e-5, atol=0)


def test_the_step_counts_survive_a_checkpoint():
    _, step = tiered_losses(promote_after=5, steps=3)
    state = json.loads(json.dumps(step.state_dict()))
    _, resumed = tiered_losses(promote_after=5, steps=0)
    resumed.load_state_dict(state)
    assert resumed.validated and resumed.shape_steps == step.shape_steps
    x = batch()[0]
    for _ in range(3):
        resumed(x)
    assert resumed.promoted == set(step.shape_steps)  # the sixth step of the shape promoted it
    assert SVIStep(*build_pair(ModelConfig(**BASE)), make_elbo()).state_dict() == {}


def test_a_second_run_in_the_process_promotes_its_own_parameters(caplog):
    """The promotion records in the step's own param store, not in one another run filled."""
    with caplog.at_level(logging.WARNING, logger="ppl_vae"):
        first, _ = tiered_losses(promote_after=2, steps=4)
        second, step = tiered_losses(promote_after=2, steps=4)
    assert not [r for r in caplog.records if r.name == "ppl_vae"]
    assert len(step.elbo.compile_seconds) == 2 and second == first  # the same seed, the same inductor graph
