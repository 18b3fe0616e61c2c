import re

import pytest
import torch
import torch.nn.functional as F

from ppl_vae.nn.likelihoods import LIKELIHOODS, GrayscaleBernoulli, make_likelihood


@pytest.mark.parametrize("name", list(LIKELIHOODS))
def test_event_shape_and_log_prob(name):
    likelihood = make_likelihood(name, (1, 4, 4))
    out = torch.randn(6, 1, 4, 4)
    d = likelihood(out)
    assert d.batch_shape == (6,) and d.event_shape == (1, 4, 4)
    x = torch.bernoulli(torch.full((6, 1, 4, 4), 0.5))
    assert d.log_prob(x).shape == (6,)
    assert torch.isfinite(d.log_prob(x)).all()
    assert likelihood.mean(out).shape == out.shape


def test_gaussian_scales_are_learned_parameters():
    global_scale = make_likelihood("gaussian", (1, 4, 4))
    per_pixel = make_likelihood("gaussian-pixel", (1, 4, 4))
    assert [p.shape for p in global_scale.parameters()] == [torch.Size([])]
    assert [p.shape for p in per_pixel.parameters()] == [torch.Size([1, 4, 4])]
    with torch.no_grad():
        per_pixel.log_scale[0, 0, 0] = 2.0
    scale = per_pixel(torch.zeros(1, 1, 4, 4)).base_dist.scale.detach()
    assert scale[0, 0, 0, 0].item() == pytest.approx(torch.e**2)
    assert scale[0, 0, 1, 1].item() == pytest.approx(1.0)


def test_grayscale_bce_is_the_examples_objective():
    logits, x = torch.randn(5, 10), torch.rand(5, 10)
    expected = -F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    torch.testing.assert_close(GrayscaleBernoulli(logits=logits).log_prob(x), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "name, x, message",
    [
        ("bernoulli", torch.tensor([0.0, 0.5, 1.0]), "needs binary data"),
        ("continuous-bernoulli", torch.tensor([0.0, 1.5]), r"needs data in \[0, 1\]"),
        ("bce-grayscale", torch.tensor([-0.1, 0.5]), r"needs data in \[0, 1\]"),
        ("gaussian", torch.tensor([0.0, float("nan")]), "NaN"),
    ],
    ids=["bernoulli-grayscale", "cb-above-one", "bce-negative", "gaussian-nan"],
)
def test_support_problems_are_named(name, x, message):
    problem = make_likelihood(name, (x.shape[-1],)).support_problem(x)
    assert problem is not None
    assert re.search(message, problem)


@pytest.mark.parametrize("name", list(LIKELIHOODS))
def test_data_in_support_passes(name):
    x = torch.tensor([0.0, 1.0, 1.0, 0.0])
    assert make_likelihood(name, (4,)).support_problem(x) is None


def test_unknown_likelihood():
    with pytest.raises(ValueError, match="unknown likelihood 'poisson'; choose from bernoulli, continuous-bernoulli"):
        make_likelihood("poisson", (4,))


@pytest.mark.parametrize("name", ["bernoulli", "bce-grayscale", "gaussian", "gaussian-pixel"])
def test_output_for_mean_inverts_the_mean(name):
    likelihood = make_likelihood(name, (2, 3))
    mean = torch.tensor([[0.01, 0.2, 0.5], [0.7, 0.9, 0.99]])
    out = likelihood.output_for_mean(mean)
    assert out.shape == mean.shape
    torch.testing.assert_close(likelihood.mean(out), mean, rtol=1e-5, atol=1e-6)


def test_output_for_mean_keeps_pixels_that_are_always_off_finite():
    out = make_likelihood("bernoulli", (3,)).output_for_mean(torch.tensor([0.0, 1.0, 0.5]))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, torch.tensor([-6.9067547, 6.9067547, 0.0]), rtol=1e-5, atol=1e-6)  # logit(0.001)


def test_output_for_mean_without_a_closed_form_is_refused():
    with pytest.raises(NotImplementedError, match="'continuous-bernoulli' likelihood has no closed-form inverse"):
        make_likelihood("continuous-bernoulli", (3,)).output_for_mean(torch.full((3,), 0.5))
