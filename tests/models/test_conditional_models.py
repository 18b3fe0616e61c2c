"""Conditional VAEs: site contracts, learned-prior KL, conditional likelihood, label routing, bad input."""

import pyro.poutine as poutine
import pytest
import torch
from pyro.poutine.util import site_is_subsample

from ppl_vae import ModelConfig, build_pair
from ppl_vae.data.datasets import load_dataset
from ppl_vae.infer.agreement import elbo_agreement
from ppl_vae.infer.importance import estimate_log_likelihood
from ppl_vae.models.conditional import one_hot
from ppl_vae.models.quadrants import QuadrantTask, baseline_nll, quadrant_mask


@pytest.fixture(scope="module")
def sample():
    return load_dataset("binarized-mnist-sample")


def label_pair(guide="diag", learned_prior=True):
    return build_pair(ModelConfig(z_dim=3, hidden_dims=(32,), model="label", num_classes=10,
                                  learned_prior=learned_prior, guide=guide))


def quadrant_pair(visible=2, guide="diag", layout="pyro"):
    return build_pair(ModelConfig(z_dim=3, hidden_dims=(32,), model="quadrants", visible_quadrants=visible,
                                  likelihood="bernoulli", guide=guide, quadrant_layout=layout))


def sites(trace):
    return {name: site for name, site in trace.nodes.items() if site["type"] == "sample" and not site_is_subsample(site)}


@pytest.mark.parametrize("guide", ["diag", "iaf"])
@pytest.mark.parametrize("kind", ["label", "quadrants", "quadrants-visible-layout"])
def test_site_contracts_with_conditions(kind, guide, sample):
    layout = "visible" if kind.endswith("visible-layout") else "pyro"
    kind = kind.split("-")[0]
    model, guide_ = label_pair(guide) if kind == "label" else quadrant_pair(guide=guide, layout=layout)
    images, labels = next(sample.batches("test", 5, labels=True))
    args = model.arguments(images, labels)
    guide_trace = poutine.trace(guide_).get_trace(*args)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args)
    observed = "x" if kind == "label" else "y"
    assert set(sites(model_trace)) == {"z", observed} and set(sites(guide_trace)) == {"z"}
    assert model_trace.nodes[observed]["is_observed"]
    assert model_trace.nodes["z"]["value"] is guide_trace.nodes["z"]["value"]
    assert guide_trace.nodes["z"]["fn"].batch_shape == (5,) and guide_trace.nodes["z"]["fn"].event_shape == (3,)
    if kind == "quadrants":
        assert model_trace.nodes["y"]["fn"].event_shape == (784 - 14 * 28,)


def test_quadrant_layouts_route_their_inputs():
    """pyro: p(y|z) and a recognition net on the filled-in digit; visible: p(y|z, x_visible)."""
    images = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    z = torch.randn(4, 3)
    pyro_model, pyro_guide = quadrant_pair(visible=1)
    x_visible, y = pyro_model.arguments(images)
    other_visible = torch.rand(4, 1, 28, 28).masked_fill(~pyro_model.task.visible, -1.0)
    torch.testing.assert_close(pyro_model.observation(z, x_visible).base_dist.logits,
                               pyro_model.observation(z, other_visible).base_dist.logits, rtol=0, atol=0)
    seen = []
    pyro_guide.encoder.body.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    pyro_guide(x_visible, y)
    torch.testing.assert_close(seen[-1], images, rtol=0, atol=0)
    visible_model, _ = quadrant_pair(visible=1, layout="visible")
    assert not torch.allclose(visible_model.observation(z, x_visible).base_dist.logits,
                              visible_model.observation(z, other_visible).base_dist.logits)


def test_runs_saved_before_the_layout_option_load_with_the_old_layout():
    old = ModelConfig(model="quadrants", visible_quadrants=2).to_dict()
    del old["quadrant_layout"]
    assert ModelConfig.from_dict(old).quadrant_layout == "visible"
    assert ModelConfig.from_dict({**old, "quadrant_layout": "pyro"}).quadrant_layout == "pyro"
    with pytest.raises(ValueError, match="unknown quadrant layout 'x'; choose from pyro, visible"):
        quadrant_pair(layout="x")


def test_quadrant_masks_follow_pyros_example():
    assert quadrant_mask(1).sum() == 196 and quadrant_mask(1)[0, 20, 5] and not quadrant_mask(1)[0, 5, 5]
    assert quadrant_mask(2).sum() == 392 and quadrant_mask(2)[0, 5, 5] and not quadrant_mask(2)[0, 5, 20]
    assert quadrant_mask(3).sum() == 588 and not quadrant_mask(3)[0, 20, 20]
    task = QuadrantTask(1)
    images = torch.rand(2, 1, 28, 28)
    x_visible, y = task.split(images)
    assert y.shape == (2, 588) and (x_visible[:, 0, :14] == -1).all()
    torch.testing.assert_close(task.merge(x_visible, y), images, rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["label", "quadrants"])
def test_closed_form_kl_against_the_learned_conditional_prior(kind, sample):
    torch.manual_seed(0)
    model, guide = label_pair() if kind == "label" else quadrant_pair()
    with torch.no_grad():  # make the learned prior differ clearly from N(0, I)
        for param in model.prior_net.parameters():
            param.add_(0.3 * torch.randn(param.shape))
    images, labels = next(sample.batches("test", 20, labels=True))
    table = elbo_agreement(model, guide, *model.arguments(images, labels), num_particles=100, repeats=20,
                           num_samples=2000)
    assert (table["reference_kind"] == "closed-form").all()
    assert (table["z"].abs() < 4).all(), table.to_string()


def test_conditional_likelihood_is_at_least_the_conditional_elbo(sample):
    torch.manual_seed(0)
    model, guide = quadrant_pair(visible=1)
    images, _ = next(sample.batches("test", 30, labels=True))
    result, _ = estimate_log_likelihood(model, guide, *model.arguments(images), num_samples=200)
    gap = result.log_likelihood - result.elbo  # Jensen: per datapoint, exactly >= 0 for the same draws
    assert (gap >= -1e-4).all()
    assert gap.mean() > 0


def test_labels_route_to_the_decoder_and_prior():
    model, _ = label_pair()
    seen = []
    model.decoder.register_forward_hook(lambda module, inputs, output: seen.append(inputs[1]))
    condition = one_hot(torch.tensor([7, 2]), 10)
    model.generate(2, torch.zeros(1), condition)
    assert seen[-1].argmax(-1).tolist() == [7, 2]
    images, labels = torch.zeros(3, 1, 28, 28), torch.tensor([0, 9, 4])
    x, y = model.arguments(images, labels)
    assert y.argmax(-1).tolist() == [0, 9, 4] and y.sum(-1).tolist() == [1.0, 1.0, 1.0]
    prior_a = model.prior(1, x, one_hot(torch.tensor([3]), 10)).base_dist.loc
    prior_b = model.prior(1, x, one_hot(torch.tensor([5]), 10)).base_dist.loc
    assert not torch.allclose(prior_a, prior_b)


def test_baseline_nll_is_its_trace_elbo_loss(sample):
    from pyro.infer import Trace_ELBO

    from ppl_vae.models.base import empty_guide

    model, _ = quadrant_pair()
    images, _ = next(sample.batches("test", 10, labels=True))
    x_visible, y = model.arguments(images)
    loss = Trace_ELBO().loss(model.baseline, empty_guide, x_visible, y)
    assert loss == pytest.approx(baseline_nll(model.baseline, x_visible, y).sum().item(), rel=1e-6)


def test_bad_labels_and_missing_conditions():
    with pytest.raises(ValueError, match=r"label 10 is outside \[0, 10\)"):
        one_hot(torch.tensor([1, 10]), 10)
    with pytest.raises(ValueError, match=r"label -1 is outside"):
        one_hot(torch.tensor([-1]), 10)
    model, _ = label_pair(learned_prior=False)
    with pytest.raises(ValueError, match="needs a condition of width 10"):
        model(torch.zeros(2, 1, 28, 28))
    with pytest.raises(ValueError, match="needs a dataset with labels"):
        model.arguments(torch.zeros(2, 1, 28, 28), None)
    with pytest.raises(ValueError, match="visible quadrants must be one of 1, 2, 3"):
        quadrant_mask(4)


def test_label_conditional_conv_model_for_cifar_shaped_images():
    """The CIFAR-10 setting: 32x32x3 images, convolutional networks, labels into both."""
    from pyro.infer import Trace_ELBO

    from ppl_vae import SVIStep

    model, guide = build_pair(ModelConfig(event_shape=(3, 32, 32), z_dim=4, network="conv", hidden_dims=(32,),
                                          likelihood="continuous-bernoulli", model="label", num_classes=10))
    images = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    args = model.arguments(images, torch.arange(6))
    step = SVIStep(model, guide, Trace_ELBO())
    losses = [step(*args) for _ in range(30)]
    assert losses[-1] < losses[0]
    assert model.generate(10, images, one_hot(torch.arange(10), 10)).shape == (10, 3, 32, 32)
