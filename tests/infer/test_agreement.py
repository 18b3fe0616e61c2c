"""``check``'s estimators go in bounded passes, and their results do not depend on the passes."""

import pytest
import torch

from ppl_vae import ModelConfig, build_pair
from ppl_vae.infer.agreement import blocks, elbo_agreement


@pytest.mark.parametrize("guide, options", [("diag", {}), ("iaf", {"num_flows": 1})])
def test_results_do_not_depend_on_the_pass_size(guide, options) -> None:
    torch.manual_seed(0)
    model, guide = build_pair(ModelConfig(event_shape=(1, 28, 28), z_dim=3, hidden_dims=(16,), guide=guide,
                                          guide_options=options))
    x = torch.bernoulli(torch.full((7, 1, 28, 28), 0.3), generator=torch.Generator().manual_seed(1))
    tables = [elbo_agreement(model, guide, x, num_particles=6, repeats=3, num_samples=10, max_pairs=max_pairs)
              for max_pairs in (1_000_000, 20, 5, 1)]  # one pass; several datapoints; particles split; one pair
    for table in tables[1:]:
        for column in ("estimate", "std_error", "reference", "reference_std_error"):
            torch.testing.assert_close(torch.tensor(table[column].values), torch.tensor(tables[0][column].values),
                                       rtol=1e-5, atol=1e-4)
    assert (tables[0]["std_error"] > 0).all()


@pytest.mark.parametrize("rows, particles, max_pairs", [(500, 100, 20_000), (500, 2000, 20_000), (3, 10**7, 20_000)])
def test_passes_hold_at_most_max_pairs(rows, particles, max_pairs) -> None:
    per_pass_rows, per_pass_particles = blocks(rows, particles, max_pairs)
    assert 1 <= per_pass_rows * per_pass_particles <= max_pairs
    assert per_pass_rows == min(rows, max(1, max_pairs // particles))
