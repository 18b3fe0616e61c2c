import pyro.distributions as dist
import pytest
import torch

from ppl_vae.distributions.bernoulli import LogSigmoidBernoulli, bernoulli_log_prob

EXTREME_LOGITS = torch.tensor([-1e4, -200.0, -100.0, -88.0, -30.0, -5.0, -1e-3, 0.0, 1e-3, 5.0, 30.0, 88.0, 100.0, 200.0, 1e4])


# absolute error within a few units of float's rounding of 1, like torch's own kernel;
# measured: 4.6 eps in float32, 16 eps (3.6e-15 nats) in float64
@pytest.mark.parametrize("dtype, eps_allowed", [(torch.float32, 8), (torch.float64, 32)], ids=["float32", "float64"])
@pytest.mark.parametrize("x", [0.0, 1.0, 0.3], ids=["x=0", "x=1", "x=0.3"])
def test_log_prob_is_accurate_over_extreme_logits(x, dtype, eps_allowed):
    logits = torch.cat([EXTREME_LOGITS, torch.linspace(-40, 40, 8001)]).to(dtype)
    value = torch.full_like(logits, x)
    exact = torch.distributions.Bernoulli(logits=logits.double(), validate_args=False).log_prob(value.double())
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(bernoulli_log_prob(logits, value).double(), exact, rtol=4 * eps, atol=eps_allowed * eps)


@pytest.mark.parametrize(
    "logits_shape, value_shape",
    [((7, 784), (7, 784)), ((5, 3, 1, 4, 4), (3, 1, 4, 4)), ((1, 4), (6, 4)), ((), (3,))],
    ids=["same", "particles", "shared-logits", "scalar-logit"],
)
def test_gradients_match_autograd_of_torch_bernoulli(logits_shape, value_shape, float64):
    logits = (3 * torch.randn(logits_shape)).requires_grad_()
    value = torch.rand(value_shape).requires_grad_()  # grayscale, so d/dx is defined
    weights = torch.randn(torch.broadcast_shapes(logits_shape, value_shape))
    ours = torch.autograd.grad((bernoulli_log_prob(logits, value) * weights).sum(), (logits, value))
    torch_lp = torch.distributions.Bernoulli(logits=logits, validate_args=False).log_prob(value)
    expected = torch.autograd.grad((torch_lp * weights).sum(), (logits, value))
    for a, b in zip(ours, expected):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_distribution_is_pyros_bernoulli_with_the_same_log_prob():
    logits = 4 * torch.randn(2, 3, 784)
    x = torch.bernoulli(torch.full((3, 784), 0.3))
    ours = LogSigmoidBernoulli(logits=logits).to_event(1)
    reference = dist.Bernoulli(logits=logits).to_event(1)
    assert isinstance(ours.base_dist, dist.Bernoulli)
    torch.testing.assert_close(ours.log_prob(x), reference.log_prob(x), rtol=1e-6, atol=1e-3)
    assert type(ours.base_dist.expand((4, 2, 3, 784))) is LogSigmoidBernoulli
    torch.testing.assert_close(ours.mean, reference.mean)


def test_validation_still_rejects_values_outside_the_support():
    with pytest.raises(ValueError, match="support"):
        LogSigmoidBernoulli(logits=torch.zeros(3), validate_args=True).log_prob(torch.tensor([0.0, 0.5, 1.0]))
