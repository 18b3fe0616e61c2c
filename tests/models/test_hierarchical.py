"""The two-layer VAE: its sites, its ELBO against one written out by hand, and the evaluator and check on several latent sites."""

import math

import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import Trace_ELBO

from ppl_vae import ModelConfig, build_pair
from ppl_vae.guides import DiagonalNormalGuide, IAFGuide
from ppl_vae.infer.agreement import elbo_agreement
from ppl_vae.infer.traces import sample_sites
from ppl_vae.training.evaluation import evaluation_table

SMALL = {"model": "hierarchical", "z_dims": (6, 3), "layer_widths": (16, 8), "activation": "tanh"}


def data(n: int = 5) -> torch.Tensor:
    return torch.bernoulli(torch.full((n, 1, 28, 28), 0.3), generator=torch.Generator().manual_seed(2))


def test_burda_architecture_and_sites():
    model, guide = build_pair(ModelConfig(model="hierarchical", activation="tanh"))
    x = data(4)
    guide_trace = poutine.trace(guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    assert [n for n, _ in sample_sites(guide_trace)] == ["z1", "z2"]
    assert [n for n, _ in sample_sites(model_trace)] == ["z2", "z1", "x"]
    assert guide_trace.nodes["z1"]["value"].shape == (4, 100) and guide_trace.nodes["z2"]["value"].shape == (4, 50)
    widths = [m.out_features for m in guide.layers[0].encoder.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [100, 100]  # x -> 100 -> 100 -> z1
    widths = [m.out_features for m in guide.layers[1].encoder.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [50, 50]  # z1 -> 50 -> 50 -> z2
    assert all(isinstance(m, torch.nn.Tanh) for m in guide.layers[0].encoder.net if not isinstance(m, torch.nn.Sequential))


def gaussian_log_density(z, loc, scale):
    return (-0.5 * ((z - loc) / scale) ** 2 - scale.log() - 0.5 * math.log(2 * math.pi)).sum(-1)


def test_trace_elbo_equals_the_elbo_written_out_on_fixed_draws(float64):
    model, guide = build_pair(ModelConfig(**SMALL))
    model, guide, x = model.double(), guide.double(), data().double()
    guide_trace = poutine.trace(guide).get_trace(x)
    z1, z2 = guide_trace.nodes["z1"]["value"], guide_trace.nodes["z2"]["value"]
    loss = Trace_ELBO().differentiable_loss(model, poutine.replay(guide, trace=guide_trace), x)
    log_q1 = gaussian_log_density(z1, *guide.layers[0].loc_scale(x))
    log_q2 = gaussian_log_density(z2, *guide.layers[1].loc_scale(z1))
    log_p2 = gaussian_log_density(z2, torch.zeros(3), torch.ones(3))
    log_p1 = gaussian_log_density(z1, *model.conditionals[0](z2))
    logits = model.decoder(z1).reshape(len(x), -1)
    log_px = (x.reshape(len(x), -1) * logits - torch.nn.functional.softplus(logits)).sum(-1)
    expected = (log_px + log_p1 + log_p2 - log_q1 - log_q2).sum()
    torch.testing.assert_close(-loss, expected, rtol=1e-12, atol=1e-9)


def test_a_guide_per_layer():
    _, guide = build_pair(ModelConfig(**SMALL, layer_guides=("iaf", "diag"), guide_options={"num_flows": 2}))
    assert isinstance(guide.layers[0], IAFGuide) and len(guide.layers[0].flows) == 2
    assert type(guide.layers[1]) is DiagonalNormalGuide


@pytest.mark.parametrize("prior, options", [("standard", {}), ("vamp", {"num_pseudo_inputs": 4}), ("flow", {})])
def test_evaluator_and_check_handle_both_sites(prior, options):
    model, guide = build_pair(ModelConfig(**SMALL, guide="iaf", prior=prior, prior_options=options))
    x = data()
    row = evaluation_table(model, guide, x, num_samples=50, chunk_size=20)
    assert -row["nll"] >= row["elbo"] - 1e-4  # the IWAE bound is at least the ELBO
    assert (row["z1_dim"], row["z2_dim"], row["z_dim"]) == (6, 3, 9)
    assert row["active_units"] == row["active_units_z1"] + row["active_units_z2"]
    assert math.isnan(row["kl"])  # no closed form for two layers
    table = elbo_agreement(model, guide, x, num_particles=20, repeats=8, num_samples=400)
    assert set(table["reference_kind"]) == {"monte-carlo"} and (table["z"].abs() < 4).all(), table
    assert list(table["estimator"]) == ["Trace_ELBO"]  # the mean-field ELBO does not apply to dependent layers


def test_plain_pyro_svi_trains_it():
    model, guide = build_pair(ModelConfig(**SMALL, guide="iaf", prior="mixture"))
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 3e-3}), Trace_ELBO())
    x = data(32)
    losses = [svi.step(x) for _ in range(60)]
    assert all(math.isfinite(loss) for loss in losses)
    assert sum(losses[-10:]) < sum(losses[:10])


def test_bad_layer_sizes():
    with pytest.raises(ValueError, match="z_dims must hold sizes of at least 1"):
        ModelConfig(model="hierarchical", z_dims=(10, 0))
    with pytest.raises(ValueError, match="2 guides for 3 stochastic layers"):
        build_pair(ModelConfig(model="hierarchical", z_dims=(5, 4, 3), layer_widths=(8, 8, 8), layer_guides=("diag", "iaf")))
