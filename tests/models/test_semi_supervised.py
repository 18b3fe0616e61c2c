"""The semi-supervised VAE (M2): TraceEnum_ELBO against the sum over labels written out, labelled
batches against Trace_ELBO, the evaluator and check with the label summed out, and accuracy."""

import math

import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceEnum_ELBO

from ppl_vae import ModelConfig, build_pair
from ppl_vae.data import Dataset, semi_supervised
from ppl_vae.infer.agreement import elbo_agreement
from ppl_vae.infer.importance import estimate_log_likelihood
from ppl_vae.infer.noise import ReparameterizedNoise
from ppl_vae.models.conditional import one_hot
from ppl_vae.models.config import ConfigError
from ppl_vae.nn.registration import registration_skipped

SMALL = {"model": "semi-supervised", "num_classes": 4, "z_dim": 3, "hidden_dims": (16,), "activation": "softplus",
         "event_shape": (1, 4, 4)}


class FixedNoise(ReparameterizedNoise):
    """Gaussian latent sites get the given standard-normal draws."""

    def __init__(self, eps: torch.Tensor) -> None:
        super().__init__()
        self.eps = eps

    def handles(self, fn) -> bool:
        return True

    def noise(self, shape, data_dim, like):
        return self.eps.expand(shape)


def data(n: int = 5) -> torch.Tensor:
    return torch.bernoulli(torch.full((n, 1, 4, 4), 0.4, dtype=torch.float64), generator=torch.Generator().manual_seed(2))


def normal_log_density(z, loc, scale):
    return (-0.5 * ((z - loc) / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)).sum(-1)


def test_trace_enum_elbo_is_the_sum_over_labels_written_out(float64):
    model, guide = build_pair(ModelConfig(**SMALL))
    model, guide, x = model.double(), guide.double(), data()
    eps = torch.randn(4, 5, 3)  # one draw of z per label value and datapoint
    with registration_skipped(), FixedNoise(eps):
        loss = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(model, guide, x)
    log_q_y = guide.classifier(x).log_softmax(-1)  # (5, 4)
    expected = -(log_q_y.exp() * log_q_y).sum()  # the entropy of q(y|x)
    for c in range(4):
        y = one_hot(torch.full((5,), c), 4, torch.float64)
        loc, scale = guide.z_guide.loc_scale(x, y)
        z = loc + scale * eps[c]
        logits = model.decoder(z, y).reshape(5, -1)
        log_px = (x.reshape(5, -1) * logits - torch.nn.functional.softplus(logits)).sum(-1)
        elbo_y = log_px + normal_log_density(z, 0 * z, 1 + 0 * z) - normal_log_density(z, loc, scale) - math.log(4)
        expected = expected + (log_q_y[:, c].exp() * elbo_y).sum()
    torch.testing.assert_close(-loss, expected, rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("aux", [0.0, 46.0])
def test_a_labelled_batch_is_trace_elbo_with_y_observed_plus_the_auxiliary_term(aux, float64):
    model, guide = build_pair(ModelConfig(**SMALL, aux_loss_multiplier=aux))
    model, guide, x = model.double(), guide.double(), data()
    y = one_hot(torch.tensor([0, 1, 2, 3, 1]), 4, torch.float64)
    with registration_skipped():
        pyro.set_rng_seed(3)
        enum = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(model, guide, x, y)
        pyro.set_rng_seed(3)
        no_aux = poutine.block(model, hide=["y_aux"])
        trace = Trace_ELBO().differentiable_loss(no_aux, guide, x, y)
    log_q = (guide.classifier(x).log_softmax(-1) * y).sum()
    torch.testing.assert_close(enum, trace - aux * log_q, rtol=1e-12, atol=1e-10)


def test_the_evaluator_sums_the_label_out_and_its_bound_is_at_least_the_elbo():
    model, guide = build_pair(ModelConfig(**SMALL))
    x = data().float()
    result, means = estimate_log_likelihood(model, guide, x, num_samples=200, chunk_size=64)
    assert (result.log_likelihood >= result.elbo).all()
    assert set(means) == {"z"} and means["z"].shape == (5, 3)  # the label is summed out, not sampled
    # the exact ELBO's Monte Carlo estimate agrees with TraceEnum_ELBO on the same kind of draws
    table = elbo_agreement(model, guide, x, num_particles=20, repeats=8, num_samples=400)
    assert list(table["estimator"]) == ["TraceEnum_ELBO"] and list(table["reference_kind"]) == ["closed-form"]
    assert abs(table["z"].iloc[0]) < 4, table


def test_labels_are_balanced_seeded_and_hidden_outside_training():
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (90,), generator=generator)
    base = Dataset("toy", torch.rand(90, 1, 2, 2), torch.rand(20, 1, 2, 2), labels, torch.zeros(20, dtype=torch.long),
                   num_classes=3)
    first, again, other = semi_supervised(base, 10, 0), semi_supervised(base, 10, 0), semi_supervised(base, 10, 1)
    assert torch.equal(first.labelled, again.labelled) and not torch.equal(first.labelled, other.labelled)
    assert sorted(labels[first.labelled].bincount().tolist()) == [3, 3, 4]
    assert first.split("test")[1] is None and torch.equal(first.test_labels, torch.zeros(20, dtype=torch.long))
    batches = list(first.batches("train", 4, shuffle=True, generator=generator, labels=True))
    assert len(batches) == first.num_batches("train", 4) == 3 + 20
    labelled = [labels for _, labels in batches if labels is not None]
    assert len(labelled) == 3 and sum(len(b) for b in labelled) == 10
    assert sum(len(x) for x, _ in batches) == 90  # every image once an epoch


def test_labelled_every_cycles_the_labelled_images_at_its_rate():
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (90,), generator=generator)
    images = torch.arange(90.0).view(90, 1, 1, 1).expand(90, 1, 2, 2).clone()  # each image names its index
    base = Dataset("toy", images, torch.rand(20, 1, 2, 2), labels, torch.zeros(20, dtype=torch.long), num_classes=3)
    cycled = semi_supervised(base, 6, 0, labelled_every=3)  # 84 unlabelled images: 21 batches of 4
    batches = list(cycled.batches("train", 4, shuffle=True, generator=generator, labels=True))
    kinds = [y is not None for _, y in batches]
    assert len(batches) == cycled.num_batches("train", 4) == 21 + 11  # ceil(21 / (3 - 1)) labelled batches
    assert all(any(kinds[i:i + 3]) for i in range(len(kinds) - 2))  # every 3 consecutive batches hold one
    unlabelled = torch.cat([x[:, 0, 0, 0] for x, y in batches if y is None]).long()
    assert sorted(unlabelled.tolist()) == cycled.unlabelled.tolist()  # each unlabelled image once an epoch
    seen = torch.cat([x[:, 0, 0, 0] for x, y in batches if y is not None]).long()
    assert torch.equal(seen[:18].bincount(minlength=90)[cycled.labelled], torch.full((6,), 3))  # whole passes
    assert set(seen.tolist()) == set(cycled.labelled.tolist())
    for x, y in batches:
        if y is not None:
            assert torch.equal(y, labels[x[:, 0, 0, 0].long()])  # the labels travel with their images
    with pytest.raises(ConfigError, match="labelled_every"):
        ModelConfig(**SMALL, labelled_every=1)


def test_accuracy_is_measured_on_the_test_split_only():
    model, guide = build_pair(ModelConfig(**SMALL))
    torch.nn.init.zeros_(guide.classifier[-1].weight)
    with torch.no_grad():
        guide.classifier[-1].bias.copy_(torch.tensor([5.0, 0, 0, 0]))  # always class 0
    data_ = Dataset("toy", torch.rand(8, 1, 4, 4), torch.rand(6, 1, 4, 4), torch.arange(8) % 4,
                    torch.tensor([0, 0, 0, 1, 2, 3]), num_classes=4)
    assert model.epoch_metrics(guide, semi_supervised(data_, 4)) == {"test_accuracy": 0.5}  # 0.25 on the training split
