"""The importance-sampled log-likelihood against the exact one of the linear-Gaussian VAE."""

import pytest
import torch
from conftest import requires_cuda

from ppl_vae import ModelConfig, build_pair
from ppl_vae.infer.importance import active_units, estimate_log_likelihood
from ppl_vae.models.linear_gaussian import ExactPosteriorGuide
from ppl_vae.training.evaluation import evaluation_table

pytestmark = pytest.mark.usefixtures("float64")



def test_exact_posterior_gives_the_exact_log_likelihood_for_any_k(linear_gaussian):
    model, _, x = linear_gaussian
    for k in (1, 7):
        result, _ = estimate_log_likelihood(model, ExactPosteriorGuide(model), x, num_samples=k, chunk_size=3)
        torch.testing.assert_close(result.log_likelihood, model.log_marginal(x), rtol=0, atol=1e-8)


def test_importance_sampling_approaches_the_log_likelihood(linear_gaussian):
    model, guide, x = linear_gaussian
    exact = model.log_marginal(x)
    gaps = []
    for k in (1, 10, 100, 3000):
        result, _ = estimate_log_likelihood(model, guide, x, num_samples=k, chunk_size=500)
        gap = result.log_likelihood - exact
        std_error = gap.std() / len(gap) ** 0.5
        assert gap.mean() <= std_error, (k, gap.mean(), std_error)  # a lower bound, up to noise
        gaps.append(gap.mean().abs().item())
    assert gaps == sorted(gaps, reverse=True), gaps
    assert gaps[0] > 1.0 and gaps[-1] < 0.05 * gaps[0]


def test_results_do_not_depend_on_batch_or_chunk_size(linear_gaussian):
    model, guide, x = linear_gaussian
    reference, z_reference = estimate_log_likelihood(model, guide, x, num_samples=200, batch_size=40, chunk_size=200)
    for batch_size, chunk_size in ((1, 50), (7, 33), (16, 64)):
        result, z_mean = estimate_log_likelihood(model, guide, x, num_samples=200, batch_size=batch_size,
                                                 chunk_size=chunk_size)
        torch.testing.assert_close(result.log_likelihood, reference.log_likelihood, rtol=0, atol=1e-5)
        torch.testing.assert_close(result.elbo, reference.elbo, rtol=0, atol=1e-5)
        torch.testing.assert_close(z_mean, z_reference, rtol=0, atol=1e-5)


def test_per_datapoint_noise_still_varies_with_the_seed(linear_gaussian):
    model, guide, x = linear_gaussian
    first, _ = estimate_log_likelihood(model, guide, x, num_samples=5, seed=0)
    second, _ = estimate_log_likelihood(model, guide, x, num_samples=5, seed=1)
    assert not torch.allclose(first.log_likelihood, second.log_likelihood)


def test_elbo_column_is_the_mean_log_weight(linear_gaussian):
    from ppl_vae.infer.closed_form import closed_form_elbo

    model, guide, x = linear_gaussian
    result, _ = estimate_log_likelihood(model, guide, x, num_samples=4000)
    exact = closed_form_elbo(model, guide, x).elbo.detach()
    difference = (result.elbo - exact).mean()
    # the per-datapoint ELBO estimates are means of 4000 log weights; compare in standard errors
    single, _ = estimate_log_likelihood(model, guide, x, num_samples=1, seed=7)
    std_error = (single.elbo - exact).std() / (4000 * len(x)) ** 0.5
    assert difference.abs() < 4 * std_error


def test_active_units():
    generator = torch.Generator().manual_seed(0)
    means = torch.randn(1000, 3, generator=generator) * torch.tensor([1.0, 0.3, 0.01])
    assert active_units(means).tolist() == [True, True, False]


def test_evaluation_table_on_an_image_model():
    torch.set_default_dtype(torch.float32)
    model, guide = build_pair(ModelConfig(event_shape=(1, 28, 28), z_dim=4, hidden_dims=(32,)))
    x = torch.bernoulli(torch.full((12, 1, 28, 28), 0.2))
    row = evaluation_table(model, guide, x, num_samples=50, batch_size=5, chunk_size=20)
    assert row["num_datapoints"] == 12 and row["num_samples"] == 50 and row["z_dim"] == 4
    assert row["nll"] > 0 and row["nll"] <= -row["elbo"] + 3 * row["elbo_std_error"]
    assert row["bits_per_dim"] == pytest.approx(row["nll"] / (784 * 0.6931471805599453))
    assert row["kl"] == pytest.approx(sum(row[f"kl_z{u}"] for u in range(4)))


@pytest.mark.parametrize("option", ["num_samples", "batch_size", "chunk_size"])
def test_bad_sizes(option, linear_gaussian):
    model, guide, x = linear_gaussian
    with pytest.raises(ValueError, match=f"{option} must be at least 1"):
        estimate_log_likelihood(model, guide, x, **{option: 0})


@pytest.mark.gpu
@requires_cuda
def test_the_evaluator_on_cuda_gives_the_cpu_results(linear_gaussian):
    """The noise is computed on the device, from the same counters: the same draws on both."""
    model, guide, x = linear_gaussian
    cpu, z_cpu = estimate_log_likelihood(model, guide, x, num_samples=200, batch_size=7, chunk_size=64)
    cuda, z_cuda = estimate_log_likelihood(model.cuda(), guide.cuda(), x.cuda(), num_samples=200)  # its own pass size
    torch.testing.assert_close(cuda.log_likelihood.cpu(), cpu.log_likelihood, rtol=0, atol=1e-4)
    torch.testing.assert_close(z_cuda["z"].cpu(), z_cpu["z"], rtol=0, atol=1e-4)
